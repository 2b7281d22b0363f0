"""fastact.TrainStep: a training step without the autograd engine.

    model = fastact.fuse(model)
    step = fastact.TrainStep(model, criterion, optimizer)
    for x, y in batches:
        loss = step(x, y)

Each call is the step every tutorial writes, and equals it:

    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()

Where the model is one chain (an nn.Sequential that fastact.fuse turned into
a LinearChain and its Chained and Fused placeholders) and the criterion is
cross entropy or MSE, the forward, the loss, its gradient and the backward
are one C++ op that builds no autograd graph
(torch.ops.fastact._linear_chain_loss_grad). Its gradients go to each
parameter's .grad as loss.backward() would put them there (set, or added to
a gradient the optimizer did not zero), and the optimizer steps as always
(fastact.optim: one more C++ call). On CPU, with every layer at most 64
features wide (float, double), the op is one kernel over blocks of rows
held feature-major: losses and gradients within float rounding of the step
above (sums over rows run in another order; tests/test_train_step.py bounds
them). Elsewhere it is the chain's and the loss's ops in turn, the same
values as the step above on the same fused model.

Everything else takes the step above: another model or loss, reduction='none',
hooks (module, forward or tensor hooks anywhere in the step), a parameter
used twice or not contiguous, an input or target that needs a gradient,
autocast, grad mode off, torch.compile tracing, a torch function
mode or tensor subclass, and the Numba backend.
"""
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module
from torch.overrides import has_torch_function_variadic

from fastact import _backends, _checks, _spec, modules

__all__ = ["TrainStep"]

_REDUCTIONS = {"mean": _spec.REDUCTION_MEAN, "sum": _spec.REDUCTION_SUM}
_CROSS_ENTROPY, _MSE = (_spec.CHAIN_LOSSES.index(name) for name in ("cross_entropy", "mse_loss"))


def _global_hooks() -> bool:
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_backward_hooks or _module._global_backward_pre_hooks)


class TrainStep:
    r"""TrainStep(model, criterion, optimizer): a callable training step,
    step(input, target) -> the loss (detached), equal to

        optimizer.zero_grad(); loss = criterion(model(input), target)
        loss.backward(); optimizer.step()

    without the autograd engine where the model is one fastact.fuse'd chain
    and the criterion nn.CrossEntropyLoss or nn.MSELoss (see the module's
    docstring for what takes torch's path instead). Any optimizer works;
    fastact.optim's step is one C++ call."""

    def __init__(self, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer

    def __repr__(self) -> str:
        return (f"TrainStep(model={type(self.model).__name__}, criterion={type(self.criterion).__name__}, "
                f"optimizer={type(self.optimizer).__name__})")

    def __call__(self, input: Tensor, target: Tensor) -> Tensor:
        chain = self._chain_arguments(input, target)
        if chain is None:
            return self.autograd_step(input, target)
        params, arguments = chain
        self.optimizer.zero_grad()
        loss, grads = _backends.cpp._C._linear_chain_loss_grad(input, target, *arguments)
        for p, g in zip(params, grads[1:]):
            if p is None or not p.requires_grad:
                continue
            if p.grad is None:
                p.grad = g
            else:  # a parameter zero_grad left alone: accumulated, as backward does (in place)
                p.grad.add_(g)
        self.optimizer.step()
        return loss

    def autograd_step(self, input: Tensor, target: Tensor) -> Tensor:
        """The step through autograd, what __call__ equals."""
        self.optimizer.zero_grad()
        loss = self.criterion(self.model(input), target)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _chain_arguments(self, input: Tensor, target: Tensor):
        """(parameters in the op's gradient order, the op's arguments after
        input and target), or None where the step must go through autograd."""
        if (_backends.current != "cpp" or not torch.is_grad_enabled() or input.requires_grad
                or target.requires_grad or has_torch_function_variadic(input, target)
                or torch.compiler.is_dynamo_compiling()
                or torch.is_autocast_enabled(input.device.type) or _global_hooks()
                or input.layout != torch.strided or input.dim() == 0):
            return None
        layers = self._layers()
        loss = self._loss(input, target, layers) if layers is not None else None
        if loss is None:
            return None
        weights, biases, codes, slopes, needs, params = [], [], [], [], [0], []
        for layer in layers:
            # through _parameters: Module.__getattr__ costs more than the rest of the loop
            weight, bias = layer._parameters["weight"], layer._parameters["bias"]
            for p in (weight, bias):
                params.append(p)
                if p is None:
                    needs.append(0)
                    continue
                if p.requires_grad and (p._backward_hooks or p._post_accumulate_grad_hooks or not p.is_contiguous()
                                        or has_torch_function_variadic(p)):
                    return None
                needs.append(1 if p.requires_grad else 0)
            weights.append(weight)
            biases.append(bias)
            codes.append(_checks.linear_activation_code(layer.activation))
            slopes.append(layer.negative_slope)
        if len({id(p) for p in params if p is not None}) != sum(p is not None for p in params):
            return None  # a parameter used twice: backward sums its gradients in its own order
        return params, (weights, biases, codes, slopes, needs, *loss)

    def _layers(self) -> Optional[list]:
        """The chain's layers in order, or None where the model is not one chain."""
        model = self.model
        if type(model) is not nn.Sequential or modules.has_hooks(model):
            return None
        layers = None
        for m in model._modules.values():
            if modules.has_hooks(m):
                return None
            kind = type(m)
            if kind is modules.LinearChain and layers is None:
                layers = [m, *m.rest]
            elif kind is not modules.Chained and kind is not modules.Fused:
                return None
        return layers

    def _loss(self, input: Tensor, target: Tensor, layers) -> Optional[tuple]:
        """(loss code, class weight, reduction, ignore_index, label_smoothing)
        as the op takes them, or None where the criterion or its arguments
        are not ones the op takes as the criterion would."""
        criterion = self.criterion
        kind = type(criterion)
        reduction = _REDUCTIONS.get(getattr(criterion, "reduction", None))
        if reduction is None or modules.has_hooks(criterion):
            return None
        classes = layers[-1].out_features
        if kind is nn.CrossEntropyLoss or kind is modules.CrossEntropyLoss:
            weight = criterion.weight
            if input.dim() != 2 or criterion.label_smoothing > 1.0 or (
                    weight is not None and (weight.dtype != input.dtype or weight.requires_grad)):
                return None
            if target.dtype is torch.int64:
                if target.dim() != 1 or target.size(0) != input.size(0):
                    return None
            elif (target.dtype != input.dtype or target.shape != (input.size(0), classes)
                  or criterion.ignore_index >= 0):
                return None
            return (_CROSS_ENTROPY, weight, reduction, criterion.ignore_index, float(criterion.label_smoothing))
        if kind is nn.MSELoss:
            if target.dtype != input.dtype or target.shape != input.shape[:-1] + (classes,):
                return None
            return (_MSE, None, reduction, -100, 0.0)
        return None
