// The torch side of the CUDA kernels (csrc/cuda/*.cpp): dtypes to the
// launchers' ScalarType, the device and stream a call runs on, and launch
// errors as Python exceptions. Everything a kernel needs arrives through
// launchers.h as raw pointers, so only these .cpp files see torch.
#pragma once
#include "checks.h"
#include "cuda/launchers.h"

#include <ATen/core/Tensor.h>
#include <torch/library.h>
#if !defined(FASTACT_CUDA_EMULATION)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace fastact::cuda {

// The kernels' name for t's dtype; NotImplementedError (AT_DISPATCH's
// message) for one they are not compiled for.
inline ScalarType scalar_type_of(const at::Tensor& t, const char* op, bool floating_only = true) {
  switch (t.scalar_type()) {
    case at::kFloat: return ScalarType::Float;
    case at::kDouble: return ScalarType::Double;
    case at::kHalf: return ScalarType::Half;
    case at::kBFloat16: return ScalarType::BFloat16;
    default: break;
  }
  if (!floating_only) {
    switch (t.scalar_type()) {
      case at::kByte: return ScalarType::Byte;
      case at::kChar: return ScalarType::Char;
      case at::kShort: return ScalarType::Short;
      case at::kInt: return ScalarType::Int;
      case at::kLong: return ScalarType::Long;
      default: break;
    }
  }
  TORCH_CHECK_NOT_IMPLEMENTED(false, '"', op, "\" not implemented for '", t.scalar_type(), "'");
}

// Makes t's device current for the call and hands out its current stream:
// the kernels run where the tensors live, ordered with the caller's other
// work on that stream (and captured with it in a CUDA graph).
#if defined(FASTACT_CUDA_EMULATION)
// The emulated GPU (tests/cuda_emulator) runs on CPU tensors, in its own
// namespace: no device to select, no stream.
class DeviceScope {
 public:
  explicit DeviceScope(const at::Tensor&) {}
  cudaStream_t stream() const { return nullptr; }
};
#define FASTACT_CUDA_KERNELS(m) TORCH_LIBRARY_IMPL(fastact_cuda_emulation, CPU, m)
#else
class DeviceScope {
 public:
  explicit DeviceScope(const at::Tensor& t) : guard_(t.device()) {}
  cudaStream_t stream() const { return c10::cuda::getCurrentCUDAStream().stream(); }

 private:
  c10::cuda::CUDAGuard guard_;
};
// Where the glue files register their kernels.
#define FASTACT_CUDA_KERNELS(m) TORCH_LIBRARY_IMPL(fastact, CUDA, m)
#endif

// A launch configuration error as a RuntimeError naming the op (kernel
// faults, like torch's, surface at the next synchronisation).
inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "fastact::", op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

// The kernels' [outer, classes, inner] view of a contiguous tensor around dim.
inline SoftmaxShape shape_around(const at::Tensor& t, int64_t dim) {
  const SizesAround s = sizes_around(t, dim);
  return {s.outer, s.classes, s.inner};
}

}  // namespace fastact::cuda
