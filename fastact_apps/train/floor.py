"""The floor of a fastact training step: the same math as the step (the
layer chain forward, the fused loss with its gradient, the chain's
backward, the optimizer's one call) as direct C++ calls on plain tensors:
no module calls, no autograd graph or engine, no optimizer bookkeeping.
What the step costs above it is Python and autograd overhead."""
import statistics
import time
from typing import Optional

import torch
from torch import nn

import fastact
from fastact import _spec
from fastact._backends import cpp


def _layers(model: nn.Module):
    """The model's layers in order as (weight, bias, activation code, slope),
    or None where it is not a Sequential of fused layers only."""
    if not isinstance(model, nn.Sequential):
        return None
    layers = []
    for m in model:
        if isinstance(m, fastact.LinearChain):
            members = (m,) + m.rest
        elif isinstance(m, (fastact.Chained, fastact.Fused)):
            continue
        elif isinstance(m, fastact.FusedLinear):
            members = (m,)
        else:
            return None
        layers += [(f.weight, f.bias, _spec.LINEAR_ACTIVATIONS.index(f.activation), f.negative_slope)
                   for f in members]
    return layers or None


def _loss_and_grad(criterion, out, y):
    if isinstance(criterion, nn.CrossEntropyLoss):
        return cpp._C.cross_entropy(out, y, None, 1, -100, 0.0, True)
    if isinstance(criterion, nn.MSELoss):
        loss = torch.ops.aten.mse_loss(out, y, 1)
        return loss, torch.ops.aten.mse_loss_backward(torch.ones_like(loss), out, y, 1)
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
    with torch.no_grad():  # copies: the real model and optimizer are left as they are
        ws = [w.detach().clone() for w, _, _, _ in layers]
        bs = [b.detach().clone() if b is not None else None for _, b, _, _ in layers]
        codes, slopes = [c for _, _, c, _ in layers], [s for _, _, _, s in layers]
        params = [t for pair in zip(ws, bs) for t in pair if t is not None]
        needs = [0] + [1 if t is not None else 0 for pair in zip(ws, bs) for t in pair]
        states = [[torch.zeros_like(p) for p in params] for _ in range(2)]
        steps = [torch.tensor(0.0) for _ in params]
        if _loss_and_grad(criterion, model(x), y) is None:
            return None

        def one_step():
            outs = cpp._C._linear_chain(x, ws, bs, codes, slopes)
            _, grad = _loss_and_grad(criterion, outs[-1], y)
            grads = cpp._C._linear_chain_backward(grad, x, outs, ws, codes, slopes, needs)
            grads = [g for g, need in zip(grads[1:], needs[1:]) if need]
            if isinstance(optimizer, fastact.optim.SGD):
                cpp._C._sgd_step_(params, grads, [], group["lr"], group["weight_decay"], 0.0, 0.0, False,
                                  group["maximize"], False)
            else:
                beta1, beta2 = group["betas"]
                cpp._C._adam_step_(params, grads, states[0], states[1], [], steps, group["lr"], beta1, beta2,
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
