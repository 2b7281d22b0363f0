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

using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

struct ReluOp {
  static constexpr const char* kName = "relu";
  static constexpr const char* kNodeName = "FastactReluBackward";
  static constexpr const char* kNodeNameBackward = "FastactReluBackwardBackward";
  static at::Tensor forward(const at::Tensor& x, double) { return ops::relu(x); }
  static void forward_(at::Tensor& x, double) { ops::relu_(x); }
  static at::Tensor backward(const at::Tensor& g, const at::Tensor& s, double) {
    return ops::relu_backward(g, s);
  }
};

struct LeakyReluOp {
  static constexpr const char* kName = "leaky_relu";
  static constexpr const char* kNodeName = "FastactLeakyReluBackward";
  static constexpr const char* kNodeNameBackward = "FastactLeakyReluBackwardBackward";
  static at::Tensor forward(const at::Tensor& x, double slope) { return ops::leaky_relu(x, slope); }
  static void forward_(at::Tensor& x, double slope) { ops::leaky_relu_(x, slope); }
  static at::Tensor backward(const at::Tensor& g, const at::Tensor& s, double slope) {
    return ops::leaky_relu_backward(g, s, slope);
  }
};

template <typename Op>
at::Tensor activation_backward(const at::Tensor& grad, const at::Tensor& s, double slope);

// grad -> grad_input = Op::backward(grad, s). `Backward` selects the node of
// the forward op (inputs: x) or of the backward op (inputs: grad, s).
template <typename Op, bool kOfBackward>
struct ActivationNode final : torch::autograd::Node {
  SavedVariable s;
  double slope = 0;

  variable_list apply(variable_list&& grads) override {
    variable_list out(kOfBackward ? 2 : 1);
    if (grads[0].defined() && should_compute_output(0)) {
      out[0] = activation_backward<Op>(grads[0], s.unpack(this->getptr()), slope);
    }
    return out;  // the derivative in s (of the backward op) is zero a.e.
  }
  std::string name() const override { return kOfBackward ? Op::kNodeNameBackward : Op::kNodeName; }
  void release_variables() override { s.reset_data(); }
};

template <typename Op>
at::Tensor activation(const at::Tensor& x, double slope) {
  check_no_forward_ad(Op::kName, x);
  at::Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView below;
    out = Op::forward(x, slope);
  }
  if (needs_grad(x)) {
    auto node = make_node<ActivationNode<Op, false>>(x);
    node->slope = slope;
    torch::autograd::set_history(out, node);
    node->s = slope >= 0 ? SavedVariable(out, /*is_output=*/true) : SavedVariable(x, false);
  }
  return out;
}

template <typename Op>
void activation_(at::Tensor& x, double slope) {
  check_no_forward_ad(Op::kName, x);
  const bool grad = needs_grad(x);
  torch::autograd::check_inplace(x, grad);
  // In place, the input is gone and a negative slope leaves the output's
  // sign useless for backward: refuse now rather than at backward (torch
  // refuses at backward, with the same advice).
  TORCH_CHECK(!grad || slope >= 0,
              "In-place leakyReLu backward calculation is triggered with a negative slope which "
              "is not supported. This is caused by calling in-place forward function with a "
              "negative slope, please call out-of-place version instead.");
  c10::intrusive_ptr<ActivationNode<Op, false>> node;
  if (grad) {
    node = make_node<ActivationNode<Op, false>>(x);
    node->slope = slope;
  }
  {
    at::AutoDispatchBelowADInplaceOrView below;
    Op::forward_(x, slope);
  }
  torch::autograd::increment_version(x);
  if (grad) {
    torch::autograd::rebase_history(x, node);
    node->s = SavedVariable(x, /*is_output=*/true);
  }
}

template <typename Op>
at::Tensor activation_backward(const at::Tensor& grad, const at::Tensor& s, double slope) {
  check_no_forward_ad(Op::kName, grad, s);
  at::Tensor grad_input;
  {
    at::AutoDispatchBelowADInplaceOrView below;
    grad_input = Op::backward(grad, s, slope);
  }
  if (needs_grad(grad, s)) {
    auto node = make_node<ActivationNode<Op, true>>(grad, s);
    node->slope = slope;
    node->s = SavedVariable(s, false);
    torch::autograd::set_history(grad_input, node);
  }
  return grad_input;
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
