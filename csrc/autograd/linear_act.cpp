// Autograd for linear_act: one node for Linear + activation, whose backward
// is one C++ call (activation derivative, then the two matmuls and the bias
// sum) instead of torch's four nodes (activation, addmm, the weight's
// transpose, the bias broadcast).
//
// The gradients are computed with the same calls, in the same layouts, as
// torch's addmm derivative (mm_mat1_backward / mm_mat2_backward in
// torch/csrc/autograd/FunctionsManual.cpp), so a fused model's gradients are
// bit-identical to the unfused one's. Like torch, the input is saved only if
// the weight needs a gradient, and the weight only if the input does (all
// three, the bias too, where the pre-activation is kept: see pre_activation).
//
// Forward-mode AD: the pre-activation's tangent tx W^T + x tW^T + tb (ATen's
// linear), then the activation's derivative applied to it as in backward
// (the activation's Jacobian is diagonal).
#include "autograd/autograd.h"
#include "linear_act_ops.h"

#include <ATen/ExpandUtils.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/mm.h>

#include <array>
#include <torch/library.h>

namespace fastact::autograd {
namespace {

using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

// d(x W^T) / dx for x [N, in] (torch's mm_mat1_backward with mat2 = W^T):
// a column-major x gets a column-major gradient.
at::Tensor input_grad(const at::Tensor& g, const at::Tensor& weight, c10::IntArrayRef flat_input_strides) {
  if (flat_input_strides[0] == 1 && flat_input_strides[1] == g.size(0)) return weight.t().mm(g.t()).t();
  return g.mm(weight);
}

// d(x W^T) / dW (torch's mm_mat2_backward with mat2 = W^T, then the
// transpose's backward): a row-major W (column-major W^T) gets g^T x.
at::Tensor weight_grad(const at::Tensor& g, const at::Tensor& flat_input, bool weight_row_major) {
  if (weight_row_major) return g.t().mm(flat_input);
  return flat_input.t().mm(g).t();
}

// W^T is column-major in torch's test: W's strides are (in_features, 1).
bool is_row_major(const at::Tensor& weight) {
  return weight.stride(1) == 1 && weight.stride(0) == weight.size(1);
}

// The activation's derivative (linear_act_ops.h): through the ops' own
// autograd kernels, so a recorded backward (create_graph) stays differentiable.
using linear_act::activation_grad;

struct LinearActNode final : torch::autograd::Node {
  linear_act::Activation act = linear_act::Activation::None;
  double slope = 0.0;
  // saved: the output, or the pre-activation (linear_act::differentiates_from_output);
  // bias: kept with the pre-activation only, to record it again
  SavedVariable input, weight, bias, saved;
  bool keep_pre = false;
  std::vector<int64_t> input_sizes, input_strides, bias_sizes;
  bool weight_row_major = true;

  // The pre-activation the derivative is taken at. A backward that must be
  // differentiable (create_graph) records it again from the inputs: the
  // saved one has no history, and the activation's second derivative
  // reaches the input and the parameters through it.
  at::Tensor pre_activation(const c10::intrusive_ptr<Node>& self) {
    if (!at::GradMode::is_enabled()) return saved.unpack(self);
    const at::Tensor b = bias.unpack(self);
    return ops::linear_act(input.unpack(self), weight.unpack(self),
                           b.defined() ? std::optional<at::Tensor>(b) : std::nullopt, "none", 0.0);
  }

  variable_list apply(variable_list&& grads) override {
    variable_list out(3);
    if (!grads[0].defined()) return out;
    const auto self = this->getptr();
    at::Tensor g = grads[0];
    if (act != linear_act::Activation::None) {
      g = activation_grad(act, slope, g, keep_pre ? pre_activation(self) : saved.unpack(self));
    }
    const int64_t out_features = g.size(-1);
    const int64_t in_features = input_sizes.back();
    if (g.dim() != 2) g = g.reshape({-1, out_features});
    if (should_compute_output(0)) {
      // A 2-D input keeps its strides; others were flattened row-major.
      const bool flat_2d = input_sizes.size() == 2;
      const std::array<int64_t, 2> row_major{in_features, 1};
      out[0] = input_grad(g, weight.unpack(self), flat_2d ? c10::IntArrayRef(input_strides) : c10::IntArrayRef(row_major));
      if (!flat_2d) out[0] = out[0].view(input_sizes);
    }
    if (should_compute_output(1)) {
      at::Tensor x = input.unpack(self);
      if (x.dim() != 2) x = x.reshape({-1, in_features});
      out[1] = weight_grad(g, x, weight_row_major);
    }
    if (should_compute_output(2)) out[2] = at::sum_to(g, bias_sizes);
    return out;
  }
  std::string name() const override { return "FastactLinearBackward"; }
  void release_variables() override {
    input.reset_data();
    weight.reset_data();
    bias.reset_data();
    saved.reset_data();
  }
};

c10::intrusive_ptr<LinearActNode> record(at::Tensor& result, const at::Tensor& input, const at::Tensor& weight,
                                         const at::Tensor& bias, linear_act::Activation act, double negative_slope);

at::Tensor linear_act(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias_opt,
                      c10::string_view activation, double negative_slope) {
  const linear_act::Activation act = linear_act::parse_activation(activation);
  const at::Tensor bias = bias_opt.has_value() ? *bias_opt : at::Tensor();
  const bool grad = needs_grad(input, weight) || (bias.defined() && needs_grad(bias));
  const bool forward_ad = any_tangent(input, weight, bias);
  // Where the output does not give the derivative (a negative slope loses
  // the input's sign; GELU, SiLU, ELU, SELU, Softplus), keep the
  // pre-activation instead, as torch does.
  const bool keep_pre = (grad || forward_ad) && !linear_act::differentiates_from_output(act, negative_slope);
  at::Tensor result, pre;
  {
    at::AutoDispatchBelowADInplaceOrView below;
    if (keep_pre) {
      pre = ops::linear_act(input, weight, bias_opt, "none", 0.0);
      result = linear_act::activate(pre, act, negative_slope, /*in_place=*/false);
    } else {
      result = ops::linear_act(input, weight, bias_opt, activation, negative_slope);
    }
  }
  c10::intrusive_ptr<LinearActNode> node;
  if (grad) node = record(result, input, weight, bias, act, negative_slope);
  if (forward_ad) {
    at::Tensor t;  // the pre-activation's tangent: the sum of the terms whose tangents exist
    auto add = [&t](const at::Tensor& term) { t = t.defined() ? t + term : term; };
    if (has_tangent(input)) add(at::linear(tangent(input), primal(weight)));
    if (has_tangent(weight)) add(at::linear(primal(input), tangent(weight)));
    if (has_tangent(bias)) add(tangent(bias));
    if (t.sizes() != result.sizes()) t = t.expand(result.sizes()).contiguous();  // a bias tangent alone
    set_tangent(result, activation_grad(act, negative_slope, t, keep_pre ? pre : result));
  }
  if (node) {  // saved last, as torch's generated kernels save: a saved tensor keeps the tangent it has now
    if (node->should_compute_output(1) || keep_pre) node->input = SavedVariable(input, false);
    if (node->should_compute_output(0) || keep_pre) node->weight = SavedVariable(weight, false);
    node->keep_pre = keep_pre;
    if (keep_pre) {
      node->saved = SavedVariable(pre, false);
      node->bias = SavedVariable(bias, false);
    } else if (act != linear_act::Activation::None) {
      node->saved = SavedVariable(result, /*is_output=*/true);
    }
  }
  return result;
}

c10::intrusive_ptr<LinearActNode> record(at::Tensor& result, const at::Tensor& input, const at::Tensor& weight,
                                         const at::Tensor& bias, linear_act::Activation act, double negative_slope) {
  auto node = make_node<LinearActNode>(input, weight, bias);
  node->act = act;
  node->slope = negative_slope;
  node->input_sizes = input.sizes().vec();
  node->input_strides = input.strides().vec();
  node->weight_row_major = is_row_major(weight);
  if (bias.defined()) node->bias_sizes = bias.sizes().vec();
  torch::autograd::set_history(result, node);
  return node;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) { m.impl("linear_act", &linear_act); }

}  // namespace fastact::autograd
