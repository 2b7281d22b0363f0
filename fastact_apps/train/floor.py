"""The floor of a fastact training step: the same math as the step (the
layer chain's forward, loss, gradient and backward in one op, the
optimizer's one call) as direct calls of the ops (torch.ops.fastact) on
plain tensors: no module calls, no optimizer bookkeeping, no Python checks.
What the step costs above it is Python overhead."""
import statistics
import time
from typing import Optional

import torch
from torch import nn

import fastact

def _layers(model: nn.Module):
    """The model's chains in order as (weights, biases, activation codes,
    slopes), merged, or None where it is not a Sequential of chains only."""
    if not isinstance(model, nn.Sequential):
        return None
    ws, bs, codes, slopes = [], [], [], []
    for m in model:
        if isinstance(m, fastact.LinearChain):
            if m.active_dropouts():
                return None  # the step splits the chain there: no one op
            w, b, acts, s = m.chain_arguments()
            ws, bs, codes, slopes = ws + w, bs + b, codes + [fastact.functional.LINEAR_ACTIVATIONS.index(a) for a in acts], slopes + s
        elif not isinstance(m, (fastact.Chained, fastact.Fused, fastact.ChainedDropout)):
            return None
    return (ws, bs, codes, slopes) if ws else None


def _loss_arguments(criterion):
    """The chain op's loss arguments (code, class weight, reduction,
    ignore_index, label_smoothing) for the tutorials' default losses."""
    if isinstance(criterion, nn.CrossEntropyLoss) and criterion.weight is None and criterion.reduction == "mean":
        return (0, None, 1, criterion.ignore_index, criterion.label_smoothing)
    if isinstance(criterion, nn.MSELoss) and criterion.reduction == "mean":
        return (1, None, 1, -100, 0.0)
    return None


def step_floor(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, x, y,
               repeats: int = 200) -> Optional[float]:
    """Median seconds of the step's C++ calls alone, or None where the model,
    loss or optimizer is not one this floor covers (C++ backend, CPU)."""
    layers = _layers(model)
    if layers is None or fastact.backend().name != "cpp" or x.device.type != "cpu" or len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    if type(optimizer) not in (fastact.optim.SGD, fastact.optim.Adam, fastact.optim.AdamW):
        return None
    if group["momentum" if isinstance(optimizer, fastact.optim.SGD) else "amsgrad"]:
        return None
    ops = torch.ops.fastact
    loss_arguments = _loss_arguments(criterion)
    if loss_arguments is None:
        return None
    with torch.no_grad():  # copies: the real model and optimizer are left as they are
        ws = [w.detach().clone() for w in layers[0]]
        bs = [b.detach().clone() if b is not None else None for b in layers[1]]
        codes, slopes = layers[2], layers[3]
        params = [t for pair in zip(ws, bs) for t in pair if t is not None]
        needs = [0] + [1 if t is not None else 0 for pair in zip(ws, bs) for t in pair]
        states = [[torch.zeros_like(p) for p in params] for _ in range(2)]
        steps = [torch.tensor(0.0) for _ in params]

        def one_step():
            _, grads = ops._linear_chain_loss_grad(x, y, ws, bs, codes, slopes, needs, *loss_arguments)
            grads = [g for g, need in zip(grads[1:], needs[1:]) if need]
            if isinstance(optimizer, fastact.optim.SGD):
                ops._sgd_step_(params, grads, [], group["lr"], group["weight_decay"], 0.0, 0.0, False,
                               group["maximize"], False)
            else:
                beta1, beta2 = group["betas"]
                ops._adam_step_(params, grads, states[0], states[1], [], steps, group["lr"], beta1, beta2,
                                group["weight_decay"], group["eps"], False, group["maximize"],
                                group["decoupled_weight_decay"])

        for _ in range(10):
            one_step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            one_step()
            times.append(time.perf_counter() - start)
    return statistics.median(times)
