// The layer chain's drivers (linear_chain.h) and its kernels for every device
// but CPU (CompositeExplicitAutograd: CUDA, and Meta, so torch.compile traces
// it): each layer with torch's own arithmetic, so values and gradients are
// those of the unfused nn.Linear + activation layers. The chain's step
// (_linear_chain_loss_grad) is a composition of ops on every device.
#include "linear_act_ops.h"
#include "linear_chain.h"
#include "op_handles.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/mse_loss_backward.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

#include <string>

namespace fastact::linear_chain {

using linear_act::Activation;

std::vector<Layer> check_chain(const at::Tensor& input, at::TensorList weights,
                               const c10::List<std::optional<at::Tensor>>& biases, at::IntArrayRef activations,
                               at::ArrayRef<double> negative_slopes) {
  const size_t n = weights.size();
  TORCH_CHECK(n >= 1, "fastact._linear_chain: a chain needs at least one layer");
  TORCH_CHECK(biases.size() == n && activations.size() == n && negative_slopes.size() == n,
              "fastact._linear_chain: expected one bias (or None), activation and slope per weight (", n,
              " weights), got ", biases.size(), ", ", activations.size(), " and ", negative_slopes.size());
  TORCH_CHECK(input.dim() >= 1, "fastact._linear_chain: the input must be at least 1-D");
  std::vector<Layer> layers;
  layers.reserve(n);
  int64_t features = input.size(-1);
  for (size_t l = 0; l < n; ++l) {
    const at::Tensor& w = weights[l];
    TORCH_CHECK(w.dim() == 2, "fastact._linear_chain: weight ", l, " must be 2-D [out_features, in_features], got ",
                w.dim(), "-D");
    TORCH_CHECK(w.size(1) == features, "mat1 and mat2 shapes cannot be multiplied (", features, " features and ",
                w.size(0), "x", w.size(1), " weight of layer ", l, ")");
    TORCH_CHECK(w.scalar_type() == input.scalar_type(), "mat1 and mat2 must have the same dtype, but got ",
                input.scalar_type(), " and ", w.scalar_type());
    const std::optional<at::Tensor> b = biases.get(l);
    if (b.has_value() && b->defined()) {
      TORCH_CHECK(b->dim() == 1 && b->size(0) == w.size(0), "fastact._linear_chain: bias ", l, " must have shape [",
                  w.size(0), "], got ", b->sizes());
      TORCH_CHECK(b->scalar_type() == input.scalar_type(), "fastact._linear_chain: bias ", l, " has dtype ",
                  b->scalar_type(), ", the input ", input.scalar_type());
    }
    layers.push_back(Layer{linear_act::activation_from_code(activations[l]), negative_slopes[l]});
    features = w.size(0);
  }
  return layers;
}

std::vector<at::Tensor> chain_forward(const at::Tensor& input, at::TensorList weights,
                                      const c10::List<std::optional<at::Tensor>>& biases,
                                      at::IntArrayRef activations, at::ArrayRef<double> negative_slopes,
                                      const SmallForward& small) {
  const std::vector<Layer> layers = check_chain(input, weights, biases, activations, negative_slopes);
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end() - 1);
  shape.push_back(0);
  at::Tensor x = input.dim() == 2 ? input : input.reshape({-1, input.size(-1)});
  std::vector<at::Tensor> outputs, pres;
  outputs.reserve(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const Layer& layer = layers[l];
    const std::optional<at::Tensor> bias_opt = biases.get(l);
    const at::Tensor bias = bias_opt.has_value() ? *bias_opt : at::Tensor();
    shape.back() = weights[l].size(0);
    at::Tensor y;
    if (!keeps_output(layer)) {
      const at::Tensor pre = ops::linear_act(x, weights[l], bias_opt, "none", 0.0);
      y = linear_act::activate(pre, layer.act, layer.slope, /*in_place=*/false);
      pres.push_back(input.dim() == 2 ? pre : pre.view(shape));
    } else {
      y = small ? small(x, weights[l], bias, layer) : at::Tensor();
      if (!y.defined()) y = ops::linear_act(x, weights[l], bias_opt, linear_act::activation_name(layer.act), layer.slope);
    }
    outputs.push_back(input.dim() == 2 ? y : y.view(shape));
    x = y;
  }
  outputs.insert(outputs.end(), pres.begin(), pres.end());
  return outputs;
}

namespace {

// torch's addmm derivative, in its layouts (as the linear_act node computes
// it); `saved` is the layer's output or pre-activation (keeps_output).
LayerGrads torch_layer_backward(const at::Tensor& g, const at::Tensor& x, const at::Tensor& saved,
                                const at::Tensor& weight, const Layer& layer, LayerNeeds needs) {
  const at::Tensor gp = linear_act::activation_grad(layer.act, layer.slope, g, saved);
  LayerGrads out;
  if (needs.weight) {
    const bool row_major = weight.stride(1) == 1 && weight.stride(0) == weight.size(1);
    out.weight = row_major ? gp.t().mm(x) : x.t().mm(gp).t();
  }
  if (needs.bias) out.bias = gp.sum(0);
  if (needs.input) out.input = gp.mm(weight);
  return out;
}

}  // namespace

std::vector<at::Tensor> chain_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                       at::TensorList outputs, at::TensorList weights, at::IntArrayRef activations,
                                       at::ArrayRef<double> negative_slopes, at::IntArrayRef needs,
                                       const SmallBackward& small) {
  const size_t n = weights.size();
  TORCH_CHECK(activations.size() == n && negative_slopes.size() == n && needs.size() == 1 + 2 * n,
              "fastact._linear_chain_backward: expected one activation and slope per weight and 1 + 2 x ", n,
              " needs");
  // pre[l]: the index in `outputs` of layer l's pre-activation, where it has one
  std::vector<size_t> pre(n, 0);
  size_t count = n;
  for (size_t l = 0; l < n; ++l) {
    if (!keeps_output(Layer{linear_act::activation_from_code(activations[l]), negative_slopes[l]})) pre[l] = count++;
  }
  TORCH_CHECK(outputs.size() == count, "fastact._linear_chain_backward: expected ", count,
              " outputs (one per layer, then the pre-activations _linear_chain returns), got ", outputs.size());
  std::vector<at::Tensor> result(1 + 2 * n);
  // below[l]: whether anything before layer l (its input included) needs a gradient
  std::vector<bool> below(n + 1, needs[0] != 0);
  for (size_t l = 1; l <= n; ++l) below[l] = below[l - 1] || needs[2 * l - 1] || needs[2 * l];
  at::Tensor g = grad_output.reshape({-1, grad_output.size(-1)});
  for (size_t l = n; l-- > 0;) {
    const LayerNeeds layer_needs{below[l], needs[2 * l + 1] != 0, needs[2 * l + 2] != 0};
    if (!layer_needs.input && !layer_needs.weight && !layer_needs.bias) break;
    const at::Tensor& source = l == 0 ? input : outputs[l - 1];
    const at::Tensor x = source.reshape({-1, weights[l].size(1)});
    const Layer layer{linear_act::activation_from_code(activations[l]), negative_slopes[l]};
    const bool from_output = keeps_output(layer);
    const at::Tensor saved = outputs[from_output ? l : pre[l]].reshape({-1, weights[l].size(0)});
    LayerGrads grads;
    if (!(from_output && small && small(g, x, saved, weights[l], layer, layer_needs, grads))) {
      grads = torch_layer_backward(g, x, saved, weights[l], layer, layer_needs);
    }
    result[2 * l + 1] = grads.weight;
    result[2 * l + 2] = grads.bias;
    if (!layer_needs.input) break;
    g = grads.input;
  }
  if (needs[0]) result[0] = g.view(input.sizes());
  for (auto& t : result) {
    if (!t.defined()) t = at::empty({0}, grad_output.options());
  }
  return result;
}

namespace {

std::vector<at::Tensor> linear_chain(const at::Tensor& input, at::TensorList weights,
                                     const c10::List<std::optional<at::Tensor>>& biases,
                                     at::IntArrayRef activations, at::ArrayRef<double> negative_slopes) {
  return chain_forward(input, weights, biases, activations, negative_slopes, nullptr);
}

std::vector<at::Tensor> linear_chain_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                              at::TensorList outputs, at::TensorList weights,
                                              at::IntArrayRef activations, at::ArrayRef<double> negative_slopes,
                                              at::IntArrayRef needs) {
  return chain_backward(grad_output, input, outputs, weights, activations, negative_slopes, needs, nullptr);
}

}  // namespace

// The ops in turn, each to its device's kernel: what loss.backward() would
// compute through the chain's node and the loss's, without the graph. The
// loss gradient is torch's for an incoming 1 (mse_loss_backward, as its
// autograd formula; cross_entropy writes its own in the forward pass).
void check_chain_loss(int64_t loss, int64_t reduction) {
  TORCH_CHECK_VALUE(reduction == 1 || reduction == 2,
                    "fastact._linear_chain_loss_grad: reduction must be 1 (mean) or 2 (sum), a scalar loss; got ",
                    reduction);
  TORCH_CHECK_VALUE(loss >= int64_t(ChainLoss::CrossEntropy) && loss <= int64_t(ChainLoss::BceWithLogits),
                    "fastact._linear_chain_loss_grad: loss must be 0 (cross_entropy), 1 (mse_loss) or 2 "
                    "(binary_cross_entropy_with_logits), got ", loss);
}

TensorAndList chain_loss_grad(const at::Tensor& input, const at::Tensor& target, at::TensorList weights,
                                     const c10::List<std::optional<at::Tensor>>& biases,
                                     at::IntArrayRef activations, at::ArrayRef<double> negative_slopes,
                                     at::IntArrayRef needs, int64_t loss, const std::optional<at::Tensor>& class_weight,
                                     int64_t reduction, int64_t ignore_index, double label_smoothing) {
  check_chain_loss(loss, reduction);
  const std::vector<at::Tensor> outputs = ops::_linear_chain(input, weights, biases, activations, negative_slopes);
  const at::Tensor& out = outputs[weights.size() - 1];
  at::Tensor value, grad;
  if (loss == int64_t(ChainLoss::CrossEntropy)) {
    TORCH_CHECK(out.dim() == 2, "fastact._linear_chain_loss_grad: cross_entropy takes the chain's output as "
                "[rows, classes], got ", out.dim(), "-D");
    std::tie(value, grad) =
        ops::cross_entropy(out, target, class_weight, reduction, ignore_index, label_smoothing, true);
  } else if (loss == int64_t(ChainLoss::BceWithLogits)) {
    // class_weight is BCE's weight (broadcast over the output, as its op takes it)
    TORCH_CHECK(target.sizes() == out.sizes(), "fastact._linear_chain_loss_grad: binary_cross_entropy_with_logits "
                "needs a target of the output's shape ", out.sizes(), ", got ", target.sizes());
    std::tie(value, grad) = ops::binary_cross_entropy_with_logits(out, target, class_weight, std::nullopt, reduction,
                                                                  true);
  } else {
    TORCH_CHECK_VALUE(!class_weight.has_value(), "fastact._linear_chain_loss_grad: mse_loss takes no class_weight");
    TORCH_CHECK(target.sizes() == out.sizes(), "fastact._linear_chain_loss_grad: mse_loss needs a target of the "
                "output's shape ", out.sizes(), ", got ", target.sizes());
    value = at::mse_loss(out, target, reduction);
    grad = at::mse_loss_backward(at::ones_like(value), out, target, reduction);
  }
  return {value, ops::_linear_chain_backward(grad, input, outputs, weights, activations, negative_slopes, needs)};
}

TORCH_LIBRARY_IMPL(fastact, CompositeExplicitAutograd, m) {
  m.impl("_linear_chain", &linear_chain);
  m.impl("_linear_chain_backward", &linear_chain_backward);
  m.impl("_linear_chain_loss_grad", &chain_loss_grad);
}

}  // namespace fastact::linear_chain
