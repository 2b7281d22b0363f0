"""Handles to the registered fastact ops, bound once at import.

The functional layer calls these; each is a torch OpOverload, so eager calls
go straight to the dispatcher (C++ autograd and kernels) and torch.compile
sees an ordinary op. Without a compiled extension every handle raises one
clear error instead.
"""
import torch

from fastact._loader import has_ops, load_error

_NAMES = (
    "relu", "relu_", "relu_backward",
    "leaky_relu", "leaky_relu_", "leaky_relu_backward",
    "softmax", "softmax_backward",
    "log_softmax", "log_softmax_backward",
)


def _unavailable(name):
    def op(*args, **kwargs):
        raise RuntimeError(
            f"fastact.{name}: the compiled extension fastact._C is not available "
            f"({load_error!r}). Build it against your torch with "
            "`pip install --no-build-isolation .` from the fastact source tree."
        )

    return op


if has_ops():
    _table = {name: getattr(torch.ops.fastact, name).default for name in _NAMES}
else:
    _table = {name: _unavailable(name) for name in _NAMES}

relu = _table["relu"]
relu_ = _table["relu_"]
relu_backward = _table["relu_backward"]
leaky_relu = _table["leaky_relu"]
leaky_relu_ = _table["leaky_relu_"]
leaky_relu_backward = _table["leaky_relu_backward"]
softmax = _table["softmax"]
softmax_backward = _table["softmax_backward"]
log_softmax = _table["log_softmax"]
log_softmax_backward = _table["log_softmax_backward"]
