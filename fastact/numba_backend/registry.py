"""The Numba backend's op table: what fastact._ops binds when it runs.

Most entries are the custom ops themselves. The in-place ops and the fused
losses get thin wrappers that add what the C++ autograd kernels check before
running (custom ops see no autograd state): in place, a tensor that needs a
gradient is updated through a recorded copy (torch's own errors for leaves
and views apply); the losses refuse gradients they cannot give."""
from types import SimpleNamespace

import torch

_ops = None


class _BackwardRaises(torch.autograd.Function):
    """op(x) whose backward raises: an in-place leaky_relu with a negative
    slope has lost the input its derivative needs; torch runs the forward and
    refuses at backward, with this message."""

    @staticmethod
    def forward(ctx, x, op, args):
        return op(x, *args)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(
            "In-place leakyReLu backward calculation is triggered with a negative slope which is not supported. "
            "This is caused by calling in-place forward function with a negative slope, please call out-of-place "
            "version instead.")


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
        from fastact.numba_backend import autograd

        (y,) = ctx.saved_tensors
        return autograd.run_backward("selu_backward", grad, y, True), None


def _inplace(name: str):
    from fastact.numba_backend import autograd

    out_of_place = getattr(torch.ops.fastact_numba, name).default
    mutate = getattr(torch.ops.fastact_numba, name + "_").default

    def op(x, *args):
        # checked before anything is written (torch.compile never traces an inference tensor here)
        if not torch.compiler.is_compiling() and x.is_inference() and not torch.is_inference_mode_enabled():
            raise RuntimeError(
                "Inplace update to inference tensor outside InferenceMode is not allowed.You can make a clone to get "
                "a normal tensor before doing inplace update.See https://github.com/pytorch/rfcs/pull/17 for more "
                "details.")
        if torch.is_grad_enabled() and x.requires_grad:
            if name == "leaky_relu" and (args[0] if args else 0.01) < 0:
                x.copy_(_BackwardRaises.apply(x, out_of_place, args))
            elif autograd.saves_output(name, args):
                x.copy_(out_of_place(x, *args))
            else:  # selu saves its input, which the copy overwrites
                x.copy_(_FromResult.apply(x, out_of_place))
        else:
            mutate(x, *args)

    return op


def _check_no_forward_ad(name, *tensors):
    import torch.autograd.forward_ad as fwAD

    if any(t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors):
        raise NotImplementedError(f"fastact::{name}: forward-mode AD is not implemented")


def _fused_loss(name: str):
    op = getattr(torch.ops.fastact_numba, name).default

    def checked(input, target, *rest):
        # the C++ autograd kernel's checks (csrc/autograd/losses.cpp), same messages
        _check_no_forward_ad(name, input)
        if target.requires_grad and torch.is_grad_enabled():
            raise NotImplementedError(f"fastact.{name}: gradients with respect to the target are not implemented; "
                                      f"detach the target or use torch.nn.functional.{name}")
        extras = [t for t in rest if isinstance(t, torch.Tensor)]
        if torch.is_grad_enabled() and any(t.requires_grad for t in extras):
            raise NotImplementedError(f"fastact.{name}: gradients with respect to weight or pos_weight are not "
                                      "implemented")
        if torch.is_grad_enabled() and input.requires_grad and not rest[-1]:
            raise RuntimeError(f"fastact::{name}: input requires grad but compute_grad=False; its loss could not "
                               "be differentiated")
        return op(input, target, *rest)

    return checked


def _no_forward_ad(name: str):
    op = getattr(torch.ops.fastact_numba, name).default

    def checked(*args):
        _check_no_forward_ad(name, *(a for a in args if isinstance(a, torch.Tensor)))
        return op(*args)

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
    global _autocast_lib
    _autocast_lib = torch.library.Library("fastact_numba", "IMPL")
    for name in ("cross_entropy", "binary_cross_entropy_with_logits"):
        _register_autocast(_autocast_lib, name, lambda: torch.float32)
    _register_autocast(_autocast_lib, "linear_act", lambda: torch.get_autocast_dtype("cpu"))


def load(names) -> SimpleNamespace:
    """The table for `names` (fastact._ops' list); registers the ops on first use."""
    global _ops
    if _ops is None:
        from fastact import _fake
        from fastact.numba_backend import autograd, ops  # noqa: F401  (defines the custom ops)

        _fake.register(ops.NS + "::")
        autograd.register()
        _register_autocast_policy()
        table = {}
        for name in names:
            if name in ("relu_", "leaky_relu_", "selu_"):
                table[name] = _inplace(name[:-1])
            elif name in ("cross_entropy", "binary_cross_entropy_with_logits"):
                table[name] = _fused_loss(name)
            else:
                table[name] = _no_forward_ad(name)
        _ops = SimpleNamespace(**table)
    return _ops
