"""The Numba backend's op table: what fastact._ops binds when it runs.

Most entries are the custom ops themselves. The in-place ops and the fused
losses get thin wrappers that add what the C++ autograd kernels check before
running (custom ops see no autograd state): in place, a tensor that needs a
gradient is updated through a recorded copy (torch's own errors for leaves
and views apply); the losses refuse gradients they cannot give."""
from types import SimpleNamespace

import torch

_ops = None


def _inplace(name: str):
    out_of_place = getattr(torch.ops.fastact_numba, name).default
    mutate = getattr(torch.ops.fastact_numba, name + "_").default

    def op(x, *args):
        if torch.is_grad_enabled() and x.requires_grad:
            if name == "leaky_relu" and (args[0] if args else 0.01) < 0:
                raise RuntimeError(
                    "In-place leakyReLu backward calculation is triggered with a negative slope which is not "
                    "supported. This is caused by calling in-place forward function with a negative slope, "
                    "please call out-of-place version instead.")
            x.copy_(out_of_place(x, *args))
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


def load(names) -> SimpleNamespace:
    """The table for `names` (fastact._ops' list); registers the ops on first use."""
    global _ops
    if _ops is None:
        from fastact import _fake
        from fastact.numba_backend import autograd, ops  # noqa: F401  (defines the custom ops)

        _fake.register(ops.NS + "::")
        autograd.register()
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
