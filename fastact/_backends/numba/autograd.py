"""Autograd for the Numba backend's ops, mirroring the C++ kernels
(csrc/autograd/): each op gets an Autograd kernel of its own.

- Reverse mode: one node per call (a single-level autograd.Function, which
  also works inside torch.func transforms, where torch.library's generated
  functions do not). Pointwise ops and softmax save their output where the
  derivative allows; backward runs the Numba backward op, or ATen's
  differentiable formula when the backward is itself recorded (create_graph,
  torch.func) or carries tangents. The fused losses keep the gradient their
  forward wrote and only scale it; a recorded backward differentiates
  torch's own loss from the saved input instead.
- Inside torch.func transforms, with tangents (torch.autograd.forward_ad)
  and for gradients of a loss's target or weights: the call goes to torch's
  own op (TORCH_FORMS), whose formulas cover every argument, every order and
  every nesting of transforms. (A Python autograd.Function cannot: its
  saved outputs lose the tangents of enclosing transforms, and its jvp runs
  with forward AD off, so jacfwd(jacrev(f)) and jacfwd(jacfwd(f)) through
  one come out zero.) On this fallback backend that trades speed for
  exactness in those rarer uses; the C++ backend computes them with its own
  kernels."""
import warnings

import torch
import torch.nn.functional as TF
from torch._functorch.utils import enable_single_level_autograd_function
from torch.autograd.function import _SingleLevelFunction

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

_ACTIVATIONS = {
    "none": lambda x, slope: x,
    "relu": lambda x, slope: aten.relu(x),
    "leaky_relu": lambda x, slope: aten.leaky_relu(x, slope),
    "sigmoid": lambda x, slope: aten.sigmoid(x),
    "tanh": lambda x, slope: aten.tanh(x),
    "gelu": lambda x, slope: aten.gelu(x),
    "gelu_tanh": lambda x, slope: aten.gelu(x, approximate="tanh"),
    "silu": lambda x, slope: aten.silu(x),
    "elu": lambda x, alpha: aten.elu(x, alpha),
    "selu": lambda x, slope: aten.selu(x),
    "softplus": lambda x, beta: aten.softplus(x, beta, _spec.SOFTPLUS_THRESHOLD),
}

def _silu_backward(grad, x):
    if not _recorded():
        return aten.silu_backward(grad, x)
    sigmoid = x.sigmoid()  # silu_backward has no derivative: torch's formula where it is recorded
    return grad * sigmoid * (1.0 + x * (1.0 - sigmoid))


# linear_act's activations differentiated from the pre-activation, with torch's formulas
_FROM_INPUT = {
    "leaky_relu": lambda g, x, slope: run_backward("leaky_relu_backward", g, x, slope),
    "gelu": lambda g, x, slope: run_backward("gelu_backward", g, x, "none"),
    "gelu_tanh": lambda g, x, slope: run_backward("gelu_backward", g, x, "tanh"),
    "silu": lambda g, x, slope: _silu_backward(g, x),
    "elu": lambda g, x, alpha: aten.elu_backward(g, alpha, 1, 1, False, x),
    "selu": lambda g, x, slope: run_backward("selu_backward", g, x, False),
    "softplus": lambda g, x, beta: aten.softplus_backward(g, x, beta, _spec.SOFTPLUS_THRESHOLD),
}


def _torch_loss(name, input, target, *rest):
    if name == "cross_entropy":
        weight, reduction, ignore_index, label_smoothing, _ = rest
        return aten.cross_entropy_loss(input, target, weight, reduction, ignore_index, label_smoothing)
    weight, pos_weight, reduction, _ = rest
    return aten.binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction)


def _loss_form(name):
    def form(input, target, *rest):
        # torch's loss (differentiable in everything); the op's gradient output keeps its contract
        # (asked for: written, not differentiable; else empty), though no node reads it here
        grad = torch.empty(0, dtype=input.dtype)
        if rest[-1]:  # compute_grad
            with torch._C._AutoDispatchBelowAutograd():
                grad = getattr(library, name)(input.detach(), target.detach(),
                                              *(t.detach() if isinstance(t, torch.Tensor) else t for t in rest))[1]
        return _torch_loss(name, input, target, *rest), grad

    return form


# op -> torch's own op on the same arguments (forward-mode AD, loss target/weight gradients)
TORCH_FORMS = {
    "relu": aten.relu,
    "leaky_relu": lambda x, slope=0.01: aten.leaky_relu(x, slope),
    "sigmoid": aten.sigmoid,
    "tanh": aten.tanh,
    "gelu": lambda x, approximate="none": aten.gelu(x, approximate=approximate),
    "selu": aten.selu,
    "softmax": lambda x, dim: aten._softmax(x, dim, False),
    "log_softmax": lambda x, dim: aten._log_softmax(x, dim, False),
    "linear_act": lambda x, w, b=None, activation="none", slope=0.01: _ACTIVATIONS[activation](TF.linear(x, w, b),
                                                                                              slope),
    **DIFFERENTIABLE,
    **{name: _loss_form(name) for name in _spec.FUSED_LOSSES},
}


# whether the running backward retains the graph (True where torch lacks the query: nothing is freed)
_keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", lambda: True)


def _recorded():
    """Whether a backward's result must itself be differentiable: recorded
    (create_graph; every torch.func transform) or carrying tangents."""
    return torch.is_grad_enabled() or _forward_ad_possible()


def run_backward(name, *args):
    """The derivative: the Numba op, or ATen's formula when it is recorded."""
    if _recorded():
        return DIFFERENTIABLE[name](*args)
    if _undispatched(args):
        try:
            return library.RAW[name](*args)
        except library.NotOnCPU:  # meta tensors: the dispatcher's fake kernel (as direct())
            pass
    return getattr(library, name)(*args)


_profiling = torch._C._autograd._profiler_enabled
# the batched tensors of gradcheck's batched-gradient check (legacy vmap, which sets no functorch transform)
_legacy_batched = torch._C._functorch.is_legacy_batchedtensor


def _undispatched(args):
    """Whether a call with these arguments may skip the dispatcher: what it
    would find there is grad mode, autocast and the CPU kernel, and nothing
    that must see the op (a dispatch mode, a tensor subclass or batched
    tensor, a functorch transform, forward AD, the profiler recording ops)."""
    return not (torch._C._len_torch_dispatch_stack() or _forward_ad_possible() or _profiling()) and \
        all(type(a) is torch.Tensor and not _legacy_batched(a) for a in args if isinstance(a, torch.Tensor))


def _forward_ad_possible():
    return torch.autograd.forward_ad._current_level >= 0 or torch._C._are_functorch_transforms_active()


def _has_tangent(args):
    # reading a tangent costs a view: look only where forward AD can be on
    return _forward_ad_possible() and any(
        isinstance(a, torch.Tensor) and torch._VF._unpack_dual(a, 0)[1] is not None for a in args)


def _saving_one(name, backward_name, saves_output, backward_args):
    def setup_context(ctx, inputs, output):
        ctx.args = inputs[1:]
        ctx.save_for_backward(output if saves_output(ctx.args) else inputs[0])

    def backward(ctx, grad):
        (saved,) = ctx.saved_tensors
        return (run_backward(backward_name, grad, saved, *backward_args(ctx.args)),) + (None,) * len(ctx.args)

    return setup_context, backward


def _backward_op(name):
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

    return setup_context, backward


def _fused_loss(name):
    def setup_context(ctx, inputs, output):
        ctx.n_inputs = len(inputs)
        ctx.rest = inputs[2:]
        # kept as plain tensors, not saved ones, as the C++ node keeps them:
        # the gradient backward uses, and for a recorded backward only, input
        # and target (no saved-tensor hook runs on them on every call; their
        # versions are checked as a saved tensor's would be)
        ctx.grad = output[1].detach()
        ctx.kept = [(t, t._version) for t in inputs[:2]]

    def backward(ctx, grad_loss, _grad_of_grad):
        grad = ctx.grad
        if grad is None:
            raise RuntimeError(_checks.SECOND_BACKWARD)
        if _recorded():
            # differentiable again: torch's gradient of torch's loss, from the saved input
            for t, version in ctx.kept:
                if t._version != version:
                    raise RuntimeError("one of the variables needed for gradient computation has been modified by "
                                       f"an inplace operation: [{t.type()} {list(t.shape)}] is at version "
                                       f"{t._version}; expected version {version} instead.")
            input, target = (t for t, _ in ctx.kept)
            with torch.enable_grad():
                (grad_input,) = torch.autograd.grad(_torch_loss(name, input, target, *ctx.rest), input, grad_loss,
                                                    create_graph=True)
            return (grad_input,) + (None,) * (ctx.n_inputs - 1)
        if not _keep_graph():
            ctx.grad = ctx.kept = None  # freed as saved tensors would be: a second backward raises
            if grad_loss.dim() == 0 and type(grad_loss) is torch.Tensor and \
                    not torch._C._functorch.is_functorch_wrapped_tensor(grad_loss) and not grad_loss.is_meta and \
                    grad_loss.item() == 1.0:
                # (a plain tensor with data: no .item() on the fake and functional tensors of
                # compile's tracing, nor on meta tensors)
                # the usual loss.backward(): the forward's gradient is the answer, handed on as the
                # C++ node does (nothing else holds it now); multiplying by 1 cost a pass and a fresh
                # N x C allocation
                return (grad,) + (None,) * (ctx.n_inputs - 1)
        scale = grad_loss.unsqueeze(-1) if grad_loss.dim() < grad.dim() else grad_loss
        return (grad * scale,) + (None,) * (ctx.n_inputs - 1)

    return setup_context, backward


def _activation_grad(activation, slope, grad, saved):
    if activation == "none":
        return grad
    if not _spec.differentiates_from_output(activation, slope):
        return _FROM_INPUT[activation](grad, saved, slope)
    name = _spec.LINEAR_ACTIVATION_BACKWARD[activation]
    return run_backward(name, grad, saved, slope) if activation == "leaky_relu" else run_backward(name, grad, saved)


def _linear():
    """As csrc/autograd/linear_act.cpp: torch's addmm derivative, same calls and layouts."""
    def setup_context(ctx, inputs, output):
        input, weight, bias, activation, slope = inputs
        ctx.activation, ctx.slope, ctx.has_bias = activation, slope, bias is not None
        ctx.bias_shape = bias.shape if bias is not None else None
        ctx.input_shape, ctx.input_strides = input.shape, input.stride()
        keep_pre = not _spec.differentiates_from_output(activation, slope)
        ctx.keep_pre = keep_pre
        ctx.save_for_backward(input, weight, bias if keep_pre else None, output)

    def backward(ctx, grad):
        input, weight, bias, output = ctx.saved_tensors
        saved = output
        if ctx.keep_pre:  # the output does not give the derivative: recompute the pre-activation
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

    return setup_context, backward


def _node_class(name, setup_context, backward):
    """One autograd node per call (single-level: create_graph works, and no
    torch.func transform reaches it). Its forward runs the op below
    autograd; the keyset the dispatcher gave the Autograd kernel comes first."""
    op = getattr(torch.ops.fastact_numba, name).default
    below = torch._C._after_autograd_keyset

    raw = library.RAW[name]

    def forward(keyset, *args):
        if keyset is None:  # called by direct(): the plain function
            return raw(*args)
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & below, *args)

    def setup(ctx, inputs, output):
        setup_context(ctx, inputs[1:], output)

    def backward_all(ctx, *grads):
        needs = ctx.needs_input_grad
        ctx.needs_input_grad = needs[1:]  # as the op's arguments: without the keyset
        try:
            return (None,) + tuple(backward(ctx, *grads))
        finally:
            ctx.needs_input_grad = needs

    node_name = f"GeneratedBackwardFor_{NAMESPACE}_{name}_default"
    return type(node_name, (_SingleLevelFunction,), {
        "forward": staticmethod(forward), "setup_context": staticmethod(setup),
        "backward": staticmethod(backward_all)})


def _extras_need_grad(name, args):
    # a loss's target, weight or pos_weight needing a gradient: torch's loss
    return name in _spec.FUSED_LOSSES and torch.is_grad_enabled() and any(
        isinstance(a, torch.Tensor) and a.requires_grad for a in args[1:])


_NODES = {}  # op name -> its node class


def _autograd_kernel(name, setup_context, backward):
    op = getattr(torch.ops.fastact_numba, name).default
    below = torch._C._after_autograd_keyset
    node = _NODES[name] = _node_class(name, setup_context, backward)
    torch_form = TORCH_FORMS[name]
    n_args = len(op._schema.arguments)

    def kernel(keyset, *args):
        if len(args) < n_args:  # the dispatcher drops trailing arguments equal to their defaults
            args, _ = torch._library.utils.fill_defaults(op._schema, args, {})
        if torch._C._are_functorch_transforms_active() or _has_tangent(args) or _extras_need_grad(name, args):
            return torch_form(*args)
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            with enable_single_level_autograd_function():
                return node.apply(keyset, *args)
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & below, *args)

    return kernel


_lib = None


def register() -> None:
    """Each op's Autograd kernel, in place of the one torch.library.custom_op made."""
    global _lib
    entries = {name: _saving_one(name, *entry) for name, entry in _spec.BACKWARD.items()}
    entries.update({name: _backward_op(name) for name in DIFFERENTIABLE})
    entries.update({name: _fused_loss(name) for name in _spec.FUSED_LOSSES})
    entries["linear_act"] = _linear()
    _lib = torch.library.Library(NAMESPACE, "IMPL")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="(?s).*Overriding a previously registered kernel")
        for name, (setup_context, backward) in entries.items():
            _lib.impl(name, _autograd_kernel(name, setup_context, backward), "Autograd", with_keyset=True)


def direct(name):
    """op `name` for eager calls: the dispatcher's work done here where
    nothing else needs to see the op (_undispatched; autocast off for the ops
    with an autocast policy), the node and the plain function called
    directly. The dispatcher's Python hops (the Autograd kernel, then the
    CPU one) cost about 20 us a call, forward and backward, more than the
    kernels at the tutorials' sizes. Anything else takes the op."""
    op = getattr(torch.ops.fastact_numba, name).default
    raw, node = library.RAW[name], _NODES[name]
    n_args = len(op._schema.arguments)
    autocast = name in _spec.AUTOCAST["cpu"]

    def call(*args):
        if len(args) < n_args or not _undispatched(args) or autocast and torch.is_autocast_enabled("cpu"):
            return op(*args)
        try:
            if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
                if _extras_need_grad(name, args):
                    return op(*args)
                return node.apply(None, *args)
            return raw(*args)
        except library.NotOnCPU:
            # (found by the kernel's own device check, so that CPU calls pay
            # nothing for it) meta tensors: the dispatcher's fake kernels
            return op(*args)

    return call
