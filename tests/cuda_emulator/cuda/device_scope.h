// The emulated GPU's stand-in for csrc/cuda/device_scope.h (this directory is
// ahead of csrc/ on the emulated build's include path): its kernels run on
// CPU tensors, registered in its own namespace; no device to select, no
// stream.
#pragma once
#include <ATen/core/Tensor.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

namespace fastact::cuda {

class DeviceScope {
 public:
  explicit DeviceScope(const at::Tensor&) {}
  cudaStream_t stream() const { return nullptr; }
};

}  // namespace fastact::cuda

#define FASTACT_CUDA_KERNELS(m) TORCH_LIBRARY_IMPL(fastact_cuda_emulation, CPU, m)
