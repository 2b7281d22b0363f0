// Autograd for cross_entropy: the fused-loss node (fused_loss.h) over the op.
#include "autograd/fused_loss.h"

#include <torch/library.h>

namespace fastact::autograd {
namespace {

TensorPair cross_entropy(const at::Tensor& input, const at::Tensor& target,
                                                 const std::optional<at::Tensor>& weight,
                                                 int64_t reduction, int64_t ignore_index,
                                                 double label_smoothing, bool compute_grad) {
  return fused_loss("cross_entropy", input, target, defined_and_needs_grad(weight), reduction, compute_grad, [&] {
    return ops::cross_entropy(input, target, weight, reduction, ignore_index, label_smoothing, compute_grad);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) { m.impl("cross_entropy", &cross_entropy); }

}  // namespace fastact::autograd
