"""The Numba backend: every fastact op as a torch custom op
(torch.ops.fastact_numba.*, defined in library.py) whose kernels are
Numba-compiled (kernels.py), for machines where the C++ extension cannot be
built or loaded. Same schemas, same autograd (autograd.py), same fake
kernels, so opcheck and torch.compile work on it too. Imported on first use:
compiling its kernels (cached on disk by Numba) costs time.

This module holds the backend's op table, what fastact._backends binds when
it runs. Most entries are the custom ops themselves. The in-place ops and the fused
losses get thin wrappers that add what the C++ autograd kernels check before
running (custom ops see no autograd state): in place, a tensor that needs a
gradient is updated through a recorded copy (torch's own errors for leaves
and views apply), and inside torch.func transforms or with a tangent the
update is torch's own in-place op."""
import os
from types import SimpleNamespace
from typing import Tuple

import torch

from fastact import _checks, _spec
from fastact._backends.numba import autograd, warmup
from fastact._backends.numba.library import NAMESPACE

_tables = None


class _BackwardRaises(torch.autograd.Function):
    """op(x) whose backward raises: an in-place leaky_relu with a negative
    slope has lost the input its derivative needs; torch runs the forward and
    refuses at backward, with this message."""

    @staticmethod
    def forward(ctx, x, op, args):
        return op(x, *args)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(_checks.LEAKY_RELU_INPLACE_NEGATIVE_SLOPE)


class _FromResult(torch.autograd.Function):
    """selu(x) differentiated from its output: the in-place form, which has
    lost its input (torch's selu_ differentiates from the output too)."""

    @staticmethod
    def forward(ctx, x, op):
        y = op(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return autograd.run_backward("selu_backward", grad, y, True), None


# torch's in-place forms, for calls the single-level nodes above cannot take
_TORCH_INPLACE = {"relu": torch.relu_, "leaky_relu": torch.nn.functional.leaky_relu_, "selu": torch.selu_}


def _inplace(name: str):
    out_of_place = getattr(torch.ops.fastact_numba, name).default
    mutate = getattr(torch.ops.fastact_numba, name + "_").default

    def op(x, *args):
        if torch._C._are_functorch_transforms_active() or autograd._has_tangent((x,)):
            # inside torch.func transforms, or with a tangent: torch's in-place op, which takes both
            _TORCH_INPLACE[name](x, *args)
            return
        # checked before anything is written (torch.compile never traces an inference tensor here)
        if not torch.compiler.is_compiling() and x.is_inference() and not torch.is_inference_mode_enabled():
                raise RuntimeError(_checks.INFERENCE_TENSOR_INPLACE)
        if torch.is_grad_enabled() and x.requires_grad:
            if name == "leaky_relu" and (args[0] if args else 0.01) < 0:
                x.copy_(_BackwardRaises.apply(x, out_of_place, args))
            elif _spec.saves_output(name, args):
                x.copy_(out_of_place(x, *args))
            else:  # selu saves its input, which the copy overwrites
                x.copy_(_FromResult.apply(x, out_of_place))
        else:
            mutate(x, *args)

    return op


def _fused_loss(name: str, op=None):
    op = op or getattr(torch.ops.fastact_numba, name).default

    def checked(input, target, *rest):
        # the C++ autograd kernel's check (csrc/autograd/fused_loss.cpp), same message
        if torch.is_grad_enabled() and input.requires_grad and not rest[-1]:
            raise RuntimeError(f"fastact::{name}: input requires grad but compute_grad=False; its loss could not "
                               "be differentiated")
        return op(input, target, *rest)

    return checked


def _eligible(t, device_type):
    # torch's autocast rule: floating tensors on the device, float64 excepted
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64 and \
        t.device.type == device_type


def _register_autocast(lib, name, dtype_for):
    """The C++ backend's autocast policy (csrc/autocast/autocast.cpp) for the
    Numba op `name`: eligible tensors cast to dtype_for(), autocast off inside."""
    op = getattr(torch.ops.fastact_numba, name).default
    key = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)

    def kernel(_keyset, *args):
        dtype = dtype_for()
        with torch._C._ExcludeDispatchKeyGuard(key):
            return op(*(a.to(dtype) if _eligible(a, "cpu") else a for a in args))

    lib.impl(name, kernel, "AutocastCPU", with_keyset=True)


_autocast_lib = None


def _register_autocast_policy():
    """_spec.AUTOCAST's CPU policy (the backend runs on the CPU only)."""
    global _autocast_lib
    _autocast_lib = torch.library.Library(NAMESPACE, "IMPL")
    dtypes = {"float32": lambda: torch.float32, "lower": lambda: torch.get_autocast_dtype("cpu")}
    for name, policy in _spec.AUTOCAST["cpu"].items():
        _register_autocast(_autocast_lib, name, dtypes[policy])


# Below this many elements a call goes to torch's own kernel (and torch's
# autograd), not to the Numba kernels: the custom op, its autograd node and
# the NumPy views cost tens of microseconds per call, more than torch's whole
# op up to about a million elements (bench/results/cpu-numba.txt), and a
# fallback must not be slower than no fastact at all. Read at each call;
# the tests set it to 0 so that they exercise the kernels at every size.
TORCH_BELOW = int(os.environ.get("FASTACT_NUMBA_TORCH_BELOW", 1 << 20))

# the ops fastact.functional calls with an input tensor first
_ROUTED = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "selu", "softmax", "log_softmax", "linear_act",
           *_spec.FUSED_LOSSES)


# torch's public functions for the hand-over (an aten OpOverload's Python
# call costs microseconds more), on the ops' own arguments
_TORCH_EAGER = {
    "relu": torch.relu,
    "leaky_relu": torch.nn.functional.leaky_relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": lambda x, approximate="none": torch._C._nn.gelu(x, approximate=approximate),
    "selu": torch.selu,
    "softmax": torch.softmax,
    "log_softmax": torch.log_softmax,
}


def _on_kernels(input) -> bool:
    # (a non-CPU input too: the op raises the backend's clear error)
    return input.numel() >= TORCH_BELOW and warmup.kernels_ready() or not input.is_cpu


def on_torch(input) -> bool:
    """Whether an eager call on input runs torch's own op. The losses
    (fastact.functional) ask this themselves, before their argument
    handling, which at these sizes costs 8-10 us against torch's whole
    30-50 us call (1000x10), and call torch's function; the activations'
    table entries ask it (_small_to_torch)."""
    return not _on_kernels(input)


def _small_to_torch(name: str, op):
    """op, or torch's own op for a small input, or while the kernels are
    compiled in the background (warmup.py)."""
    torch_form = _TORCH_EAGER.get(name, autograd.TORCH_FORMS[name])

    def call(input, *args):
        if _on_kernels(input):
            return op(input, *args)
        return torch_form(input, *args)

    return call


def _inplace_small_to_torch(name: str, op):
    torch_form = _TORCH_INPLACE[_spec.INPLACE[name]]

    def call(input, *args):
        if _on_kernels(input):
            return op(input, *args)
        torch_form(input, *args)

    return call


def tables() -> Tuple[SimpleNamespace, SimpleNamespace]:
    """The backend's op tables, one entry per _spec.OPS: what torch.compile
    traces, and what eager calls use (the same, but small inputs handed to
    torch's ops); registers the ops' autograd and autocast kernels on first use."""
    global _tables
    if _tables is None:
        autograd.register()
        _register_autocast_policy()
        traced = {}
        for name in _spec.OPS:
            if name in _spec.INPLACE:
                traced[name] = _inplace(_spec.INPLACE[name])
            elif name in _spec.FUSED_LOSSES:
                traced[name] = _fused_loss(name)
            else:
                traced[name] = getattr(torch.ops.fastact_numba, name).default
        direct = {name: autograd.direct(name) for name in _ROUTED}
        direct.update({name: _fused_loss(name, direct[name]) for name in _spec.FUSED_LOSSES})
        # (the losses' hand-over is fastact.functional's: see on_torch)
        eager = {name: direct[name] if name in _spec.FUSED_LOSSES else
                 _small_to_torch(name, direct[name]) if name in _ROUTED else
                 _inplace_small_to_torch(name, op) if name in _spec.INPLACE else op for name, op in traced.items()}
        _tables = SimpleNamespace(**traced), SimpleNamespace(**eager)
    return _tables


def compile_every_kernel() -> None:
    """The background worker of warmup.py: every kernel into the cache, in
    every signature the ops give it (float32 and float64; float16 and
    bfloat16 run as float32), by running each op's forward and backward on
    small inputs through the eager table (tests/test_backend.py checks that
    no call compiles anything afterwards)."""
    global TORCH_BELOW
    TORCH_BELOW = 0
    warmup.main(_exercise)


def _exercise() -> None:
    _, ops = tables()
    mean = _spec.REDUCTION_MEAN
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(4, 8, dtype=dtype, requires_grad=True)
        outs = [ops.relu(x), ops.sigmoid(x), ops.tanh(x), ops.gelu(x, "none"), ops.selu(x), ops.leaky_relu(x, 0.1),
                ops.softmax(x, 1), ops.log_softmax(x, 1),
                ops.cross_entropy(x, torch.randint(0, 8, (4,)), None, mean, -100, 0.0, True)[0],
                ops.cross_entropy(x, torch.rand(4, 8, dtype=dtype), None, mean, -100, 0.0, True)[0],
                ops.binary_cross_entropy_with_logits(x, torch.rand(4, 8, dtype=dtype), None, None, mean, True)[0]]
        from_output = x * 1
        ops.selu_(from_output)  # differentiated from its output
        torch.autograd.grad(sum(o.sum() for o in outs) + from_output.sum(), x)
        for inplace, args in ((ops.relu_, ()), (ops.leaky_relu_, (0.1,)), (ops.selu_, ())):
            inplace(x.detach().clone(), *args)


def build() -> str:
    """What runs the kernels, for fastact.backend()."""
    import numba

    return (f"numba {numba.__version__}, threading layer {numba.config.THREADING_LAYER}, "
            f"{numba.config.NUMBA_NUM_THREADS} threads, torch's kernels below {TORCH_BELOW} elements; "
            f"kernels: {warmup.state()}")
