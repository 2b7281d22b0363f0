// Where the CUDA glue runs a call and registers its kernels:
//  - DeviceScope makes the tensor's device current for the call and hands out
//    its current stream: the kernels run where the tensors live, ordered with
//    the caller's other work on that stream (and captured with it in a CUDA
//    graph);
//  - FASTACT_CUDA_KERNELS(m) opens the glue's TORCH_LIBRARY_IMPL block.
// The emulated-GPU test build (tests/cuda_emulator) puts its own
// cuda/device_scope.h ahead of csrc/ on the include path.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

namespace fastact::cuda {

class DeviceScope {
 public:
  explicit DeviceScope(const at::Tensor& t) : guard_(t.device()) {}
  cudaStream_t stream() const { return c10::cuda::getCurrentCUDAStream().stream(); }

 private:
  c10::cuda::CUDAGuard guard_;
};

}  // namespace fastact::cuda

#define FASTACT_CUDA_KERNELS(m) TORCH_LIBRARY_IMPL(fastact, CUDA, m)
