"""Numba kernels over zero-copy NumPy views of contiguous CPU tensors,
writing into outputs torch allocated. float32 and float64 run natively
(fp16/bf16 are upcast by the caller); reductions accumulate in float64.

Each kernel is written once and compiled twice (see `_jit`): serially for
small inputs, where waking Numba's thread pool costs more than the work,
and with `parallel=True` (prange over elements or rows) for large ones."""
import math

import numba
import numpy as np
from numba import prange

from fastact import _spec
from fastact._backends.numba import cache

cache.install()

# Below this many elements a kernel runs on the calling thread.
SERIAL_GRAIN = 32768


class _Kernel:
    """One kernel body, compiled serial and parallel (both cached on disk)."""

    def __init__(self, body):
        # error_model="numpy": IEEE division (x / 0 is inf or nan), as the C++ kernels
        options = dict(cache=True, nogil=True, error_model="numpy")
        self.serial = numba.njit(**options)(body)
        self.parallel = numba.njit(parallel=True, **options)(body)

    def __call__(self, size, *args):
        return (self.parallel if size > SERIAL_GRAIN else self.serial)(*args)


def _jit(body):
    return _Kernel(body)


# ---- pointwise activations: flat arrays, out[i] = f(x[i]) ----------------

SELU_ALPHA, SELU_SCALE = _spec.SELU_ALPHA, _spec.SELU_SCALE  # compile-time constants to Numba


@_jit
def relu(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = 0 if v <= 0 else v  # NaN passes through, as torch's


@_jit
def relu_backward(g, y, out):
    for i in prange(g.size):
        out[i] = 0 if y[i] <= 0 else g[i]


@_jit
def leaky_relu(x, slope, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if v > 0 else v * slope


@_jit
def leaky_relu_backward(g, s, slope, out):
    for i in prange(g.size):
        out[i] = g[i] if s[i] > 0 else g[i] * slope


@_jit
def sigmoid(x, out):
    for i in prange(x.size):
        out[i] = 1.0 / (1.0 + math.exp(-x[i]))


@_jit
def sigmoid_backward(g, y, out):
    for i in prange(g.size):
        out[i] = g[i] * (1.0 - y[i]) * y[i]


@_jit
def tanh(x, out):
    for i in prange(x.size):
        out[i] = math.tanh(x[i])


@_jit
def tanh_backward(g, y, out):
    for i in prange(g.size):
        out[i] = g[i] * (1.0 - y[i] * y[i])


@_jit
def gelu(x, tanh_approximation, out):
    for i in prange(x.size):
        v = float(x[i])
        if tanh_approximation:
            inner = 0.7978845608028654 * (v + 0.044715 * v * v * v)
            out[i] = 0.5 * v * (1.0 + math.tanh(inner))
        else:
            out[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))


@_jit
def gelu_backward(g, x, tanh_approximation, out):
    for i in prange(g.size):
        v = float(x[i])
        if tanh_approximation:
            inner = 0.7978845608028654 * (v + 0.044715 * v * v * v)
            t = math.tanh(inner)
            d_inner = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * v * v)
            out[i] = g[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * d_inner)
        else:
            cdf = 0.5 * (1.0 + math.erf(v * 0.7071067811865476))
            pdf = math.exp(-0.5 * v * v) * 0.3989422804014327
            out[i] = g[i] * (cdf + v * pdf)


@_jit
def selu(x, out):
    for i in prange(x.size):
        v = float(x[i])
        out[i] = SELU_SCALE * v if v > 0 else SELU_SCALE * SELU_ALPHA * math.expm1(v)


@_jit
def selu_backward(g, s, is_result, scale, alpha_scale, out):
    # torch's elu_backward, from the input or (is_result) the output; NaN in,
    # NaN out. The constants come in the arrays' precision: from the output,
    # s + alpha_scale cancels, and float32 must round as torch's does.
    for i in prange(g.size):
        if s[i] > 0:
            out[i] = g[i] * scale
        elif is_result:
            out[i] = g[i] * (s[i] + alpha_scale)
        else:
            out[i] = g[i] * (alpha_scale * math.exp(s[i]))


# ---- softmax family: rows of a [R, C] array ----------------------------


@_jit
def softmax_rows(x, log, out):
    for r in prange(x.shape[0]):
        row = x[r]
        m = -np.inf
        for c in range(row.size):
            m = max(m, float(row[c]))
        if m == -np.inf:
            m = 0.0  # an all -inf row: exp(-inf - 0) = 0, as torch gives NaN/-inf below
        s = 0.0
        for c in range(row.size):
            s += math.exp(float(row[c]) - m)
        if log:
            ls = math.log(s)
            for c in range(row.size):
                out[r, c] = (float(row[c]) - m) - ls
        else:
            inv = 1.0 / s
            for c in range(row.size):
                out[r, c] = math.exp(float(row[c]) - m) * inv


@_jit
def softmax_backward_rows(g, y, log, out):
    for r in prange(g.shape[0]):
        s = 0.0
        if log:
            for c in range(g.shape[1]):
                s += float(g[r, c])
            for c in range(g.shape[1]):
                out[r, c] = g[r, c] - math.exp(float(y[r, c])) * s
        else:
            for c in range(g.shape[1]):
                s += float(g[r, c]) * float(y[r, c])
            for c in range(g.shape[1]):
                out[r, c] = y[r, c] * (g[r, c] - s)


# ---- fused losses --------------------------------------------------------


@_jit
def cross_entropy_rows(x, index_target, prob_target, use_index, weight, use_weight, ignore_index, smoothing,
                       grad_scale, write_grad, loss, grad):
    """Per row (see csrc/cpu/cross_entropy.cpp for the formulas): the loss
    into loss[r] and, if write_grad, d loss / d x (times grad_scale) into
    grad[r]. Index targets are already checked to be in range."""
    C = x.shape[1]
    e = smoothing
    e_c = smoothing / C
    w_total = 0.0
    for c in range(C):
        w_total += float(weight[c]) if use_weight else 1.0
    for r in prange(x.shape[0]):
        row = x[r]
        m = -np.inf
        for c in range(C):
            m = max(m, float(row[c]))
        s = 0.0
        for c in range(C):
            s += math.exp(float(row[c]) - m)
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
            total = (1.0 - e) * w_y * ((m - float(row[y])) + ls)
            if e > 0:
                acc = 0.0
                for c in range(C):
                    acc += (float(weight[c]) if use_weight else 1.0) * ((m - float(row[c])) + ls)
                total += e_c * acc
            loss[r] = total
            if write_grad:
                a = ((1.0 - e) * w_y + e_c * w_total) * grad_scale
                for c in range(C):
                    p = math.exp(float(row[c]) - m) / s
                    gc = p * a - (e_c * grad_scale * (float(weight[c]) if use_weight else 1.0) if e > 0 else 0.0)
                    if c == y:
                        gc -= (1.0 - e) * w_y * grad_scale
                    grad[r, c] = gc
        else:
            total = 0.0
            t_sum = 0.0
            for c in range(C):
                wt = (float(weight[c]) if use_weight else 1.0) * (float(prob_target[r, c]) * (1.0 - e) + e_c)
                total += wt * ((m - float(row[c])) + ls)
                t_sum += wt
            loss[r] = total
            if write_grad:
                for c in range(C):
                    p = math.exp(float(row[c]) - m) / s
                    wt = (float(weight[c]) if use_weight else 1.0) * (float(prob_target[r, c]) * (1.0 - e) + e_c)
                    grad[r, c] = (p * t_sum - wt) * grad_scale


@_jit
def binary_cross_entropy_with_logits(x, t, weight, use_weight, pos_weight, use_pos_weight, grad_scale, write_grad,
                                     loss, grad):
    """loss = w ((1 - t) x + lw softplus(-x)), lw = 1 + (pw - 1) t;
    grad = w (lw sigmoid(x) - pw t) * grad_scale."""
    for i in prange(x.size):
        v = float(x[i])
        tv = float(t[i])
        w = float(weight[i]) if use_weight else 1.0
        pw = float(pos_weight[i]) if use_pos_weight else 1.0
        lw = 1.0 + (pw - 1.0) * tv
        softplus_neg = max(-v, 0.0) + math.log1p(math.exp(-abs(v)))  # log(1 + exp(-x)), stably
        loss[i] = w * ((1.0 - tv) * v + lw * softplus_neg)
        if write_grad:
            sig = 1.0 / (1.0 + math.exp(-v))
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
