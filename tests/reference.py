"""Helpers shared by the tests: inputs in every layout, and one comparison of
a fastact function against its torch reference (values and gradients)."""
import math

import torch

import fastact


def backward_node_name(op, cpp_name):
    """The name of op's autograd node on the backend the test runs on: the
    C++ backend's own nodes, or torch.library's generated ones (Numba)."""
    return cpp_name if fastact.backend().name == "cpp" else f"GeneratedBackwardFor_fastact_numba_{op}_defaultBackward"


def backend_ops():
    """torch.ops.<namespace> of the backend the test runs on."""
    return {"cpp": torch.ops.fastact, "numba": torch.ops.fastact_numba}[fastact.backend().name]


def eager_ops():
    """The table of handles fastact.functional calls eagerly (what a test
    patches to see the arguments the public API passes to its ops)."""
    from fastact import _backends

    return _backends.eager


def eager_op(name):
    return getattr(eager_ops(), name)


DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "transposed", "sliced", "expanded"]
# 0-d, empty, 1-d, the tutorial size, N-d, and rows longer than a vector
# (with a tail) to cover both the vector body and the masked tail.
SHAPES = [(), (0,), (3, 0), (7,), (5, 10), (2, 3, 4, 5), (3, 37), (2, 33, 3)]


def distinct_layouts(shape):
    """The LAYOUTS that make_input tells apart for `shape`: a 0-d tensor has
    one (make_input makes it contiguous), and a 1-d one transposed is the
    contiguous tensor itself."""
    return [layout for layout in LAYOUTS
            if layout == "contiguous" or len(shape) > 1 or (len(shape) == 1 and layout != "transposed")]


def make_input(shape, dtype=torch.float32, layout="contiguous", seed=0, special=False):
    """A tensor of `shape` whose memory is laid out as `layout`:
    contiguous; transposed (dense, dims reversed in memory); sliced (every
    other element of a wider tensor); expanded (a stride-0 broadcast).
    `special` plants NaN, +-inf and signed zeros."""
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(shape)
    if len(shape) == 0:
        layout = "contiguous"
    raw_shape = {
        "contiguous": shape,
        "transposed": shape[::-1],
        "sliced": shape[:-1] + (shape[-1] * 2,) if shape else shape,
        "expanded": shape[:-1] + (1,) if shape else shape,
    }[layout]
    raw = torch.randn(raw_shape, generator=gen, dtype=torch.float64) * 3
    if special and raw.numel() > 0:
        values = torch.tensor([math.nan, math.inf, -math.inf, -0.0, 0.0], dtype=torch.float64)
        idx = torch.randperm(raw.numel(), generator=gen)[: len(values)]
        raw.view(-1)[idx] = values[: len(idx)]
    if layout == "transposed":
        raw = raw.permute(*reversed(range(len(shape))))
    elif layout == "sliced":
        raw = raw[..., ::2]
    elif layout == "expanded":
        raw = raw.expand(shape)
    return raw.to(dtype) if dtype.is_floating_point else raw.nan_to_num(0, 0, 0).round().to(dtype)


REDUCED = (torch.float16, torch.bfloat16)
# dtypes also checked against a float64 result: reduced precision, and
# float32 gradients (whose cancellations depend on summation order)
WITH_EXACT = REDUCED + (torch.float32,)


def assert_same(actual, expected, exact=None, scale_tol=False, **kw):
    """actual equals expected (torch) within the dtype's default tolerance.
    For float16/bfloat16, where torch itself rounds intermediates (its bf16
    log_softmax can be several ulps off), an element may instead match
    `exact`: the float64 result rounded to the dtype. With scale_tol (for
    gradients, float32 included: backward reads the output rounded to the
    dtype, and a cancellation such as g - exp(y) * sum(g) shows that rounding,
    and the summation order, at eps times the size of the terms) it may also
    be within 4 eps * max|exact| of it."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if exact is None or actual.dtype not in REDUCED + ((torch.float32,) if scale_tol else ()):
        torch.testing.assert_close(actual, expected, equal_nan=True, **kw)
        return
    exact = exact.to(actual.dtype)
    a, e, x = actual.detach().double(), expected.detach().double(), exact.detach().double()
    rtol, atol = {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5)}[actual.dtype]
    if scale_tol:
        finite = x[torch.isfinite(x)]
        atol = max(atol, 4 * torch.finfo(actual.dtype).eps * (finite.abs().max().item() if finite.numel() else 0))
    ok = torch.isclose(a, e, rtol, atol, equal_nan=True) | torch.isclose(a, x, rtol, atol, equal_nan=True)
    assert ok.all(), (
        f"{(~ok).sum().item()} of {ok.numel()} elements match neither torch nor the exact result; "
        f"first: actual {a[~ok][:5].tolist()}, torch {e[~ok][:5].tolist()}, exact {x[~ok][:5].tolist()}"
    )


def check_against_torch(fast_fn, torch_fn, make, grad=True, grad_seed=1, **tol):
    """Runs both functions on inputs from make() (called once for each, so
    in-place functions get their own copy) and compares outputs and, if
    `grad`, the gradient of a random linear functional of the output.
    Reduced precision is also checked against torch_fn run in float64."""
    xf, xt = make(), make()
    reduced = xt.dtype in WITH_EXACT
    x64 = make().double() if reduced else None
    if grad:
        xf = xf.detach().requires_grad_()
        xt = xt.detach().requires_grad_()
        x64 = x64.requires_grad_() if reduced else None
        # in-place functions need a non-leaf
        inf, int_, in64 = xf * 1, xt * 1, (x64 * 1 if reduced else None)
    else:
        inf, int_, in64 = xf, xt, x64
    yf, yt = fast_fn(inf), torch_fn(int_)
    y64 = torch_fn(in64) if reduced else None
    assert_same(yf, yt, y64, **tol)
    if grad:
        g = torch.randn(yt.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
        (gf,) = torch.autograd.grad(yf, xf, g.to(yt.dtype))
        (gt,) = torch.autograd.grad(yt, xt, g.to(yt.dtype))
        g64 = torch.autograd.grad(y64, x64, g.to(yt.dtype).double())[0] if reduced else None
        assert_same(gf, gt, g64, scale_tol=True, **tol)
    return yf, yt


def check_compiled_matches(fn, ref, shape=(7, 11), backend="aot_eager"):
    """torch.compile(fn, fullgraph=True) gives ref's values and input gradients."""
    x = torch.randn(shape, requires_grad=True)
    xr = x.detach().clone().requires_grad_()
    out = torch.compile(fn, fullgraph=True, backend=backend)(x)
    expect = ref(xr)
    torch.testing.assert_close(out, expect)
    out.sum().backward()
    expect.sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


# The forms of cross entropy the CUDA tests (real and emulated) go through.
CE_CASES = {
    "index": dict(),
    "weight": dict(weight=True),
    "ignore": dict(ignore_index=1),
    "smoothing": dict(label_smoothing=0.2),
    "weight-smoothing-ignore": dict(weight=True, label_smoothing=0.1, ignore_index=2),
    "probs": dict(probs=True),
    "probs-weight-smoothing": dict(probs=True, weight=True, label_smoothing=0.3),
}


def check_retained_graph_gradients(loss_fn, make_input):
    """A loss (fastact's) backpropagated several times through a retained
    graph gives torch's answers: each backward a fresh gradient, never memory
    the node hands out again (issue: x.grad aliased the node's own buffer)."""
    def leaf():
        return make_input().requires_grad_()

    x = leaf()
    loss = loss_fn(x)
    (once,) = torch.autograd.grad(loss, x, retain_graph=True)
    # zeroing the gradient between two backwards leaves the next one whole
    loss.backward(retain_graph=True)
    x.grad.zero_()
    loss.backward(retain_graph=True)
    torch.testing.assert_close(x.grad, once)
    # accumulation: 1x, 2x, 3x
    x.grad = None
    for k in (1, 2, 3):
        loss.backward(retain_graph=True)
        torch.testing.assert_close(x.grad, once * k)
    # two autograd.grad calls: equal values, distinct memory
    (a,) = torch.autograd.grad(loss, x, retain_graph=True)
    (b,) = torch.autograd.grad(loss, x, retain_graph=True)
    assert a.data_ptr() != b.data_ptr()
    a.mul_(100)
    torch.testing.assert_close(b, once)
    # a gradient changed in place by the user before the last backward
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    g /= g.norm()
    x.grad = None
    loss.backward()
    torch.testing.assert_close(x.grad, once)
