// The fastact ops as C++ functions that go through the dispatcher, for the
// autograd kernels: called under AutoDispatchBelowADInplaceOrView they reach
// the backend kernel; called plainly (double backward) they are recorded.
#pragma once
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/variable.h>

#include <string>

namespace fastact::autograd {

template <typename Signature>
c10::TypedOperatorHandle<Signature> lookup(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").template typed<Signature>();
}

namespace ops {
// Each handle is looked up once, on first use.
inline at::Tensor relu(const at::Tensor& x) {
  static const auto op = lookup<at::Tensor(const at::Tensor&)>("fastact::relu");
  return op.call(x);
}
inline void relu_(at::Tensor& x) {
  static const auto op = lookup<void(at::Tensor&)>("fastact::relu_");
  op.call(x);
}
inline at::Tensor relu_backward(const at::Tensor& g, const at::Tensor& result) {
  static const auto op = lookup<at::Tensor(const at::Tensor&, const at::Tensor&)>("fastact::relu_backward");
  return op.call(g, result);
}
inline at::Tensor leaky_relu(const at::Tensor& x, double slope) {
  static const auto op = lookup<at::Tensor(const at::Tensor&, double)>("fastact::leaky_relu");
  return op.call(x, slope);
}
inline void leaky_relu_(at::Tensor& x, double slope) {
  static const auto op = lookup<void(at::Tensor&, double)>("fastact::leaky_relu_");
  op.call(x, slope);
}
inline at::Tensor leaky_relu_backward(const at::Tensor& g, const at::Tensor& s, double slope) {
  static const auto op = lookup<at::Tensor(const at::Tensor&, const at::Tensor&, double)>(
      "fastact::leaky_relu_backward");
  return op.call(g, s, slope);
}
using UnarySig = at::Tensor(const at::Tensor&);
using BackwardSig = at::Tensor(const at::Tensor&, const at::Tensor&);
inline at::Tensor sigmoid(const at::Tensor& x) {
  static const auto op = lookup<UnarySig>("fastact::sigmoid");
  return op.call(x);
}
inline at::Tensor sigmoid_backward(const at::Tensor& g, const at::Tensor& y) {
  static const auto op = lookup<BackwardSig>("fastact::sigmoid_backward");
  return op.call(g, y);
}
inline at::Tensor tanh(const at::Tensor& x) {
  static const auto op = lookup<UnarySig>("fastact::tanh");
  return op.call(x);
}
inline at::Tensor tanh_backward(const at::Tensor& g, const at::Tensor& y) {
  static const auto op = lookup<BackwardSig>("fastact::tanh_backward");
  return op.call(g, y);
}
inline at::Tensor gelu(const at::Tensor& x, c10::string_view approximate) {
  static const auto op = lookup<at::Tensor(const at::Tensor&, c10::string_view)>("fastact::gelu");
  return op.call(x, approximate);
}
inline at::Tensor gelu_backward(const at::Tensor& g, const at::Tensor& x, c10::string_view approximate) {
  static const auto op =
      lookup<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view)>("fastact::gelu_backward");
  return op.call(g, x, approximate);
}
inline at::Tensor selu(const at::Tensor& x) {
  static const auto op = lookup<UnarySig>("fastact::selu");
  return op.call(x);
}
inline void selu_(at::Tensor& x) {
  static const auto op = lookup<void(at::Tensor&)>("fastact::selu_");
  op.call(x);
}
inline at::Tensor selu_backward(const at::Tensor& g, const at::Tensor& s, bool is_result) {
  static const auto op = lookup<at::Tensor(const at::Tensor&, const at::Tensor&, bool)>("fastact::selu_backward");
  return op.call(g, s, is_result);
}
using SoftmaxSig = at::Tensor(const at::Tensor&, int64_t);
using SoftmaxBackwardSig = at::Tensor(const at::Tensor&, const at::Tensor&, int64_t);
inline at::Tensor softmax(const at::Tensor& x, int64_t dim) {
  static const auto op = lookup<SoftmaxSig>("fastact::softmax");
  return op.call(x, dim);
}
inline at::Tensor log_softmax(const at::Tensor& x, int64_t dim) {
  static const auto op = lookup<SoftmaxSig>("fastact::log_softmax");
  return op.call(x, dim);
}
inline at::Tensor softmax_backward(const at::Tensor& g, const at::Tensor& y, int64_t dim) {
  static const auto op = lookup<SoftmaxBackwardSig>("fastact::softmax_backward");
  return op.call(g, y, dim);
}
inline at::Tensor log_softmax_backward(const at::Tensor& g, const at::Tensor& y, int64_t dim) {
  static const auto op = lookup<SoftmaxBackwardSig>("fastact::log_softmax_backward");
  return op.call(g, y, dim);
}
inline std::tuple<at::Tensor, at::Tensor> cross_entropy(const at::Tensor& input, const at::Tensor& target,
                                                        const std::optional<at::Tensor>& weight,
                                                        int64_t reduction, int64_t ignore_index,
                                                        double label_smoothing, bool compute_grad) {
  static const auto op = lookup<std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, int64_t, int64_t, double,
      bool)>("fastact::cross_entropy");
  return op.call(input, target, weight, reduction, ignore_index, label_smoothing, compute_grad);
}
inline void scale_grad_(at::Tensor& grad, const at::Tensor& scale) {
  static const auto op = lookup<void(at::Tensor&, const at::Tensor&)>("fastact::_scale_grad_");
  op.call(grad, scale);
}
inline std::tuple<at::Tensor, at::Tensor> binary_cross_entropy_with_logits(
    const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& pos_weight, int64_t reduction, bool compute_grad) {
  static const auto op = lookup<std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
      int64_t, bool)>("fastact::binary_cross_entropy_with_logits");
  return op.call(input, target, weight, pos_weight, reduction, compute_grad);
}
inline at::Tensor linear_act(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                             c10::string_view activation, double negative_slope) {
  static const auto op = lookup<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                           c10::string_view, double)>("fastact::linear_act");
  return op.call(input, weight, bias, activation, negative_slope);
}
}  // namespace ops

// True when the call must be recorded for autograd.
template <typename... Tensors>
bool needs_grad(const Tensors&... ts) {
  return at::GradMode::is_enabled() && (ts.requires_grad() || ...);
}

// fastact's derivatives are reverse-mode only: refuse dual tensors rather
// than drop their tangents silently.
template <typename... Tensors>
void check_no_forward_ad(const char* op, const Tensors&... ts) {
  TORCH_CHECK_NOT_IMPLEMENTED(!(torch::autograd::isFwGradDefined(ts) || ...),
                              "fastact::", op, ": forward-mode AD is not implemented");
}

// A backward node wired to the inputs' histories, as torch's generated
// autograd code builds them (raw Nodes: cheaper per call than a custom
// autograd::Function, which matters for tiny tensors).
template <typename NodeT, typename... Tensors>
c10::intrusive_ptr<NodeT> make_node(const Tensors&... inputs) {
  auto node = c10::make_intrusive<NodeT>();
  node->set_next_edges(torch::autograd::collect_next_edges(inputs...));
  return node;
}

}  // namespace fastact::autograd
