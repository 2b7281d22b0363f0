"""Handles to the fastact ops of the backend that runs them, in two sets:

- `traced`: what torch.compile and torch.export trace (torch OpOverloads);
- `eager`: what eager calls use: on the C++ backend, fastact._C's direct
  bindings of the same ops where it has them (unboxed calls into the
  dispatcher, about 1 us cheaper per call than a torch.ops call).

Backends: "cpp" (torch.ops.fastact, the compiled extension) and "numba"
(torch.ops.fastact_numba, fastact/numba_backend). The choice is made at
import from FASTACT_BACKEND (auto, cpp, numba; auto = cpp when fastact._C
loads, else numba with a warning) and can be changed with
fastact.set_backend(). Without either, every handle raises one clear error.
"""
import os
import warnings
from types import SimpleNamespace

import torch

from fastact import _loader

_NAMES = (
    "relu", "relu_", "relu_backward",
    "leaky_relu", "leaky_relu_", "leaky_relu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "gelu", "gelu_backward", "selu", "selu_", "selu_backward",
    "softmax", "softmax_backward",
    "log_softmax", "log_softmax_backward",
    "cross_entropy", "binary_cross_entropy_with_logits",
    "linear_act",
)
BACKENDS = ("cpp", "numba")

current = "unavailable"  # the backend the handles below point to
why = ""  # and the reason it was chosen


def _unavailable(name, reason):
    def op(*args, **kwargs):
        raise RuntimeError(f"fastact.{name}: no fastact backend is available: {reason}. Build the C++ extension "
                           "against your torch with `pip install --no-build-isolation .` from the fastact source "
                           "tree, or install numba for the Numba backend")

    return op


def _numba_error():
    try:
        import numba  # noqa: F401
    except ImportError as e:
        return e
    return None


def use(name: str, reason: str = "") -> None:
    """Point the handles at backend `name` ("cpp" or "numba")."""
    global traced, eager, current, why
    if name == "cpp":
        if _loader.skipped() and _loader.load():  # FASTACT_BACKEND=numba left it unloaded; load it now
            from fastact import _fake

            _fake.register()
        if not _loader.has_ops():
            raise RuntimeError(f"fastact: the C++ backend is not available: fastact._C did not load "
                               f"({_loader.load_error!r}); build it with `pip install --no-build-isolation .`")
        traced = SimpleNamespace(**{n: getattr(torch.ops.fastact, n).default for n in _NAMES})
        eager = SimpleNamespace(**{n: getattr(_loader._C, n, getattr(traced, n)) for n in _NAMES})
    elif name == "numba":
        error = _numba_error()
        if error is not None:
            raise RuntimeError(f"fastact: the Numba backend needs numba ({error!r}); pip install numba")
        from fastact.numba_backend import registry

        traced = eager = registry.load(_NAMES)
    else:
        raise ValueError(f"fastact: unknown backend {name!r}; choose one of {BACKENDS}")
    if not reason:
        reason = f"chosen with fastact.set_backend({name!r})"
        if name == "cpp":
            reason += f"; fastact._C loaded from {_loader._C.__file__}"
    current, why = name, reason


def _choose_at_import() -> None:
    global traced, eager, current, why
    requested = os.environ.get("FASTACT_BACKEND", "auto").lower()
    if requested not in ("auto",) + BACKENDS:
        warnings.warn(f"FASTACT_BACKEND={requested!r} is not one of auto, cpp, numba; using auto")
        requested = "auto"
    if requested == "numba" or (requested == "auto" and not _loader.has_ops()):
        if requested == "auto":
            reason = f"fastact._C could not be loaded ({_loader.load_error}); using the Numba backend"
        else:
            reason = "FASTACT_BACKEND=numba"
        try:
            use("numba", reason)
        except RuntimeError as e:
            traced = eager = SimpleNamespace(**{n: _unavailable(n, f"{reason}, but {e}") for n in _NAMES})
            current, why = "unavailable", f"{reason}, but {e}"
            return
        if requested == "auto":
            warnings.warn(f"fastact: the C++ extension fastact._C could not be loaded ({_loader.load_error}); "
                          "falling back to the slower Numba backend. Build the extension against your torch with "
                          "`pip install --no-build-isolation .` from the fastact source tree.", stacklevel=3)
        return
    if _loader.has_ops():
        use("cpp", f"fastact._C loaded from {_loader._C.__file__}")
        return
    traced = eager = SimpleNamespace(**{n: _unavailable(n, f"fastact._C did not load: {_loader.load_error!r}")
                                        for n in _NAMES})
    current, why = "unavailable", f"fastact._C did not load: {_loader.load_error!r}"


_choose_at_import()
