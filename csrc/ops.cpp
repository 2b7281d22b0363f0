// The schema of every fastact op, declared once. Backends add kernels with
// TORCH_LIBRARY_IMPL in their own folders (cpu/, autograd/, later cuda/).
//
// Conventions (those of pytorch/extension-cpp):
//  - a mutated argument is marked Tensor(a!) and not also returned, so
//    torch.compile can functionalize the in-place forms;
//  - backward ops take what the forward saved: the *output* wherever the
//    derivative can be written in terms of it, so autograd keeps no input alive.
#include <torch/extension.h>
#include <torch/library.h>

#include <string>

#include "autograd/op_handles.h"
#include "cpu/output_allocator.h"
#include "cpu/vec_io.h"

// `import fastact._C` loads this library, whose static initializers register
// the ops below. It also binds each op for eager calls from Python: a
// torch.ops call is boxed (arguments parsed against the schema into a stack,
// then unboxed again), which costs more than the whole kernel on a tutorial-
// sized tensor. These go straight to the typed dispatcher handle, so autograd,
// FakeTensor and vmap still apply; fastact.functional uses torch.ops while
// torch.compile traces. Like torch's bindings, they release the GIL.
PYBIND11_MODULE(_C, m) {
  namespace ops = fastact::autograd::ops;
  using release = pybind11::call_guard<pybind11::gil_scoped_release>;
  m.def("relu", &ops::relu, release());
  m.def("relu_", [](at::Tensor x) { ops::relu_(x); }, release());
  m.def("leaky_relu", &ops::leaky_relu, release());
  m.def("leaky_relu_", [](at::Tensor x, double slope) { ops::leaky_relu_(x, slope); }, release());
  m.def("sigmoid", &ops::sigmoid, release());
  m.def("tanh", &ops::tanh, release());
  m.def("gelu", [](const at::Tensor& x, const std::string& approximate) { return ops::gelu(x, approximate); },
        release());
  m.def("selu", &ops::selu, release());
  m.def("selu_", [](at::Tensor x) { ops::selu_(x); }, release());
  m.def("softmax", &ops::softmax, release());
  m.def("cross_entropy", &ops::cross_entropy, release());
  m.def("binary_cross_entropy_with_logits", &ops::binary_cross_entropy_with_logits, release());
  m.def("log_softmax", &ops::log_softmax, release());
  m.def("linear_act",
        [](const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b, const std::string& act,
           double slope) { return ops::linear_act(x, w, b, act, slope); },
        release());
}

namespace {
// What the compiled kernels were built for, for `python -m fastact info`.
std::string build_info() {
#define FASTACT_STR2(x) #x
#define FASTACT_STR(x) FASTACT_STR2(x)
  return std::string("cpu_capability=") + FASTACT_STR(CPU_CAPABILITY) +
         " huge_page_threshold_bytes=" + std::to_string(fastact::cpu::huge_page_threshold_bytes()) +
         " streaming_store_bytes=" + std::to_string(fastact::cpu::kStreamingStoreBytes) +
         " output_cache_capacity_bytes=" + std::to_string(fastact::cpu::cache_capacity()) +
#if defined(FASTACT_WITH_CUDA)
         " cuda=1";
#else
         " cuda=0";
#endif
#undef FASTACT_STR
#undef FASTACT_STR2
}
}  // namespace

TORCH_LIBRARY(fastact, m) {
  m.def("_build_info() -> str", &build_info);
  // The CPU output cache (cpu/output_allocator.cpp): release it, measure it.
  m.def("_empty_cache() -> ()", &fastact::cpu::empty_cache);
  m.def("_cached_bytes() -> int", &fastact::cpu::cached_bytes);
  // The vector exp the CPU kernels use, exposed so tests can sweep its error.
  m.def("_vec_exp(Tensor x) -> Tensor");

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
  // backward from the output: y > 0 ? scale : y + alpha scale.
  m.def("selu(Tensor self) -> Tensor");
  m.def("selu_(Tensor(a!) self) -> ()");
  m.def("selu_backward(Tensor grad_output, Tensor result) -> Tensor");

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
