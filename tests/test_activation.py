"""The activations against torch (one file per op family, as csrc/*/activation*):
relu and leaky_relu (values, gradients, in-place semantics, bad input), then
sigmoid, tanh, gelu (both forms) and selu (values and gradients over dtypes,
shapes and layouts, special values, integer inputs, what each saves for
backward, in-place selu, gradcheck and compile)."""
import pytest
import torch
import torch.nn.functional as TF

import fastact
import fastact.functional as F
from reference import (backward_node_name, DTYPES, SHAPES, check_against_torch, check_compiled_matches,
                       distinct_layouts, make_input)

# ---- relu, leaky_relu -------------------------------------------------------

SLOPES = [0.01, 0.2, 0.0, -0.5, 1.5]


def ops(slope):
    return [
        ("relu", lambda x: F.relu(x), lambda x: TF.relu(x)),
        ("leaky_relu", lambda x: F.leaky_relu(x, slope), lambda x: TF.leaky_relu(x, slope)),
    ]


def relu_cases():
    """Every (dtype, shape, layout) combination (the layouts make_input tells
    apart), each on relu or leaky_relu in alternation, so that each op still
    runs with every (dtype, shape), (dtype, layout) and (shape, layout) pair;
    a 0-d shape, with one layout, on both ops."""
    for d, dtype in enumerate(DTYPES):
        for s, shape in enumerate(SHAPES):
            layouts = distinct_layouts(shape)
            for l, layout in enumerate(layouts):
                for name in ["relu", "leaky_relu"] if len(layouts) == 1 else [["relu", "leaky_relu"][(d + s + l) % 2]]:
                    yield pytest.param(name, layout, shape, dtype, id=f"{name}-{layout}-{shape}-{dtype}")


def large_input():
    """C++: 32 MiB of float32, past the serial grain and the streaming-store
    size (24 MiB). The Numba backend has no streaming stores: just over 4 MiB,
    past its thread grain (1 << 16 elements a thread) for up to 16 threads and
    at its output pool's minimum (outputs.MIN_BYTES, 4 MiB)."""
    return make_input((2048 if fastact.backend().name == "cpp" else 256, 4096 + 3))


@pytest.mark.parametrize("name,layout,shape,dtype", list(relu_cases()))
def test_matches_torch(name, layout, shape, dtype):
    fast, ref = dict((n, (f, t)) for n, f, t in ops(0.1))[name]
    yf, _ = check_against_torch(fast, ref, lambda: make_input(shape, dtype, layout))
    if layout == "transposed" and len(shape) > 1:
        assert yf.stride() == make_input(shape, dtype, layout).stride(), "dense layouts are kept, as empty_like"


@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu_slopes_and_special_values(slope, dtype):
    check_against_torch(
        lambda x: F.leaky_relu(x, slope), lambda x: TF.leaky_relu(x, slope),
        lambda: make_input((4, 50), dtype, special=True),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_relu_special_values(dtype, layout):
    # relu's backward is threshold_backward(grad, out, 0): a NaN output passes its gradient.
    check_against_torch(F.relu, TF.relu, lambda: make_input((6, 40), dtype, layout, special=True))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_relu_integers(dtype):
    x = make_input((5, 33), dtype)
    assert torch.equal(F.relu(x), TF.relu(x))
    y = x.clone()
    F.relu(y, inplace=True)
    assert torch.equal(y, TF.relu(x))


def test_large_tensor_parallel_and_streaming_paths():
    x = large_input()
    check_against_torch(F.relu, TF.relu, lambda: x)
    check_against_torch(lambda t: F.leaky_relu(t, 0.3), lambda t: TF.leaky_relu(t, 0.3), lambda: x)


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced"])
def test_inplace_matches_torch(name, dtype, layout):
    fast = {"relu": lambda x: F.relu(x, inplace=True), "leaky_relu": lambda x: F.leaky_relu(x, 0.2, True)}[name]
    ref = {"relu": lambda x: TF.relu(x, inplace=True), "leaky_relu": lambda x: TF.leaky_relu(x, 0.2, True)}[name]
    base_f = make_input((6, 21), dtype, layout)
    base_t = make_input((6, 21), dtype, layout)
    out = fast(base_f)
    assert out is base_f, "in-place returns its input"
    torch.testing.assert_close(base_f, ref(base_t))
    # and with autograd, on a non-leaf
    check_against_torch(fast, ref, lambda: make_input((6, 21), dtype, layout))


def test_out_of_place_never_mutates_input():
    x = make_input((4, 40), special=True)
    before = x.clone()
    F.relu(x)
    F.leaky_relu(x, 0.3)
    torch.testing.assert_close(x, before, equal_nan=True)


def test_inplace_bumps_version_and_autograd_catches_misuse():
    x = torch.randn(5, requires_grad=True)
    y = x.exp()  # exp saves its output
    v = y._version
    F.relu(y, inplace=True)
    assert y._version > v
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    z = torch.randn(5)
    v = z._version
    F.leaky_relu(z, 0.1, inplace=True)
    assert z._version > v


def test_inplace_on_leaf_requiring_grad_is_refused():
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        F.relu(torch.randn(3, requires_grad=True), inplace=True)


def test_inplace_on_view_rebases_history():
    x = torch.randn(4, 6, requires_grad=True)
    xr = x.detach().clone().requires_grad_()
    a, b = x * 1, xr * 1
    F.relu(a[:, 1:4], inplace=True)
    TF.relu(b[:, 1:4], inplace=True)
    g = torch.randn(4, 6)
    (a * g).sum().backward()
    (b * g).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


def test_inplace_leaky_relu_negative_slope_with_grad_fails_at_backward_as_torch():
    # torch's test_leaky_relu_inplace_with_neg_slope: the forward runs, backward raises
    for fn in (TF.leaky_relu, F.leaky_relu):
        a = torch.tensor([-1.0, 1.0], requires_grad=True)
        b = fn(a * 1, -0.5, inplace=True)
        torch.testing.assert_close(b, torch.tensor([0.5, 1.0]), check_dtype=False)
        with pytest.raises(RuntimeError, match="In-place leakyReLu backward calculation is triggered with a negative"):
            b.sum().backward()
    # without grad it is fine, as in torch
    y = torch.randn(8)
    expect = TF.leaky_relu(y, -0.1)
    F.leaky_relu(y, -0.1, inplace=True)
    torch.testing.assert_close(y, expect)


def test_leaky_relu_saves_output_not_input():
    saved = []
    x = torch.randn(8, 16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = F.leaky_relu(x, 0.01)
    assert len(saved) == 1 and saved[0].data_ptr() == y.data_ptr()


def test_leaky_relu_negative_slope_saves_input():
    saved = []
    x = torch.randn(8, 16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        F.leaky_relu(x, -0.3)
    assert len(saved) == 1 and saved[0].data_ptr() == x.data_ptr()


@pytest.mark.parametrize("fn", [
    F.relu,
    lambda x: F.leaky_relu(x, 0.2),
    lambda x: F.leaky_relu(x, -0.7),
])
def test_gradcheck_and_gradgradcheck(fn):
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    x = x + 0.05 * x.sign()  # keep away from the kink at 0
    x = x.detach().requires_grad_()
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("bad,err,match", [
    (torch.tensor([True, False]), RuntimeError, "Boolean inputs not supported"),
    (torch.tensor([1j]), NotImplementedError, "ComplexFloat"),
])
def test_relu_bad_dtype(bad, err, match):
    with pytest.raises(err, match=match):
        F.relu(bad)


def test_leaky_relu_integer_input_raises_like_torch():
    x = torch.tensor([1, -2])
    with pytest.raises(NotImplementedError):
        TF.leaky_relu(x)
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        F.leaky_relu(x)


def test_backward_op_rejects_mismatched_shapes():
    import torch as t
    with pytest.raises(RuntimeError, match="does not match"):
        t.ops.fastact.relu_backward(t.randn(3), t.randn(4))
    with pytest.raises(RuntimeError, match="dtype"):
        t.ops.fastact.leaky_relu_backward(t.randn(3), t.randn(3, dtype=t.float64), 0.1)


def test_no_grad_builds_no_graph():
    x = torch.randn(3, requires_grad=True)
    with torch.no_grad():
        assert F.relu(x).grad_fn is None
        assert F.leaky_relu(x).grad_fn is None
    assert F.relu(x).grad_fn.name() == backward_node_name("relu", "FastactReluBackward")


@pytest.mark.parametrize("fn", [
    lambda x: F.relu_(x), lambda x: F.relu(x, inplace=True), lambda x: F.leaky_relu(x, 0.1, inplace=True),
    lambda x: F.leaky_relu_(x), lambda x: F.selu(x, inplace=True), lambda x: F.selu_(x),
], ids=["relu_", "relu-inplace", "leaky_relu-inplace", "leaky_relu_", "selu-inplace", "selu_"])
def test_inplace_on_an_inference_tensor_outside_inference_mode_raises_as_torch(fn):
    with torch.inference_mode():
        x = torch.tensor([-1.0, 2.0, -3.0])
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor outside InferenceMode"):
        fn(x)
    torch.testing.assert_close(x, torch.tensor([-1.0, 2.0, -3.0]))  # nothing written
    with torch.inference_mode():
        fn(x)  # inside inference mode it is allowed, as in torch
    assert x[0] <= 0 and x[1] > 0


# ---- sigmoid, tanh, gelu, selu ----------------------------------------------

OPS = {
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "tanh": (F.tanh, torch.tanh),
    "gelu": (F.gelu, TF.gelu),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    "selu": (F.selu, TF.selu),
    "selu_inplace": (lambda x: F.selu(x, inplace=True), lambda x: TF.selu(x, inplace=True)),
}
# selu saves its input, as torch: its output loses exp(x) to rounding for x << 0
SAVES_OUTPUT = {"sigmoid": True, "tanh": True, "gelu": False, "gelu_tanh": False, "selu": False}


# in place on a broadcast input is an error (tested below), not a case
CASES = [(name, layout, shape) for name in OPS for shape in SHAPES for layout in distinct_layouts(shape)
         if not (name == "selu_inplace" and layout == "expanded")]


@pytest.mark.parametrize("name,layout,shape", CASES, ids=[f"{n}-{l}-{s}" for n, l, s in CASES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_smooth_matches_torch(name, layout, dtype, shape):
    fast, ref = OPS[name]
    check_against_torch(fast, ref, lambda: make_input(shape, dtype, layout))


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values_and_large_inputs(name, dtype):
    fast, ref = OPS[name]
    if name.startswith("gelu") and dtype == torch.float32:
        # torch's float32 gelu(+inf) is nan on its vectorized path (its
        # vector erf(inf)) but inf on its scalar path and in float64: take
        # the float64 answer, inf, as the reference
        reference = ref
        ref = lambda x: reference(x.double()).float()
    check_against_torch(fast, ref, lambda: make_input((6, 40), dtype, special=True))
    check_against_torch(fast, ref, lambda: make_input((4, 64), dtype) * 30)  # saturating tails


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu", "gelu_tanh", "selu"])
def test_smooth_large_tensor_parallel_and_streaming_paths(name):
    fast, ref = OPS[name]
    x = large_input()
    check_against_torch(fast, ref, lambda: x, grad=False)


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_integer_inputs_promote_like_torch(name, dtype):
    fast, ref = OPS[name]
    x = torch.tensor([[6, 0], [1, 3]]).to(dtype)
    torch.testing.assert_close(fast(x), ref(x))  # includes the dtype: float32
    assert fast(torch.tensor([[6]])).dtype == torch.get_default_dtype()


@pytest.mark.parametrize("name", ["gelu", "selu"])
def test_integer_inputs_raise_like_torch(name):
    fast, ref = OPS[name]
    with pytest.raises(NotImplementedError):
        ref(torch.tensor([1, 2]))
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        fast(torch.tensor([1, 2]))


def test_gelu_bad_approximate_raises_like_torch():
    with pytest.raises(RuntimeError, match="approximate argument must be either none or tanh"):
        F.gelu(torch.randn(3), approximate="exact")


@pytest.mark.parametrize("name", SAVES_OUTPUT)
def test_saves_one_tensor_output_where_possible(name):
    fast, _ = OPS[name]
    saved = []
    x = torch.randn(8, 16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = fast(x)
    assert len(saved) == 1
    assert saved[0].data_ptr() == (y if SAVES_OUTPUT[name] else x).data_ptr()


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "selu"])
def test_inplace_on_broadcast_input_raises_like_torch(name):
    x = torch.randn(3, 1).expand(3, 4)
    with pytest.raises(RuntimeError):
        getattr(TF, name)(x, inplace=True)
    with pytest.raises(RuntimeError):
        getattr(F, name)(x, inplace=True)


def test_inplace_selu_bumps_version_and_is_differentiable():
    x = torch.randn(6, requires_grad=True)
    y = x.exp()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        F.selu(y, inplace=True)
        y.sum().backward()
    with pytest.raises(RuntimeError, match="leaf Variable"):
        F.selu(torch.randn(3, requires_grad=True), inplace=True)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu", "gelu_tanh", "selu"])
def test_smooth_gradcheck_and_gradgradcheck(name):
    fast, _ = OPS[name]
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fast, (x,))
    assert torch.autograd.gradgradcheck(fast, (x,))


def test_compiled():
    def fn(x):
        return F.gelu(F.sigmoid(x), approximate="tanh") + F.selu(F.tanh(x))

    def ref(x):
        return TF.gelu(torch.sigmoid(x), approximate="tanh") + TF.selu(torch.tanh(x))

    check_compiled_matches(fn, ref, (9, 13))


def test_seed_binary_classifier_with_fastact_sigmoid():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Linear(4, 1), torch.nn.Sigmoid())
    x = torch.randn(5, 6)
    expect = model(x)
    fastact.swap(model)
    assert type(model[2]) is fastact.Sigmoid
    torch.testing.assert_close(model(x), expect)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selu_gradient_as_torch_for_very_negative_inputs(dtype):
    x = torch.tensor([-20.0, -40.0, -87.0, -1e4, -0.0, float("-inf"), 1e-30, 3.0], dtype=dtype)
    xf, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    (gf,) = torch.autograd.grad(F.selu(xf).sum(), xf)
    (gt,) = torch.autograd.grad(TF.selu(xt).sum(), xt)
    # relative as well as absolute: 3e-9 is not 0
    torch.testing.assert_close(gf, gt, rtol=1e-5, atol=0)


def test_selu_gradient_at_nan_is_nan():
    # torch's own answer depends on where the NaN sits: NaN in its vectorized
    # loop, scale on its scalar tail (and for tensors shorter than a vector);
    # fastact gives NaN everywhere, the vectorized (and mathematical) answer
    x = torch.randn(64, dtype=torch.float64)
    x[5] = float("nan")
    xf, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    (gf,) = torch.autograd.grad(F.selu(xf).sum(), xf)
    (gt,) = torch.autograd.grad(TF.selu(xt).sum(), xt)
    assert gf[5].isnan() and gt[5].isnan()
    torch.testing.assert_close(gf, gt, equal_nan=True)


def test_inplace_selu_gradient_is_torchs_from_the_output():
    x = torch.tensor([-20.0, -1.0, -87.0, 2.0], requires_grad=True)
    gf = torch.autograd.grad(F.selu(x * 1, inplace=True).sum(), x)[0]
    gt = torch.autograd.grad(TF.selu(x * 1, inplace=True).sum(), x)[0]
    torch.testing.assert_close(gf, gt, rtol=1e-5, atol=0)
