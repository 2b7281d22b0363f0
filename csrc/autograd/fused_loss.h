// The autograd machinery the fused losses share (fused_loss.cpp): the node
// that keeps the gradient their forward wrote, and the checks of what they
// cannot differentiate. Each loss's kernel (cross_entropy.cpp,
// binary_cross_entropy.cpp) calls fused_loss with its op.
#pragma once
#include "autograd/autograd.h"

#include <c10/util/FunctionRef.h>

#include <optional>

namespace fastact::autograd {

bool defined_and_needs_grad(const std::optional<at::Tensor>& t);

// Refuses what the losses cannot differentiate (forward-mode AD, gradients
// for target, weight or pos_weight), runs run_op below autograd, and records
// the node that keeps the op's gradient when input needs one.
TensorPair fused_loss(const char* name, const at::Tensor& input, const at::Tensor& target, bool extras_need_grad,
                      int64_t reduction, bool compute_grad, c10::function_ref<TensorPair()> run_op);

}  // namespace fastact::autograd
