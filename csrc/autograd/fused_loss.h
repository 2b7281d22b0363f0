// The autograd machinery the fused losses share (fused_loss.cpp): the node
// that keeps the gradient their forward wrote, forward-mode AD, and the
// hand-over to torch's own loss where the fused path cannot serve. Each
// loss (cross_entropy.cpp, binary_cross_entropy.cpp) describes itself with
// a FusedLoss and calls fused_loss.
#pragma once
#include "autograd/autograd.h"

#include <optional>

namespace fastact::autograd {

// A loss call's arguments besides its input.
struct LossArgs {
  at::Tensor target;
  std::optional<at::Tensor> weight, pos_weight;
  int64_t reduction = 0;
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
};

struct FusedLoss {
  const char* name;       // cross_entropy, binary_cross_entropy_with_logits
  const char* node_name;  // its backward node's
  // The fastact op (called below autograd): the loss and, with compute_grad,
  // d loss / d input for an incoming gradient of 1.
  TensorPair (*op)(const at::Tensor& input, const LossArgs& args, bool compute_grad);
  // torch's own loss on the same arguments (ATen: differentiable in every
  // argument, to every order, in both modes).
  at::Tensor (*torch_loss)(const at::Tensor& input, const LossArgs& args);
  // The op's gradient written with differentiable ATen ops of input (target
  // and weights taken as constants): for a recorded backward and tangents.
  at::Tensor (*differentiable_grad)(const at::Tensor& input, const LossArgs& args);
};

// The loss with its autograd: the fused op and one node keeping its
// gradient, or torch's loss where a gradient or tangent for the target,
// weight or pos_weight is asked for.
TensorPair fused_loss(const FusedLoss& loss, const at::Tensor& input, const LossArgs& args, bool compute_grad);

}  // namespace fastact::autograd
