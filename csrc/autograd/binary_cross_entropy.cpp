// Autograd for binary_cross_entropy_with_logits: the fused-loss node
// (fused_loss.h) over the op.
#include "autograd/fused_loss.h"

#include <torch/library.h>

namespace fastact::autograd {
namespace {

TensorPair binary_cross_entropy_with_logits(
    const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& pos_weight, int64_t reduction, bool compute_grad) {
  return fused_loss("binary_cross_entropy_with_logits", input, target,
                    defined_and_needs_grad(weight) || defined_and_needs_grad(pos_weight), reduction, compute_grad,
                    [&] {
                      return ops::binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction,
                                                                   compute_grad);
                    });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) {
  m.impl("binary_cross_entropy_with_logits", &binary_cross_entropy_with_logits);
}

}  // namespace fastact::autograd
