"""fastact: fused activation and loss kernels for PyTorch, drop-in for torch.nn.

    import fastact
    model = fastact.swap(model)        # or use fastact.ReLU, fastact.Softmax, ...

Layers, each importing only from those below it: this package's public API
(functional, modules, optim, surgery, train_step) -> _backends (which backend runs the ops:
cpp, numba, and the fake kernels) -> _checks and _spec (argument checks and
messages; the op list and constants). The apps (`fastact train`, `fastact
bench`) live beside the library, in fastact_apps.
"""
from fastact import functional, optim
from fastact._backends import BackendInfo, backend, empty_cache, set_backend, wait_for_kernels
from fastact.data import DataLoader, fast_loader
from fastact.modules import (GELU, SELU, BCEWithLogitsLoss, Chained, ChainedDropout, CrossEntropyLoss, Fused, FusedLinear, LeakyReLU,
                             LinearChain, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh)
from fastact.surgery import fuse, summary, swap
from fastact.train_step import TrainStep

# The torch-namespace forms (torch.relu, torch.sigmoid, torch.softmax, ...).
from fastact.functional import (  # noqa: E402
    log_softmax, relu, relu_, selu, selu_, sigmoid, softmax, tanh,
)

__version__ = "0.1.0"
__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "SELU", "Softmax", "LogSoftmax", "CrossEntropyLoss",
           "BCEWithLogitsLoss", "FusedLinear", "LinearChain", "Chained", "ChainedDropout", "Fused", "functional", "optim", "swap", "fuse", "summary", "TrainStep",
           "backend", "set_backend",
           "BackendInfo", "empty_cache", "wait_for_kernels", "relu", "relu_", "sigmoid", "tanh", "selu", "selu_", "softmax",
           "log_softmax", "DataLoader", "fast_loader"]
