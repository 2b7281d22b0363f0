// _scale_grad_ everywhere but CUDA (which has its own kernel, in
// cuda/scale_grad.cpp, that skips the pass when the scale is 1): an in-place
// multiply. As CompositeExplicitAutograd it also serves the Meta key, so
// torch.compile traces it without a Python fake kernel.
#include <ATen/ops/mul.h>
#include <torch/library.h>

namespace fastact::composite {
namespace {

void scale_grad_(at::Tensor& grad, const at::Tensor& scale) {
  TORCH_CHECK(scale.numel() == 1 && scale.scalar_type() == grad.scalar_type(),
              "fastact::_scale_grad_: expected a one-element scale of the gradient's dtype");
  grad.mul_(scale.reshape({}));
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, CompositeExplicitAutograd, m) { m.impl("_scale_grad_", &scale_grad_); }

}  // namespace fastact::composite
