// The torch side of the CUDA kernels (csrc/cuda/*.cpp): dtypes to the
// launchers' ScalarType, the device and stream a call runs on, and launch
// errors as Python exceptions. Everything a kernel needs arrives through
// launchers.h as raw pointers, so only these .cpp files see torch.
#pragma once
#include "checks.h"
#include "cuda/launchers.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "cuda/device_scope.h"  // DeviceScope, FASTACT_CUDA_KERNELS

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

// Scratch device memory for a launch, from torch's caching allocator.
inline at::Tensor workspace(const at::Tensor& like, size_t bytes) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

// An optional operand as the launchers take it.
inline const void* data_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

// A launch configuration error as a RuntimeError naming the op (kernel
// faults, like torch's, surface at the next synchronisation).
inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "fastact::", op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace fastact::cuda
