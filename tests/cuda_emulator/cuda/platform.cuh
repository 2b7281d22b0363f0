// The emulated GPU's stand-in for csrc/cuda/platform.cuh (this directory is
// ahead of csrc/ on the emulated build's include path): kernels run on host
// threads (cuda_emulation.h), on a small "GPU" of cuda_emulation::sm_count()
// SMs, and every 16-byte vector access is checked for the alignment a GPU
// requires.
#pragma once
#include "cuda_emulation.h"

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace fastact::cuda {

template <typename... KernelArgs, typename... Args>
cudaError_t launch_kernel(void (*kernel)(KernelArgs...), int64_t blocks, int threads, cudaStream_t,
                          Args&&... args) {
  return cuda_emulation::launch(kernel, blocks, threads, std::forward<Args>(args)...);
}

inline int sm_count() { return cuda_emulation::sm_count(); }

inline void check_pack_alignment(const void* p, size_t bytes) {
  assert(reinterpret_cast<uintptr_t>(p) % bytes == 0);
}

}  // namespace fastact::cuda
