// Autograd for binary_cross_entropy_with_logits: the fused-loss node
// (fused_loss.h) over the op. Its gradient written with ATen ops, as
// torch's: weight * ((1 + (pos_weight - 1) t) sigmoid(x) - pos_weight t),
// over the element count for 'mean'. weight and pos_weight arrive
// broadcast to the input's shape.
#include "autograd/fused_loss.h"
#include "constants.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/binary_cross_entropy_with_logits.h>
#include <ATen/ops/sigmoid.h>
#include <torch/library.h>

namespace fastact::autograd {
namespace {

TensorPair op(const at::Tensor& input, const LossArgs& a, bool compute_grad) {
  return ops::binary_cross_entropy_with_logits(input, a.target, a.weight, a.pos_weight, a.reduction, compute_grad);
}

at::Tensor torch_loss(const at::Tensor& input, const LossArgs& a) {
  return at::binary_cross_entropy_with_logits(input, a.target, a.weight, a.pos_weight, a.reduction);
}

at::Tensor differentiable_grad(const at::Tensor& x, const LossArgs& a) {
  const at::Tensor& t = a.target;
  at::Tensor d = a.pos_weight.has_value() ? (1 + (*a.pos_weight - 1) * t) * at::sigmoid(x) - *a.pos_weight * t
                                          : at::sigmoid(x) - t;
  if (a.weight.has_value()) d = d * *a.weight;
  return a.reduction == kMean ? d / static_cast<double>(x.numel()) : d;
}

constexpr FusedLoss kBinaryCrossEntropyWithLogits{"binary_cross_entropy_with_logits",
                                                  "FastactBinaryCrossEntropyWithLogitsBackward", &op, &torch_loss,
                                                  &differentiable_grad};

TensorPair binary_cross_entropy_with_logits(const at::Tensor& input, const at::Tensor& target,
                                            const std::optional<at::Tensor>& weight,
                                            const std::optional<at::Tensor>& pos_weight, int64_t reduction,
                                            bool compute_grad) {
  return fused_loss(kBinaryCrossEntropyWithLogits, input, LossArgs{target, weight, pos_weight, reduction},
                    compute_grad);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) {
  m.impl("binary_cross_entropy_with_logits", &binary_cross_entropy_with_logits);
}

}  // namespace fastact::autograd
