"""fastact: fused activation and loss kernels for PyTorch, drop-in for torch.nn.

    import fastact
    model = fastact.swap(model)        # or use fastact.ReLU, fastact.Softmax, ...
"""
from fastact import _fake
from fastact import functional
from fastact._backend import BackendInfo, backend
from fastact.modules import GELU, SELU, BCEWithLogitsLoss, CrossEntropyLoss, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from fastact.swap import swap

__version__ = "0.1.0"
__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "SELU", "Softmax", "LogSoftmax", "CrossEntropyLoss", "BCEWithLogitsLoss", "functional", "swap", "backend", "BackendInfo", "empty_cache"]

_fake.register()


def empty_cache() -> None:
    """Return the freed CPU output buffers fastact keeps for reuse to the OS
    (like torch.cuda.empty_cache for the CUDA caching allocator)."""
    from fastact import _loader

    if _loader.has_ops():
        import torch

        torch.ops.fastact._empty_cache()
