"""Numba kernels over zero-copy NumPy views of contiguous CPU tensors,
writing into outputs torch allocated. float32 and float64 run natively
(fp16/bf16 are upcast by the caller); reductions accumulate in float64.

Each kernel runs over whole arrays or any chunk of elements or rows, so
library.py can split a large call across threads. Small inputs do not reach
them: the backend hands those to torch's own kernels (see
fastact/_backends/numba/__init__.py)."""
import math

import numba
import numpy as np

from fastact import _spec
from fastact._backends.numba import cache, fastmath

cache.install()

def _jit(body, fastmath=frozenset({"contract"}), wrappers=True):
    """A kernel over whole arrays or any chunk of them (library.py runs the
    chunks on threads). error_model="numpy": IEEE division (x / 0 is inf or
    nan), as the C++ kernels, and no division check in the loop, which is
    what lets LLVM vectorize it; "contract": a * b + c may fuse (the
    polynomials in fastmath.py are written for it), nothing that touches NaN
    or inf. Compiled serially: parallel=True took seconds more per kernel to
    compile, on every first call after an install. wrappers=False for the
    helpers the kernels call and Python never does: building the CPython and
    cfunc wrappers was much of each first call's compile time."""
    return numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=set(fastmath),
                      no_cpython_wrapper=not wrappers, no_cfunc_wrapper=not wrappers)(body)


def _helper(body):
    """A loop the kernels call."""
    return _jit(body, wrappers=False)


def _reduction(body):
    """A row reduction the kernels call: "reassoc" lets LLVM split the sum
    over vector lanes (it keeps a float sum in order otherwise, one add at a
    time); the lanes' partial sums are float64."""
    return _jit(body, fastmath={"contract", "reassoc"}, wrappers=False)


@_reduction
def _sum(a):
    s = 0.0
    for c in range(a.size):
        s += a[c]
    return s


@_reduction
def _dot(a, b):
    s = 0.0
    for c in range(a.size):
        s += float(a[c]) * float(b[c])
    return s


@_helper
def _row_max(row):
    """max over a row, NaN skipped (the NaN reaches the row through its exp),
    -inf for an empty or all -inf row. Kept in 16 running maxima, which LLVM
    vectorizes; a single running max is a chain of dependent compares. A
    short row (the tutorials' 2-10 classes) takes the plain loop: the lanes'
    allocation would cost more than the row."""
    if row.size < 64:
        m = row.dtype.type(-np.inf)
        for c in range(row.size):
            m = row[c] if row[c] > m else m
        return m
    lanes = np.empty(16, dtype=row.dtype)
    for j in range(16):  # (np.full would compile its own implementation first)
        lanes[j] = -np.inf
    body = row.size - row.size % 16
    for c in range(0, body, 16):
        for j in range(16):
            v = row[c + j]
            lanes[j] = v if v > lanes[j] else lanes[j]
    m = lanes[0]
    for j in range(1, 16):
        m = lanes[j] if lanes[j] > m else m
    for c in range(body, row.size):
        m = row[c] if row[c] > m else m
    return m


@_helper
def _exp_shifted(row, m, out):
    for c in range(row.size):
        out[c] = fastmath.exp(row[c] - m)


# ---- pointwise activations: flat arrays, out[i] = f(x[i]) ----------------

SELU_ALPHA, SELU_SCALE = _spec.SELU_ALPHA, _spec.SELU_SCALE  # compile-time constants to Numba


@_jit
def relu(x, out):
    for i in range(x.size):
        v = x[i]
        out[i] = 0 if v <= 0 else v  # NaN passes through, as torch's


@_jit
def relu_backward(g, y, out):
    for i in range(g.size):
        out[i] = 0 if y[i] <= 0 else g[i]


@_jit
def leaky_relu(x, slope, out):
    for i in range(x.size):
        v = x[i]
        out[i] = v if v > 0 else v * slope


@_jit
def leaky_relu_backward(g, s, slope, out):
    for i in range(g.size):
        out[i] = g[i] if s[i] > 0 else g[i] * slope


@_jit
def sigmoid(x, out):
    one = x.dtype.type(1.0)
    for i in range(x.size):
        out[i] = one / (one + fastmath.exp(-x[i]))


@_jit
def sigmoid_backward(g, y, out):
    one = y.dtype.type(1.0)
    for i in range(g.size):
        out[i] = g[i] * (one - y[i]) * y[i]


@_jit
def tanh(x, out):
    for i in range(x.size):
        out[i] = fastmath.tanh(x[i])


@_jit
def tanh_backward(g, y, out):
    one = y.dtype.type(1.0)
    for i in range(g.size):
        out[i] = g[i] * (one - y[i] * y[i])


# In the arrays' precision (float32 stays float32, as torch's kernels).
# The tanh form's constants: sqrt(2 / pi) and 0.044715.
@_jit
def gelu(x, tanh_approximation, out):
    T = x.dtype.type
    half, one, beta, kappa = T(0.5), T(1.0), T(0.7978845608028654), T(0.044715)
    for i in range(x.size):
        v = x[i]
        if tanh_approximation:
            out[i] = half * v * (one + fastmath.tanh(beta * (v + kappa * v * v * v)))
        else:
            out[i] = v * fastmath.normal_cdf(v, fastmath.exp(T(-0.5) * v * v))


@_jit
def gelu_backward(g, x, tanh_approximation, out):
    T = x.dtype.type
    half, one, beta, kappa = T(0.5), T(1.0), T(0.7978845608028654), T(0.044715)
    for i in range(g.size):
        v = x[i]
        if tanh_approximation:
            t = fastmath.tanh(beta * (v + kappa * v * v * v))
            d_inner = beta * (one + T(3.0) * kappa * v * v)
            out[i] = g[i] * (half * (one + t) + half * v * (one - t * t) * d_inner)
        else:
            gauss = fastmath.exp(T(-0.5) * v * v)
            out[i] = g[i] * (fastmath.normal_cdf(v, gauss) + v * gauss * T(0.3989422804014327))


@_jit
def selu(x, out):
    T = x.dtype.type
    scale, alpha_scale, one = T(SELU_SCALE), T(SELU_SCALE * SELU_ALPHA), T(1.0)
    for i in range(x.size):
        v = x[i]
        # exp(v) - 1 rather than expm1: off by at most an ulp of 1 (alpha_scale * 6e-8) near 0
        out[i] = scale * v if v > 0 else alpha_scale * (fastmath.exp(v) - one)


@_jit
def selu_backward(g, s, is_result, scale, alpha_scale, out):
    # torch's elu_backward, from the input or (is_result) the output; NaN in,
    # NaN out. The constants come in the arrays' precision: from the output,
    # s + alpha_scale cancels, and float32 must round as torch's does.
    for i in range(g.size):
        if s[i] > 0:
            out[i] = g[i] * scale
        elif is_result:
            out[i] = g[i] * (s[i] + alpha_scale)
        else:
            out[i] = g[i] * (alpha_scale * fastmath.exp(s[i]))


# ---- softmax family: rows of a [R, C] array ----------------------------


@_jit
def softmax_rows(x, log, out):
    # exp in the rows' precision (vectorized, fastmath.exp), sums in float64;
    # the exps go into the output row first, so the loop that computes them
    # has no reduction in it (LLVM vectorizes no float reduction it may not reorder)
    for r in range(x.shape[0]):
        row, dest = x[r], out[r]
        m = _row_max(row)
        if m == -np.inf:
            m = row.dtype.type(0.0)  # an all -inf row: exp(-inf - 0) = 0, as torch gives NaN/-inf below
        _exp_shifted(row, m, dest)
        s = _sum(dest)
        if log:
            ls = row.dtype.type(math.log(s))
            for c in range(row.size):
                dest[c] = (row[c] - m) - ls
        else:
            inv = row.dtype.type(1.0 / s)
            for c in range(row.size):
                dest[c] = dest[c] * inv


@_jit
def softmax_backward_rows(g, y, log, out):
    for r in range(g.shape[0]):
        if log:
            s_t = y.dtype.type(_sum(g[r]))
            for c in range(g.shape[1]):
                out[r, c] = g[r, c] - fastmath.exp(y[r, c]) * s_t
        else:
            s_t = y.dtype.type(_dot(g[r], y[r]))
            for c in range(g.shape[1]):
                out[r, c] = y[r, c] * (g[r, c] - s_t)


# ---- fused losses --------------------------------------------------------


@_reduction
def _probability_terms(row, target, weight, use_weight, e, e_c, m, ls):
    """(sum_c w_c t'_c (-log p_c), sum_c w_c t'_c) of one row, t' = (1 - e) t + e / C."""
    total = 0.0
    t_sum = 0.0
    for c in range(row.size):
        wt = (float(weight[c]) if use_weight else 1.0) * (float(target[c]) * (1.0 - e) + e_c)
        total += wt * ((m - float(row[c])) + ls)
        t_sum += wt
    return total, t_sum


@_helper
def _torch_signed_product(w, neg_log_p):
    # the sign of a zero loss, as torch's -(w_y log p_y) (csrc/cpu/cross_entropy.h)
    return w * -0.0 if neg_log_p == 0.0 else w * neg_log_p


@_helper
def _torch_signed_sum(total):
    # and as torch's -(sum w_c t_c log p_c): an empty or zero sum is -0
    return -0.0 if total == 0.0 else total


@_jit
def cross_entropy_rows(x, index_target, prob_target, use_index, weight, use_weight, ignore_index, smoothing,
                       grad_scale, write_grad, loss, grad):
    """Per row (see csrc/cpu/cross_entropy.cpp for the formulas): the loss
    into loss[r] and, if write_grad, d loss / d x (times grad_scale) into
    grad[r]. Index targets are already checked to be in range. The row's
    exps go to a scratch row once (vectorized), and serve the sum and the
    gradient."""
    C = x.shape[1]
    T = x.dtype.type
    e = smoothing
    e_c = smoothing / C
    w_total = 0.0
    for c in range(C):
        w_total += float(weight[c]) if use_weight else 1.0
    exps = np.empty(C, dtype=x.dtype)
    for r in range(x.shape[0]):
        row = x[r]
        m = float(_row_max(row))
        _exp_shifted(row, T(m), exps)
        s = _sum(exps)
        ls = math.log(s)
        if use_index:
            y = index_target[r]
            if y == ignore_index:
                loss[r] = 0.0
                if write_grad:
                    for c in range(C):
                        grad[r, c] = 0.0
                continue
            w_y = float(weight[y]) if use_weight else 1.0
            total = (1.0 - e) * _torch_signed_product(w_y, (m - float(row[y])) + ls)
            if e > 0:
                acc = 0.0
                for c in range(C):
                    acc += (float(weight[c]) if use_weight else 1.0) * ((m - float(row[c])) + ls)
                total += e_c * _torch_signed_sum(acc)
            loss[r] = total
            if write_grad:
                # p_c a - e_c w_c grad_scale, and - (1 - e) w_y grad_scale at the target
                a = T(((1.0 - e) * w_y + e_c * w_total) * grad_scale / s)
                if e > 0:
                    smooth = T(e_c * grad_scale)  # (without smoothing it is 0, not 0 * an infinite scale)
                    for c in range(C):
                        grad[r, c] = exps[c] * a - smooth * (weight[c] if use_weight else T(1.0))
                else:
                    for c in range(C):
                        grad[r, c] = exps[c] * a
                grad[r, y] = T(float(grad[r, y]) - (1.0 - e) * w_y * grad_scale)
        else:
            total, t_sum = _probability_terms(row, prob_target[r], weight, use_weight, e, e_c, m, ls)
            loss[r] = _torch_signed_sum(total)
            if write_grad:
                a = T(t_sum * grad_scale / s)
                scale, keep, spread = T(grad_scale), T(1.0 - e), T(e_c)
                for c in range(C):
                    wt = (weight[c] if use_weight else T(1.0)) * (prob_target[r, c] * keep + spread)
                    grad[r, c] = exps[c] * a - wt * scale


@_jit
def binary_cross_entropy_with_logits(x, t, weight, use_weight, pos_weight, use_pos_weight, grad_scale, write_grad,
                                     loss, grad):
    """loss = w ((1 - t) x + lw softplus(-x)), lw = 1 + (pw - 1) t;
    grad = w (lw sigmoid(x) - pw t) * grad_scale."""
    T = x.dtype.type
    one, zero = T(1.0), T(0.0)
    for i in range(x.size):
        v = x[i]
        tv = t[i]
        w = weight[i] if use_weight else one
        pw = pos_weight[i] if use_pos_weight else one
        lw = one + (pw - one) * tv
        e = fastmath.exp(-abs(v))
        softplus_neg = max(-v, zero) + fastmath.log1p_unit(e)  # log(1 + exp(-x)), stably
        loss[i] = w * ((one - tv) * v + lw * softplus_neg)
        if write_grad:
            sig = one / (one + e) if v >= zero else e / (one + e)
            grad[i] = w * (lw * sig - pw * tv) * grad_scale


@_jit
def checked_target_weight_sum(target, C, weight, use_weight, ignore_index):
    """(sum of w_y over targets not ignored, the first row whose class index
    is out of range or -1): a sum of any sign is valid."""
    total = 0.0
    for r in range(target.size):
        y = target[r]
        if y == ignore_index:
            continue
        if y < 0 or y >= C:
            return total, r
        total += float(weight[y]) if use_weight else 1.0
    return total, -1
