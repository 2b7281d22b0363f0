"""pytest set-up for the correctness suite; the helpers live in reference.py.

Every test runs once per fastact backend (`--backends`, default: cpp and
numba), the backend selected with fastact.set_backend around it; tests
marked `cpp_only` cover what only the C++ extension has (its vector exp,
its output cache) and run on it alone; `numba_only`, the same for the
Numba backend's own machinery; `once`, tests of fresh processes that choose
their own backends (or none), which the in-process backend does not change:
they run on the first backend of --backends only."""
import os

import pytest

# The Numba backend hands small inputs to torch's kernels; the suite's inputs
# are small, and it is the Numba kernels it tests (test_backend.py checks the
# hand-over itself). Set before fastact imports the backend.
os.environ["FASTACT_NUMBA_TORCH_BELOW"] = "0"
# and compiles them on first call in the process that calls them, not in a
# background worker (test_backend.py checks that worker); also for the
# processes tests start
os.environ["FASTACT_NUMBA_WARMUP"] = "inline"

import fastact  # noqa: E402

BACKENDS = ("cpp", "numba")


def pytest_addoption(parser):
    parser.addoption("--backends", default=",".join(BACKENDS),
                     help="comma-separated fastact backends to run the suite on (default: cpp,numba)")


def pytest_configure(config):
    config.addinivalue_line("markers", "cpp_only: covers a feature of the C++ backend alone")
    config.addinivalue_line("markers", "numba_only: covers a feature of the Numba backend alone")
    config.addinivalue_line("markers", "once: runs fresh processes only; the in-process backend changes nothing")
    wanted = config.getoption("--backends").split(",")
    unknown = set(wanted) - set(BACKENDS)
    if unknown:
        raise pytest.UsageError(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")
    for name in wanted:
        try:
            fastact.set_backend(name)
        except RuntimeError as e:
            raise pytest.UsageError(f"the tests need the {name} backend: {e}")
    fastact.set_backend(wanted[0])


def pytest_generate_tests(metafunc):
    if "fastact_backend" in metafunc.fixturenames:
        backends = metafunc.config.getoption("--backends").split(",")
        for alone in ("cpp", "numba"):
            if metafunc.definition.get_closest_marker(f"{alone}_only"):
                backends = [b for b in backends if b == alone]  # not generated for the others, so not skipped
        if metafunc.definition.get_closest_marker("once"):
            backends = backends[:1]
        metafunc.parametrize("fastact_backend", backends, scope="session")


@pytest.fixture(autouse=True)
def _run_on_backend(request, fastact_backend):
    if fastact_backend != "cpp" and request.node.get_closest_marker("cpp_only"):
        pytest.skip(f"C++ backend only (running on {fastact_backend})")
    fastact.set_backend(fastact_backend)
    yield
