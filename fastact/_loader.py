"""The one place that loads the compiled extension, fastact._C.

Importing it registers the fastact ops with torch's dispatcher. A missing or
broken build (no compiler at install time, a torch upgraded since) must not
break `import fastact`: the failure is kept here and reported by
fastact.backend(), and fastact falls back to its Numba backend.
"""
import os

import torch  # noqa: F401  (libtorch must be loaded before _C)

_C = None
load_error = None
_SKIPPED = "FASTACT_BACKEND=numba skips the C++ extension"


def load() -> bool:
    """Import fastact._C (once); True when its ops are registered."""
    global _C, load_error
    if _C is not None:
        return True
    try:
        from fastact import _C as module
    except (ImportError, OSError) as e:  # OSError: an undefined symbol after a torch upgrade
        load_error = e
        package = os.path.dirname(os.path.abspath(__file__))
        if os.path.exists(os.path.join(os.path.dirname(package), "setup.py")):
            # The usual cause: `python -m ...` run inside the source tree
            # imports this unbuilt copy instead of the installed package.
            load_error = ImportError(
                f"{e}; fastact was imported from its source tree ({package}), which has no built "
                "extension: run from another directory or with `python -P`, or build in place "
                "with `python setup.py build_ext --inplace`"
            )
        return False
    _C, load_error = module, None
    return True


def skipped() -> bool:
    """True when the environment asked not to load the extension at import."""
    return isinstance(load_error, RuntimeError) and str(load_error) == _SKIPPED


if os.environ.get("FASTACT_BACKEND", "auto").lower() == "numba":
    # asked for Numba, perhaps because this build crashes: do not load it now
    load_error = RuntimeError(_SKIPPED)
else:
    load()


def has_ops() -> bool:
    """True when fastact._C loaded and its ops are registered."""
    return _C is not None
