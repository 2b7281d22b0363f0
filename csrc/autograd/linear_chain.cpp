// Autograd for the layer chain: one node for the whole run of layers, whose
// backward is one call (_linear_chain_backward) producing every layer's
// weight and bias gradients and the input's, in place of torch's two to
// four nodes per layer. It keeps what the unfused layers keep: the input,
// each layer's output (the next layer's input, and its activation's
// derivative), the pre-activation where the derivative needs it (GELU,
// SiLU, ELU, SELU, Softplus) and the weights.
//
// Under vmap and forward-mode AD (torch.func.vmap, jvp, jacfwd) the chain
// runs layer by layer through linear_act, whose own kernels carry tangents
// and batching rules. A backward that must itself be differentiable
// (create_graph=True, hessian) recomputes the chain layer by layer,
// recorded, from the saved input and parameters (the intermediate outputs
// the node keeps have no history of their own), and applies torch's
// per-layer backward formulas to that; a batched one (vmap over the
// gradients: jacrev) applies them to the saved outputs.
#include "autograd/autograd.h"
#include "linear_act_ops.h"
#include "linear_chain.h"

#include <torch/library.h>

#include <algorithm>

namespace fastact::autograd {
namespace {

using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

// vmap's batched tensors: the per-layer ops have batching rules, the chain not.
bool is_batched(const at::Tensor& t) {
  return t.defined() && t.key_set().has(c10::DispatchKey::FuncTorchBatched);
}
bool any_batched(const std::vector<at::Tensor>& ts) {
  return std::any_of(ts.begin(), ts.end(), is_batched);
}

// The chain layer by layer, through linear_act (recorded by autograd when enabled).
std::vector<at::Tensor> layer_by_layer(const at::Tensor& input, at::TensorList weights,
                                       const std::vector<std::optional<at::Tensor>>& biases,
                                       at::IntArrayRef activations, at::ArrayRef<double> slopes) {
  std::vector<at::Tensor> outputs, pres;
  at::Tensor x = input;
  for (size_t l = 0; l < weights.size(); ++l) {
    const linear_chain::Layer layer{linear_act::activation_from_code(activations[l]), slopes[l]};
    if (linear_chain::keeps_output(layer)) {
      x = ops::linear_act(x, weights[l], biases[l], linear_act::activation_name(layer.act), layer.slope);
    } else {  // as _linear_chain: the pre-activations after the outputs
      pres.push_back(ops::linear_act(x, weights[l], biases[l], "none", 0.0));
      x = linear_act::activate(pres.back(), layer.act, layer.slope, /*in_place=*/false);
    }
    outputs.push_back(x);
  }
  outputs.insert(outputs.end(), pres.begin(), pres.end());
  return outputs;
}

struct LinearChainNode final : torch::autograd::Node {
  SavedVariable input;
  std::vector<SavedVariable> outputs, weights, biases;
  std::vector<int64_t> activations;
  std::vector<double> slopes;

  // create_graph: torch's per-layer backward formulas (differentiable ops) on
  // a recorded recomputation of the outputs, so that the gradients depend on
  // the parameters through every layer's output too.
  variable_list differentiable_backward(const at::Tensor& grad, const std::vector<int64_t>& needs) {
    const auto self = this->getptr();
    std::vector<at::Tensor> ws;
    std::vector<std::optional<at::Tensor>> bs;
    for (auto& w : weights) ws.push_back(w.unpack(self));
    for (auto& b : biases) {
      at::Tensor t = b.unpack(self);
      bs.push_back(t.defined() ? std::optional<at::Tensor>(t) : std::nullopt);
    }
    const at::Tensor x = input.unpack(self);
    const std::vector<at::Tensor> outs = layer_by_layer(x, ws, bs, activations, slopes);
    std::vector<at::Tensor> grad_inputs =
        linear_chain::chain_backward(grad, x, outs, ws, activations, slopes, needs, nullptr);
    variable_list result(needs.size());
    for (size_t i = 0; i < needs.size(); ++i) {
      if (needs[i]) result[i] = grad_inputs[i];
    }
    return result;
  }

  variable_list apply(variable_list&& grads) override {
    const size_t n = weights.size();
    variable_list result(1 + 2 * n);
    if (!grads[0].defined()) return result;
    std::vector<int64_t> needs(1 + 2 * n);
    for (size_t i = 0; i < needs.size(); ++i) needs[i] = should_compute_output(i) ? 1 : 0;
    if (at::GradMode::is_enabled()) return differentiable_backward(grads[0], needs);
    const auto self = this->getptr();
    std::vector<at::Tensor> outs, ws;
    for (auto& o : outputs) outs.push_back(o.unpack(self));
    for (auto& w : weights) ws.push_back(w.unpack(self));
    std::vector<at::Tensor> grad_inputs;
    if (is_batched(grads[0])) {
      // a vmap over the incoming gradients (jacrev): torch's per-layer ops, which have batching rules
      grad_inputs = linear_chain::chain_backward(grads[0], input.unpack(self), outs, ws, activations, slopes, needs,
                                                 nullptr);
    } else {
      at::AutoDispatchBelowADInplaceOrView below;
      grad_inputs = ops::_linear_chain_backward(grads[0], input.unpack(self), outs, ws, activations, slopes, needs);
    }
    for (size_t i = 0; i < result.size(); ++i) {
      if (needs[i]) result[i] = grad_inputs[i];
    }
    return result;
  }
  std::string name() const override { return "FastactLinearChainBackward"; }
  void release_variables() override {
    input.reset_data();
    for (auto& o : outputs) o.reset_data();
    for (auto& w : weights) w.reset_data();
    for (auto& b : biases) b.reset_data();
  }
};

std::vector<at::Tensor> linear_chain(const at::Tensor& input, at::TensorList weights,
                                     const c10::List<std::optional<at::Tensor>>& biases,
                                     at::IntArrayRef activations, at::ArrayRef<double> negative_slopes) {
  // [input, W_1, b_1, W_2, b_2, ...]: the node's inputs, in its gradients' order
  std::vector<at::Tensor> differentiable{input};
  bool forward_ad = has_tangent(input);
  for (size_t l = 0; l < weights.size(); ++l) {
    const std::optional<at::Tensor> b = l < biases.size() ? biases.get(l) : std::nullopt;
    differentiable.push_back(weights[l]);
    differentiable.push_back(b.has_value() ? *b : at::Tensor());
    forward_ad = forward_ad || has_tangent(weights[l]) || has_tangent(b);
  }
  if (forward_ad || any_batched(differentiable)) {
    linear_chain::check_chain(input, weights, biases, activations, negative_slopes);
    std::vector<std::optional<at::Tensor>> bs;
    for (size_t l = 0; l < weights.size(); ++l) bs.push_back(biases.get(l));
    return layer_by_layer(input, weights, bs, activations, negative_slopes);
  }
  bool grad = false;
  for (const auto& t : differentiable) grad = grad || (t.defined() && needs_grad(t));
  std::vector<at::Tensor> outputs;
  {
    at::AutoDispatchBelowADInplaceOrView below;
    outputs = ops::_linear_chain(input, weights, biases, activations, negative_slopes);
  }
  if (!grad) return outputs;
  auto node = c10::make_intrusive<LinearChainNode>();
  node->set_next_edges(torch::autograd::collect_next_edges(at::ArrayRef<at::Tensor>(differentiable)));
  node->activations = activations.vec();
  node->slopes = negative_slopes.vec();
  const size_t last = weights.size() - 1;  // the chain's output; the pre-activations follow it
  torch::autograd::set_history(outputs[last], node);
  node->input = SavedVariable(input, false);
  for (size_t l = 0; l < outputs.size(); ++l) node->outputs.emplace_back(outputs[l], /*is_output=*/l == last);
  for (const auto& w : weights) node->weights.emplace_back(w, false);
  for (size_t l = 0; l < weights.size(); ++l) node->biases.emplace_back(differentiable[2 * l + 2], false);
  return outputs;
}

// The chain's step is never recorded, whatever needs a gradient: its
// gradients are its outputs (fastact.TrainStep's step bypasses autograd).
TensorAndList linear_chain_loss_grad(const at::Tensor& input, const at::Tensor& target, at::TensorList weights,
                                     const c10::List<std::optional<at::Tensor>>& biases,
                                     at::IntArrayRef activations, at::ArrayRef<double> negative_slopes,
                                     at::IntArrayRef needs, int64_t loss, const std::optional<at::Tensor>& class_weight,
                                     int64_t reduction, int64_t ignore_index, double label_smoothing) {
  at::AutoDispatchBelowADInplaceOrView below;
  return ops::_linear_chain_loss_grad(input, target, weights, biases, activations, negative_slopes, needs, loss,
                                      class_weight, reduction, ignore_index, label_smoothing);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) {
  m.impl("_linear_chain", &linear_chain);
  m.impl("_linear_chain_loss_grad", &linear_chain_loss_grad);
}

}  // namespace fastact::autograd
