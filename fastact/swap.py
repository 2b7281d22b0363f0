"""fastact.swap: put fastact modules in place of the torch ones they mirror."""
from torch import nn

from fastact.modules import REPLACEMENTS

__all__ = ["swap"]


def _replacement(module: nn.Module, memo: dict) -> nn.Module:
    # Exact types only: a user's subclass of nn.ReLU may override forward.
    cls = REPLACEMENTS.get(type(module))
    if cls is None:
        return module
    if id(module) not in memo:
        new = cls.__new__(cls)
        # The same settings, training flag and hooks; dicts copied so the old
        # module and the new one do not share later registrations.
        new.__dict__.update({k: (v.copy() if isinstance(v, dict) else v) for k, v in module.__dict__.items()})
        memo[id(module)] = new
    return memo[id(module)]


def swap(model: nn.Module) -> nn.Module:
    """Replace every torch.nn module fastact implements, anywhere in `model`'s
    tree, with the fastact module carrying the same settings (a module shared
    by several parents stays shared). Modifies `model` in place and returns
    it; if `model` itself is replaceable, returns its replacement."""
    memo: dict = {}
    root = _replacement(model, memo)
    if root is not model:
        return root
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None:
                new = _replacement(child, memo)
                if new is not child:
                    parent._modules[name] = new
    return model
