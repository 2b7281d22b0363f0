"""relu and leaky_relu against torch: values, gradients, in-place semantics,
bad input."""
import pytest
import torch
import torch.nn.functional as TF

import fastact.functional as F
from reference import backward_node_name, DTYPES, LAYOUTS, SHAPES, check_against_torch, make_input

SLOPES = [0.01, 0.2, 0.0, -0.5, 1.5]


def ops(slope):
    return [
        ("relu", lambda x: F.relu(x), lambda x: TF.relu(x)),
        ("leaky_relu", lambda x: F.leaky_relu(x, slope), lambda x: TF.leaky_relu(x, slope)),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
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
    # 32 MiB of float32: past the serial grain and the streaming-store size
    x = make_input((2048, 4096 + 3))
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


def test_forward_mode_ad_is_refused_not_ignored():
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        d = fwAD.make_dual(torch.randn(3), torch.ones(3))
        with pytest.raises(NotImplementedError, match="forward-mode AD"):
            F.relu(d)


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
