"""The C++ backend: the one place that loads the compiled extension,
fastact._C, and its table of op handles.

Importing _C registers the fastact ops with torch's dispatcher. A missing or
broken build (no compiler at install time, a torch upgraded since) must not
break `import fastact`: the failure is kept here (`load_error`), reported by
fastact.backend(), and fastact falls back to its Numba backend.
"""
import glob
import json
import os
import warnings
from types import SimpleNamespace

import torch

from fastact import _spec

_C = None
load_error = None
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_record() -> dict:
    """fastact/_build.json, which setup.py writes next to _C: the torch and
    Python it was built against, its CPU kernels, and why it did not build
    if it did not. {} for a tree that was never built."""
    try:
        with open(os.path.join(PACKAGE, "_build.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _reason_not_to_load(record: dict):
    if record.get("error"):
        return ImportError(f"fastact was installed without its C++ extension, which did not build: {record['error']}; "
                           "reinstall with a C++ compiler for the fast path")
    built_for = record.get("torch")
    if built_for and built_for != torch.__version__:
        # another torch's C++ ABI: at best an undefined symbol, at worst a crash
        return ImportError(f"fastact._C was built against torch {built_for}, and this is torch {torch.__version__}: "
                           "reinstall fastact to rebuild it")
    return None


def _unbuilt_source_tree() -> bool:
    """True for a source checkout with no extension built in it: what
    `python -m fastact` in the repository root (without -P) imports instead
    of the installed package."""
    in_a_checkout = os.path.exists(os.path.join(os.path.dirname(PACKAGE), "setup.py"))
    return in_a_checkout and not glob.glob(os.path.join(PACKAGE, "_C.*"))


def load() -> bool:
    """Import fastact._C (once); True when its ops are registered. When it
    cannot, load_error says why and what to do, in one sentence."""
    global _C, load_error
    if _C is not None:
        return True
    if _unbuilt_source_tree():
        load_error = ImportError(
            f"this is fastact's source tree ({PACKAGE}), imported instead of the installed fastact and without "
            "its compiled extension: run with `python -P` or from another directory (or build in place: "
            "`python setup.py build_ext --inplace`)")
        return False
    refusal = _reason_not_to_load(build_record())
    if refusal is not None:
        load_error = refusal
        return False
    try:
        from fastact import _C as module
    except (ImportError, OSError) as e:  # OSError: an undefined symbol after a torch upgrade
        load_error = ImportError(f"fastact._C did not load ({e}): build it against your torch with "
                                 "`pip install --no-build-isolation .` from the fastact source tree")
        return False
    _C, load_error = module, None
    _name, _why, warning, _compiled = _C._cpu_capability()
    if warning:
        warnings.warn(f"fastact: {warning}", RuntimeWarning, stacklevel=2)
    return True


def cpu_capability() -> str:
    """Which copy of the CPU kernels runs, and why."""
    name, why, _warning, compiled = _C._cpu_capability()
    return f"{name}: {why}; this build has {compiled}"


def loaded() -> bool:
    """True when fastact._C loaded and its ops are registered."""
    return _C is not None


def where() -> str:
    return _C.__file__


def tables():
    """(traced, eager) handles: torch.ops.fastact's OpOverloads, which
    torch.compile traces, and for eager calls _C's direct bindings where it
    has them (unboxed calls into the dispatcher, about 1 us cheaper per call
    than a torch.ops call)."""
    traced = SimpleNamespace(**{n: getattr(torch.ops.fastact, n).default for n in _spec.OPS})
    eager = SimpleNamespace(**{n: getattr(_C, n, getattr(traced, n)) for n in _spec.OPS})
    return traced, eager


def devices():
    found = ["cpu"]
    if torch._C._dispatch_has_kernel_for_dispatch_key("fastact::relu", "CUDA"):
        found.append("cuda")
    return tuple(found)


def build() -> str:
    return torch.ops.fastact._build_info()


def empty_cache() -> None:
    if loaded():
        torch.ops.fastact._empty_cache()
