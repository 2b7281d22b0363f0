"""Handles to the registered fastact ops, bound once at import, in two sets:

- `traced`: the torch OpOverloads (torch.ops.fastact.*), which torch.compile
  and torch.export understand;
- `eager`: fastact._C's direct bindings of the same ops where it has them
  (unboxed calls into the dispatcher, about 1 us cheaper per call than a
  torch.ops call), the OpOverloads otherwise.

Both reach the same dispatcher entries (C++ autograd, then the kernel).
Without a compiled extension every handle raises one clear error instead.
"""
from types import SimpleNamespace

import torch

from fastact import _loader

_NAMES = (
    "relu", "relu_", "relu_backward",
    "leaky_relu", "leaky_relu_", "leaky_relu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "gelu", "gelu_backward", "selu", "selu_", "selu_backward",
    "softmax", "softmax_backward",
    "log_softmax", "log_softmax_backward",
    "cross_entropy", "binary_cross_entropy_with_logits",
    "linear_act",
)


def _unavailable(name):
    def op(*args, **kwargs):
        raise RuntimeError(
            f"fastact.{name}: the compiled extension fastact._C is not available "
            f"({_loader.load_error!r}). Build it against your torch with "
            "`pip install --no-build-isolation .` from the fastact source tree."
        )

    return op


if _loader.has_ops():
    traced = SimpleNamespace(**{name: getattr(torch.ops.fastact, name).default for name in _NAMES})
    eager = SimpleNamespace(**{name: getattr(_loader._C, name, getattr(traced, name)) for name in _NAMES})
else:
    traced = eager = SimpleNamespace(**{name: _unavailable(name) for name in _NAMES})
