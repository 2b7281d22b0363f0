// CUDA glue for _scale_grad_, the fused losses' backward (kernel:
// scale_grad_kernel.cu); every other device has composite/scale_grad.cpp.
#include "cuda/glue.h"

#include <ATen/ops/mul.h>
#include <torch/library.h>

namespace fastact::cuda {
namespace {

// The fused losses' backward: grad *= scale, skipped on the device when the
// scale is exactly 1 (see launchers.h); not dense: ATen's in-place multiply.
void scale_grad_(at::Tensor& grad, const at::Tensor& scale) {
  TORCH_CHECK(scale.numel() == 1 && scale.scalar_type() == grad.scalar_type() && scale.device() == grad.device(),
              "fastact::_scale_grad_: expected a one-element scale of the gradient's dtype and device");
  if (!grad.is_non_overlapping_and_dense()) {
    grad.mul_(scale.reshape({}));
    return;
  }
  const DeviceScope scope(grad);
  const at::Tensor s = scale.contiguous();
  check_launch(launch_scale_grad(scalar_type_of(grad, "_scale_grad_"), grad.mutable_data_ptr(), s.const_data_ptr(),
                                 grad.numel(), scope.stream()),
               "_scale_grad_");
}

}  // namespace

FASTACT_CUDA_KERNELS(m) { m.impl("_scale_grad_", &scale_grad_); }

}  // namespace fastact::cuda
