"""The Numba backend's float32 polynomials (fastact/_backends/numba/fastmath.py)
swept against float64: exp and tanh within 1 ulp of the correctly rounded
value, log1p on [0, 1] within 2, the normal CDF within A&S's bound (and
float32 rounding), and
the special values (NaN, infinities, -0, overflow and underflow)."""
import math

import numpy as np
import pytest
from numba import njit

from fastact._backends.numba import fastmath


@njit(error_model="numpy")
def _apply(name, x, out):
    for i in range(x.size):
        v = x[i]
        if name == 0:
            out[i] = fastmath.exp(v)
        elif name == 1:
            out[i] = fastmath.tanh(v)
        elif name == 2:
            out[i] = fastmath.log1p_unit(v)
        else:
            out[i] = fastmath.normal_cdf(v, fastmath.exp(np.float32(-0.5) * v * v))


FUNCTIONS = {"exp": 0, "tanh": 1, "log1p": 2, "normal_cdf": 3}


def run(name, x):
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _apply(FUNCTIONS[name], x, out)
    return out


def ordered(t):
    bits = t.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def ulps(got, exact):
    return np.abs(ordered(got) - ordered(exact.astype(np.float32)))


def sweep(low, high):
    rng = np.random.default_rng(0)
    x = np.linspace(low, high, 1 << 20, dtype=np.float32)
    return np.concatenate([x, (x + rng.random(x.size, dtype=np.float32) * 1e-3).astype(np.float32)])


def test_exp_within_one_ulp():
    x = sweep(-87, 88)  # normal results (below, exp underflows gradually to 0, as torch's)
    assert ulps(run("exp", x), np.exp(x.astype(np.float64))).max() <= 1


def test_tanh_within_one_ulp():
    rng = np.random.default_rng(1)
    tiny = (rng.standard_normal(1 << 18) * 10.0 ** rng.uniform(-8, 0, 1 << 18)).astype(np.float32)
    x = np.concatenate([sweep(-12, 12), tiny])
    assert ulps(run("tanh", x), np.tanh(x.astype(np.float64))).max() <= 1


def test_log1p_within_two_ulps_on_the_unit_interval():
    x = np.concatenate([sweep(0, 1), np.float32(10.0) ** np.linspace(-44, -1, 1 << 14, dtype=np.float32)])
    assert ulps(run("log1p", x), np.log1p(x.astype(np.float64))).max() <= 2


def test_normal_cdf_within_abramowitz_and_stegun_bound():
    # A&S's 1.5e-7 on erf is 7.5e-8 on Phi; float32 evaluation adds a few ulps of values up to 1 (6e-8 each)
    x = sweep(-9, 9)
    exact = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x[::64].astype(np.float64)])
    assert np.abs(run("normal_cdf", x[::64]) - exact).max() < 3e-7


@pytest.mark.parametrize("name,special,expected", [
    ("exp", [math.nan, math.inf, -math.inf, 0.0, 89.0, -200.0], [math.nan, math.inf, 0.0, 1.0, math.inf, 0.0]),
    ("tanh", [math.nan, math.inf, -math.inf, -0.0, 1e30], [math.nan, 1.0, -1.0, -0.0, 1.0]),
    ("normal_cdf", [math.nan, math.inf, -math.inf], [math.nan, 1.0, 0.0]),
])
def test_special_values(name, special, expected):
    got = run(name, special)
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))
    assert np.array_equal(np.signbit(got[~np.isnan(got)]), np.signbit(np.array(expected, np.float32)[~np.isnan(got)]))
