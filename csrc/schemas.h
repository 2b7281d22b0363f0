// The schemas of fastact's ops, shared by the library that defines them
// (ops.cpp, namespace fastact) and by the test build of the CUDA kernels on
// emulated threads (tests/cuda_emulator, its own namespace).
//
// Conventions (those of pytorch/extension-cpp):
//  - a mutated argument is marked Tensor(a!) and not also returned, so
//    torch.compile can functionalize the in-place forms;
//  - backward ops take what the forward saved: the *output* wherever the
//    derivative can be written in terms of it, so autograd keeps no input alive.
#pragma once
#include <torch/library.h>

namespace fastact {

inline void define_op_schemas(torch::Library& m) {
  // relu(x) = max(x, 0); backward from the output: grad * (out > 0).
  m.def("relu(Tensor self) -> Tensor");
  m.def("relu_(Tensor(a!) self) -> ()");
  m.def("relu_backward(Tensor grad_output, Tensor result) -> Tensor");

  // leaky_relu(x) = x > 0 ? x : slope * x. For slope >= 0 the output has the
  // sign of the input, so backward needs only the output; a negative slope
  // flips it and the input itself is passed back instead.
  m.def("leaky_relu(Tensor self, float negative_slope=0.01) -> Tensor");
  m.def("leaky_relu_(Tensor(a!) self, float negative_slope=0.01) -> ()");
  m.def(
      "leaky_relu_backward(Tensor grad_output, Tensor self_or_result, "
      "float negative_slope) -> Tensor");

  // sigmoid(x) = 1 / (1 + exp(-x)), tanh: both differentiated from the output
  // (y (1 - y) and 1 - y^2); integer inputs compute in the default float dtype.
  m.def("sigmoid(Tensor self) -> Tensor");
  m.def("sigmoid_backward(Tensor grad_output, Tensor result) -> Tensor");
  m.def("tanh(Tensor self) -> Tensor");
  m.def("tanh_backward(Tensor grad_output, Tensor result) -> Tensor");

  // gelu(x) = x Phi(x) (approximate='none') or its tanh approximation.
  m.def("gelu(Tensor self, str approximate='none') -> Tensor");
  m.def("gelu_backward(Tensor grad_output, Tensor self, str approximate='none') -> Tensor");

  // selu(x) = scale (x > 0 ? x : alpha (exp(x) - 1)), torch's constants;
  // backward as torch's elu_backward: from the input (s <= 0 ? alpha scale
  // exp(s) : scale) or, is_result, from the output (s <= 0 ? s + alpha scale
  // : scale); NaN in, NaN out.
  m.def("selu(Tensor self) -> Tensor");
  m.def("selu_(Tensor(a!) self) -> ()");
  m.def("selu_backward(Tensor grad_output, Tensor self_or_result, bool is_result) -> Tensor");

  // softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along `dim`.
  m.def("softmax(Tensor self, int dim) -> Tensor");
  m.def(
      "softmax_backward(Tensor grad_output, Tensor output, int dim) -> Tensor");

  // log_softmax(x)_i = x_i - max x - log sum_j exp(x_j - max x).
  m.def("log_softmax(Tensor self, int dim) -> Tensor");
  m.def(
      "log_softmax_backward(Tensor grad_output, Tensor output, int dim) -> Tensor");

  // Fused softmax cross entropy over input [rows, classes] (the Python layer
  // moves the class dim last). target: int64 class indices [rows], or class
  // probabilities [rows, classes]. reduction: 0 none, 1 mean, 2 sum (torch's
  // enum). Returns the loss and, when compute_grad, d loss / d input for an
  // incoming gradient of 1 (already scaled for the reduction), computed in
  // the same pass; else an empty tensor. Backward only scales it.
  m.def(
      "cross_entropy(Tensor input, Tensor target, Tensor? weight, int reduction, "
      "int ignore_index, float label_smoothing, bool compute_grad) -> (Tensor, Tensor)");

  // The fused losses' backward: grad *= scale (one element of grad's dtype).
  // On CUDA the kernel skips the pass when scale is exactly 1, deciding on
  // the device, so loss.backward() costs no pass and no host sync.
  m.def("_scale_grad_(Tensor(a!) grad, Tensor scale) -> ()");

  // Fused binary cross entropy with logits; weight and pos_weight come
  // expanded to the input's shape. Returns the loss and, when compute_grad,
  // its gradient for an incoming gradient of 1, as cross_entropy does.
  m.def(
      "binary_cross_entropy_with_logits(Tensor input, Tensor target, Tensor? weight, Tensor? pos_weight, "
      "int reduction, bool compute_grad) -> (Tensor, Tensor)");

  // Linear followed by an activation, one op and one autograd node:
  // act(input @ weight^T + bias), act one of 'none', 'relu', 'leaky_relu'
  // (with negative_slope), 'sigmoid', 'tanh'. The matmul is torch's own
  // (addmm), so results match nn.Linear + the activation bit for bit.
  m.def(
      "linear_act(Tensor input, Tensor weight, Tensor? bias=None, str activation='none', "
      "float negative_slope=0.01) -> Tensor");
}

}  // namespace fastact
