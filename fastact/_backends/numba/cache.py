"""Where Numba keeps the compiled kernels: a user cache directory, not the
installed package. Numba's default (__pycache__ beside kernels.py) writes
files into site-packages/fastact that `pip uninstall` does not remove, and
the directory left behind then imports as an empty namespace package.

The place: FASTACT_NUMBA_CACHE_DIR, else $XDG_CACHE_HOME/fastact/numba
(~/.cache/fastact/numba). Numba's own NUMBA_CACHE_DIR, if set, still wins.
Each copy of fastact (an install, a source tree) gets its own subfolder, and
Numba checks each entry against its source file's time stamp and size."""
import os

from numba.core import caching, config

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def cache_dir() -> str:
    explicit = os.environ.get("FASTACT_NUMBA_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastact", "numba")


class FastactCacheLocator(caching.UserWideCacheLocator):
    """Numba's user-wide locator, pointed at cache_dir(), for this package's
    kernels only (everyone else's Numba functions keep Numba's choice)."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = os.path.join(cache_dir(), self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func, py_file):
        if config.CACHE_DIR or not os.path.abspath(py_file).startswith(PACKAGE_DIR + os.sep):
            return None
        return super().from_function(py_func, py_file)


def install() -> None:
    """Put the locator first in Numba's list; before any kernel is decorated."""
    if FastactCacheLocator not in caching.CacheImpl._locator_classes:
        caching.CacheImpl._locator_classes.insert(0, FastactCacheLocator)
