"""The vector exp inside softmax/log_softmax (csrc/cpu/vec_io.h: vec_exp),
swept against float64: within 1 ulp, and torch's values at the specials."""
import math

import pytest
import torch

pytestmark = pytest.mark.cpp_only


def test_within_one_ulp_over_the_whole_range():
    x = torch.linspace(-104, 89, 1 << 22, dtype=torch.float32)
    x = torch.cat([x, x + torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 1e-3])
    got = torch.ops.fastact._vec_exp(x).double()
    exact = x.double().exp()
    finite = torch.isfinite(exact.float())
    ulp = (torch.nextafter(exact.float(), torch.tensor(math.inf)).double() - exact.float().double()).clamp_min(2.0**-149)
    err = ((got - exact).abs() / ulp)[finite]
    assert err.max().item() <= 1.0, err.max().item()


def test_special_values_match_torch():
    sp = torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0, 88.72, 88.73, -87.3, -103.9, -104.5, -200.0, 200.0])
    torch.testing.assert_close(torch.ops.fastact._vec_exp(sp), sp.exp(), equal_nan=True, rtol=2e-7, atol=0)
