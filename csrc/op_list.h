// The fastact ops, listed once. Every line is
//
//   FASTACT_OP(name, "schema", C++ return type, (C++ parameters), (arguments))
//
// and this file is included with FASTACT_OP defined by its reader (no include
// guard, on purpose):
//  - schemas.h defines the library from the schemas (torch.ops.fastact.*, and
//    the emulated-GPU test build's namespace);
//  - op_handles.h makes each a typed C++ function that calls through the
//    dispatcher (what autograd, autocast and composite kernels call);
//  - library.cpp binds each for eager calls from Python.
// The C++ signature must be the one torch derives from the schema (Tensor(a!)
// -> at::Tensor&, Tensor? -> const std::optional<at::Tensor>&, str ->
// c10::string_view, a pair of tensors -> fastact::TensorPair); the dispatcher
// checks it on the first call. The Python side's list is fastact/_spec.py;
// tests/test_layout.py checks that the two agree.
//
// Conventions (those of pytorch/extension-cpp):
//  - a mutated argument is marked Tensor(a!) and not also returned, so
//    torch.compile can functionalize the in-place forms;
//  - backward ops take what the forward saved: the *output* wherever the
//    derivative can be written in terms of it, so autograd keeps no input alive.

// ---- activation -------------------------------------------------------------
// relu(x) = max(x, 0); backward from the output: grad * (out > 0).
FASTACT_OP(relu, "relu(Tensor self) -> Tensor", at::Tensor, (const at::Tensor& self), (self))
FASTACT_OP(relu_, "relu_(Tensor(a!) self) -> ()", void, (at::Tensor& self), (self))
FASTACT_OP(relu_backward, "relu_backward(Tensor grad_output, Tensor result) -> Tensor", at::Tensor,
           (const at::Tensor& grad_output, const at::Tensor& result), (grad_output, result))

// leaky_relu(x) = x > 0 ? x : slope * x. For slope >= 0 the output has the
// sign of the input, so backward needs only the output; a negative slope
// flips it and the input itself is passed back instead.
FASTACT_OP(leaky_relu, "leaky_relu(Tensor self, float negative_slope=0.01) -> Tensor", at::Tensor,
           (const at::Tensor& self, double negative_slope), (self, negative_slope))
FASTACT_OP(leaky_relu_, "leaky_relu_(Tensor(a!) self, float negative_slope=0.01) -> ()", void,
           (at::Tensor& self, double negative_slope), (self, negative_slope))
FASTACT_OP(leaky_relu_backward,
           "leaky_relu_backward(Tensor grad_output, Tensor self_or_result, float negative_slope) -> Tensor",
           at::Tensor, (const at::Tensor& grad_output, const at::Tensor& self_or_result, double negative_slope),
           (grad_output, self_or_result, negative_slope))

// sigmoid(x) = 1 / (1 + exp(-x)), tanh: both differentiated from the output
// (y (1 - y) and 1 - y^2); integer inputs compute in the default float dtype.
FASTACT_OP(sigmoid, "sigmoid(Tensor self) -> Tensor", at::Tensor, (const at::Tensor& self), (self))
FASTACT_OP(sigmoid_backward, "sigmoid_backward(Tensor grad_output, Tensor result) -> Tensor", at::Tensor,
           (const at::Tensor& grad_output, const at::Tensor& result), (grad_output, result))
FASTACT_OP(tanh, "tanh(Tensor self) -> Tensor", at::Tensor, (const at::Tensor& self), (self))
FASTACT_OP(tanh_backward, "tanh_backward(Tensor grad_output, Tensor result) -> Tensor", at::Tensor,
           (const at::Tensor& grad_output, const at::Tensor& result), (grad_output, result))

// gelu(x) = x Phi(x) (approximate='none') or its tanh approximation.
FASTACT_OP(gelu, "gelu(Tensor self, str approximate='none') -> Tensor", at::Tensor,
           (const at::Tensor& self, c10::string_view approximate), (self, approximate))
FASTACT_OP(gelu_backward, "gelu_backward(Tensor grad_output, Tensor self, str approximate='none') -> Tensor",
           at::Tensor, (const at::Tensor& grad_output, const at::Tensor& self, c10::string_view approximate),
           (grad_output, self, approximate))

// selu(x) = scale (x > 0 ? x : alpha (exp(x) - 1)), torch's constants
// (constants.h); backward as torch's elu_backward: from the input (s <= 0 ?
// alpha scale exp(s) : scale) or, is_result, from the output (s <= 0 ? s +
// alpha scale : scale); NaN in, NaN out.
FASTACT_OP(selu, "selu(Tensor self) -> Tensor", at::Tensor, (const at::Tensor& self), (self))
FASTACT_OP(selu_, "selu_(Tensor(a!) self) -> ()", void, (at::Tensor& self), (self))
FASTACT_OP(selu_backward, "selu_backward(Tensor grad_output, Tensor self_or_result, bool is_result) -> Tensor",
           at::Tensor, (const at::Tensor& grad_output, const at::Tensor& self_or_result, bool is_result),
           (grad_output, self_or_result, is_result))

// ---- softmax ----------------------------------------------------------------
// softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along `dim`;
// log_softmax(x)_i = x_i - max x - log sum_j exp(x_j - max x).
FASTACT_OP(softmax, "softmax(Tensor self, int dim) -> Tensor", at::Tensor, (const at::Tensor& self, int64_t dim),
           (self, dim))
FASTACT_OP(softmax_backward, "softmax_backward(Tensor grad_output, Tensor output, int dim) -> Tensor", at::Tensor,
           (const at::Tensor& grad_output, const at::Tensor& output, int64_t dim), (grad_output, output, dim))
FASTACT_OP(log_softmax, "log_softmax(Tensor self, int dim) -> Tensor", at::Tensor,
           (const at::Tensor& self, int64_t dim), (self, dim))
FASTACT_OP(log_softmax_backward, "log_softmax_backward(Tensor grad_output, Tensor output, int dim) -> Tensor",
           at::Tensor, (const at::Tensor& grad_output, const at::Tensor& output, int64_t dim),
           (grad_output, output, dim))

// ---- cross_entropy ----------------------------------------------------------
// Fused softmax cross entropy over input [rows, classes] (the Python layer
// moves the class dim last). target: int64 class indices [rows], or class
// probabilities [rows, classes]. reduction: 0 none, 1 mean, 2 sum (torch's
// enum). Returns the loss and, when compute_grad, d loss / d input for an
// incoming gradient of 1 (already scaled for the reduction), computed in
// the same pass; else an empty tensor. Backward only scales it.
FASTACT_OP(cross_entropy,
           "cross_entropy(Tensor input, Tensor target, Tensor? weight, int reduction, int ignore_index, "
           "float label_smoothing, bool compute_grad) -> (Tensor, Tensor)",
           fastact::TensorPair,
           (const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight,
            int64_t reduction, int64_t ignore_index, double label_smoothing, bool compute_grad),
           (input, target, weight, reduction, ignore_index, label_smoothing, compute_grad))

// ---- binary_cross_entropy ---------------------------------------------------
// Fused binary cross entropy with logits; weight and pos_weight come
// expanded to the input's shape. Returns the loss and, when compute_grad,
// its gradient for an incoming gradient of 1, as cross_entropy does.
FASTACT_OP(binary_cross_entropy_with_logits,
           "binary_cross_entropy_with_logits(Tensor input, Tensor target, Tensor? weight, Tensor? pos_weight, "
           "int reduction, bool compute_grad) -> (Tensor, Tensor)",
           fastact::TensorPair,
           (const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight,
            const std::optional<at::Tensor>& pos_weight, int64_t reduction, bool compute_grad),
           (input, target, weight, pos_weight, reduction, compute_grad))

// ---- scale_grad (the fused losses' backward) --------------------------------
// grad *= scale (one element of grad's dtype). On CUDA the kernel skips the
// pass when scale is exactly 1, deciding on the device, so loss.backward()
// costs no pass and no host sync.
FASTACT_OP(_scale_grad_, "_scale_grad_(Tensor(a!) grad, Tensor scale) -> ()", void,
           (at::Tensor& grad, const at::Tensor& scale), (grad, scale))

// ---- linear_act -------------------------------------------------------------
// Linear followed by an activation, one op and one autograd node:
// act(input @ weight^T + bias), act one of linear_act.h's ('none', 'relu',
// 'leaky_relu', 'sigmoid', 'tanh', 'gelu', 'gelu_tanh', 'silu', 'elu', 'selu',
// 'softplus'), negative_slope its parameter (LeakyReLU's slope, ELU's alpha,
// Softplus's beta). The matmul is torch's own (addmm), so results match
// nn.Linear + the activation bit for bit.
FASTACT_OP(linear_act,
           "linear_act(Tensor input, Tensor weight, Tensor? bias=None, str activation='none', "
           "float negative_slope=0.01) -> Tensor",
           at::Tensor,
           (const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
            c10::string_view activation, double negative_slope),
           (input, weight, bias, activation, negative_slope))

// ---- optimizer (private: fastact.optim's steps) -----------------------------
// One call updates every parameter of a param group, with torch's default
// (single-tensor) implementation's per-element formulas, in its order and
// with its roundings, so results equal torch.optim's (optimizer.h). The
// lists are parallel; momentum_buffers is empty when momentum is 0, and
// fresh_buffers says they were just allocated (the first step: buf = grad).
FASTACT_OP(_sgd_step_,
           "_sgd_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] momentum_buffers, float lr, "
           "float weight_decay, float momentum, float dampening, bool nesterov, bool maximize, "
           "bool fresh_buffers) -> ()",
           void,
           (at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers, double lr,
            double weight_decay, double momentum, double dampening, bool nesterov, bool maximize, bool fresh_buffers),
           (params, grads, momentum_buffers, lr, weight_decay, momentum, dampening, nesterov, maximize, fresh_buffers))
// Adam (AdamW: decoupled_weight_decay). max_exp_avg_sqs is empty unless
// amsgrad; state_steps are the 0-d step counts, incremented here.
FASTACT_OP(_adam_step_,
           "_adam_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
           "Tensor(d!)[] max_exp_avg_sqs, Tensor(e!)[] state_steps, float lr, float beta1, float beta2, "
           "float weight_decay, float eps, bool amsgrad, bool maximize, bool decoupled_weight_decay) -> ()",
           void,
           (at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
            at::TensorList max_exp_avg_sqs, at::TensorList state_steps, double lr, double beta1, double beta2,
            double weight_decay, double eps, bool amsgrad, bool maximize, bool decoupled_weight_decay),
           (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr, beta1, beta2, weight_decay, eps,
            amsgrad, maximize, decoupled_weight_decay))

// ---- linear_chain (private: fastact.fuse's chains of layers) ---------------
// A run of Linear + activation layers as one op: layer l computes
// y_l = act_l(y_{l-1} W_l^T + b_l) from y_0 = input, act_l given by its code
// in linear_act.h (the order of _spec.LINEAR_ACTIVATIONS) and its parameter
// (as linear_act's). Returns every y_l, then the pre-activation of each layer
// whose derivative does not come from its output (linear_chain::keeps_output:
// GELU, SiLU, ELU, SELU, Softplus, a negative slope), in layer order; the
// autograd node keeps them all. Layers with both feature sizes up to 64 whose
// derivative comes from the output run fastact's own small matmul on CPU
// (float, double); the others torch's (addmm, as linear_act).
FASTACT_OP(_linear_chain,
           "_linear_chain(Tensor input, Tensor[] weights, Tensor?[] biases, int[] activations, "
           "float[] negative_slopes) -> Tensor[]",
           std::vector<at::Tensor>,
           (const at::Tensor& input, at::TensorList weights, const c10::List<std::optional<at::Tensor>>& biases,
            at::IntArrayRef activations, at::ArrayRef<double> negative_slopes),
           (input, weights, biases, activations, negative_slopes))
// Its backward, one call for the whole chain: grad_output is d loss / d y_L,
// outputs the forward's; needs[0] asks for the input's gradient, needs[2l+1]
// and needs[2l+2] for layer l's weight and bias. Returns [d input, d W_1,
// d b_1, ...], an empty tensor where not asked.
FASTACT_OP(_linear_chain_backward,
           "_linear_chain_backward(Tensor grad_output, Tensor input, Tensor[] outputs, Tensor[] weights, "
           "int[] activations, float[] negative_slopes, int[] needs) -> Tensor[]",
           std::vector<at::Tensor>,
           (const at::Tensor& grad_output, const at::Tensor& input, at::TensorList outputs, at::TensorList weights,
            at::IntArrayRef activations, at::ArrayRef<double> negative_slopes, at::IntArrayRef needs),
           (grad_output, input, outputs, weights, activations, negative_slopes, needs))
// The forward, a loss, its gradient and the backward of a chain, one call
// with no autograd graph (fastact.TrainStep's step): loss 0 is cross_entropy
// over the last output [rows, classes] (class_weight, reduction,
// ignore_index and label_smoothing as cross_entropy's), 1 mse_loss against
// a target of the last output's shape, 2 binary_cross_entropy_with_logits
// against such a target (class_weight its weight). reduction 1 (mean) or 2 (sum): the
// loss is a scalar. Returns the loss and the gradients as
// _linear_chain_backward returns them, for an incoming gradient of 1.
FASTACT_OP(_linear_chain_loss_grad,
           "_linear_chain_loss_grad(Tensor input, Tensor target, Tensor[] weights, Tensor?[] biases, "
           "int[] activations, float[] negative_slopes, int[] needs, int loss, Tensor? class_weight, "
           "int reduction, int ignore_index, float label_smoothing) -> (Tensor, Tensor[])",
           fastact::TensorAndList,
           (const at::Tensor& input, const at::Tensor& target, at::TensorList weights,
            const c10::List<std::optional<at::Tensor>>& biases, at::IntArrayRef activations,
            at::ArrayRef<double> negative_slopes, at::IntArrayRef needs, int64_t loss,
            const std::optional<at::Tensor>& class_weight, int64_t reduction, int64_t ignore_index,
            double label_smoothing),
           (input, target, weights, biases, activations, negative_slopes, needs, loss, class_weight, reduction,
            ignore_index, label_smoothing))
