"""The seed notebooks' models: architecture, data, optimizer, loss and
epochs, as each notebook has them."""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

import fastact

from fastact_apps.train.datasets import Data, blobs, circles, regression, spiral, two_class_clusters


@dataclass(frozen=True)
class Tutorial:
    build: Callable[[], nn.Module]
    data: Callable[[], Data]
    optimizer: Tuple[type, dict]  # class and its settings, as the notebook has them
    loss: Callable[[], nn.Module]
    epochs: int
    batch: Optional[int] = None  # None: full batch
    source: str = ""

    def make_optimizer(self, params, impl: str, ours: bool = False) -> torch.optim.Optimizer:
        """The notebook's optimizer with torch's implementation `impl`; ours:
        fastact.optim's class of the same name (one C++ call per step)."""
        cls, kwargs = self.optimizer
        if ours:
            cls = getattr(fastact.optim, cls.__name__)
        extra = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
        return cls(params, **kwargs, **extra)

def _adam(lr):
    return torch.optim.Adam, {"lr": lr}

def _sgd(lr, momentum=0.0):
    return torch.optim.SGD, {"lr": lr, "momentum": momentum}

def mlp(*layers: int, activation=nn.ReLU) -> Callable[[], nn.Sequential]:
    """A builder of Linear layers of these sizes with `activation` between them (None: none)."""
    def build():
        mods: List[nn.Module] = []
        for i, (a, b) in enumerate(zip(layers, layers[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(layers) - 2 and activation is not None:
                mods.append(activation())
        return nn.Sequential(*mods)
    return build

TUTORIALS: Dict[str, Tutorial] = {
    "circles": Tutorial(mlp(2, 10, 2), circles, _adam(0.01), nn.CrossEntropyLoss, 300, source="seed 002, ReLU"),
    "circles-linear": Tutorial(mlp(2, 10, 2, activation=None), circles, _adam(0.01), nn.CrossEntropyLoss, 300,
                               source="seed 002, no activation"),
    "spiral": Tutorial(mlp(2, 64, 3), spiral, _adam(0.02), nn.CrossEntropyLoss, 1000,
                       source="nnfs spiral (its Adam setting)"),
    "simplenn": Tutorial(mlp(10, 20, 1, activation=lambda: nn.LeakyReLU(0.01)), lambda: regression(1000, 10),
                         _sgd(0.01), nn.MSELoss, 300, source="seed 000, LeakyReLU"),
    "simplenn-4class": Tutorial(mlp(10, 20, 4, activation=lambda: nn.LeakyReLU(0.01)), lambda: blobs(1000, 10, 4),
                                _sgd(0.1), nn.CrossEntropyLoss, 300, source="seed 000, 4 classes"),
    "datacamp": Tutorial(mlp(11, 20, 12, 6, 4), lambda: blobs(1000, 11, 4), _adam(0.01), nn.CrossEntropyLoss, 300,
                         source="seeds 001/003"),
    "backprop": Tutorial(mlp(16, 8, 4, 2), lambda: blobs(1000, 16, 2), _sgd(0.1), nn.CrossEntropyLoss, 300,
                         source="seed 001 backprop"),
    "sigmoid": Tutorial(lambda: nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()), two_class_clusters, _sgd(0.1),
                        nn.CrossEntropyLoss, 1000, source="seed 004, Sigmoid"),
    "tanh": Tutorial(lambda: nn.Sequential(nn.Linear(2, 2), nn.Tanh()), two_class_clusters, _sgd(0.1),
                     nn.CrossEntropyLoss, 1000, source="seed 004, Tanh"),
    "mlp": Tutorial(mlp(784, 512, 512, 10), lambda: blobs(4096, 784, 10), _sgd(0.05), nn.CrossEntropyLoss, 2,
                    batch=256, source="MNIST-sized, synthetic"),
}
