"""exp, tanh and the normal CDF for the Numba kernels, written so that LLVM
vectorizes the loops that call them: libm's expf/tanhf/erff are scalar calls
(Numba vectorizes them only through Intel's SVML, which needs an LLVM patched
for it; `numba -s` reports "SVML Operational: False" for the llvmlite wheels).
float32 arguments take the polynomial versions below, in float32 throughout;
float64 arguments keep libm's (float64 is the accuracy dtype; nothing here
would make it faster and stay accurate).

The polynomials are the C++ backend's AVX2 and baseline ones (csrc/cpu/vec_io.h;
its AVX-512 tanh and Phi read tables of polynomials with vpermt2ps, which LLVM
would not make of a Numba loop): exp within 1 ulp (Cody-Waite reduction,
degree-7 Taylor, 2^n built from its bits in two halves so that overflow gives
inf and the result underflows to 0 past -104), tanh within 1 ulp, and
Phi = (1 + erf(x/sqrt2)) / 2 by Abramowitz & Stegun 7.1.26 (absolute error
below 1.5e-7, the formula of torch's own vectorized erf)."""
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

_f32 = np.float32
_i32 = np.int32
# Adding 1.5 * 2^23 to a float32 of magnitude below 2^22 rounds it to an integer.
_ROUNDING_SHIFTER = _f32(12582912.0)

# How the float32 versions below compile: as the float32 implementations of
# the generic exp/tanh/normal_cdf/log1p_unit overloads (one compile each;
# overload implementations get no CPython wrapper, whose building was much
# of each first call's compile time), "contract" letting a * b + c fuse.
_POLYNOMIAL = {"fastmath": {"contract"}, "error_model": "numpy"}


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 `bits` (an LLVM bitcast, which vectorizes)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


def exp32(x):
    # the comparisons keep a NaN (false both ways) and clamp +-inf
    x = _f32(89.0) if x > _f32(89.0) else x
    x = _f32(-104.0) if x < _f32(-104.0) else x
    n = (x * _f32(1.44269504088896341) + _ROUNDING_SHIFTER) - _ROUNDING_SHIFTER
    r = x - n * _f32(0.693359375)
    r = r - n * _f32(-2.12194440e-4)
    p = _f32(1.0 / 5040)
    p = p * r + _f32(1.0 / 720)
    p = p * r + _f32(1.0 / 120)
    p = p * r + _f32(1.0 / 24)
    p = p * r + _f32(1.0 / 6)
    p = p * r + _f32(0.5)
    p = p * r + _f32(1.0)
    p = p * r + _f32(1.0)
    k = _i32(n)
    half = k >> 1
    return p * _float32_from_bits((half + _i32(127)) << _i32(23)) * \
        _float32_from_bits((k - half + _i32(127)) << _i32(23))


def tanh32(x):
    # |x| >= 0.625: 1 - 2 / (exp(2|x|) + 1); below, Cephes' odd polynomial
    a = abs(x)
    if a < _f32(0.625):
        z = a * a
        p = _f32(-5.70498872745e-3)
        p = p * z + _f32(2.06390887954e-2)
        p = p * z + _f32(-5.37397155531e-2)
        p = p * z + _f32(1.33314422036e-1)
        p = p * z + _f32(-3.33332819422e-1)
        t = a + a * z * p
    else:
        t = _f32(1.0) - _f32(2.0) / (exp(_f32(2.0) * a) + _f32(1.0))
    return math.copysign(t, x)  # x's sign (-0 stays -0; copysign vectorizes)


def normal_cdf32(x, gauss):
    """Phi(x), given gauss = exp(-x^2 / 2); h = Phi(-|x|) cancels nothing."""
    t = _f32(1.0) / (_f32(0.3275911 * math.sqrt(0.5)) * abs(x) + _f32(1.0))
    p = _f32(0.5 * 1.061405429)
    p = p * t + _f32(0.5 * -1.453152027)
    p = p * t + _f32(0.5 * 1.421413741)
    p = p * t + _f32(0.5 * -0.284496736)
    p = p * t + _f32(0.5 * 0.254829592)
    h = p * t * gauss
    return _f32(1.0) - h if x > 0 else h


def log1p32(e):
    """log(1 + e) for e in [0, 1] (the softplus of the BCE kernel), as
    2 atanh(s) = 2 (s + s^3/3 + ... + s^15/15), s = e / (2 + e) <= 1/3: exact
    for tiny e, where log(1 + e) would round to 0; relative error of the
    series below 1e-8."""
    s = e / (_f32(2.0) + e)
    z = s * s
    p = _f32(1.0 / 15)
    p = p * z + _f32(1.0 / 13)
    p = p * z + _f32(1.0 / 11)
    p = p * z + _f32(1.0 / 9)
    p = p * z + _f32(1.0 / 7)
    p = p * z + _f32(1.0 / 5)
    p = p * z + _f32(1.0 / 3)
    return _f32(2.0) * (s + s * z * p)


# (No inline="always", here or on the overloads below: LLVM inlines these
# small functions into the kernels' loops and vectorizes them anyway, and
# Numba-level inlining tripled the kernels' compile time.)
# Dtype-generic entry points for the kernels: float32 takes the versions
# above, anything else libm's (log1p_unit: log1p of an argument in [0, 1]).
def exp(x):
    return math.exp(x)


def tanh(x):
    return math.tanh(x)


def normal_cdf(x, gauss):
    return 0.5 * (1.0 + math.erf(x * 0.7071067811865476))


def log1p_unit(e):
    return math.log1p(e)


@overload(exp, jit_options=_POLYNOMIAL)
def _exp(x):
    return exp32 if x == types.float32 else (lambda x: math.exp(x))


@overload(tanh, jit_options=_POLYNOMIAL)
def _tanh(x):
    return tanh32 if x == types.float32 else (lambda x: math.tanh(x))


@overload(normal_cdf, jit_options=_POLYNOMIAL)
def _normal_cdf(x, gauss):
    if x == types.float32:
        return normal_cdf32
    return lambda x, gauss: 0.5 * (1.0 + math.erf(x * 0.7071067811865476))


@overload(log1p_unit, jit_options=_POLYNOMIAL)
def _log1p_unit(e):
    return log1p32 if e == types.float32 else (lambda e: math.log1p(e))
