"""fastact: fused activation and loss kernels for PyTorch, drop-in for torch.nn.

    import fastact
    model = fastact.swap(model)        # or use fastact.ReLU, fastact.Softmax, ...
"""
from fastact import _fake
from fastact import functional
from fastact._backend import BackendInfo, backend
from fastact.modules import CrossEntropyLoss, LeakyReLU, LogSoftmax, ReLU, Softmax
from fastact.swap import swap

__version__ = "0.1.0"
__all__ = ["ReLU", "LeakyReLU", "Softmax", "LogSoftmax", "CrossEntropyLoss", "functional", "swap", "backend", "BackendInfo"]

_fake.register()
