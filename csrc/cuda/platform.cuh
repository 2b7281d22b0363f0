// The platform under fastact's CUDA kernels: the CUDA runtime, and the three
// things device.cuh asks of it: launching a kernel on a stream, the SM count
// of the current device, and the 16-byte alignment check of vector loads
// (free on a GPU, whose misaligned vector access faults by itself).
//
// The emulated-GPU test build (tests/cuda_emulator) puts its own
// cuda/platform.cuh ahead of csrc/ on the include path, with host threads
// for the GPU; so this header, like every production header, carries no
// test code.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace fastact::cuda {

template <typename... KernelArgs, typename... Args>
cudaError_t launch_kernel(void (*kernel)(KernelArgs...), int64_t blocks, int threads, cudaStream_t stream,
                          Args&&... args) {
  kernel<<<dim3(static_cast<unsigned>(blocks)), dim3(threads), 0, stream>>>(std::forward<Args>(args)...);
  return cudaGetLastError();
}

// The number of SMs of the current device (cached per device; no sync).
inline int sm_count() {
  static int cached[64] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return 80;
  if (cached[device] == 0) {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n <= 0) n = 80;
    cached[device] = n;
  }
  return cached[device];
}

__device__ __forceinline__ void check_pack_alignment(const void*, size_t) {}

}  // namespace fastact::cuda
