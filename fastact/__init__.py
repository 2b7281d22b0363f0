"""fastact: fused activation and loss kernels for PyTorch, drop-in for torch.nn.

    import fastact
    model = fastact.swap(model)        # or use fastact.ReLU, fastact.Softmax, ...
"""
from fastact import _fake
from fastact import functional
from fastact._backend import BackendInfo, backend, set_backend
from fastact.fuse import fuse
from fastact.modules import (GELU, SELU, BCEWithLogitsLoss, CrossEntropyLoss, Fused, FusedLinear, LeakyReLU, LogSoftmax,
                             ReLU, Sigmoid, Softmax, Tanh)
from fastact.swap import swap

# The torch-namespace forms (torch.relu, torch.sigmoid, torch.softmax, ...).
from fastact.functional import (  # noqa: E402
    log_softmax, relu, relu_, selu, selu_, sigmoid, softmax, tanh,
)

__version__ = "0.1.0"
__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "SELU", "Softmax", "LogSoftmax", "CrossEntropyLoss", "BCEWithLogitsLoss", "FusedLinear", "Fused", "functional", "swap", "fuse", "backend", "set_backend", "BackendInfo", "empty_cache",
           "relu", "relu_", "sigmoid", "tanh", "selu", "selu_", "softmax", "log_softmax"]

_fake.register()


def empty_cache() -> None:
    """Return the freed CPU output buffers fastact keeps for reuse to the OS
    (like torch.cuda.empty_cache for the CUDA caching allocator)."""
    from fastact import _loader

    if _loader.has_ops():
        import torch

        torch.ops.fastact._empty_cache()
