"""Shared pieces of the pytest-benchmark suite.

    pytest bench/ --benchmark-group-by=param             # torch and fastact side by side
    pytest bench/ --benchmark-disable                     # run every case once (CI smoke)
"""
import pytest
import torch


def make_case(shape, backward):
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=backward)
    g = torch.randn(shape)
    return x, g


def step(fn, x, g, backward):
    """A forward call, or a training step's share of one: forward, backward,
    and dropping the gradient as zero_grad(set_to_none=True) does."""
    if not backward:
        return lambda: fn(x)

    def fwd_bwd():
        fn(x).backward(g)
        x.grad = None

    return fwd_bwd


@pytest.fixture
def run_case(benchmark):
    def run(fn, shape, mode):
        backward = mode == "fwd+bwd"
        x, g = make_case(shape, backward)
        benchmark.extra_info["shape"] = list(shape)
        benchmark.extra_info["mode"] = mode
        benchmark(step(fn, x, g, backward))

    return run
