"""Shared pieces of the pytest-benchmark suite.

    pytest bench/ --benchmark-group-by=param:case        # torch and fastact (C++, Numba) side by side
    pytest bench/ --benchmark-disable                     # run every case once (CI smoke)
    pytest bench/ --bench-device cuda                     # on a GPU (each call synchronised)
"""
import math

import pytest
import torch

from fastact_apps.bench.timing import on_device, training_step


def pytest_addoption(parser):
    parser.addoption("--bench-device", default="cpu", help="where the benchmarks' tensors live: cpu or cuda")


@pytest.fixture
def bench_device(request):
    device = request.config.getoption("--bench-device")
    if device.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return device


def make_case(shape, backward, device="cpu"):
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=backward, device=device)
    g = torch.randn(shape, device=device)
    return x, g


@pytest.fixture(params=["cpp", "numba"])
def fastact_backend(request, bench_device):
    """Runs the benchmark on each fastact backend (the C++ extension, Numba;
    Numba is CPU-only)."""
    import fastact

    if request.param == "numba" and bench_device != "cpu":
        pytest.skip("the Numba backend runs on the CPU only")
    previous = fastact.backend().name
    fastact.set_backend(request.param)
    yield request.param
    fastact.set_backend(previous)


# The smoke run (--benchmark-disable, CI) calls each case once; above this
# many elements (the 4096 x 32000 losses: 1 GB of inputs, a minute of CI on
# two cores) a case is timed only when benchmarking.
SMOKE_MAX_ELEMENTS = 1 << 25


@pytest.fixture
def run_case(benchmark, bench_device):
    def run(fn, shape, mode, make_aux=None):
        """Benchmarks fn(x, aux) on a fresh x of `shape`, aux = make_aux(shape)."""
        if benchmark.disabled and math.prod(shape) > SMOKE_MAX_ELEMENTS:
            pytest.skip(f"{shape[0]}x{shape[1]} is run only when benchmarking (not under --benchmark-disable)")
        aux = make_aux(shape) if make_aux else None
        backward = mode == "fwd+bwd"
        x, g = make_case(shape, backward, bench_device)
        benchmark.extra_info["shape"] = list(shape)
        benchmark.extra_info["mode"] = mode
        benchmark.extra_info["device"] = bench_device
        step = training_step(fn, x, g, backward, on_device(aux, bench_device, x.dtype))
        if bench_device == "cpu":
            benchmark(step)
            return

        def synchronised_step():  # a GPU call is done when the GPU is
            step()
            torch.cuda.synchronize()

        benchmark(synchronised_step)

    return run
