// Autograd for cross_entropy: the fused-loss node (fused_loss.h) over the op,
// on input rows [R, C] with class-index targets [R] or probabilities [R, C].
//
// The gradient written with ATen ops: with p = softmax(x) and, per row r,
// coefficients k_rc such that loss = -sum_rc k_rc log p_rc (over the
// normalizer N of 'mean'),
//   indices y:      k_rc = [y_r not ignored] ((1 - e) w_y [c = y_r] + (e / C) w_c) / N,  N = sum w_y
//   probabilities:  k_rc = w_c ((1 - e) t_rc + e / C) / N,                              N = R
// the gradient is p_rc K_r - k_rc with K_r = sum_c k_rc.
#include "autograd/fused_loss.h"
#include "constants.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

namespace fastact::autograd {
namespace {

TensorPair op(const at::Tensor& input, const LossArgs& a, bool compute_grad) {
  return ops::cross_entropy(input, a.target, a.weight, a.reduction, a.ignore_index, a.label_smoothing, compute_grad);
}

at::Tensor torch_loss(const at::Tensor& input, const LossArgs& a) {
  return at::cross_entropy_loss(input, a.target, a.weight, a.reduction, a.ignore_index, a.label_smoothing);
}

at::Tensor differentiable_grad(const at::Tensor& x, const LossArgs& a) {
  const int64_t C = x.size(1);
  const double e = a.label_smoothing > 0 ? a.label_smoothing : 0.0;  // as the kernel: <= 0 or NaN is none
  const at::Tensor w = a.weight.has_value() ? *a.weight : at::ones({C}, x.options());
  at::Tensor k, normalizer;
  if (a.target.is_floating_point()) {
    k = ((1 - e) * a.target + e / C) * w;
    if (a.reduction == kMean) normalizer = at::scalar_tensor(static_cast<double>(x.size(0)), x.options());
  } else {
    const at::Tensor kept = a.target != a.ignore_index;
    const at::Tensor y = a.target.masked_fill(~kept, 0);  // ignored rows: any class, their weight is 0
    const at::Tensor w_y = w.index_select(0, y) * kept;
    k = at::zeros_like(x).scatter(1, y.unsqueeze(1), ((1 - e) * w_y).unsqueeze(1));
    if (e > 0) k = k + (e / C) * w.unsqueeze(0) * kept.unsqueeze(1);
    if (a.reduction == kMean) normalizer = w_y.sum();
  }
  at::Tensor d = at::softmax(x, 1) * k.sum(1, /*keepdim=*/true) - k;
  return normalizer.defined() ? d / normalizer : d;
}

constexpr FusedLoss kCrossEntropy{"cross_entropy", "FastactCrossEntropyBackward", &op, &torch_loss,
                                  &differentiable_grad};

TensorPair cross_entropy(const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight,
                         int64_t reduction, int64_t ignore_index, double label_smoothing, bool compute_grad) {
  return fused_loss(kCrossEntropy, input, LossArgs{target, weight, std::nullopt, reduction, ignore_index,
                                                   label_smoothing}, compute_grad);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) { m.impl("cross_entropy", &cross_entropy); }

}  // namespace fastact::autograd
