// Autograd for relu and leaky_relu, on the Autograd dispatch key: backward
// runs in C++ with no Python on the path.
//
// Both save one tensor `s` with sign(s) == sign(input): the output (relu, and
// leaky_relu with slope >= 0), so that a following Linear, which saves the
// same output, shares it and no pre-activation is kept; or, for a negative
// slope, the input. The backward ops are differentiable themselves (their
// derivative in the gradient is the same op; in `s` it is zero almost
// everywhere), so double backward works.
#include "autograd/op_handles.h"

#include <torch/library.h>

namespace fastact::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct ReluOp {
  static at::Tensor forward(const at::Tensor& x, double) { return ops::relu(x); }
  static void forward_(at::Tensor& x, double) { ops::relu_(x); }
  static at::Tensor backward(const at::Tensor& g, const at::Tensor& s, double) {
    return ops::relu_backward(g, s);
  }
};

struct LeakyReluOp {
  static at::Tensor forward(const at::Tensor& x, double slope) { return ops::leaky_relu(x, slope); }
  static void forward_(at::Tensor& x, double slope) { ops::leaky_relu_(x, slope); }
  static at::Tensor backward(const at::Tensor& g, const at::Tensor& s, double slope) {
    return ops::leaky_relu_backward(g, s, slope);
  }
};

template <typename Op>
at::Tensor activation_backward(const at::Tensor& grad, const at::Tensor& s, double slope);

// Autograd nodes are named (grad_fn shows the type name); the logic is in
// CRTP bases, and Nodes<Op> names each op's three nodes.
template <typename Op>
struct Nodes;

template <typename Self, typename Op>
struct ActivationBackwardNode : torch::autograd::Function<Self> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& s,
                            double slope) {
    at::AutoDispatchBelowADInplaceOrView below;
    ctx->save_for_backward({s});
    ctx->saved_data["slope"] = slope;
    return Op::backward(grad, s, slope);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables()[0];
    return {activation_backward<Op>(grads[0], s, ctx->saved_data["slope"].toDouble()), at::Tensor(), at::Tensor()};
  }
};

template <typename Self, typename Op>
struct ActivationNode : torch::autograd::Function<Self> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double slope) {
    at::AutoDispatchBelowADInplaceOrView below;
    at::Tensor out = Op::forward(x, slope);
    ctx->save_for_backward({slope >= 0 ? out : x});
    ctx->saved_data["slope"] = slope;
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables()[0];
    return {activation_backward<Op>(grads[0], s, ctx->saved_data["slope"].toDouble()), at::Tensor()};
  }
};

template <typename Self, typename Op>
struct ActivationInplaceNode : torch::autograd::Function<Self> {
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, double slope) {
    {
      at::AutoDispatchBelowADInplaceOrView below;
      Op::forward_(x, slope);
    }
    torch::autograd::impl::bump_version(x);
    ctx->mark_dirty({x});
    ctx->save_for_backward({x});  // now the output
    ctx->saved_data["slope"] = slope;
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables()[0];
    return {activation_backward<Op>(grads[0], s, ctx->saved_data["slope"].toDouble()), at::Tensor()};
  }
};

struct FastactReluBackward : ActivationNode<FastactReluBackward, ReluOp> {};
struct FastactReluInplaceBackward : ActivationInplaceNode<FastactReluInplaceBackward, ReluOp> {};
struct FastactReluBackwardBackward : ActivationBackwardNode<FastactReluBackwardBackward, ReluOp> {};
struct FastactLeakyReluBackward : ActivationNode<FastactLeakyReluBackward, LeakyReluOp> {};
struct FastactLeakyReluInplaceBackward
    : ActivationInplaceNode<FastactLeakyReluInplaceBackward, LeakyReluOp> {};
struct FastactLeakyReluBackwardBackward
    : ActivationBackwardNode<FastactLeakyReluBackwardBackward, LeakyReluOp> {};

template <>
struct Nodes<ReluOp> {
  using Forward = FastactReluBackward;
  using Inplace = FastactReluInplaceBackward;
  using Backward = FastactReluBackwardBackward;
};
template <>
struct Nodes<LeakyReluOp> {
  using Forward = FastactLeakyReluBackward;
  using Inplace = FastactLeakyReluInplaceBackward;
  using Backward = FastactLeakyReluBackwardBackward;
};

template <typename Op>
at::Tensor activation(const at::Tensor& x, double slope) {
  if (!needs_grad(x)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return Op::forward(x, slope);
  }
  return Nodes<Op>::Forward::apply(x, slope);
}

template <typename Op>
void activation_(at::Tensor& x, double slope) {
  if (!needs_grad(x)) {
    {
      at::AutoDispatchBelowADInplaceOrView below;
      Op::forward_(x, slope);
    }
    torch::autograd::impl::bump_version(x);
    return;
  }
  check_inplace(x);
  // In place, the input is gone and a negative slope leaves the output's
  // sign useless for backward: refuse now rather than at backward (torch
  // refuses at backward, with the same advice).
  TORCH_CHECK(slope >= 0,
              "In-place leakyReLu backward calculation is triggered with a negative slope which "
              "is not supported. This is caused by calling in-place forward function with a "
              "negative slope, please call out-of-place version instead.");
  Nodes<Op>::Inplace::apply(x, slope);
}

template <typename Op>
at::Tensor activation_backward(const at::Tensor& grad, const at::Tensor& s, double slope) {
  if (!needs_grad(grad) && !needs_grad(s)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return Op::backward(grad, s, slope);
  }
  return Nodes<Op>::Backward::apply(grad, s, slope);
}

at::Tensor relu(const at::Tensor& x) { return activation<ReluOp>(x, 0.0); }
void relu_(at::Tensor& x) { activation_<ReluOp>(x, 0.0); }
at::Tensor relu_backward(const at::Tensor& g, const at::Tensor& s) {
  return activation_backward<ReluOp>(g, s, 0.0);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) {
  m.impl("relu", &relu);
  m.impl("relu_", &relu_);
  m.impl("relu_backward", &relu_backward);
  m.impl("leaky_relu", &activation<LeakyReluOp>);
  m.impl("leaky_relu_", &activation_<LeakyReluOp>);
  m.impl("leaky_relu_backward", &activation_backward<LeakyReluOp>);
}

}  // namespace fastact::autograd
