"""The floor of a fastact training step: the same math as the step (the
layer chain forward, the fused loss with its gradient, the chain's
backward, the optimizer's one call) as direct calls of the ops
(torch.ops.fastact) on plain tensors: no module calls, no autograd graph or
engine, no optimizer bookkeeping. What the step costs above it is Python
and autograd overhead."""
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
            w, b, acts, s = m.chain_arguments()
            ws, bs, codes, slopes = ws + w, bs + b, codes + [fastact.functional.LINEAR_ACTIVATIONS.index(a) for a in acts], slopes + s
        elif not isinstance(m, (fastact.Chained, fastact.Fused)):
            return None
    return (ws, bs, codes, slopes) if ws else None


def _loss_and_grad(criterion, out, y):
    if isinstance(criterion, nn.CrossEntropyLoss):
        return torch.ops.fastact.cross_entropy(out, y, None, 1, -100, 0.0, True)
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
    ops = torch.ops.fastact
    with torch.no_grad():  # copies: the real model and optimizer are left as they are
        ws = [w.detach().clone() for w in layers[0]]
        bs = [b.detach().clone() if b is not None else None for b in layers[1]]
        codes, slopes = layers[2], layers[3]
        params = [t for pair in zip(ws, bs) for t in pair if t is not None]
        needs = [0] + [1 if t is not None else 0 for pair in zip(ws, bs) for t in pair]
        states = [[torch.zeros_like(p) for p in params] for _ in range(2)]
        steps = [torch.tensor(0.0) for _ in params]
        if _loss_and_grad(criterion, model(x), y) is None:
            return None

        def one_step():
            outs = ops._linear_chain(x, ws, bs, codes, slopes)
            _, grad = _loss_and_grad(criterion, outs[-1], y)
            grads = ops._linear_chain_backward(grad, x, outs, ws, codes, slopes, needs)
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
