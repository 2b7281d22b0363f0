"""Writes csrc/cpu/vec_tables.h: the piecewise polynomials of the float32
tanh (AVX-512), standard normal CDF and GELU derivative (AVX-512 and AVX2):
vec_tanh, vec_normal_cdf and vec_gelu_slope in csrc/cpu/vec_io.h.

Each table cuts a range of |x| into 32 intervals (AVX-512) or 8 (AVX2), two
or four per binade (the exponent and the first one or two mantissa bits of
|x|: the kernel's table index is the bits of |x| shifted right by 22 or 21,
whose low 5 bits vpermt2ps reads, or low 3 bits vpermps, so one coefficient
for a vector is one permute of a register pair, or of one register). On each
interval
f(s + t) = f(s) + t q(t), q of degree 6, where:
- the centre s is the float in the middle half of the interval whose f(s) is
  nearest a float, so f(s) is stored (nearly) exactly and t = |x| - s is exact
  (Sterbenz): only the small t q(t) term carries rounding error, which keeps
  tanh within 1 ulp of its correctly rounded value;
- q is fitted by least squares on Chebyshev nodes in float64 and rounded to
  float32 (near-minimax; tests/test_vec_exp.py sweeps the kernels).

The tables:
- tanh, |x| in [2^-12, 16), two intervals per binade (its error is
  relative: the small binades need their own): below, tanh(x) rounds to x;
  from 9.1 on, to 1 (the kernel blends both).
- normal_tail, Phi(-u) = erfc(u / sqrt 2) / 2 for u = |x| in [0, 8), four
  per binade (its error is absolute, and the Gaussian tail needs narrow
  intervals: on [4, 6) a degree-7 fit is off by 2e-8, on quarters by 1e-13):
  the kernel indexes by max(u, 2^-5), so the first interval is fitted from
  0 (Phi is nearly linear there); beyond 8 Phi(-u) < 7e-16 and the kernel
  takes 0.
- gelu_slope, Phi(-u) - u phi(u) on the same intervals: GELU's derivative
  Phi(x) + x phi(x) at x = -u, and 1 minus it at x = u (below 5e-14 in
  magnitude past 8, taken as 0).
- normal_tail8 and gelu_slope8, the same functions for AVX2's 8-lane
  permute: half binades of [0.5, 8), the first fitted from 0, so [0, 0.75),
  [0.75, 1), ... [6, 8). Degree 7 is off by at most 2.3e-8 (the CDF) and
  9e-8 (the slope), in float32 arithmetic; degree 6 would be 1e-7 and 9e-7.
  No exp and no division: on AVX2 the formula (Abramowitz & Stegun, with an
  exp and a division) held GELU to 0.9-1.2x of torch's (oneDNN's JIT) at
  cache-resident sizes.

Usage: python tools/vec_tables.py > csrc/cpu/vec_tables.h
       python tools/vec_tables.py --check   (exit 1 if the header is stale; see same_header)
"""
import math
import os
import re
import sys

import numpy as np

DEGREE = 6      # of q: each interval's polynomial has degree 7
NODES = 256
HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc", "cpu", "vec_tables.h")

# name: (f, first binade, mantissa bits in the index (1: two intervals per
# binade, 2: four), whether the first interval is fitted from 0, |x| past
# which the kernel does not look, intervals: 32 for a zmm pair of floats per
# coefficient, 8 for one ymm)
TABLES = {
    "kTanhTable": (math.tanh, -12, 1, False, 9.1, 32),
    "kNormalTailTable": (lambda u: _normal_tail(u), -5, 2, True, 8.0, 32),
    "kGeluSlopeTable": (lambda u: _gelu_slope_tail(u), -5, 2, True, 8.0, 32),
    "kNormalTailTable8": (lambda u: _normal_tail(u), -1, 1, True, 8.0, 8),
    "kGeluSlopeTable8": (lambda u: _gelu_slope_tail(u), -1, 1, True, 8.0, 8),
}


def _normal_density(u):
    return math.exp(-u * u / 2) / math.sqrt(2 * math.pi)


def _normal_tail(u):
    return math.erfc(u / math.sqrt(2)) / 2


def _gelu_slope_tail(u):
    return _normal_tail(u) - u * _normal_density(u)


def interval(first_binade, bits, i):
    per_binade = 1 << bits
    width = 2.0 ** (first_binade + i // per_binade) / per_binade
    start = 2.0 ** (first_binade + i // per_binade) + width * (i % per_binade)
    return start, start + width


def centre(f, start, end, tries=1 << 14):
    """A float in the middle half of [start, end) whose f lies nearest a float
    (the best of `tries` spread over it)."""
    lo, hi = np.array([start + (end - start) / 4, end - (end - start) / 4], dtype=np.float32).view(np.int32)
    bits = np.unique(np.linspace(lo, hi, tries).astype(np.int32))
    candidates = bits.view(np.float32).astype(np.float64)
    value = np.array([f(c) for c in candidates])
    rounded = value.astype(np.float32)
    miss = np.abs(value - rounded) / np.spacing(rounded).astype(np.float64)
    best = int(np.argmin(miss))
    return float(candidates[best]), float(rounded[best])


def fit(f, first_binade, bits, from_zero, limit, i):
    start, end = interval(first_binade, bits, i)
    if from_zero and i == 0:
        start = 0.0
    if start >= limit:  # the kernel never reads these
        return start, 0.0, [0.0] * (DEGREE + 1)
    s, value = centre(f, start, end)
    lo, hi = start - s, end - s
    t = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (np.arange(NODES) + 0.5) / NODES)
    q = np.array([(f(s + u) - f(s)) / u for u in t])
    coefficients = np.linalg.lstsq(np.vander(t, DEGREE + 1, increasing=True), q, rcond=None)[0]
    return s, value, [float(np.float32(c)) for c in coefficients]


def literal(value):
    text = f"{np.float32(value).item():.9g}"
    return text + ("f" if any(c in text for c in ".e") else ".f")


def table(name, f, first_binade, bits, from_zero, limit, intervals):
    rows = [fit(f, first_binade, bits, from_zero, limit, i) for i in range(intervals)]
    # interval i has (bits of |x|) >> (23 - bits) = (127 + first_binade) << bits
    # + i: it sits at that mod the number of intervals
    column = [None] * intervals
    for i in range(intervals):
        column[(((127 + first_binade) << bits) + i) % intervals] = i
    lines = [[rows[i][0] for i in column], [rows[i][1] for i in column]]
    lines += [[rows[i][2][k] for i in column] for k in range(DEGREE + 1)]
    return [f"inline constexpr PolynomialTable<{intervals}> {name} = {{",
            "    {",
            *("        {" + ", ".join(literal(v) for v in line) + "}," for line in lines),
            "    },",
            f"    {23 - bits}, {literal(2.0 ** first_binade)}, {literal(limit)},",
            "};"]


def header():
    body = []
    for name, spec in TABLES.items():
        body += table(name, *spec) + [""]
    return "\n".join([
        "// Generated by tools/vec_tables.py (which says how); do not edit, run it again.",
        "// Piecewise polynomials of the float32 tanh (AVX-512), normal CDF and GELU slope (AVX-512, AVX2).",
        "#pragma once",
        "",
        "namespace fastact::cpu {",
        "",
        f"inline constexpr int kTableDegree = {DEGREE};",
        "",
        "template <int kIntervals>",
        "struct alignas(64) PolynomialTable {",
        "  // one column per interval of |x|, in the order the kernel's index reads",
        "  // them: row 0 the centre s, row 1 f(s), rows 2.. q's coefficients from",
        "  // degree 0, f(s + t) = f(s) + t q(t)",
        "  float rows[kTableDegree + 3][kIntervals];",
        "  int shift;     // the index: the bits of |x| >> shift (22: two intervals per binade, 21: four)",
        "  float first;   // the first interval's start (where its fit is not from 0)",
        "  float limit;   // |x| from which the kernel does not read the table",
        "};",
        "",
        *body,
        "}  // namespace fastact::cpu",
        "",
    ])


# The fits' least squares run in LAPACK, whose last bits depend on the CPU's
# kernels (AVX2 and AVX-512 machines differ by a few float32 ulps in some
# coefficients), so --check accepts numbers that far apart: the text around
# them must match exactly. The kernels' accuracy is what tests/test_vec_exp.py sweeps.
NUMBER = re.compile(r"-?\d+\.?\d*(?:e[-+]?\d+)?f")
CHECK_RTOL = 1e-4


def same_header(a: str, b: str) -> bool:
    if NUMBER.sub("#", a) != NUMBER.sub("#", b):
        return False
    pairs = zip(NUMBER.findall(a), NUMBER.findall(b))
    return all(abs(float(x[:-1]) - float(y[:-1])) <= CHECK_RTOL * max(abs(float(x[:-1])), abs(float(y[:-1])))
               for x, y in pairs)


if __name__ == "__main__":
    text = header()
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if os.path.exists(HEADER) and same_header(open(HEADER).read(), text) else 1)
    sys.stdout.write(text)
