"""The Numba kernels' first compile, off the caller's path.

Compiling every kernel (float32 and float64) takes Numba 10-12 s on two
cores, and until now the first calls of a process with an empty kernel cache
paid it, kernel by kernel (bench/numba_first_call.py). A fallback must not
stall its user's first steps that long. So, on the first call that needs a
kernel while the cache is cold, a second process (main() below, running
fastact._backends.numba.compile_every_kernel) compiles every kernel into the
on-disk cache, and until it is done the eager calls are torch's own ops,
exactly as small inputs always are: torch's values and torch's autograd.
Once the worker has finished, the kernels load from the cache on their first
call (milliseconds each). Tiered, as a JIT with an interpreter is.

- The cache counts as warm when the worker's marker file is there: its name
  hashes this package's sources, Numba's and Python's versions, so a new
  install or upgrade warms again (Numba itself checks each cached kernel
  against its source file too).
- Workers of several processes (DDP ranks, test workers) take a file lock
  in turn; the second finds the marker and exits.
- If the worker fails (its log: warmup.log in the cache directory), the
  process compiles its kernels itself, as with FASTACT_NUMBA_WARMUP=inline.
- torch.compile's traced calls are not handed over: they compile in-process.

FASTACT_NUMBA_WARMUP: "background" (the default) or "inline" (compile in the
calling process, on each kernel's first call: the test suite). The bench
waits for the worker (fastact.wait_for_kernels())."""
import functools
import hashlib
import os
import subprocess
import sys
import time
import warnings

from fastact._backends.numba import cache

MODE = os.environ.get("FASTACT_NUMBA_WARMUP", "background").lower()
# how often a waiting process looks for the marker: a stat per call would cost more than a small op
_POLL_S = 0.05

_ready = MODE != "background"  # the kernels may be called (cached, or compiled here on first call)
_worker = None  # the worker this process started
_next_look = 0.0


@functools.lru_cache(maxsize=None)
def _key() -> str:
    """(once per process: a waiting caller asks for the marker every 50 ms)"""
    import numba

    parts = [cache.PACKAGE_DIR, numba.__version__, sys.version]
    for name in sorted(os.listdir(cache.PACKAGE_DIR)):
        if name.endswith(".py"):
            st = os.stat(os.path.join(cache.PACKAGE_DIR, name))
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def marker_path() -> str:
    return os.path.join(cache.cache_dir(), f"warm-{_key()}")


def log_path() -> str:
    return os.path.join(cache.cache_dir(), "warmup.log")


def kernels_ready() -> bool:
    """Whether an eager call may run the kernels now; False while the
    worker compiles them (the caller then runs torch's op). Starts the
    worker on the first call that finds the cache cold."""
    global _ready, _worker, _next_look
    if _ready:
        return True
    now = time.monotonic()
    if now < _next_look:
        return False
    _next_look = now + _POLL_S
    if os.path.exists(marker_path()):
        _ready = True
    elif _worker is None:
        _worker = _start_worker()
        _ready = _worker is None  # could not start one: compile here
    elif _worker.poll() is not None:  # finished without the marker: failed
        warnings.warn(f"fastact: the background compile of the Numba kernels failed (exit code "
                      f"{_worker.returncode}; see {log_path()}); compiling them in this process instead")
        _ready = True
    return _ready


# (not `python -m` this module: the package imports it before runpy would run it)
_WORKER = "from fastact._backends import numba; numba.compile_every_kernel()"


def _start_worker():
    try:
        os.makedirs(cache.cache_dir(), exist_ok=True)
        log = open(log_path(), "w")
    except OSError as e:
        warnings.warn(f"fastact: cannot write the Numba kernel cache ({e}); compiling the kernels in this process")
        return None
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(cache.PACKAGE_DIR)))
    env = {**os.environ, "FASTACT_BACKEND": "numba", "FASTACT_NUMBA_WARMUP": "inline",
           "FASTACT_NUMBA_CACHE_DIR": cache.cache_dir(), "OMP_NUM_THREADS": "1"}
    # this very fastact, first on the path (not one in the working directory: the cache and the
    # marker are kept per copy)
    code = f"import sys; sys.path.insert(0, {package_parent!r}); {_WORKER}"
    with log:
        # its own session: a Ctrl-C of the caller leaves it to finish the cache
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def wait(timeout: float = None) -> bool:
    """Block until the kernels may run (the bench, the tests); True if they
    can. Without a worker running, from here on they compile in-process."""
    global _ready
    if _worker is not None and not _ready:
        try:
            _worker.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
    _ready = True
    return True


def state() -> str:
    """For fastact.backend(): where the kernels come from now."""
    if MODE != "background":
        return "compiled in-process on first use"
    if _ready:
        return "from the kernel cache"
    if _worker is None:
        return "the cache is compiled in the background on first use"
    return f"compiling in the background (pid {_worker.pid}); torch's ops until then"


def main(exercise) -> None:
    """The worker: every kernel into the cache (by running exercise()), then the marker."""
    os.nice(5)  # it must not slow the work it stands in for
    os.makedirs(cache.cache_dir(), exist_ok=True)
    with open(os.path.join(cache.cache_dir(), "warmup.lock"), "w") as lock:
        try:
            import fcntl
        except ImportError:  # (Windows: no lock; two workers at once only compile twice)
            fcntl = None
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process's worker first; then its marker is there
        marker = marker_path()
        if not os.path.exists(marker):
            start = time.time()
            exercise()
            with open(marker, "w") as f:
                f.write(f"{time.time() - start:.1f} s\n")
