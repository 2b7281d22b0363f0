"""Shared pieces of the pytest-benchmark suite.

    pytest bench/ --benchmark-group-by=param:case        # torch and fastact (C++, Numba) side by side
    pytest bench/ --benchmark-disable                     # run every case once (CI smoke)
"""
import pytest
import torch

from fastact.bench import training_step


def make_case(shape, backward):
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=backward)
    g = torch.randn(shape)
    return x, g


@pytest.fixture(params=["cpp", "numba"])
def fastact_backend(request):
    """Runs the benchmark on each fastact backend (the C++ extension, Numba)."""
    import fastact

    previous = fastact.backend().name
    fastact.set_backend(request.param)
    yield request.param
    fastact.set_backend(previous)


@pytest.fixture
def run_case(benchmark):
    def run(fn, shape, mode, aux=None):
        """Benchmarks fn(x, aux) on a fresh x of `shape`."""
        backward = mode == "fwd+bwd"
        x, g = make_case(shape, backward)
        benchmark.extra_info["shape"] = list(shape)
        benchmark.extra_info["mode"] = mode
        benchmark(training_step(fn, x, g, backward, aux))

    return run
