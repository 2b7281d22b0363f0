"""The one place that loads the compiled extension, fastact._C.

Importing it registers the fastact ops with torch's dispatcher. A missing or
broken build (no compiler at install time, a torch upgraded since) must not
break `import fastact`: the failure is kept here and reported by
fastact.backend() and by the ops themselves.
"""
import os

import torch  # noqa: F401  (libtorch must be loaded before _C)

_C = None
load_error = None

if os.environ.get("FASTACT_BACKEND", "auto").lower() not in ("auto", "cpp"):
    load_error = RuntimeError(f"FASTACT_BACKEND={os.environ['FASTACT_BACKEND']} skips the C++ extension")
else:
    try:
        from fastact import _C  # noqa: F811
    except (ImportError, OSError) as e:  # OSError: an undefined symbol after a torch upgrade
        load_error = e
        _package = os.path.dirname(os.path.abspath(__file__))
        if os.path.exists(os.path.join(os.path.dirname(_package), "setup.py")):
            # The usual cause: `python -m ...` run inside the source tree
            # imports this unbuilt copy instead of the installed package.
            load_error = ImportError(
                f"{e}; fastact was imported from its source tree ({_package}), which has no built "
                "extension: run from another directory or with `python -P`, or build in place "
                "with `python setup.py build_ext --inplace`"
            )


def has_ops() -> bool:
    """True when fastact._C loaded and its ops are registered."""
    return _C is not None
