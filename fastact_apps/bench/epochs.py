"""A learner's whole epoch, four ways, on the same data, model, batch and
optimizer settings (bench/test_bench_epoch.py, bench/epoch_speed.py):

- torch: torch's DataLoader over a TensorDataset, and per batch zero_grad,
  forward, loss, backward, torch.optim's step (the tutorials' loop);
- loop: the same loop with fastact.DataLoader, fastact.fuse,
  fastact.TrainStep and fastact.optim (the one-line changes);
- epoch: TrainStep.epoch(loader), the epoch as one C++ call;
- floor: that C++ loop (fastact._C._train_epoch) called directly on a
  fixed order, with nothing around it: no sampling, no checks, no Python;
- sklearn: scikit-learn's MLPClassifier, one epoch of the same batches and
  hidden sizes with Adam, where scikit-learn is installed.

The data are synthetic stand-ins of the sizes learners use (scikit-learn's
digits, iris, two-moons and circles, an MNIST-sized MLP)."""
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fastact


@dataclass(frozen=True)
class EpochCase:
    rows: int
    sizes: Tuple[int, ...]  # in, hidden..., classes
    batch: int
    optimizer: str  # adam, adamw, sgd, sgd_momentum
    activation: type = nn.ReLU
    loss: str = "ce"  # ce, or bce (one logit, float targets)
    fallback: bool = False  # BatchNorm1d and Dropout(0.2) after each hidden activation: TrainStep's autograd step


CASES: Dict[str, EpochCase] = {
    "digits": EpochCase(1797, (64, 32, 10), 32, "adam"),
    "iris": EpochCase(150, (4, 16, 3), 16, "sgd_momentum"),
    "moons": EpochCase(1000, (2, 64, 64, 2), 64, "adamw", nn.Tanh),
    "circles-bce": EpochCase(2000, (2, 16, 16, 1), 150, "adam", nn.ReLU, "bce"),
    "mnist-mlp": EpochCase(4096, (784, 512, 10), 64, "adam"),
    "digits-bn-dropout": EpochCase(1797, (64, 32, 10), 32, "adam", fallback=True),
}

_OPTIMIZERS = {"adam": ("Adam", dict(lr=1e-3)), "adamw": ("AdamW", dict(lr=1e-3, weight_decay=1e-2)),
               "sgd": ("SGD", dict(lr=0.05)), "sgd_momentum": ("SGD", dict(lr=0.05, momentum=0.9))}


def data(case: EpochCase):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(case.rows, case.sizes[0], generator=g)
    if case.loss == "bce":
        return x, (x.sum(1, keepdim=True) > 0).float()
    return x, torch.randint(0, case.sizes[-1], (case.rows,), generator=g)


def model(case: EpochCase) -> nn.Sequential:
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(case.sizes, case.sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(case.sizes) - 2:
            layers.append(case.activation())
            if case.fallback:
                layers += [nn.BatchNorm1d(b), nn.Dropout(0.2)]
    return nn.Sequential(*layers)


def _criterion(case):
    return nn.BCEWithLogitsLoss() if case.loss == "bce" else nn.CrossEntropyLoss()


def contenders(case: EpochCase) -> Dict[str, Callable[[], object]]:
    """name -> a function that trains one epoch (state carries over calls)."""
    x, y = data(case)
    name, settings = _OPTIMIZERS[case.optimizer]
    out: Dict[str, Callable[[], object]] = {}

    torch_model = model(case)
    torch_opt = getattr(torch.optim, name)(torch_model.parameters(), **settings)
    torch_loader = DataLoader(TensorDataset(x, y), batch_size=case.batch, shuffle=True)
    criterion = _criterion(case)

    def torch_epoch():
        for xb, yb in torch_loader:
            torch_opt.zero_grad()
            loss = criterion(torch_model(xb), yb)
            loss.backward()
            torch_opt.step()

    out["torch"] = torch_epoch

    def fastact_step():
        m = fastact.fuse(model(case))
        return fastact.TrainStep(m, _criterion(case), getattr(fastact.optim, name)(m.parameters(), **settings))

    loop_step, loader = fastact_step(), fastact.DataLoader(TensorDataset(x, y), batch_size=case.batch, shuffle=True)

    def loop_epoch():
        for xb, yb in loader:
            loop_step(xb, yb)

    out["loop"] = loop_epoch
    epoch_step = fastact_step()
    out["epoch"] = lambda: epoch_step.epoch(loader)
    floor = _floor(fastact_step(), loader, x, y, case)
    if floor is not None:
        out["floor"] = floor
    sk = _sklearn(case, x, y)
    if sk is not None:
        out["sklearn"] = sk
    return out


def _floor(step, loader, x, y, case):
    step.epoch(loader)  # the optimizer's state exists
    return step._bare_epoch(loader)


def _sklearn(case, x, y):
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    if (case.optimizer not in ("adam", "adamw") or case.loss != "ce" or case.activation not in (nn.ReLU, nn.Tanh)
            or case.fallback):
        return None
    clf = MLPClassifier(hidden_layer_sizes=case.sizes[1:-1], batch_size=case.batch, solver="adam",
                        learning_rate_init=1e-3, alpha=0.0, max_iter=1, shuffle=True, random_state=0,
                        activation="relu" if case.activation is nn.ReLU else "tanh")
    xn, yn = x.numpy(), y.numpy()
    classes = list(range(case.sizes[-1]))
    clf.partial_fit(xn, yn, classes=classes)  # builds the layers; each later call is one epoch

    def epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(xn, yn)

    return epoch


def batches_per_epoch(case: EpochCase) -> int:
    return -(-case.rows // case.batch)
