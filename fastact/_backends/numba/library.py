"""The library torch.ops.fastact_numba: the fastact ops on Numba kernels,
as torch custom ops with the C++ ops' schemas (tests/test_layout.py checks
that they match). Importing this module defines them; autograd.py registers
their derivatives and fastact._backends.fake their fake kernels. The kernels
are loaded or compiled lazily, on each kernel's first call.

Conventions shared with the C++ backend: outputs keep the layout
torch.empty_like gives (softmax: contiguous); backward saves the output
where the derivative allows; when the backward itself is being recorded
(create_graph) it runs ATen's differentiable formula instead of the kernel."""
import concurrent.futures
import math
import os
import warnings
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from fastact import _checks, _spec
from fastact._backends.numba import kernels, outputs

NAMESPACE = "fastact_numba"
_REDUCED = (torch.float16, torch.bfloat16)
_NATIVE = (torch.float32, torch.float64)  # the dtypes the kernels run in


# ---- the boundary: tensors to NumPy views and back -------------------------


class NotOnCPU(RuntimeError):
    """A kernel was given a tensor that is not on the CPU. Eager calls that
    skipped the dispatcher (autograd.direct) catch it and take the op
    through the dispatcher, where meta tensors find the fake kernels; on
    other devices the op raises it again, for the user."""


def _check_cpu(name: str, *tensors) -> None:
    for t in tensors:
        if t is not None and t.device.type != "cpu":
            raise NotOnCPU(f"fastact.{name}: the Numba backend runs on CPU tensors only, got a tensor on "
                               f"{t.device}; build the C++/CUDA extension (pip install --no-build-isolation .) "
                               "for other devices")


def _memory_order(t: Tensor):
    """A permutation of t's dims that makes a dense t contiguous (for the
    layouts empty_like preserves), the identity otherwise."""
    if t.dim() == 0 or t.is_contiguous():
        return tuple(range(t.dim()))
    order = tuple(sorted(range(t.dim()), key=lambda d: (-t.stride(d), -t.size(d))))
    return order if t.permute(order).is_contiguous() else tuple(range(t.dim()))


def _numpy(t: Tensor) -> np.ndarray:
    """A NumPy view (zero-copy) of a contiguous CPU tensor; float16/bfloat16
    upcast to float32, the one copy NumPy cannot avoid (it has no bfloat16)."""
    if t.dtype in _REDUCED:
        t = t.float()
    return t.detach().numpy()


def _flat(t: Tensor, order) -> Tensor:
    return t.permute(order).contiguous().view(-1)


def _pointwise(name: str, kernel, out_like: Tensor, inputs, *scalars, out: Optional[Tensor] = None) -> Tensor:
    """out = kernel(inputs..., scalars...) elementwise, in out's memory order."""
    _check_cpu(name, *inputs)
    out = outputs.empty_like(out_like) if out is None else out
    n = out.numel()
    if n == 0:
        return out
    # the common case in fewer tensor calls (each costs about a microsecond, as much as a
    # small kernel): contiguous tensors of one native dtype are already flat arrays
    flat = out.dtype in _NATIVE and out.is_contiguous() and \
        all(t.is_contiguous() and t.dtype == out.dtype for t in inputs)
    order = None if flat else _memory_order(out)
    arrays = [t.detach().view(-1).numpy() if flat else _numpy(_flat(t, order)) for t in inputs]
    # float parameters in the arrays' precision, so float32 math stays float32 (as torch's)
    scalars = [arrays[0].dtype.type(s) if isinstance(s, float) else s for s in scalars]
    if flat:
        _run(kernel, n, 1, [*arrays, *scalars, out.detach().view(-1).numpy()], (*range(len(arrays)), -1))
        return out
    flat_out = out.permute(order).view(-1) if out.permute(order).is_contiguous() else None
    target = flat_out if flat_out is not None and out.dtype not in _REDUCED else \
        outputs.empty((out.numel(),), torch.float32 if out.dtype in _REDUCED else out.dtype)
    _run(kernel, out.numel(), 1, [*arrays, *scalars, target.numpy()], (*range(len(arrays)), -1))
    if target is not flat_out:
        out.permute(order).copy_(target.view(out.permute(order).shape))
    return out


# Elements a thread gets at least: below, one thread does it all.
_THREAD_GRAIN = 1 << 16
_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None


def _run(kernel, n: int, unit: int, args: list, chunked) -> None:
    """kernel(*args) over n rows (or elements) of `unit` elements each, split
    into one chunk per torch thread: the args at the positions `chunked` are
    sliced along their first dim, the rest passed whole. The kernels release
    the GIL (nogil), so the chunks run in parallel; the caller's thread takes
    the first."""
    workers = min(torch.get_num_threads(), n * max(unit, 1) // _THREAD_GRAIN, n)
    if workers < 2:
        kernel(*args)
        return
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                                      thread_name_prefix="fastact-numba")
    chunked = {i % len(args) for i in chunked}
    bounds = [n * k // workers for k in range(workers + 1)]

    def part(k):
        return [a[bounds[k]:bounds[k + 1]] if i in chunked else a for i, a in enumerate(args)]

    futures = [_pool.submit(kernel, *part(k)) for k in range(1, workers)]
    kernel(*part(0))
    for f in futures:
        f.result()


# the message of the C++ kernels' AT_DISPATCH_FLOATING_TYPES
_floating = _checks.check_floating


def _not_bool_or_complex(x: Tensor) -> None:
    _checks.check_relu_input(x)
    if x.is_complex():
        raise _checks.not_implemented_for("relu", x.dtype)


def _same_layout(name: str, g: Tensor, saved: Tensor) -> None:
    # the C++ backend's checks and messages
    if g.shape != saved.shape:
        raise RuntimeError(f"{name}: grad_output of shape {list(g.shape)} does not match the saved tensor's "
                           f"{list(saved.shape)}")
    if g.dtype != saved.dtype:
        raise RuntimeError(f"{name}: grad_output has dtype {g.dtype}, the saved tensor {saved.dtype}")


# ---- custom ops ---------------------------------------------------------------

# The ops' kernels, registered a second time without custom_op's wrapper
# (below).
_direct = torch.library.Library(NAMESPACE, "FRAGMENT")
# op name -> its plain function, what eager calls run without the dispatcher (autograd.direct)
RAW = {}


def _op(name, mutates_args=()):
    """A custom op (schema, fake-kernel and autograd registration) whose
    kernel is the plain function: custom_op's wrapper checks the outputs'
    aliasing on every call and imports torch._dynamo on the first (1.8 s
    here; a model on the Numba backend that never compiles need not pay it)."""
    def define(fn):
        op = torch.library.custom_op(f"{NAMESPACE}::{name}", mutates_args=mutates_args)(fn)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="(?s).*Overriding a previously registered kernel")
            _direct.impl(name, fn, "CompositeExplicitAutograd")
        RAW[name] = fn
        return op
    return define


@_op("relu")
def relu(self: Tensor) -> Tensor:
    _not_bool_or_complex(self)
    return _pointwise("relu", kernels.relu, self, (self,))


@_op("relu_", mutates_args=("self",))
def relu_(self: Tensor) -> None:
    _not_bool_or_complex(self)
    _pointwise("relu_", kernels.relu, self, (self,), out=self)


@_op("relu_backward")
def relu_backward(grad_output: Tensor, result: Tensor) -> Tensor:
    _same_layout("relu_backward", grad_output, result)
    return _pointwise("relu_backward", kernels.relu_backward, result, (grad_output, result))


@_op("leaky_relu")
def leaky_relu(self: Tensor, negative_slope: float = 0.01) -> Tensor:
    _floating("leaky_relu", self)
    return _pointwise("leaky_relu", kernels.leaky_relu, self, (self,), float(negative_slope))


@_op("leaky_relu_", mutates_args=("self",))
def leaky_relu_(self: Tensor, negative_slope: float = 0.01) -> None:
    _floating("leaky_relu_", self)
    _pointwise("leaky_relu_", kernels.leaky_relu, self, (self,), float(negative_slope), out=self)


@_op("leaky_relu_backward")
def leaky_relu_backward(grad_output: Tensor, self_or_result: Tensor, negative_slope: float) -> Tensor:
    _same_layout("leaky_relu_backward", grad_output, self_or_result)
    return _pointwise("leaky_relu_backward", kernels.leaky_relu_backward, self_or_result,
                      (grad_output, self_or_result), float(negative_slope))


def _promoted(name: str, x: Tensor) -> Tensor:
    # sigmoid/tanh of integers and bools: the default float dtype, as torch;
    # complex: the C++ kernels' error (fastact.functional then calls torch's)
    if x.is_complex():
        raise _checks.not_implemented_for(name, x.dtype)
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


@_op("sigmoid")
def sigmoid(self: Tensor) -> Tensor:
    x = _promoted("sigmoid", self)
    return _pointwise("sigmoid", kernels.sigmoid, x, (x,))


@_op("sigmoid_backward")
def sigmoid_backward(grad_output: Tensor, result: Tensor) -> Tensor:
    _same_layout("sigmoid_backward", grad_output, result)
    return _pointwise("sigmoid_backward", kernels.sigmoid_backward, result, (grad_output, result))


@_op("tanh")
def tanh(self: Tensor) -> Tensor:
    x = _promoted("tanh", self)
    return _pointwise("tanh", kernels.tanh, x, (x,))


@_op("tanh_backward")
def tanh_backward(grad_output: Tensor, result: Tensor) -> Tensor:
    _same_layout("tanh_backward", grad_output, result)
    return _pointwise("tanh_backward", kernels.tanh_backward, result, (grad_output, result))


@_op("gelu")
def gelu(self: Tensor, approximate: str = "none") -> Tensor:
    _checks.check_approximate(approximate)
    _floating("gelu", self)
    return _pointwise("gelu", kernels.gelu, self, (self,), approximate == "tanh")


@_op("gelu_backward")
def gelu_backward(grad_output: Tensor, self: Tensor, approximate: str = "none") -> Tensor:
    _checks.check_approximate(approximate)
    _same_layout("gelu_backward", grad_output, self)
    return _pointwise("gelu_backward", kernels.gelu_backward, self, (grad_output, self), approximate == "tanh")


@_op("selu")
def selu(self: Tensor) -> Tensor:
    _floating("selu", self)
    return _pointwise("selu", kernels.selu, self, (self,))


@_op("selu_", mutates_args=("self",))
def selu_(self: Tensor) -> None:
    _floating("selu_", self)
    _pointwise("selu_", kernels.selu, self, (self,), out=self)


@_op("selu_backward")
def selu_backward(grad_output: Tensor, self_or_result: Tensor, is_result: bool) -> Tensor:
    _same_layout("selu_backward", grad_output, self_or_result)
    return _pointwise("selu_backward", kernels.selu_backward, self_or_result, (grad_output, self_or_result),
                      bool(is_result), _spec.SELU_SCALE, _spec.SELU_ALPHA * _spec.SELU_SCALE)


def _rows(t: Tensor, dim: int) -> Tensor:
    """t with `dim` moved last, as a contiguous [rows, size(dim)] array."""
    if t.dim() == 0:
        return t.reshape(1, 1).contiguous()
    if dim == t.dim() - 1 and t.is_contiguous() and t.numel():
        return t.view(-1, t.size(dim))  # already rows: one view, not three calls
    return t.movedim(dim, -1).contiguous().reshape(-1, t.size(dim))


def _from_rows(rows: Tensor, like: Tensor, dim: int) -> Tensor:
    if like.dim() > 0 and dim == like.dim() - 1 and rows.dtype == like.dtype:
        return rows.view(like.shape)  # already the contiguous result
    out = torch.empty(like.shape, dtype=like.dtype)  # contiguous, as the C++ kernel returns
    if like.dim() == 0:
        out.copy_(rows.reshape(()))
    else:
        out.movedim(dim, -1).copy_(rows.view(like.movedim(dim, -1).shape))
    return out


def _softmax_forward(name: str, self: Tensor, dim: int, log: bool) -> Tensor:
    _check_cpu(name, self)
    _checks.check_softmax_input(name, self, dim)
    if self.numel() == 0:
        return torch.empty(self.shape, dtype=self.dtype)
    dim = dim % max(self.dim(), 1)
    rows = _rows(self, dim)
    out = outputs.empty(rows.shape, torch.float32 if self.dtype in _REDUCED else self.dtype)
    _run(kernels.softmax_rows, rows.shape[0], rows.shape[1], [_numpy(rows), log, out.numpy()], (0, 2))
    return _from_rows(out, self, dim)


def _softmax_backward(name: str, grad_output: Tensor, output: Tensor, dim: int, log: bool) -> Tensor:
    _check_cpu(name, grad_output, output)
    _checks.check_dim(output, dim)
    _same_layout(name, grad_output, output)
    if output.numel() == 0:
        return torch.empty(output.shape, dtype=output.dtype)
    dim = dim % max(output.dim(), 1)
    g, y = _rows(grad_output, dim), _rows(output, dim)
    out = outputs.empty(g.shape, torch.float32 if output.dtype in _REDUCED else output.dtype)
    _run(kernels.softmax_backward_rows, g.shape[0], g.shape[1], [_numpy(g), _numpy(y), log, out.numpy()],
         (0, 1, 3))
    return _from_rows(out, output, dim)


@_op("softmax")
def softmax(self: Tensor, dim: int) -> Tensor:
    return _softmax_forward("softmax", self, dim, False)


@_op("softmax_backward")
def softmax_backward(grad_output: Tensor, output: Tensor, dim: int) -> Tensor:
    return _softmax_backward("softmax_backward", grad_output, output, dim, False)


@_op("log_softmax")
def log_softmax(self: Tensor, dim: int) -> Tensor:
    return _softmax_forward("log_softmax", self, dim, True)


@_op("log_softmax_backward")
def log_softmax_backward(grad_output: Tensor, output: Tensor, dim: int) -> Tensor:
    return _softmax_backward("log_softmax_backward", grad_output, output, dim, True)


_NONE, _MEAN, _SUM = _spec.REDUCTION_NONE, _spec.REDUCTION_MEAN, _spec.REDUCTION_SUM


def _divide(a: float, b: float) -> float:
    """a / b with IEEE semantics (inf or nan at b == 0), as the C++ kernels."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def _optional(t: Optional[Tensor], dtype) -> Tuple[np.ndarray, bool]:
    # an absent array is passed as a 1-element placeholder and a flag: Numba compiles per argument type
    if t is None:
        return np.zeros(1, dtype=dtype), False
    return _numpy(t.contiguous()), True


def _reduced(loss_rows: Tensor, reduction: int, denominator: float, dtype, negated_sum: bool = False) -> Tensor:
    if reduction == _NONE:
        return loss_rows.to(dtype)
    total = loss_rows.double().sum()
    if negated_sum and total == 0:  # a loss torch forms as -(sum): its zero is -0
        total = torch.tensor(-0.0, dtype=torch.float64)
    if reduction == _MEAN:
        total = total / denominator  # 0 / 0: nan, as torch
    return total.to(dtype)


@_op("cross_entropy")
def cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor], reduction: int, ignore_index: int,
                  label_smoothing: float, compute_grad: bool) -> Tuple[Tensor, Tensor]:
    _check_cpu("cross_entropy", input, target, weight)
    _floating("cross_entropy", input)
    if input.dim() != 2:
        raise RuntimeError(f"fastact::cross_entropy: expected input of shape [rows, classes], got {list(input.shape)}")
    if reduction not in (_NONE, _MEAN, _SUM):
        raise RuntimeError(f"fastact::cross_entropy: bad reduction {reduction}")
    R, C = input.shape
    x = input.contiguous()
    work = torch.float32 if x.dtype in _REDUCED else x.dtype
    use_index = target.shape != input.shape
    if use_index:
        if target.dtype != torch.int64 or target.shape != (R,):
            raise RuntimeError(f"fastact::cross_entropy: expected {R} int64 class indices, got "
                               f"{target.dtype} of shape {list(target.shape)}")
    elif target.dtype != input.dtype:
        raise RuntimeError(f"fastact::cross_entropy: target dtype {target.dtype} differs from input's {input.dtype}")
    if weight is not None and (weight.dim() != 1 or weight.numel() != C):
        raise RuntimeError(f"weight tensor should be defined either for all {C} classes or no classes but got "
                           f"weight tensor of shape: {list(weight.shape)}")
    if weight is not None and weight.dtype != input.dtype:
        raise RuntimeError(f"expected scalar type {_checks.type_name(input.dtype)} but found {_checks.type_name(weight.dtype)}")
    w, use_weight = _optional(weight, np.float32 if work == torch.float32 else np.float64)
    index = target.contiguous().numpy() if use_index else np.zeros(1, dtype=np.int64)
    probs = _numpy(target.contiguous()) if not use_index else np.zeros((1, 1), dtype=w.dtype)
    if use_index:
        denominator, bad_row = kernels.checked_target_weight_sum(index, C, w, use_weight, ignore_index)
        if bad_row >= 0:
            raise IndexError(f"Target {int(index[bad_row])} is out of bounds.")
    else:
        denominator = float(R) if C > 0 else 0.0  # torch divides by numel / C: nan for zero classes
    smoothing = float(label_smoothing) if label_smoothing > 0 else 0.0  # torch: <= 0 (or NaN) is none
    # as mean_grad_scale in csrc/checks.h: 1 / denominator whatever its sign,
    # inf at 0, and NaN at 0 with smoothing (torch's infinities of both signs)
    grad_scale = 1.0 if reduction != _MEAN else \
        math.nan if denominator == 0 and use_index and smoothing > 0 else _divide(1.0, denominator)
    grad = outputs.empty((R, C) if compute_grad else (0,), work)
    grad_np = grad.numpy() if compute_grad else np.zeros((1, 1), dtype=grad.numpy().dtype)

    def row_losses(smoothing, write_grad):
        # (zero classes: index targets are all ignored, 0; probabilities an empty -(sum), -0)
        rows = torch.full((R,), 0.0 if use_index else -0.0, dtype=torch.float64)
        if R > 0 and C > 0:
            # by rows: the index/probability targets, the losses and the gradient too
            # (the unused placeholder among the targets is never read, sliced or not)
            _run(kernels.cross_entropy_rows, R, C, [_numpy(x), index, probs, use_index, w, use_weight, ignore_index,
                                                    smoothing, grad_scale, write_grad, rows.numpy(), grad_np],
                 (0, 1, 2, 10, 11))
        return rows

    loss_rows = row_losses(smoothing, compute_grad)
    if reduction == _MEAN and use_index and denominator == 0 and smoothing > 0:
        # torch divides the target term and the smoothing term by the
        # denominator separately: their signs decide between inf and nan
        total = loss_rows.sum().item()
        target_term = (1 - smoothing) * row_losses(0.0, False).sum().item()
        mean = _divide(target_term, denominator) + _divide(total - target_term, denominator)
        return torch.tensor(mean, dtype=input.dtype), grad.to(input.dtype)
    return _reduced(loss_rows, reduction, denominator, input.dtype, negated_sum=not use_index), grad.to(input.dtype)


@_op("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Optional[Tensor],
                                     pos_weight: Optional[Tensor], reduction: int,
                                     compute_grad: bool) -> Tuple[Tensor, Tensor]:
    _check_cpu("binary_cross_entropy_with_logits", input, target, weight, pos_weight)
    _floating("binary_cross_entropy_with_logits", input)
    work = torch.float32 if input.dtype in _REDUCED else input.dtype
    flat = [t.contiguous().view(-1) if t is not None else None for t in (input, target, weight, pos_weight)]
    np_dtype = np.float32 if work == torch.float32 else np.float64
    w, use_w = _optional(flat[2], np_dtype)
    pw, use_pw = _optional(flat[3], np_dtype)
    n = input.numel()
    grad_scale = 1.0 / n if reduction == _MEAN and n > 0 else 1.0
    loss = outputs.empty((n,), work)
    grad = outputs.empty((n if compute_grad else 0,), work)
    grad_np = grad.numpy() if compute_grad else np.zeros(1, dtype=np_dtype)
    if n:
        # placeholders (absent weights, no gradient) are sliced too, and never read
        _run(kernels.binary_cross_entropy_with_logits, n, 1, [_numpy(flat[0]), _numpy(flat[1]), w, use_w, pw, use_pw,
                                                             grad_scale, compute_grad, loss.numpy(), grad_np],
             (0, 1, 2, 4, 8, 9))
    out = loss.view(input.shape).to(input.dtype) if reduction == _NONE else _reduced(loss, reduction, n, input.dtype)
    return out, (grad.view(input.shape) if compute_grad else grad).to(input.dtype)


_TORCH_ACTIVATIONS = {"silu": lambda x, _: torch.nn.functional.silu(x),
                      "elu": lambda x, alpha: torch.nn.functional.elu(x, alpha),
                      "softplus": lambda x, beta: torch.nn.functional.softplus(x, beta, _spec.SOFTPLUS_THRESHOLD)}


@_op("linear_act")
def linear_act(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: str = "none",
               negative_slope: float = 0.01) -> Tensor:
    """torch's Linear arithmetic (addmm), then the activation on the Numba kernels."""
    _checks.check_linear_activation(activation)
    if input.dim() < 1 or weight.dim() < 1:
        raise RuntimeError(f"both arguments to linear need to be at least 1D, but they are {input.dim()}D and "
                           f"{weight.dim()}D")
    flat = input if input.dim() == 2 else input.reshape(-1, input.size(-1))
    out = torch.addmm(bias, flat, weight.t()) if bias is not None else torch.mm(flat, weight.t())
    if activation == "relu":
        _pointwise("relu", kernels.relu, out, (out,), out=out)
    elif activation == "leaky_relu":
        _pointwise("leaky_relu", kernels.leaky_relu, out, (out,), float(negative_slope), out=out)
    elif activation == "sigmoid":
        out = _pointwise("sigmoid", kernels.sigmoid, out, (out,))
    elif activation == "tanh":
        out = _pointwise("tanh", kernels.tanh, out, (out,))
    elif activation in ("gelu", "gelu_tanh"):
        out = gelu(out, "tanh" if activation == "gelu_tanh" else "none")
    elif activation == "selu":
        out = selu(out)
    elif activation != "none":  # the ones fastact has no kernel of: torch's, as the C++ op
        out = _TORCH_ACTIVATIONS[activation](out, float(negative_slope))
    return out if input.dim() == 2 else out.view(*input.shape[:-1], weight.size(0))
