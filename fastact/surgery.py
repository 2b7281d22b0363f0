"""Model surgery: fastact.swap puts fastact modules in place of the torch
ones they mirror; fastact.fuse swaps, then merges each Linear with the
activation after it. Both rebuild modules with modules.clone_as, so the new
ones carry the old ones' Parameters, settings and hooks."""
from typing import Dict, Optional, Tuple

from torch import nn

from fastact import _spec, modules
from fastact.modules import REPLACEMENTS, clone_as, has_hooks

__all__ = ["swap", "fuse", "summary"]


def _replacement(module: nn.Module, memo: dict) -> nn.Module:
    # Exact types only: a user's subclass of nn.ReLU may override forward.
    cls = REPLACEMENTS.get(type(module))
    if cls is None:
        return module
    if id(module) not in memo:
        memo[id(module)] = clone_as(module, cls)
    return memo[id(module)]


def swap(model: nn.Module) -> nn.Module:
    """Replace every torch.nn module fastact implements, anywhere in `model`'s
    tree, with the fastact module carrying the same settings (a module shared
    by several parents stays shared). Modifies `model` in place and returns
    it, `model` itself included: `fastact.swap(criterion)` turns an
    nn.CrossEntropyLoss into fastact's without an assignment (a fastact module
    is its torch class's subclass with the same state, so the object changes
    class and keeps everything else). fastact.summary(model) shows what
    changed."""
    memo: dict = {}
    cls = REPLACEMENTS.get(type(model))
    if cls is not None:
        model.__class__ = cls
        return model
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None:
                new = _replacement(child, memo)
                if new is not child:
                    parent._modules[name] = new
    return model


def _activation_of(module: nn.Module) -> Optional[Tuple[str, float]]:
    """(name, negative_slope) for an activation a FusedLinear can apply."""
    kind = type(module)
    if kind in (nn.ReLU, modules.ReLU):
        return "relu", 0.0
    if kind in (nn.LeakyReLU, modules.LeakyReLU):
        return "leaky_relu", module.negative_slope
    if kind in (nn.Sigmoid, modules.Sigmoid):
        return "sigmoid", 0.0
    if kind in (nn.Tanh, modules.Tanh):
        return "tanh", 0.0
    if kind in (nn.GELU, modules.GELU):
        return ("gelu_tanh" if module.approximate == "tanh" else "gelu"), 0.0
    if kind is nn.SiLU:
        return "silu", 0.0
    if kind is nn.ELU:
        return "elu", module.alpha
    if kind in (nn.SELU, modules.SELU):
        return "selu", 0.0
    if kind is nn.Softplus and module.threshold == _spec.SOFTPLUS_THRESHOLD:
        return "softplus", module.beta
    return None


def fuse(model: nn.Module, chain: bool = True) -> nn.Module:
    """fastact.swap(model), then inside every nn.Sequential (exact type: a
    subclass may have its own forward) replace each nn.Linear followed by
    ReLU, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, ELU, SELU or Softplus (its
    default threshold, 20) with one FusedLinear applying both, and
    the activation with a Fused placeholder; a Linear followed by anything
    else becomes a FusedLinear without activation (one autograd node instead
    of three). Layer by layer (chain=False), values and gradients stay
    bit-identical to the unfused model.

    chain=True (the default) goes further: each run of such layers in a row
    (one layer or more) becomes one op and one autograd node (LinearChain, with
    the run's other layers left in place as Chained), whose backward computes
    every layer's gradients in one call; small layers (feature sizes up to
    64, float and double, CPU) then use fastact's own matmul, within float
    rounding of torch's (fastact.functional.fused_linear_chain). Not chained:
    a layer that appears more than once in the model.

    Parameters stay the same nn.Parameter objects, so an optimizer built
    before fuse keeps working, and state_dict keys do not change. Layers with
    hooks are left alone. Modifies `model` in place and returns it."""
    model = swap(model)
    memo: Dict[int, nn.Module] = {}  # a Linear shared by several parents stays shared

    def fused(linear: nn.Linear, activation: str, slope: float) -> nn.Module:
        key = (id(linear), activation, slope)
        if key not in memo:
            memo[key] = modules.FusedLinear.from_linear(linear, activation, slope)
        return memo[key]

    for parent in list(model.modules()):
        if type(parent) is not nn.Sequential:
            continue
        names = list(parent._modules)
        for i, name in enumerate(names):
            layer = parent._modules[name]
            if type(layer) is not nn.Linear or has_hooks(layer):
                continue
            nxt = parent._modules[names[i + 1]] if i + 1 < len(names) else None
            act = _activation_of(nxt) if nxt is not None and not has_hooks(nxt) else None
            if act is None:
                parent._modules[name] = fused(layer, "none", 0.01)
            else:
                parent._modules[name] = fused(layer, *act)
                parent._modules[names[i + 1]] = modules.Fused(act[0])
    if type(model) is nn.Linear and not has_hooks(model):
        return fused(model, "none", 0.01)
    if chain:
        _chain_runs(model)
    return model


def _chain_runs(model: nn.Module) -> None:
    """Each run of FusedLinear layers in an nn.Sequential (one layer or more),
    with only Fused placeholders and nn.Dropouts between them and each one's
    output the next one's input, becomes a LinearChain and Chained layers
    (the Dropouts ChainedDropout, which the LinearChain applies while they
    drop)."""
    uses: Dict[int, int] = {}
    for m in model.modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1

    def chainable(m) -> bool:
        return type(m) is modules.FusedLinear and uses[id(m)] == 1

    for parent in list(model.modules()):
        if type(parent) is not nn.Sequential:
            continue
        run: list = []  # (name, layer) of the current run
        dropouts: list = []  # (layer index in the run it follows, name, Dropout) of the run
        pending: list = []  # the Dropouts since the run's last layer: the run's if another layer follows
        for name, layer in list(parent._modules.items()) + [(None, None)]:
            if isinstance(layer, modules.Fused) and run and not pending:
                continue
            if type(layer) is nn.Dropout and run and not has_hooks(layer) and uses[id(layer)] == 1:
                pending.append((len(run) - 1, name, layer))
                continue
            if layer is not None and chainable(layer) and (not run or run[-1][1].out_features == layer.in_features):
                run.append((name, layer))
                dropouts += pending
                pending = []
                continue
            if run:
                chained = [modules.clone_as(m, modules.Chained) for _, m in run[1:]]
                for (n, _), c in zip(run[1:], chained):
                    parent._modules[n] = c
                placed = []
                for after, n, d in dropouts:
                    parent._modules[n] = modules.clone_as(d, modules.ChainedDropout)
                    placed.append((after, parent._modules[n]))
                parent._modules[run[0][0]] = modules.LinearChain.from_layers([run[0][1]] + chained, placed)
            run = [(name, layer)] if layer is not None and chainable(layer) else []
            dropouts, pending = [], []


def summary(model: nn.Module) -> str:
    """What swap and fuse made of `model`: each fastact module by its name in
    the tree, and each module fastact implements that runs on torch, with why
    (swap leaves subclasses, which may override forward, alone)."""
    ours, left = [], []
    for name, module in model.named_modules():
        label = name or "(the model itself)"
        kind = type(module)
        if kind.__module__ == modules.__name__:
            detail = module.extra_repr()
            ours.append(f"  {label}: fastact.{kind.__name__}" + (f" ({detail})" if detail else ""))
        elif kind in REPLACEMENTS:
            left.append(f"  {label}: torch {kind.__name__}, not swapped (fastact.swap(model) swaps it)")
        elif isinstance(module, tuple(REPLACEMENTS)):
            base = next(base for base in REPLACEMENTS if isinstance(module, base))
            left.append(f"  {label}: {kind.__name__}, a subclass of nn.{base.__name__}: left to torch "
                        "(its forward may differ)")
    from fastact._backends import backend

    head = (f"fastact.summary: {len(ours)} fastact module(s), {len(left)} that fastact implements left to torch; "
            f"ops run on the {backend().name} backend")
    return "\n".join([head] + ours + left)
