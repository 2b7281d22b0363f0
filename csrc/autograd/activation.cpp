// Autograd for the pointwise activations, on the Autograd dispatch key:
// backward runs in C++ with no Python on the path.
//
// Each op saves one tensor s: its output wherever the derivative can be
// written in terms of it exactly (relu, leaky_relu with slope >= 0, sigmoid,
// tanh, as torch), so that a following Linear, which saves the same output,
// shares it and no pre-activation is kept; otherwise its input (gelu,
// leaky_relu with a negative slope, whose output has lost the input's sign,
// and selu, whose output y = scale alpha (exp(x) - 1) loses exp(x) to
// rounding below x ~ -17 in float32: torch saves the input too). In place
// the input is gone: selu_ saves its output (as torch's selu_ does).
//
// Backward ops run fastact's kernel; when the backward itself is being
// recorded (create_graph) or carries tangents, they run ATen's
// differentiable formula for the same derivative instead, so double (and
// higher) backward and forward-over-reverse work.
//
// Forward-mode AD: the Jacobian is diagonal, so the output's tangent is the
// backward op applied to the input's tangent (one fused pass, through the
// dispatcher so that it is itself differentiable).
#include "autograd/autograd.h"
#include "constants.h"

#include <ATen/ops/elu_backward.h>
#include <ATen/ops/gelu_backward.h>
#include <ATen/ops/leaky_relu_backward.h>
#include <ATen/ops/sigmoid_backward.h>
#include <ATen/ops/tanh_backward.h>
#include <ATen/ops/threshold_backward.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/library.h>

#include <string>

namespace fastact::autograd {
namespace {

using torch::autograd::SavedVariable;
using torch::autograd::variable_list;


// Op traits: the op's parameters, and for each op forward (fastact), forward_
// (in place, where torch has it), backward(g, s) (fastact) and
// differentiable_backward(g, s) (ATen).
struct Relu {
  static constexpr const char* kName = "relu";
  static constexpr const char* kNode = "FastactReluBackward";
  bool saves_output() const { return true; }
  at::Tensor forward(const at::Tensor& x) const { return ops::relu(x); }
  void forward_(at::Tensor& x) const { ops::relu_(x); }
  at::Tensor backward(const at::Tensor& g, const at::Tensor& s) const { return ops::relu_backward(g, s); }
  at::Tensor differentiable_backward(const at::Tensor& g, const at::Tensor& s) const {
    return at::threshold_backward(g, s, 0);
  }
};

struct LeakyRelu {
  static constexpr const char* kName = "leaky_relu";
  static constexpr const char* kNode = "FastactLeakyReluBackward";
  double slope = 0.01;
  bool saves_output() const { return slope >= 0; }
  at::Tensor forward(const at::Tensor& x) const { return ops::leaky_relu(x, slope); }
  void forward_(at::Tensor& x) const { ops::leaky_relu_(x, slope); }
  at::Tensor backward(const at::Tensor& g, const at::Tensor& s) const {
    return ops::leaky_relu_backward(g, s, slope);
  }
  at::Tensor differentiable_backward(const at::Tensor& g, const at::Tensor& s) const {
    return at::leaky_relu_backward(g, s, slope, /*self_is_result=*/false);  // same sign either way
  }
};

struct Sigmoid {
  static constexpr const char* kName = "sigmoid";
  static constexpr const char* kNode = "FastactSigmoidBackward";
  bool saves_output() const { return true; }
  at::Tensor forward(const at::Tensor& x) const { return ops::sigmoid(x); }
  at::Tensor backward(const at::Tensor& g, const at::Tensor& s) const { return ops::sigmoid_backward(g, s); }
  at::Tensor differentiable_backward(const at::Tensor& g, const at::Tensor& s) const {
    return at::sigmoid_backward(g, s);
  }
};

struct Tanh {
  static constexpr const char* kName = "tanh";
  static constexpr const char* kNode = "FastactTanhBackward";
  bool saves_output() const { return true; }
  at::Tensor forward(const at::Tensor& x) const { return ops::tanh(x); }
  at::Tensor backward(const at::Tensor& g, const at::Tensor& s) const { return ops::tanh_backward(g, s); }
  at::Tensor differentiable_backward(const at::Tensor& g, const at::Tensor& s) const {
    return at::tanh_backward(g, s);
  }
};

struct Gelu {
  static constexpr const char* kName = "gelu";
  static constexpr const char* kNode = "FastactGeluBackward";
  std::string approximate = "none";
  bool saves_output() const { return false; }
  at::Tensor forward(const at::Tensor& x) const { return ops::gelu(x, approximate); }
  at::Tensor backward(const at::Tensor& g, const at::Tensor& s) const {
    return ops::gelu_backward(g, s, approximate);
  }
  at::Tensor differentiable_backward(const at::Tensor& g, const at::Tensor& s) const {
    return at::gelu_backward(g, s, approximate);
  }
};

struct Selu {
  static constexpr const char* kName = "selu";
  static constexpr const char* kNode = "FastactSeluBackward";
  bool is_result = false;  // s is the output (selu_) or the input (selu)
  bool saves_output() const { return is_result; }
  at::Tensor forward(const at::Tensor& x) const { return ops::selu(x); }
  void forward_(at::Tensor& x) const { ops::selu_(x); }
  at::Tensor backward(const at::Tensor& g, const at::Tensor& s) const { return ops::selu_backward(g, s, is_result); }
  at::Tensor differentiable_backward(const at::Tensor& g, const at::Tensor& s) const {
    return at::elu_backward(g, kSeluAlpha, kSeluScale, 1.0, is_result, s);
  }
};

template <typename Op>
at::Tensor pointwise_backward(const Op& op, const at::Tensor& grad, const at::Tensor& s) {
  if (needs_grad(grad, s) || any_tangent(grad, s)) return op.differentiable_backward(grad, s);  // ATen's autograd
  at::AutoDispatchBelowADInplaceOrView below;
  return op.backward(grad, s);
}

template <typename Op>
struct PointwiseNode final : torch::autograd::Node {
  Op op;
  SavedVariable s;

  variable_list apply(variable_list&& grads) override {
    variable_list out(1);
    if (grads[0].defined() && should_compute_output(0)) {
      out[0] = pointwise_backward(op, grads[0], s.unpack(this->getptr()));
    }
    return out;
  }
  std::string name() const override { return Op::kNode; }
  void release_variables() override { s.reset_data(); }
};

template <typename Op>
at::Tensor pointwise(const Op& op, const at::Tensor& x) {
  at::Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView below;
    out = op.forward(x);
  }
  c10::intrusive_ptr<PointwiseNode<Op>> node;
  if (needs_grad(x)) {
    node = make_node<PointwiseNode<Op>>(x);
    node->op = op;
    torch::autograd::set_history(out, node);
  }
  if (has_tangent(x)) set_tangent(out, op.backward(tangent(x), op.saves_output() ? out : primal(x)));
  // saved last, as torch's generated kernels save: a saved tensor keeps the tangent it has now
  if (node) node->s = op.saves_output() ? SavedVariable(out, /*is_output=*/true) : SavedVariable(x, false);
  return out;
}

// torch's check (VariableVersion::bump), made before anything is written:
// an inference tensor has no version counter to tell autograd of the change.
void check_not_inference_outside_inference_mode(const at::Tensor& x) {
  TORCH_CHECK(!x.is_inference() || c10::InferenceMode::is_enabled(),
              "Inplace update to inference tensor outside InferenceMode is not allowed.You can make a clone to get "
              "a normal tensor before doing inplace update.See https://github.com/pytorch/rfcs/pull/17 for more "
              "details.");
}

constexpr const char* kLeakyReluInplaceNegativeSlope =
    "In-place leakyReLu backward calculation is triggered with a negative slope which is not supported. This is "
    "caused by calling in-place forward function with a negative slope, please call out-of-place version instead.";

template <typename Op>
void pointwise_(const Op& op, at::Tensor& x) {
  check_not_inference_outside_inference_mode(x);
  const bool grad = needs_grad(x);
  torch::autograd::check_inplace(x, grad);
  c10::intrusive_ptr<torch::autograd::Node> node;
  if (grad && op.saves_output()) {
    auto pointwise_node = make_node<PointwiseNode<Op>>(x);
    pointwise_node->op = op;
    node = pointwise_node;
  } else if (grad) {
    // In place the input is gone, and only leaky_relu with a negative slope
    // has an output that cannot stand in for it: as torch, the forward runs
    // and a backward through it raises.
    node = c10::make_intrusive<torch::autograd::Error>(kLeakyReluInplaceNegativeSlope,
                                                       torch::autograd::collect_next_edges(x));
  }
  // The tangent is updated in place, as torch's in-place kernels do (from
  // the output: the ops whose output cannot stand in for the input refuse,
  // as torch's leaky_relu_ with a negative slope does).
  const at::Tensor x_tangent = tangent(x);
  TORCH_CHECK(!x_tangent.defined() || op.saves_output(), kLeakyReluInplaceNegativeSlope);
  {
    at::AutoDispatchBelowADInplaceOrView below;
    op.forward_(x);
  }
  torch::autograd::increment_version(x);
  if (x_tangent.defined() && !x_tangent._is_zerotensor()) {  // a zero tangent stays zero (diagonal Jacobian)
    // under create_graph, the formula must not read a tangent about to be overwritten
    x_tangent.copy_(op.backward(at::GradMode::is_enabled() ? x_tangent.clone() : x_tangent, primal(x)));
  }
  if (grad) {
    torch::autograd::rebase_history(x, node);
    if (op.saves_output()) {
      static_cast<PointwiseNode<Op>*>(node.get())->s = SavedVariable(x, /*is_output=*/true);
    }
  }
}

// Tensors without autograd keys (inference tensors) reach the in-place ops
// through ADInplaceOrView alone: the same check, and the version bump.
template <typename Op>
void pointwise_inplace_or_view(const Op& op, at::Tensor& x) {
  check_not_inference_outside_inference_mode(x);
  {
    at::AutoDispatchBelowADInplaceOrView below;
    op.forward_(x);
  }
  torch::autograd::increment_version(x);
}

using at::Tensor;

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) {
  m.impl("relu", [](const Tensor& x) { return pointwise(Relu{}, x); });
  m.impl("relu_", [](Tensor& x) { pointwise_(Relu{}, x); });
  m.impl("relu_backward", [](const Tensor& g, const Tensor& s) { return pointwise_backward(Relu{}, g, s); });
  m.impl("leaky_relu", [](const Tensor& x, double slope) { return pointwise(LeakyRelu{slope}, x); });
  m.impl("leaky_relu_", [](Tensor& x, double slope) { pointwise_(LeakyRelu{slope}, x); });
  m.impl("leaky_relu_backward", [](const Tensor& g, const Tensor& s, double slope) {
    return pointwise_backward(LeakyRelu{slope}, g, s);
  });
  m.impl("sigmoid", [](const Tensor& x) { return pointwise(Sigmoid{}, x); });
  m.impl("sigmoid_backward", [](const Tensor& g, const Tensor& s) { return pointwise_backward(Sigmoid{}, g, s); });
  m.impl("tanh", [](const Tensor& x) { return pointwise(Tanh{}, x); });
  m.impl("tanh_backward", [](const Tensor& g, const Tensor& s) { return pointwise_backward(Tanh{}, g, s); });
  m.impl("gelu", [](const Tensor& x, c10::string_view approximate) {
    return pointwise(Gelu{std::string(approximate)}, x);
  });
  m.impl("gelu_backward", [](const Tensor& g, const Tensor& x, c10::string_view approximate) {
    return pointwise_backward(Gelu{std::string(approximate)}, g, x);
  });
  m.impl("selu", [](const Tensor& x) { return pointwise(Selu{/*is_result=*/false}, x); });
  m.impl("selu_", [](Tensor& x) { pointwise_(Selu{/*is_result=*/true}, x); });
  m.impl("selu_backward", [](const Tensor& g, const Tensor& s, bool is_result) {
    return pointwise_backward(Selu{is_result}, g, s);
  });
}

TORCH_LIBRARY_IMPL(fastact, ADInplaceOrView, m) {
  m.impl("relu_", [](Tensor& x) { pointwise_inplace_or_view(Relu{}, x); });
  m.impl("leaky_relu_", [](Tensor& x, double slope) { pointwise_inplace_or_view(LeakyRelu{slope}, x); });
  m.impl("selu_", [](Tensor& x) { pointwise_inplace_or_view(Selu{/*is_result=*/true}, x); });
}

}  // namespace fastact::autograd
