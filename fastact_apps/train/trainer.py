"""Training a tutorial model with stock torch and with fastact in lockstep,
and the table that compares them."""
import copy
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

import fastact
from fastact_apps.train.datasets import Data
from fastact_apps.train.floor import step_floor
from fastact_apps.train.tutorials import TUTORIALS, Tutorial


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
    floor_us: Optional[float] = None  # the fastact step's C++ calls alone (floor.py), microseconds
    torch_self_steps: Optional[int] = None  # matching_steps of torch against itself nudged by an ulp, where asked
    # one epoch of the learner's DataLoader loop (torch) and of TrainStep.epoch (fastact), milliseconds
    torch_epoch_ms: Optional[float] = None
    fastact_epoch_ms: Optional[float] = None

# Two implementations whose arithmetic differs in the last bit (a different
# summation order) track each other for a while, then drift apart where the
# training is chaotic: on the spiral, a ReLU that flips at a kink sends the
# runs on different paths after 70-100 steps. So "agree" asks for the first
# 100 steps to match to 1e-4 and the end to match the way results are read:
# accuracy within 2 points (final loss within 5% for regression). Where the
# first steps part sooner, torch is asked how long it tracks itself when
# every initial weight moves by one ulp: fastact must track torch that long.
AGREE_STEPS, AGREE_RTOL, AGREE_ACCURACY, AGREE_FINAL_RTOL = 100, 1e-4, 0.02, 0.05

def leading_matches(a: List[float], b: List[float]) -> int:
    """How many leading losses agree to AGREE_RTOL."""
    matching = 0
    for x, y in zip(a, b):
        if not math.isclose(x, y, rel_tol=AGREE_RTOL, abs_tol=1e-5):
            break
        matching += 1
    return matching

def agreement(a: Run, b: Run, torch_self_steps: Optional[int] = None) -> Tuple[int, bool]:
    matching = leading_matches(a.losses, b.losses)
    early = matching >= min(AGREE_STEPS, len(a.losses), AGREE_STEPS if torch_self_steps is None else torch_self_steps)
    if a.accuracy is not None:
        late = abs(a.accuracy - b.accuracy) <= AGREE_ACCURACY
    else:
        late = math.isclose(a.final_loss, b.final_loss, rel_tol=AGREE_FINAL_RTOL, abs_tol=1e-5)
    return matching, early and late

def torch_self_matching(tutorial: Tutorial, reference: nn.Module, x, y) -> int:
    """Leading steps (up to AGREE_STEPS) whose losses agree to AGREE_RTOL
    between two torch runs of the tutorial, one with every initial weight
    moved by one ulp: how long torch tracks itself."""
    runs = []
    for nudge in (False, True):
        model = copy.deepcopy(reference)
        if nudge:
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.nextafter(p, torch.full_like(p, math.inf)))
        trainer = Trainer(model, tutorial, "torch")
        steps = 0
        while steps < AGREE_STEPS:
            for xb, yb in batches(x, y, tutorial.batch):
                trainer.step(xb, yb)
                steps += 1
        runs.append([v.item() for v in trainer.losses])
    return leading_matches(*runs)

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

    def __init__(self, model: nn.Module, tutorial: Tutorial, kind: str, optimizer_impl: str = "default",
                 train_step: bool = True):
        self.model = model
        self.kind = kind  # "torch", "fastact" or "compiled"
        self.criterion = fastact.swap(tutorial.loss()) if kind == "fastact" else tutorial.loss()
        self.optimizer = tutorial.make_optimizer(list(model.parameters()), optimizer_impl, ours=kind == "fastact")
        # fastact's side: the whole step as fastact.TrainStep (the same
        # zero_grad, forward, loss, backward and step, without the autograd
        # engine), or (train_step=False) that step written out, through autograd
        self.train_step = fastact.TrainStep(model, self.criterion, self.optimizer) if kind == "fastact" else None
        if not train_step:
            self.train_step = self.train_step.autograd_step if self.train_step else None
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
        if self.train_step is not None:
            loss = self.train_step(xb, yb)
        else:
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

def epoch_times(tutorial: Tutorial, torch_model: nn.Module, fastact_model: nn.Module, x, y, optimizer_impl: str,
                rounds: int = 5) -> Tuple[float, float]:
    """Median seconds of one epoch over DataLoader(TensorDataset(x, y),
    batch_size=the tutorial's batch, shuffle=True): torch's loop (zero_grad,
    forward, loss, backward, step per batch) against fastact's
    TrainStep.epoch over fastact.DataLoader, taking turns, on copies of the
    trained models (the table's runs are left as they are)."""
    from torch.utils.data import DataLoader, TensorDataset

    batch = tutorial.batch or len(x)
    torch_model, fastact_model = copy.deepcopy(torch_model), copy.deepcopy(fastact_model)
    criterion = tutorial.loss()
    opt = tutorial.make_optimizer(list(torch_model.parameters()), optimizer_impl)
    torch_loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)
    ours = fastact.TrainStep(fastact_model, fastact.swap(tutorial.loss()),
                             tutorial.make_optimizer(list(fastact_model.parameters()), optimizer_impl, ours=True))
    loader = fastact.DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)

    def torch_epoch():
        for xb, yb in torch_loader:
            opt.zero_grad()
            criterion(torch_model(xb), yb).backward()
            opt.step()

    times: Dict[str, List[float]] = {"torch": [], "fastact": []}
    for i in range(rounds + 1):  # the first round warms up (and creates the optimizers' state)
        for name, fn in (("torch", torch_epoch), ("fastact", lambda: ours.epoch(loader))):
            start = time.perf_counter()
            fn()
            _synchronize(x.device)
            if i:
                times[name].append(time.perf_counter() - start)
    return statistics.median(times["torch"]), statistics.median(times["fastact"])

def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    # disable=None: shown on a terminal only, so logs and CI output stay clean
    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=None if enabled else True, file=sys.stderr)

def compare(name: str, epochs: Optional[int] = None, seed: int = 0, warmup: int = 5, device: str = "cpu",
            compile: bool = False, optimizer_impl: str = "default", progress: bool = False,
            keep_models: Optional[dict] = None, train_step: bool = True) -> Row:
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
        trainer = Trainer(model_for(kind), tutorial, kind, optimizer_impl, train_step)
        for _ in range(warmup):
            trainer.step(*first)
    trainers = [Trainer(model_for(kind), tutorial, kind, optimizer_impl, train_step) for kind in kinds]
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
    ours = next(t for t in trainers if t.kind == "fastact")
    floor = step_floor(ours.model, ours.criterion, ours.optimizer, *first)
    if keep_models is not None:
        keep_models[name] = {t.kind: t.model for t in trainers} | {"data": (x, y)}
    matching, agree = agreement(ran["torch"], ran["fastact"])
    torch_self = None
    if matching < min(AGREE_STEPS, len(ran["torch"].losses)):
        torch_self = torch_self_matching(tutorial, reference, x, y)
        matching, agree = agreement(ran["torch"], ran["fastact"], torch_self)
    row = Row(name, ran["torch"], ran["fastact"], ran["fastact"].steps_per_s / ran["torch"].steps_per_s,
              matching, agree, floor_us=None if floor is None else floor * 1e6, torch_self_steps=torch_self)
    if compile:
        row.compiled = ran["compiled"]
        row.speedup_vs_compiled = ran["fastact"].steps_per_s / ran["compiled"].steps_per_s
    torch_trained = next(t for t in trainers if t.kind == "torch").model
    torch_epoch, fastact_epoch = epoch_times(tutorial, torch_trained, ours.model, x, y, optimizer_impl)
    row.torch_epoch_ms, row.fastact_epoch_ms = torch_epoch * 1e3, fastact_epoch * 1e3
    return row

def format_table(rows: List[Row]) -> str:
    with_compile = any(r.compiled is not None for r in rows)
    head = (f"{'model':16s} {'torch steps/s':>13s} {'fastact steps/s':>15s} {'speedup':>7s} "
            f"{'fastact us':>10s} {'floor us':>8s} {'torch epoch ms':>14s} {'fastact epoch ms':>16s} "
            f"{'epoch speedup':>13s} ")
    if with_compile:
        head += f"{'compiled steps/s':>16s} {'vs compiled':>11s} "
    head += (f"{'loss torch':>10s} {'loss fastact':>12s} {'acc torch':>9s} {'acc fastact':>11s} "
             f"{'same to 1e-4':>12s} {'torch self':>10s} agree")
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = (f"{r.torch.accuracy:9.3f} {r.fastact.accuracy:11.3f}" if r.torch.accuracy is not None
               else f"{'-':>9s} {'-':>11s}")
        floor = f"{r.floor_us:8.1f}" if r.floor_us is not None else f"{'-':>8s}"
        if r.torch_epoch_ms is not None:
            epoch = (f"{r.torch_epoch_ms:14.3f} {r.fastact_epoch_ms:16.3f} "
                     f"{r.torch_epoch_ms / r.fastact_epoch_ms:13.2f}")
        else:
            epoch = f"{'-':>14s} {'-':>16s} {'-':>13s}"
        line = (f"{r.model:16s} {r.torch.steps_per_s:13.0f} {r.fastact.steps_per_s:15.0f} {r.speedup:7.2f} "
                f"{1e6 / r.fastact.steps_per_s:10.1f} {floor} {epoch} ")
        if with_compile:
            line += f"{r.compiled.steps_per_s:16.0f} {r.speedup_vs_compiled:11.2f} "
        line += (f"{r.torch.final_loss:10.4f} {r.fastact.final_loss:12.4f} {acc} "
                 f"{f'{r.matching_steps}/{len(r.torch.losses)}':>12s} "
                 f"{r.torch_self_steps if r.torch_self_steps is not None else '-':>10} {'yes' if r.agree else 'NO'}")
        lines.append(line)
    return "\n".join(lines)

def save_state(state_dict: Dict[str, torch.Tensor], directory: str, name: str) -> None:
    os.makedirs(directory, exist_ok=True)
    torch.save(state_dict, os.path.join(directory, f"{name}.pt"))
