"""The vector exp inside softmax/log_softmax (csrc/cpu/vec_io.h: vec_exp)
and the vector tanh of tanh and GELU's tanh form (vec_tanh), swept against
float64: within 1 ulp, and torch's values at the specials."""
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


def ordered_bits(t):
    """float32 bits as integers that order like the floats: a difference counts ulps."""
    bits = t.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def test_tanh_within_one_ulp_of_the_correctly_rounded_value():
    import fastact.functional as F

    x = torch.cat([torch.linspace(-12, 12, 1 << 22), torch.randn(1 << 20, generator=torch.Generator().manual_seed(0))
                   * 10 ** torch.empty(1 << 20).uniform_(-8, 0, generator=torch.Generator().manual_seed(1))])
    rounded = x.double().tanh().float()
    assert (ordered_bits(F.tanh(x)) - ordered_bits(rounded)).abs().max().item() <= 1


def test_tanh_special_values_match_torch():
    import fastact.functional as F

    sp = torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-45, -1e-30, 0.625, -0.625, 9.0, -9.0, 88.0, 1e30])
    got = F.tanh(sp)
    torch.testing.assert_close(got, torch.tanh(sp), equal_nan=True, rtol=2e-7, atol=0)
    numbers = ~torch.isnan(sp)  # (a NaN's sign means nothing)
    assert torch.equal(torch.signbit(got[numbers]), torch.signbit(torch.tanh(sp)[numbers]))  # -0 stays -0
