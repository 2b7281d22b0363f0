// CUDA glue for the pointwise activations (kernels: activation_kernel.cu).
// The kernels walk storage in memory order, so each op hands them tensors
// that share one dense layout: the input as it is when it is dense (any
// permutation), a contiguous copy otherwise; the output is empty_like the
// input, the layout the fake kernels promise.
#include "checks.h"
#include "cuda/glue.h"

#include <ATen/ops/empty_like.h>
#include <torch/library.h>

namespace fastact::cuda {
namespace {

at::Tensor dense(const at::Tensor& t) { return t.is_non_overlapping_and_dense() ? t : t.contiguous(); }

at::Tensor activation(Activation act, const char* op, const at::Tensor& self, double param = 0) {
  const ScalarType type = scalar_type_of(self, op, /*floating_only=*/act != Activation::Relu);
  const DeviceScope scope(self);
  const at::Tensor x = dense(self);
  at::Tensor out = at::empty_like(x);
  check_launch(launch_activation(act, type, x.const_data_ptr(), out.mutable_data_ptr(), x.numel(), param,
                                 scope.stream()),
               op);
  return out;
}

void activation_(Activation act, const char* op, at::Tensor& self, double param = 0) {
  if (!self.is_non_overlapping_and_dense()) {
    self.copy_(activation(act, op, self, param));
    return;
  }
  const ScalarType type = scalar_type_of(self, op, /*floating_only=*/act != Activation::Relu);
  const DeviceScope scope(self);
  check_launch(launch_activation(act, type, self.const_data_ptr(), self.mutable_data_ptr(), self.numel(), param,
                                 scope.stream()),
               op);
}

// grad * act'(saved); grad is brought to saved's layout when it differs.
at::Tensor activation_backward(Activation act, const char* op, const at::Tensor& grad_output,
                               const at::Tensor& saved_in, double param = 0) {
  check_grad_pair(op, grad_output, saved_in);
  const ScalarType type = scalar_type_of(saved_in, op);
  const DeviceScope scope(saved_in);
  const at::Tensor saved = dense(saved_in);
  at::Tensor grad = grad_output;
  if (grad.strides() != saved.strides()) grad = at::empty_like(saved).copy_(grad_output);
  at::Tensor grad_input = at::empty_like(saved);
  check_launch(launch_activation_backward(act, type, grad.const_data_ptr(), saved.const_data_ptr(),
                                          grad_input.mutable_data_ptr(), saved.numel(), param, scope.stream()),
               op);
  return grad_input;
}

at::Tensor relu(const at::Tensor& self) {
  check_relu_input(self);
  return activation(Activation::Relu, "relu", self);
}
void relu_(at::Tensor& self) {
  check_relu_input(self);
  activation_(Activation::Relu, "relu_", self);
}
at::Tensor relu_backward(const at::Tensor& grad, const at::Tensor& result) {
  return activation_backward(Activation::Relu, "relu_backward", grad, result);
}

at::Tensor leaky_relu(const at::Tensor& self, double slope) {
  return activation(Activation::LeakyRelu, "leaky_relu", self, slope);
}
void leaky_relu_(at::Tensor& self, double slope) { activation_(Activation::LeakyRelu, "leaky_relu_", self, slope); }
at::Tensor leaky_relu_backward(const at::Tensor& grad, const at::Tensor& self_or_result, double slope) {
  return activation_backward(Activation::LeakyRelu, "leaky_relu_backward", grad, self_or_result, slope);
}

at::Tensor sigmoid(const at::Tensor& self) { return activation(Activation::Sigmoid, "sigmoid", promote_to_float(self)); }
at::Tensor sigmoid_backward(const at::Tensor& grad, const at::Tensor& result) {
  return activation_backward(Activation::Sigmoid, "sigmoid_backward", grad, result);
}
at::Tensor tanh(const at::Tensor& self) { return activation(Activation::Tanh, "tanh", promote_to_float(self)); }
at::Tensor tanh_backward(const at::Tensor& grad, const at::Tensor& result) {
  return activation_backward(Activation::Tanh, "tanh_backward", grad, result);
}

Activation gelu_form(c10::string_view approximate) {
  return gelu_uses_tanh(approximate) ? Activation::GeluTanh : Activation::GeluErf;
}
at::Tensor gelu(const at::Tensor& self, c10::string_view approximate) {
  return activation(gelu_form(approximate), "gelu", self);
}
at::Tensor gelu_backward(const at::Tensor& grad, const at::Tensor& self, c10::string_view approximate) {
  return activation_backward(gelu_form(approximate), "gelu_backward", grad, self);
}

at::Tensor selu(const at::Tensor& self) { return activation(Activation::Selu, "selu", self); }
void selu_(at::Tensor& self) { activation_(Activation::Selu, "selu_", self); }
at::Tensor selu_backward(const at::Tensor& grad, const at::Tensor& self_or_result, bool is_result) {
  return activation_backward(Activation::Selu, "selu_backward", grad, self_or_result, is_result ? 1 : 0);
}

}  // namespace

FASTACT_CUDA_KERNELS(m) {
  m.impl("relu", &relu);
  m.impl("relu_", &relu_);
  m.impl("relu_backward", &relu_backward);
  m.impl("leaky_relu", &leaky_relu);
  m.impl("leaky_relu_", &leaky_relu_);
  m.impl("leaky_relu_backward", &leaky_relu_backward);
  m.impl("sigmoid", &sigmoid);
  m.impl("sigmoid_backward", &sigmoid_backward);
  m.impl("tanh", &tanh);
  m.impl("tanh_backward", &tanh_backward);
  m.impl("gelu", &gelu);
  m.impl("gelu_backward", &gelu_backward);
  m.impl("selu", &selu);
  m.impl("selu_", &selu_);
  m.impl("selu_backward", &selu_backward);
}

}  // namespace fastact::cuda
