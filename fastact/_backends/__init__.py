"""Which backend runs the fastact ops, and the handles the public API calls.

Backends: "cpp" (torch.ops.fastact, the compiled extension: cpp.py) and
"numba" (torch.ops.fastact_numba: numba/). The choice is made once, at
import, from FASTACT_BACKEND (auto, cpp, numba; auto = cpp when fastact._C
loads, else numba with a warning) and can be changed with
fastact.set_backend(). Without either, every handle raises one clear error.

The handles come in two sets:
- `traced`: what torch.compile and torch.export trace (torch OpOverloads);
- `eager`: what eager calls use (on the C++ backend, _C's direct bindings).
"""
import os
import sys
import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Tuple

from fastact import _spec
from fastact._backends import batching, cpp, fake

NAMES = ("cpp", "numba")
REQUESTED = os.environ.get("FASTACT_BACKEND", "auto").lower()  # read once, here

current = "unavailable"  # the backend the handles below point to
why = ""  # and the reason it was chosen
traced = eager = None
# On the Numba backend, whether an eager call on an input is handed to
# torch's own op (numba.on_torch); None where no call is
on_torch = None


@dataclass(frozen=True)
class BackendInfo:
    name: str  # "cpp", "numba" or "unavailable"
    devices: Tuple[str, ...]
    reason: str
    build: str = ""
    cpu_kernels: str = ""  # C++ backend: which CPU capability's kernels run, and why

    def __str__(self) -> str:
        devices = ", ".join(self.devices) or "none"
        text = f"fastact backend: {self.name} (devices: {devices})\n  why: {self.reason}"
        text += f"\n  cpu kernels: {self.cpu_kernels}" if self.cpu_kernels else ""
        return text + (f"\n  build: {self.build}" if self.build else "")


def backend() -> BackendInfo:
    """The backend the fastact ops run on, the devices it serves, and why it was chosen."""
    if current == "cpp":
        return BackendInfo("cpp", cpp.devices(), why, cpp.build(), cpp.cpu_capability())
    if current == "numba":
        from fastact._backends import numba

        return BackendInfo("numba", ("cpu",), why, numba.build())
    return BackendInfo("unavailable", (), why)


def _unavailable(reason: str) -> SimpleNamespace:
    def refusing(name):
        def op(*args, **kwargs):
            raise RuntimeError(f"fastact.{name}: no fastact backend is available: {reason}. Build the C++ extension "
                               "against your torch with `pip install --no-build-isolation .` from the fastact source "
                               "tree, or install numba for the Numba backend")

        return op

    return SimpleNamespace(**{n: refusing(n) for n in _spec.OPS})


def _numba_missing():
    try:
        import numba  # noqa: F401
    except ImportError as e:
        return e
    return None


def use(name: str, reason: str = "") -> None:
    """Point the handles at backend `name` ("cpp" or "numba")."""
    global traced, eager, current, why, on_torch
    if name == "cpp":
        if not cpp.load():  # loads it now if FASTACT_BACKEND=numba left it unloaded
            raise RuntimeError(f"fastact: the C++ backend is not available: {cpp.load_error}")
        fake.register("fastact")
        batching.register("fastact")
        traced, eager = cpp.tables()
        on_torch = None
        reason = reason or f"chosen with fastact.set_backend('cpp'); fastact._C loaded from {cpp.where()}"
    elif name == "numba":
        error = _numba_missing()
        if error is not None:
            raise RuntimeError(f"fastact: the Numba backend needs numba ({error!r}); pip install numba")
        from fastact._backends import numba

        traced, eager = numba.tables()
        on_torch = numba.on_torch
        fake.register(numba.NAMESPACE)
        batching.register(numba.NAMESPACE)
        reason = reason or "chosen with fastact.set_backend('numba')"
    else:
        raise ValueError(f"fastact: unknown backend {name!r}; choose one of {NAMES}")
    current, why = name, reason


def set_backend(name: str) -> BackendInfo:
    """Run the fastact ops on `name`: "cpp" (the compiled extension), "numba"
    (the Numba kernels), or "auto" (cpp when it loaded, else numba). Applies
    to calls made from now on; returns the new backend()."""
    if name == "auto":
        name = "cpp" if cpp.loaded() else "numba"
    use(name)
    return backend()


def wait_for_kernels(timeout: float = None) -> bool:
    """On the Numba backend, block until its kernels may run: on first use
    with an empty kernel cache they compile in a background process, and
    calls run torch's own ops until then (fastact/_backends/numba/warmup.py).
    For timing the kernels. True when they may run (False: timeout passed);
    at once on the C++ backend."""
    if current != "numba":
        return True
    from fastact._backends.numba import warmup

    return warmup.wait(timeout)


def empty_cache() -> None:
    """Return the freed CPU output buffers fastact keeps for reuse to the OS
    (like torch.cuda.empty_cache for the CUDA caching allocator)."""
    cpp.empty_cache()
    if "fastact._backends.numba" in sys.modules:  # (imported on first use only)
        from fastact._backends.numba import outputs

        outputs.empty_cache()


def _choose_at_import() -> None:
    global traced, eager, current, why
    requested = REQUESTED
    if requested not in ("auto",) + NAMES:
        warnings.warn(f"FASTACT_BACKEND={requested!r} is not one of auto, cpp, numba; using auto")
        requested = "auto"
    if requested == "numba":
        # asked for Numba, perhaps because this build crashes: _C is not loaded now
        reason = "FASTACT_BACKEND=numba"
    elif cpp.load():
        use("cpp", f"fastact._C loaded from {cpp.where()}")
        return
    elif requested == "cpp":
        current, why = "unavailable", f"fastact._C did not load: {cpp.load_error!r}"
        traced = eager = _unavailable(why)
        return
    else:
        reason = f"fastact._C could not be loaded ({cpp.load_error}); using the Numba backend"
    try:
        use("numba", reason)
    except RuntimeError as e:
        current, why = "unavailable", f"{reason}, but {e}"
        traced = eager = _unavailable(why)
        return
    if requested == "auto":
        warnings.warn(f"fastact: {cpp.load_error}; falling back to the slower Numba backend", stacklevel=4)


_choose_at_import()
