"""Batching rules for torch.func.vmap (and so for jacrev, hessian,
per-sample gradients and gradcheck's batched checks): each rule runs the op
once on the whole batch instead of torch's fallback, which loops over it one
call per sample (and warns about it). The same rules serve the C++ ops and
the Numba backend's, which share their schemas.

The pointwise ops (in place too) and their backward ops are elementwise:
the batch dim is one more dim. softmax and its backward move the batch dim first and shift
the reduced dim. linear_act is the op on a batched input, or torch's matmul
with the activation op where the weights are batched too (model ensembles).
The C++ layer chain runs layer by layer through linear_act's rule. The
fused losses keep torch's fallback: their reductions would have to be
taken per sample, and the loop is exact."""
import torch

from fastact import _spec

POINTWISE = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "selu")
INPLACE = tuple(name for name in _spec.INPLACE)
POINTWISE_BACKWARD = tuple(_spec.BACKWARD[name][0] for name in POINTWISE)
SOFTMAX = ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward")

_registered = set()


def _batch_first(t, bdim, batch_size):
    """t with its batch dim first; an unbatched t expanded to the batch."""
    if bdim is None:
        return t.expand(batch_size, *t.shape)
    return t.movedim(bdim, 0)


def _sample_dim(dim, sample_rank):
    """dim of a sample, wrapped as torch wraps it, with torch's error out of range."""
    n = max(sample_rank, 1)  # a 0-d tensor takes dims 0 and -1
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n


def register(namespace: str) -> None:
    """The rules for the ops of `namespace` ("fastact" or "fastact_numba"); once per namespace."""
    if namespace in _registered:
        return
    _registered.add(namespace)
    ops = getattr(torch.ops, namespace)

    def rule(name):
        return torch.library.register_vmap(f"{namespace}::{name}")

    for name in POINTWISE:
        op = getattr(ops, name).default

        @rule(name)
        def _(info, in_dims, x, *args, op=op):
            return op(x, *args), in_dims[0]

    for name in INPLACE:
        op = getattr(ops, name).default

        @rule(name)
        def _(info, in_dims, x, *args, op=op):
            op(x, *args)  # elementwise, in place on the whole batch
            return None, None

    for name in POINTWISE_BACKWARD:
        op = getattr(ops, name).default

        @rule(name)
        def _(info, in_dims, grad, saved, *args, op=op):
            if in_dims[0] == in_dims[1]:
                return op(grad, saved, *args), in_dims[0]
            return op(_batch_first(grad, in_dims[0], info.batch_size),
                      _batch_first(saved, in_dims[1], info.batch_size), *args), 0

    for name in SOFTMAX:
        op = getattr(ops, name).default
        n_tensors = 2 if name.endswith("_backward") else 1

        @rule(name)
        def _(info, in_dims, *args, op=op, n_tensors=n_tensors):
            tensors = [_batch_first(t, d, info.batch_size) for t, d in zip(args[:n_tensors], in_dims)]
            dim = _sample_dim(args[n_tensors], tensors[0].dim() - 1)
            if tensors[0].dim() == 1:  # each sample a 0-d tensor: a softmax over one element
                return op(*(t.unsqueeze(1) for t in tensors), 1).squeeze(1), 0
            return op(*tensors, dim + 1), 0

    linear_act = ops.linear_act.default
    # linear_act's activations (csrc/composite/linear_act.cpp's activate): the namespace's op, or torch's
    activations = {"relu": lambda x, _: ops.relu.default(x), "leaky_relu": ops.leaky_relu.default,
                   "sigmoid": lambda x, _: ops.sigmoid.default(x), "tanh": lambda x, _: ops.tanh.default(x),
                   "gelu": lambda x, _: ops.gelu.default(x, "none"), "gelu_tanh": lambda x, _: ops.gelu.default(x, "tanh"),
                   "silu": lambda x, _: torch.nn.functional.silu(x), "elu": lambda x, alpha: torch.nn.functional.elu(x, alpha),
                   "selu": lambda x, _: ops.selu.default(x),
                   "softplus": lambda x, beta: torch.nn.functional.softplus(x, beta, _spec.SOFTPLUS_THRESHOLD)}

    def batched_linear(batch_size, input, x_dim, weight, w_dim, bias, b_dim, activation, negative_slope):
        if w_dim is None and b_dim is None:  # a batch of inputs through one layer: one call
            return linear_act(input.movedim(x_dim, 0), weight, bias, activation, negative_slope)
        # a batch of layers: torch's batched matmul, then the activation op
        x = _batch_first(input, x_dim, batch_size)
        w = _batch_first(weight, w_dim, batch_size)
        out = torch.matmul(x.reshape(batch_size, -1, x.size(-1)), w.transpose(-1, -2))
        if bias is not None:
            out = out + _batch_first(bias, b_dim, batch_size).unsqueeze(1)
        out = out.reshape(*x.shape[:-1], w.size(-2))
        return activations[activation](out, negative_slope) if activation != "none" else out

    @rule("linear_act")
    def _(info, in_dims, input, weight, bias=None, activation="none", negative_slope=0.01):
        b_dim = in_dims[2] if len(in_dims) > 2 else None
        return batched_linear(info.batch_size, input, in_dims[0], weight, in_dims[1], bias, b_dim, activation,
                              negative_slope), 0

    if namespace == "fastact":  # the layer chain is the C++ library's alone
        @rule("_linear_chain")
        def _(info, in_dims, input, weights, biases, codes, negative_slopes):
            # layer by layer, as linear_act's rule batches each layer
            # (the pre-activations after the outputs, as the op returns them)
            x, x_dim, outputs, pres = input, in_dims[0], [], []
            w_dims, b_dims = in_dims[1] or [None] * len(weights), in_dims[2] or [None] * len(biases)
            for w, w_dim, b, b_dim, code, slope in zip(weights, w_dims, biases, b_dims, codes, negative_slopes):
                activation = _spec.LINEAR_ACTIVATIONS[code]
                if _spec.differentiates_from_output(activation, slope):
                    x = batched_linear(info.batch_size, x, x_dim, w, w_dim, b, b_dim, activation, slope)
                else:
                    pres.append(batched_linear(info.batch_size, x, x_dim, w, w_dim, b, b_dim, "none", 0.0))
                    x = activations[activation](pres[-1], slope)
                x_dim = 0
                outputs.append(x)
            return outputs + pres, [0] * (len(outputs) + len(pres))
