"""sigmoid, tanh, gelu (both forms) and selu against torch: values and
gradients over dtypes, shapes and layouts, special values, integer inputs,
what each saves for backward, in-place selu, gradcheck and compile."""
import pytest
import torch
import torch.nn.functional as TF

import fastact
import fastact.functional as F
from reference import DTYPES, LAYOUTS, SHAPES, check_against_torch, check_compiled_matches, make_input

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
CASES = [(name, layout) for name in OPS for layout in LAYOUTS if not (name == "selu_inplace" and layout == "expanded")]


@pytest.mark.parametrize("name,layout", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch(name, layout, dtype, shape):
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
def test_large_tensor_parallel_and_streaming_paths(name):
    fast, ref = OPS[name]
    x = make_input((2048, 4096 + 3))
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
def test_gradcheck_and_gradgradcheck(name):
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
