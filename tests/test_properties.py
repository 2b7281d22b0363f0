"""Hypothesis: random shapes, strides (permutations, steps, offsets), dims,
dtypes and slopes; fastact must agree with torch on values and gradients."""
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import fastact.functional as F
from reference import DTYPES, check_against_torch

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def strided_tensors(draw):
    """A float64 tensor and a recipe for viewing it: random shape (0-4 dims,
    sizes 0-40), a random dim permutation, a step and an offset per dim."""
    ndim = draw(st.integers(0, 4))
    shape = draw(st.lists(st.integers(0, 40 if ndim <= 2 else 9), min_size=ndim, max_size=ndim))
    steps = draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim))
    offsets = draw(st.lists(st.integers(0, 2), min_size=ndim, max_size=ndim))
    perm = draw(st.permutations(range(ndim)))
    seed = draw(st.integers(0, 2**16))
    dtype = draw(st.sampled_from(DTYPES))

    def make():
        gen = torch.Generator().manual_seed(seed)
        big = [s * st_ + o for s, st_, o in zip(shape, steps, offsets)]
        base = torch.randn(big, generator=gen, dtype=torch.float64) * 4
        view = base[tuple(slice(o, None, st_) for o, st_ in zip(offsets, steps))]
        view = view[tuple(slice(0, s) for s in shape)]
        return view.permute(*perm).to(dtype) if ndim else view.to(dtype)

    return make, ndim


@SETTINGS
@given(strided_tensors(), st.sampled_from([0.0, 0.01, 0.3, -0.2]))
def test_pointwise(tensor, slope):
    make, _ = tensor
    check_against_torch(F.relu, TF.relu, make)
    check_against_torch(lambda x: F.leaky_relu(x, slope), lambda x: TF.leaky_relu(x, slope), make)
    for fast, ref in ((F.sigmoid, torch.sigmoid), (F.tanh, torch.tanh), (F.gelu, TF.gelu), (F.selu, TF.selu)):
        check_against_torch(fast, ref, make)


@SETTINGS
@given(strided_tensors(), st.data())
def test_softmax_family(tensor, data):
    make, ndim = tensor
    n = max(ndim, 1)
    dim = data.draw(st.integers(-n, n - 1))
    check_against_torch(lambda x: F.softmax(x, dim), lambda x: TF.softmax(x, dim), make)
    check_against_torch(lambda x: F.log_softmax(x, dim), lambda x: TF.log_softmax(x, dim), make)
