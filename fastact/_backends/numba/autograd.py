"""Autograd for the Numba backend's ops (torch.library.register_autograd),
mirroring the C++ nodes: pointwise ops and softmax save their output where
the derivative allows; backward runs the Numba backward op, or ATen's
differentiable formula when the backward is itself recorded (create_graph);
the fused losses keep the gradient their forward wrote and only scale it."""
import torch

from fastact import _checks, _spec
from fastact._backends.numba import library
from fastact._backends.numba.library import NAMESPACE

aten = torch.ops.aten
SELU_ALPHA, SELU_SCALE = _spec.SELU_ALPHA, _spec.SELU_SCALE

# backward op -> ATen's differentiable formula for the same derivative
DIFFERENTIABLE = {
    "relu_backward": lambda g, y: aten.threshold_backward(g, y, 0),
    "leaky_relu_backward": lambda g, s, slope: aten.leaky_relu_backward(g, s, slope, False),
    "sigmoid_backward": aten.sigmoid_backward,
    "tanh_backward": aten.tanh_backward,
    "gelu_backward": lambda g, x, approximate="none": aten.gelu_backward(g, x, approximate=approximate),
    "selu_backward": lambda g, s, is_result: aten.elu_backward(g, SELU_ALPHA, SELU_SCALE, 1.0, is_result, s),
    "softmax_backward": lambda g, y, dim: aten._softmax_backward_data(g, y, dim, y.dtype),
    "log_softmax_backward": lambda g, y, dim: aten._log_softmax_backward_data(g, y, dim, y.dtype),
}


# whether the running backward retains the graph (True where torch lacks the query: nothing is freed)
_keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", lambda: True)


def run_backward(name, *args):
    """The derivative: the Numba op, or ATen's formula under create_graph."""
    if torch.is_grad_enabled():
        return DIFFERENTIABLE[name](*args)
    return getattr(library, name)(*args)


def _register_saving_one(name, backward_name, saves_output, backward_args):
    def setup_context(ctx, inputs, output):
        ctx.args = inputs[1:]
        ctx.save_for_backward(output if saves_output(ctx.args) else inputs[0])

    def backward(ctx, grad):
        (saved,) = ctx.saved_tensors
        return (run_backward(backward_name, grad, saved, *backward_args(ctx.args)),) + (None,) * len(ctx.args)

    torch.library.register_autograd(f"{NAMESPACE}::{name}", backward, setup_context=setup_context)


def _register_backward_op(name):
    """A backward op's own derivative, from ATen's formula (double backward
    through a direct call of the op)."""
    n_tensors = 2

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:n_tensors])
        ctx.args = inputs[n_tensors:]

    def backward(ctx, grad):
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(need) for t, need in zip(ctx.saved_tensors, ctx.needs_input_grad)]
            out = DIFFERENTIABLE[name](*leaves, *ctx.args)
            wanted = [t for t in leaves if t.requires_grad]
            found = iter(torch.autograd.grad(out, wanted, grad, create_graph=torch.is_grad_enabled(),
                                             allow_unused=True))
        grads = [next(found) if t.requires_grad else None for t in leaves]
        return tuple(grads) + (None,) * len(ctx.args)

    torch.library.register_autograd(f"{NAMESPACE}::{name}", backward, setup_context=setup_context)


def _register_fused_loss(name):
    def setup_context(ctx, inputs, output):
        ctx.reduction = inputs[-2]
        ctx.n_inputs = len(inputs)
        # kept as a plain (detached) tensor, not a saved one: like the C++
        # node it holds only this gradient, and no hook sees it packed
        ctx.grad = output[1].detach()

    def backward(ctx, grad_loss, _grad_of_grad):
        if torch.is_grad_enabled():
            raise RuntimeError(f"fastact.{name} does not support double backward (create_graph=True); use "
                               f"torch.nn.functional.{name} where second derivatives are needed")
        grad = ctx.grad
        if grad is None:
            raise RuntimeError(_checks.SECOND_BACKWARD)
        if not _keep_graph():
            ctx.grad = None  # freed as a saved tensor would be: a second backward raises
        scale = grad_loss.unsqueeze(-1) if grad_loss.dim() < grad.dim() else grad_loss
        return (grad * scale,) + (None,) * (ctx.n_inputs - 1)

    torch.library.register_autograd(f"{NAMESPACE}::{name}", backward, setup_context=setup_context)


def _activation_grad(activation, slope, grad, saved):
    if activation == "none":
        return grad
    name = _spec.LINEAR_ACTIVATION_BACKWARD[activation]
    return run_backward(name, grad, saved, slope) if activation == "leaky_relu" else run_backward(name, grad, saved)


def _register_linear():
    """As csrc/autograd/linear_act.cpp: torch's addmm derivative, same calls and layouts."""
    def setup_context(ctx, inputs, output):
        input, weight, bias, activation, slope = inputs
        ctx.activation, ctx.slope, ctx.has_bias = activation, slope, bias is not None
        ctx.bias_shape = bias.shape if bias is not None else None
        ctx.input_shape, ctx.input_strides = input.shape, input.stride()
        keep_pre = activation == "leaky_relu" and slope < 0
        ctx.keep_pre = keep_pre
        ctx.save_for_backward(input, weight, bias if keep_pre else None, output)

    def backward(ctx, grad):
        input, weight, bias, output = ctx.saved_tensors
        saved = output
        if ctx.keep_pre:  # the output lost the input's sign: recompute the pre-activation
            saved = torch.ops.fastact_numba.linear_act(input, weight, bias, "none", 0.0)
        g = _activation_grad(ctx.activation, ctx.slope, grad, saved)
        g = g if g.dim() == 2 else g.reshape(-1, g.size(-1))
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            strides = ctx.input_strides if len(ctx.input_shape) == 2 else (ctx.input_shape[-1], 1)
            if strides[0] == 1 and strides[1] == g.size(0):
                grad_input = weight.t().mm(g.t()).t()
            else:
                grad_input = g.mm(weight)
            if len(ctx.input_shape) != 2:
                grad_input = grad_input.view(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            flat = input if input.dim() == 2 else input.reshape(-1, input.size(-1))
            row_major = weight.stride(1) == 1 and weight.stride(0) == weight.size(1)
            grad_weight = g.t().mm(flat) if row_major else flat.t().mm(g).t()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = g.sum_to_size(ctx.bias_shape)  # a broadcast bias, e.g. (1, out), as C++ at::sum_to
        return grad_input, grad_weight, grad_bias, None, None

    torch.library.register_autograd(f"{NAMESPACE}::linear_act", backward, setup_context=setup_context)


def register() -> None:
    for name, entry in _spec.BACKWARD.items():
        _register_saving_one(name, *entry)
    for name in DIFFERENTIABLE:
        _register_backward_op(name)
    for name in _spec.FUSED_LOSSES:
        _register_fused_loss(name)
    _register_linear()
