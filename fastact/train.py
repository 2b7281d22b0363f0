"""Train the seed notebooks' tutorial models with stock torch and with fastact.

Both start from the same weights, see the same data and use the same
optimizer; the fastact side is `fastact.fuse(model)` (fused Linear +
activation layers) with fastact's loss. The two are trained in lockstep in
this process, taking turns step by step, and the table gives steps/s for
each, the speedup, the final loss and accuracy of each, and how many leading
steps' losses agree to 1e-4 (see `agreement` for what "agree" requires).

    python -m fastact train [--model NAME ...] [--epochs N] [--device cpu|cuda]
                            [--compile] [--optimizer-impl default|foreach|fused]
                            [--plot out.png] [--json out.json]

Under torchrun (WORLD_SIZE > 1) each model trains with DistributedDataParallel
instead, every rank on its share of each batch (gloo on CPU, nccl on CUDA):

    torchrun --nproc_per_node 2 -m fastact train --model circles
"""
import copy
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

import fastact

# ---- datasets, generated with a seed (nothing is downloaded) -------------

Data = Tuple[torch.Tensor, torch.Tensor]


def circles(n: int = 1000, seed: int = 0) -> Data:
    """Seed 002: points uniform in [-1.5, 1.5]^2, class 1 inside the unit circle."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=gen) * 3 - 1.5
    return x, (x.pow(2).sum(1) < 1).long()


def spiral(points: int = 100, classes: int = 3, seed: int = 0) -> Data:
    """The nnfs book's spiral: `classes` arms of `points` points each."""
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for k in range(classes):
        r = torch.linspace(0.0, 1.0, points)
        t = torch.linspace(k * 4.0, (k + 1) * 4.0, points) + torch.randn(points, generator=gen) * 0.2
        xs.append(torch.stack([r * torch.sin(t * 2.5), r * torch.cos(t * 2.5)], 1))
        ys.append(torch.full((points,), k, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def two_class_clusters(n: int = 1000, class_sep: float = 0.9, flip_y: float = 0.1, seed: int = 0) -> Data:
    """Seed 004's make_classification(n_features=2, n_informative=2,
    n_redundant=0, flip_y=0.1, class_sep=0.9) in its essentials: two
    Gaussian clusters per class on the corners of a square of side
    2 class_sep, a random linear mix, and a fraction flip_y of labels redrawn."""
    gen = torch.Generator().manual_seed(seed)
    # class 0 on the corners with a negative first coordinate: separable, as the notebook's draw was
    corners = torch.tensor([[-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [1.0, 1.0]]) * class_sep
    cluster = torch.randint(0, 4, (n,), generator=gen)
    y = cluster // 2
    x = corners[cluster] + torch.randn(n, 2, generator=gen)
    x = x @ (torch.rand(2, 2, generator=gen) * 2 - 1 + torch.eye(2))
    flip = torch.rand(n, generator=gen) < flip_y
    y = torch.where(flip, torch.randint(0, 2, (n,), generator=gen), y)
    return x, y


def blobs(n: int, features: int, classes: int, seed: int = 0) -> Data:
    """Gaussian clusters, one per class, in `features` dimensions."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, features, generator=gen) * 2
    y = torch.randint(0, classes, (n,), generator=gen)
    return centers[y] + torch.randn(n, features, generator=gen), y


def regression(n: int, features: int, seed: int = 0) -> Data:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    w = torch.randn(features, 1, generator=gen)
    return x, x @ w + 0.1 * torch.randn(n, 1, generator=gen)


# ---- the tutorial models -----------------------------------------------


@dataclass(frozen=True)
class Tutorial:
    build: Callable[[], nn.Module]
    data: Callable[[], Data]
    optimizer: Tuple[type, dict]  # class and its settings, as the notebook has them
    loss: Callable[[], nn.Module]
    epochs: int
    batch: Optional[int] = None  # None: full batch
    source: str = ""

    def make_optimizer(self, params, impl: str) -> torch.optim.Optimizer:
        cls, kwargs = self.optimizer
        extra = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
        return cls(params, **kwargs, **extra)


def _adam(lr):
    return torch.optim.Adam, {"lr": lr}


def _sgd(lr, momentum=0.0):
    return torch.optim.SGD, {"lr": lr, "momentum": momentum}


def _mlp(*layers: int, activation=nn.ReLU) -> Callable[[], nn.Sequential]:
    def build():
        mods: List[nn.Module] = []
        for i, (a, b) in enumerate(zip(layers, layers[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(layers) - 2 and activation is not None:
                mods.append(activation())
        return nn.Sequential(*mods)
    return build


TUTORIALS: Dict[str, Tutorial] = {
    "circles": Tutorial(_mlp(2, 10, 2), circles, _adam(0.01), nn.CrossEntropyLoss, 300, source="seed 002, ReLU"),
    "circles-linear": Tutorial(_mlp(2, 10, 2, activation=None), circles, _adam(0.01), nn.CrossEntropyLoss, 300,
                               source="seed 002, no activation"),
    "spiral": Tutorial(_mlp(2, 64, 3), spiral, _adam(0.02), nn.CrossEntropyLoss, 1000,
                       source="nnfs spiral (its Adam setting)"),
    "simplenn": Tutorial(_mlp(10, 20, 1, activation=lambda: nn.LeakyReLU(0.01)), lambda: regression(1000, 10),
                         _sgd(0.01), nn.MSELoss, 300, source="seed 000, LeakyReLU"),
    "simplenn-4class": Tutorial(_mlp(10, 20, 4, activation=lambda: nn.LeakyReLU(0.01)), lambda: blobs(1000, 10, 4),
                                _sgd(0.1), nn.CrossEntropyLoss, 300, source="seed 000, 4 classes"),
    "datacamp": Tutorial(_mlp(11, 20, 12, 6, 4), lambda: blobs(1000, 11, 4), _adam(0.01), nn.CrossEntropyLoss, 300,
                         source="seeds 001/003"),
    "backprop": Tutorial(_mlp(16, 8, 4, 2), lambda: blobs(1000, 16, 2), _sgd(0.1), nn.CrossEntropyLoss, 300,
                         source="seed 001 backprop"),
    "sigmoid": Tutorial(lambda: nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()), two_class_clusters, _sgd(0.1),
                        nn.CrossEntropyLoss, 1000, source="seed 004, Sigmoid"),
    "tanh": Tutorial(lambda: nn.Sequential(nn.Linear(2, 2), nn.Tanh()), two_class_clusters, _sgd(0.1),
                     nn.CrossEntropyLoss, 1000, source="seed 004, Tanh"),
    "mlp": Tutorial(_mlp(784, 512, 512, 10), lambda: blobs(4096, 784, 10), _sgd(0.05), nn.CrossEntropyLoss, 2,
                    batch=256, source="MNIST-sized, synthetic"),
}

# ---- training -------------------------------------------------------------


@dataclass
class Run:
    steps_per_s: float
    final_loss: float
    accuracy: Optional[float]
    losses: List[float] = field(repr=False)


@dataclass
class Row:
    model: str
    torch: Run
    fastact: Run
    speedup: float
    matching_steps: int  # leading steps whose losses agree within 1e-4
    agree: bool
    compiled: Optional[Run] = None  # torch.compile of the torch step, with --compile
    speedup_vs_compiled: Optional[float] = None


# Two implementations whose arithmetic differs in the last bit (a different
# summation order) track each other for a while, then drift apart where the
# training is chaotic: on the spiral, a ReLU that flips at a kink sends the
# runs on different paths after ~100 steps. So "agree" asks for the first
# 100 steps to match to 1e-4 and the end to match the way results are read:
# accuracy within 2 points (final loss within 5% for regression).
AGREE_STEPS, AGREE_RTOL, AGREE_ACCURACY, AGREE_FINAL_RTOL = 100, 1e-4, 0.02, 0.05


def agreement(a: Run, b: Run) -> Tuple[int, bool]:
    matching = 0
    for x, y in zip(a.losses, b.losses):
        if not math.isclose(x, y, rel_tol=AGREE_RTOL, abs_tol=1e-5):
            break
        matching += 1
    early = matching >= min(AGREE_STEPS, len(a.losses))
    if a.accuracy is not None:
        late = abs(a.accuracy - b.accuracy) <= AGREE_ACCURACY
    else:
        late = math.isclose(a.final_loss, b.final_loss, rel_tol=AGREE_FINAL_RTOL, abs_tol=1e-5)
    return matching, early and late


def batches(x: torch.Tensor, y: torch.Tensor, batch: Optional[int]) -> Iterator[Data]:
    if batch is None:
        yield x, y
        return
    for i in range(0, len(x), batch):
        yield x[i:i + batch], y[i:i + batch]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """One model's optimizer, loss and history; step() runs and times one batch."""

    def __init__(self, model: nn.Module, tutorial: Tutorial, kind: str, optimizer_impl: str = "default"):
        self.model = model
        self.kind = kind  # "torch", "fastact" or "compiled"
        self.criterion = fastact.swap(tutorial.loss()) if kind == "fastact" else tutorial.loss()
        self.optimizer = tutorial.make_optimizer(list(model.parameters()), optimizer_impl)
        self.losses: List[torch.Tensor] = []
        self.step_seconds: List[float] = []
        self.device = next(model.parameters()).device
        if kind == "compiled":
            self._loss = torch.compile(lambda xb, yb: self.criterion(self.model(xb), yb))
            self._update = torch.compile(self.optimizer.step)
        else:
            self._loss = lambda xb, yb: self.criterion(self.model(xb), yb)
            self._update = self.optimizer.step

    def step(self, xb, yb) -> None:
        start = time.perf_counter()
        self.optimizer.zero_grad()
        loss = self._loss(xb, yb)
        loss.backward()
        self._update()
        _synchronize(self.device)
        self.step_seconds.append(time.perf_counter() - start)
        self.losses.append(loss.detach())

    def result(self, x, y) -> Run:
        with torch.no_grad():
            out = self.model(x)
        accuracy = (out.argmax(1) == y).float().mean().item() if y.dtype == torch.long else None
        losses = [v.item() for v in self.losses]
        # the median step: a shared machine's stalls and one-time costs do not count
        return Run(1.0 / statistics.median(self.step_seconds), losses[-1], accuracy, losses)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    # disable=None: shown on a terminal only, so logs and CI output stay clean
    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=None if enabled else True, file=sys.stderr)


def compare(name: str, epochs: Optional[int] = None, seed: int = 0, warmup: int = 5, device: str = "cpu",
            compile: bool = False, optimizer_impl: str = "default", progress: bool = False,
            keep_models: Optional[dict] = None) -> Row:
    """Trains the torch model and its fastact twin (and, with compile, a
    torch.compile'd copy of the torch step) in lockstep: they take turns
    step by step, first mover rotating, so warm-up and a shared machine's
    drift fall on all alike; each is timed on its own steps."""
    tutorial = TUTORIALS[name]
    dev = torch.device(device)
    torch.manual_seed(seed)
    reference = tutorial.build().to(dev)
    x, y = (t.to(dev) for t in tutorial.data())
    kinds = ["torch", "fastact"] + (["compiled"] if compile else [])
    if compile:
        torch.compiler.reset()  # each model's step traced afresh, not against another model's cache limit

    def model_for(kind):
        model = copy.deepcopy(reference)
        return fastact.fuse(model) if kind == "fastact" else model

    first = next(batches(x, y, tutorial.batch))
    for kind in kinds:  # untimed warm-up (and compilation)
        trainer = Trainer(model_for(kind), tutorial, kind, optimizer_impl)
        for _ in range(warmup):
            trainer.step(*first)
    trainers = [Trainer(model_for(kind), tutorial, kind, optimizer_impl) for kind in kinds]
    n_epochs = epochs or tutorial.epochs
    n_batches = sum(1 for _ in batches(x, y, tutorial.batch))
    turn = 0
    with _progress(n_epochs * n_batches, name, progress) as bar:
        for _ in range(n_epochs):
            for xb, yb in batches(x, y, tutorial.batch):
                order = trainers[turn % len(trainers):] + trainers[:turn % len(trainers)]
                for t in order:
                    t.step(xb, yb)
                turn += 1
                bar.update()
    ran = {t.kind: t.result(x, y) for t in trainers}
    if keep_models is not None:
        keep_models[name] = {t.kind: t.model for t in trainers} | {"data": (x, y)}
    matching, agree = agreement(ran["torch"], ran["fastact"])
    row = Row(name, ran["torch"], ran["fastact"], ran["fastact"].steps_per_s / ran["torch"].steps_per_s,
              matching, agree)
    if compile:
        row.compiled = ran["compiled"]
        row.speedup_vs_compiled = ran["fastact"].steps_per_s / ran["compiled"].steps_per_s
    return row


def format_table(rows: List[Row]) -> str:
    with_compile = any(r.compiled is not None for r in rows)
    head = f"{'model':16s} {'torch steps/s':>13s} {'fastact steps/s':>15s} {'speedup':>7s} "
    if with_compile:
        head += f"{'compiled steps/s':>16s} {'vs compiled':>11s} "
    head += (f"{'loss torch':>10s} {'loss fastact':>12s} {'acc torch':>9s} {'acc fastact':>11s} "
             f"{'same to 1e-4':>12s} agree")
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = (f"{r.torch.accuracy:9.3f} {r.fastact.accuracy:11.3f}" if r.torch.accuracy is not None
               else f"{'-':>9s} {'-':>11s}")
        line = f"{r.model:16s} {r.torch.steps_per_s:13.0f} {r.fastact.steps_per_s:15.0f} {r.speedup:7.2f} "
        if with_compile:
            line += f"{r.compiled.steps_per_s:16.0f} {r.speedup_vs_compiled:11.2f} "
        line += (f"{r.torch.final_loss:10.4f} {r.fastact.final_loss:12.4f} {acc} "
                 f"{f'{r.matching_steps}/{len(r.torch.losses)}':>12s} {'yes' if r.agree else 'NO'}")
        lines.append(line)
    return "\n".join(lines)


def plot(rows: List[Row], models: dict, path: str) -> None:
    """Loss curves (torch and fastact) per model and, for 2-D inputs, the
    fastact model's decision regions over the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3.2 * len(rows)), squeeze=False)
    for (ax_loss, ax_map), row in zip(axes, rows):
        for run, label in ((row.torch, "torch"), (row.fastact, "fastact")):
            ax_loss.plot(run.losses, label=f"{label} ({run.steps_per_s:.0f} steps/s)", alpha=0.8)
        ax_loss.set_title(f"{row.model}: loss, speedup {row.speedup:.2f}x")
        ax_loss.set_xlabel("step")
        ax_loss.legend()
        x, y = models[row.model]["data"]
        model = models[row.model]["fastact"]
        if x.shape[1] != 2 or y.dtype != torch.long:
            ax_map.axis("off")
            continue
        x, y = x.cpu(), y.cpu()
        lo, hi = x.min(0).values - 0.3, x.max(0).values + 0.3
        gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200), indexing="xy")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        with torch.no_grad():
            regions = model(grid.to(next(model.parameters()).device)).argmax(1).cpu().reshape(gx.shape)
        ax_map.contourf(gx, gy, regions, alpha=0.3, cmap="viridis")
        ax_map.scatter(x[:, 0], x[:, 1], c=y, s=6, cmap="viridis")
        ax_map.set_title(f"{row.model}: fastact model's decision regions")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---- distributed (torchrun) ---------------------------------------------


def _train(name: str, epochs: Optional[int], fast: bool, seed: int, device: str,
           wrap: Callable[[nn.Module], nn.Module] = lambda m: m,
           share: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> Tuple[nn.Module, Trainer, Data]:
    """Builds `name` (fused if fast), wraps it, and trains it on share(batch) of every batch."""
    tutorial = TUTORIALS[name]
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = tutorial.build().to(dev)
    if fast:
        model = fastact.fuse(model)
    trainer = Trainer(wrap(model), tutorial, "fastact" if fast else "torch")
    x, y = (t.to(dev) for t in tutorial.data())
    for _ in range(tutorial.epochs if epochs is None else epochs):
        for xb, yb in batches(x, y, tutorial.batch):
            trainer.step(share(xb), share(yb))
    return model, trainer, (x, y)


def _state(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def ddp_train(name: str, epochs: Optional[int] = None, fast: bool = True, seed: int = 0,
              device: str = "cpu") -> Tuple[Dict[str, torch.Tensor], Run]:
    """Trains `name` under DistributedDataParallel in an initialized process
    group: the same initial weights on every rank (DDP broadcasts rank 0's),
    each rank on its contiguous share of every batch. Mean-reduced losses
    and DDP's gradient averaging give the full batch's gradient, so the
    parameters follow a single process trained on the whole batch.
    Returns the final parameters and this rank's run."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world = dist.get_rank(), dist.get_world_size()
    dev = torch.device(device)

    def share(t):
        size = (len(t) + world - 1) // world
        return t[rank * size:(rank + 1) * size]

    def wrap(model):
        return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    model, trainer, data = _train(name, epochs, fast, seed, device, wrap, share)
    return _state(model), trainer.result(*data)


def single_process_train(name: str, epochs: Optional[int] = None, fast: bool = True,
                         seed: int = 0) -> Dict[str, torch.Tensor]:
    """The same training as ddp_train in one process on the full batches."""
    return _state(_train(name, epochs, fast, seed, "cpu")[0])


def _main_distributed(args, names: List[str]) -> int:
    import torch.distributed as dist

    device = args.device
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        lines = []
        for name in names:
            runs = {}
            for fast in (False, True):
                params, runs[fast] = ddp_train(name, args.epochs, fast, device=device)
                if fast and args.save and rank == 0:
                    _save(params, args.save, name)
            lines.append(f"{name:16s} {runs[False].steps_per_s:13.0f} {runs[True].steps_per_s:15.0f} "
                         f"{runs[True].steps_per_s / runs[False].steps_per_s:7.2f} "
                         f"{runs[False].final_loss:10.4f} {runs[True].final_loss:12.4f}")
        if rank == 0:
            print(f"DistributedDataParallel, {world} processes ({dist.get_backend()}), "
                  f"{torch.get_num_threads()} threads each, fastact backend: {fastact.backend().name}")
            head = (f"{'model':16s} {'torch steps/s':>13s} {'fastact steps/s':>15s} {'speedup':>7s} "
                    f"{'loss torch':>10s} {'loss fastact':>12s}")
            print("\n".join([head, "-" * len(head)] + lines))
    finally:
        dist.destroy_process_group()
    return 0


# Where a step's time goes: profiler self time by ATen/fastact op, grouped.
_GROUPS = (("matmul (MKL, shared)", ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul")),
           ("optimizer (shared)", ("Optimizer.", "aten::_fused_", "aten::_foreach_", "aten::add_", "aten::mul_",
                                   "aten::addcmul_", "aten::addcdiv_", "aten::sqrt", "aten::lerp_", "aten::div_")),
           ("fastact ops", ("fastact::",)),
           ("loss/activation (torch)", ("aten::relu", "aten::leaky_relu", "aten::sigmoid", "aten::tanh",
                                        "aten::threshold_backward", "aten::_log_softmax", "aten::nll_loss",
                                        "aten::mse_loss")),
           ("autograd bookkeeping", ("autograd::engine", "torch::autograd::AccumulateGrad", "aten::sum", "aten::t",
                                     "aten::zero_", "aten::fill_", "aten::ones_like", "aten::empty", "aten::detach")))


def profile(name: str, steps: int = 200, optimizer_impl: str = "default") -> str:
    """A breakdown of one training step's time, torch and fastact side by
    side: microseconds per step by group of ops (profiler self times; the
    profiler's own overhead inflates small ops a little, alike for both)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    tutorial = TUTORIALS[name]
    torch.manual_seed(0)
    reference = tutorial.build()
    xb, yb = next(batches(*tutorial.data(), tutorial.batch))
    table = {}
    for kind in ("torch", "fastact"):
        model = fastact.fuse(copy.deepcopy(reference)) if kind == "fastact" else copy.deepcopy(reference)
        trainer = Trainer(model, tutorial, kind, optimizer_impl)
        for _ in range(20):
            trainer.step(xb, yb)
        with torch_profile(activities=[ProfilerActivity.CPU]):  # the profiler's own first-use costs
            trainer.step(xb, yb)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                trainer.step(xb, yb)
        groups = {g: 0.0 for g, _ in _GROUPS} | {"other": 0.0}
        for event in prof.key_averages():
            group = next((g for g, prefixes in _GROUPS if event.key.startswith(prefixes)), "other")
            groups[group] += event.self_cpu_time_total / steps
        groups["step, unprofiled (median)"] = 1e6 * statistics.median(trainer.step_seconds[:20])
        table[kind] = groups
    lines = [f"{name}: microseconds per training step", f"{'':28s} {'torch':>8s} {'fastact':>8s}"]
    for group in table["torch"]:
        lines.append(f"{group:28s} {table['torch'][group]:8.1f} {table['fastact'][group]:8.1f}")
    return "\n".join(lines)


def _save(state_dict: Dict[str, torch.Tensor], directory: str, name: str) -> None:
    os.makedirs(directory, exist_ok=True)
    torch.save(state_dict, os.path.join(directory, f"{name}.pt"))


def main(args) -> int:
    names = args.model or [n for n in TUTORIALS]
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"fastact train: --device {args.device} asked for, but this torch ({torch.__version__}) "
              "has no usable CUDA device", file=sys.stderr)
        return 2
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return _main_distributed(args, names)
    if args.profile:
        for name in names:
            print(profile(name, optimizer_impl=args.optimizer_impl), end="\n\n")
        return 0
    rows, models = [], {}
    from tqdm.auto import tqdm

    show = not args.no_progress
    for name in tqdm(names, desc="models", unit="model", disable=None if show else True, file=sys.stderr):
        rows.append(compare(name, args.epochs, device=args.device, compile=args.compile,
                            optimizer_impl=args.optimizer_impl, progress=show,
                            keep_models=models if (args.plot or args.save) else None))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"optimizers: {args.optimizer_impl} implementation (same on every side), "
          f"fastact backend: {fastact.backend().name}")
    print(format_table(rows))
    if args.save:
        for name in names:
            _save(models[name]["fastact"].state_dict(), args.save, name)
    if args.plot:
        plot(rows, models, args.plot)
        print(f"plot written to {args.plot}")
    if args.json:
        def run_dict(run):
            return None if run is None else {k: v for k, v in asdict(run).items() if k != "losses"}
        with open(args.json, "w") as f:
            json.dump([{**asdict(r), "torch": run_dict(r.torch), "fastact": run_dict(r.fastact),
                        "compiled": run_dict(r.compiled)} for r in rows], f, indent=1)
    return 0 if all(r.agree for r in rows) else 1


def add_arguments(parser) -> None:
    parser.add_argument("--model", nargs="*", choices=list(TUTORIALS), help="models to train (default: all)")
    parser.add_argument("--epochs", type=int, help="override each model's epochs")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--compile", action="store_true",
                        help="also train a torch.compile'd copy of the torch step (compiles first: slow)")
    parser.add_argument("--optimizer-impl", choices=["default", "foreach", "fused"], default="default",
                        help="torch's optimizer implementation, the same for every side (default: the "
                             "notebooks' own, i.e. torch's default)")
    parser.add_argument("--plot", help="write loss curves and decision regions to this image")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--save", metavar="DIR", help="write each fastact-trained model's state_dict to DIR/<model>.pt")
    parser.add_argument("--profile", action="store_true",
                        help="instead of training: where a step's time goes, by group of ops, torch and fastact")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
