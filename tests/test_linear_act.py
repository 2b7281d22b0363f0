"""fastact.FusedLinear / functional.fused_linear (Linear + activation as one
op and one autograd node) and fastact.fuse, against torch's unfused layers."""
import copy

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import fastact
import fastact.functional as F
from fastact_apps.train.trainer import compare
from fastact_apps.train.tutorials import TUTORIALS
from reference import backward_node_name, make_input

ACTIVATIONS = {  # name -> (negative_slope, torch's function)
    "none": (0.01, lambda t: t),
    "relu": (0.0, TF.relu),
    "leaky_relu": (0.01, lambda t: TF.leaky_relu(t, 0.01)),
    "leaky_relu_negative": (-0.2, lambda t: TF.leaky_relu(t, -0.2)),
    "sigmoid": (0.0, torch.sigmoid),
    "tanh": (0.0, torch.tanh),
}
# The activations differentiated from their pre-activation, which the op
# keeps (name -> (parameter, torch's function)).
FROM_INPUT = {
    "gelu": (0.0, TF.gelu),
    "gelu_tanh": (0.0, lambda t: TF.gelu(t, approximate="tanh")),
    "silu": (0.0, TF.silu),
    "elu": (0.7, lambda t: TF.elu(t, 0.7)),
    "selu": (0.0, TF.selu),
    "softplus": (1.5, lambda t: TF.softplus(t, 1.5)),
}
# fastact's sigmoid/tanh/gelu/selu kernels are not torch's (they agree within
# rounding); everything else is torch's own arithmetic, so the results are
# bit-identical.
EXACT = {"none", "relu", "leaky_relu", "leaky_relu_negative", "silu", "elu", "softplus"}


def _op_name(key):
    return "leaky_relu" if key.startswith("leaky") else key


def _assert_match(actual, expected, exact):
    if exact:
        assert torch.equal(actual, expected), (actual - expected).abs().max()
    elif actual.dtype in (torch.float16, torch.bfloat16):
        # a different summation order (torch's matmul path): a few roundings of the largest term
        eps = torch.finfo(actual.dtype).eps
        scale = expected.abs().max().item() if expected.numel() else 0.0
        torch.testing.assert_close(actual, expected, rtol=2 * eps, atol=4 * eps * scale)
    else:
        torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("key", list(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(7,), (5, 7), (0, 7), (2, 3, 7), (2, 2, 3, 7)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_linear_matches_linear_then_activation(key, dtype, shape, layout, bias):
    slope, torch_act = ACTIVATIONS[key]
    x = make_input(shape, dtype, layout).requires_grad_()
    w = make_input((4, 7), dtype, seed=1).requires_grad_()
    b = make_input((4,), dtype, seed=2).requires_grad_() if bias else None
    inputs = [t for t in (x, w, b) if t is not None]
    y = F.fused_linear(x, w, b, _op_name(key), slope)
    ref = torch_act(TF.linear(x, w, b))
    # torch runs addmm on 2-d and contiguous 3-d inputs, as fused_linear does on
    # every input; on the others torch's matmul path rounds differently
    exact = key in EXACT and (len(shape) <= 2 or (len(shape) == 3 and x.is_contiguous()))
    _assert_match(y, ref, exact)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    for got, want in zip(torch.autograd.grad(y, inputs, g), torch.autograd.grad(ref, inputs, g)):
        _assert_match(got, want, exact)
    assert y.grad_fn.name() == backward_node_name("linear_act", "FastactLinearBackward")


@pytest.mark.parametrize("key", list(FROM_INPUT))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_fused_linear_keeping_the_pre_activation_matches_torch(key, dtype):
    # the activations' own kernels are tested over every layout in
    # test_activation; here the pre-activation's path, over the shapes and
    # layouts linear flattens differently
    shape, layout, bias = [((7,), "contiguous", True), ((5, 7), "transposed", False),
                           ((0, 7), "contiguous", True), ((2, 3, 7), "transposed", True)][
        (list(FROM_INPUT).index(key) + [torch.float64, torch.float32, torch.bfloat16, torch.float16].index(dtype)) % 4]
    param, torch_act = FROM_INPUT[key]
    x = make_input(shape, dtype, layout).requires_grad_()
    w = make_input((4, 7), dtype, seed=1).requires_grad_()
    b = make_input((4,), dtype, seed=2).requires_grad_() if bias else None
    inputs = [t for t in (x, w, b) if t is not None]
    y = F.fused_linear(x, w, b, key, param)
    ref = torch_act(TF.linear(x, w, b))
    exact = key in EXACT and (len(shape) <= 2 or x.is_contiguous())
    _assert_match(y, ref, exact)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    for got, want in zip(torch.autograd.grad(y, inputs, g), torch.autograd.grad(ref, inputs, g)):
        _assert_match(got, want, exact)


@pytest.mark.parametrize("key", list(ACTIVATIONS) + list(FROM_INPUT))
def test_fused_linear_gradcheck(key):
    slope, _ = ACTIVATIONS[key] if key in ACTIVATIONS else FROM_INPUT[key]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)
    fn = lambda x, w, b: F.fused_linear(x, w, b, _op_name(key), slope)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


def test_fused_linear_grads_only_where_needed():
    x = torch.randn(5, 3)
    w = torch.randn(2, 3, requires_grad=True)
    b = torch.randn(2)
    y = F.fused_linear(x, w, b, "relu")
    (gw,) = torch.autograd.grad(y.sum(), w)
    torch.testing.assert_close(gw, torch.autograd.grad(TF.relu(TF.linear(x, w, b)).sum(), w)[0], rtol=0, atol=0)
    assert not F.fused_linear(x, w.detach(), b, "relu").requires_grad


def test_fused_linear_does_not_touch_its_inputs():
    x, w, b = torch.randn(5, 3), torch.randn(2, 3), torch.randn(2)
    copies = [t.clone() for t in (x, w, b)]
    F.fused_linear(x, w, b, "leaky_relu", -0.5)
    assert all(torch.equal(a, c) for a, c in zip((x, w, b), copies))


def test_fused_linear_errors():
    x, w = torch.randn(5, 3), torch.randn(2, 3)
    with pytest.raises(ValueError, match="activation"):
        F.fused_linear(x, w, None, "swish")
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        F.fused_linear(torch.randn(5, 4), w)
    with pytest.raises(RuntimeError, match="dtype"):
        F.fused_linear(x.double(), w)
    with pytest.raises(RuntimeError, match="at least 1D"):
        F.fused_linear(torch.tensor(1.0), w)
    with pytest.raises(RuntimeError):
        TF.linear(torch.tensor(1.0), w)  # torch refuses it too


def test_fused_linear_compiles_fullgraph():
    mod = fastact.FusedLinear(6, 4, activation="leaky_relu", negative_slope=0.1)
    ref = nn.Sequential(nn.Linear(6, 4), nn.LeakyReLU(0.1))
    ref[0].load_state_dict(mod.state_dict())
    x = torch.randn(8, 6)
    out = torch.compile(mod, fullgraph=True, backend="aot_eager")(x)
    expect = ref(x)
    torch.testing.assert_close(out, expect)
    out.sum().backward()
    expect.sum().backward()
    torch.testing.assert_close(mod.weight.grad, ref[0].weight.grad)


def test_fused_linear_module_is_a_linear():
    mod = fastact.FusedLinear(3, 2, activation="relu")
    assert isinstance(mod, nn.Linear) and list(mod.state_dict()) == ["weight", "bias"]
    assert "activation=relu" in repr(mod)
    with pytest.raises(ValueError):
        fastact.FusedLinear(3, 2, activation="softmax")


@pytest.mark.parametrize("activation, torch_module", [("leaky_relu", nn.LeakyReLU()), ("elu", nn.ELU()),
                                                      ("softplus", nn.Softplus())])
def test_an_unset_parameter_is_torchs_default(activation, torch_module):
    # nn.ELU's alpha and nn.Softplus's beta default to 1, nn.LeakyReLU's slope to 0.01
    torch.manual_seed(0)
    mod = fastact.FusedLinear(4, 3, activation=activation)
    x = torch.randn(5, 4) * 3
    expect = torch_module(TF.linear(x, mod.weight, mod.bias))
    assert torch.equal(mod(x), expect)
    assert torch.equal(F.fused_linear(x, mod.weight, mod.bias, activation), expect)
    assert f"({mod.negative_slope})" in repr(mod)


# ---- fastact.fuse ----------------------------------------------------------


def _unfused_fastact(model):
    return fastact.swap(copy.deepcopy(model))


@pytest.mark.parametrize("chain", [False, True], ids=["layers", "chain"])
@pytest.mark.parametrize("name", [n for n in TUTORIALS if n != "mlp"] + ["mlp"])
def test_fuse_keeps_every_tutorial_models_numbers(name, chain):
    tutorial = TUTORIALS[name]
    torch.manual_seed(0)
    model = tutorial.build()
    x, _ = tutorial.data()
    x = x[:300]
    unfused, fused = _unfused_fastact(model), fastact.fuse(copy.deepcopy(model), chain=chain)
    assert any(isinstance(m, fastact.FusedLinear) for m in fused.modules())
    assert any(isinstance(m, fastact.LinearChain) for m in fused.modules()) == chain
    # bit for bit layer by layer and for large layers (torch's matmul); fastact's
    # own matmul for small chained layers sums in another order
    exact = not chain or all(min(m.in_features, m.out_features) > 64 for m in model.modules()
                             if isinstance(m, nn.Linear))
    same = torch.equal if exact else (lambda a, b: torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5) is None)
    y_u, y_f, y_t = unfused(x), fused(x), model(x)
    assert same(y_f, y_u)  # the same numbers as the unfused fastact model ...
    torch.testing.assert_close(y_f, y_t)  # ... and as torch's
    g = torch.randn(y_u.shape, generator=torch.Generator().manual_seed(1))
    y_u.backward(g)
    y_f.backward(g)
    y_t.backward(g)
    for p_u, p_f, p_t in zip(unfused.parameters(), fused.parameters(), model.parameters()):
        assert same(p_f.grad, p_u.grad)
        torch.testing.assert_close(p_f.grad, p_t.grad)


def test_fuse_keeps_parameters_optimizer_and_state_dict_keys():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.Linear(8, 3))
    params = list(model.parameters())
    keys = list(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # built before fuse
    fused = fastact.fuse(model)
    assert fused is model and [id(p) for p in fused.parameters()] == [id(p) for p in params]
    assert list(fused.state_dict()) == keys
    assert [type(m).__name__ for m in fused] == ["LinearChain", "Fused", "Chained", "Fused", "Chained"]
    assert fused[0].rest == (fused[2], fused[4])
    assert fused[2].activation == "leaky_relu" and fused[2].negative_slope == 0.2
    before = fused[0].weight.detach().clone()
    fused(torch.randn(5, 4)).sum().backward()
    opt.step()
    assert not torch.equal(fused[0].weight, before)
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.Linear(8, 3))
    fresh.load_state_dict(fused.state_dict())  # loads into the unfused model


@pytest.mark.parametrize("chain", [False, True], ids=["layers", "chain"])
def test_fuse_takes_the_activations_that_keep_their_pre_activation(chain):
    torch.manual_seed(0)
    acts = [nn.GELU(), nn.GELU("tanh"), nn.SiLU(), nn.ELU(0.5, inplace=True), nn.SELU(), nn.Softplus(2.0),
            nn.LeakyReLU(-0.1)]
    layers = [m for act in acts for m in (nn.Linear(6, 6), act)]
    model = nn.Sequential(*layers, nn.Linear(6, 3)).double()
    x = torch.randn(9, 6, dtype=torch.float64)
    unfused, fused = _unfused_fastact(model), fastact.fuse(copy.deepcopy(model), chain=chain)
    assert [m.activation for m in fused.modules() if isinstance(m, fastact.FusedLinear)] == [
        "gelu", "gelu_tanh", "silu", "elu", "selu", "softplus", "leaky_relu", "none"]
    assert isinstance(fused[0], fastact.LinearChain) == chain  # one chain, all of it
    assert "activation=elu(0.5)" in repr(fused[6])
    y_u, y_f = unfused(x), fused(x)
    torch.testing.assert_close(y_f, y_u, rtol=1e-12, atol=1e-12)  # the small kernel sums the last layer in its order
    torch.testing.assert_close(y_f, model(x))
    g = torch.randn(y_u.shape, dtype=torch.float64)
    for p_f, p_u in zip(torch.autograd.grad(y_f, list(fused.parameters()), g),
                        torch.autograd.grad(y_u, list(unfused.parameters()), g)):
        torch.testing.assert_close(p_f, p_u, rtol=1e-12, atol=1e-12)
    # a Softplus of another threshold keeps its own module (the op's threshold is torch's default)
    other = fastact.fuse(nn.Sequential(nn.Linear(3, 3), nn.Softplus(threshold=5.0)), chain=chain)
    assert type(other[1]) is nn.Softplus


def test_fuse_leaves_hooked_layers_and_custom_containers_alone():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.act = nn.Linear(3, 3), nn.ReLU()

        def forward(self, x):
            return self.act(self.lin(x)) + x

    hooked = nn.Linear(3, 3)
    hooked.register_forward_hook(lambda m, i, o: None)
    model = nn.Sequential(hooked, nn.ReLU(), Custom(), nn.Linear(3, 3), nn.Tanh())
    fused = fastact.fuse(model)
    assert fused[0] is hooked and isinstance(fused[1], fastact.ReLU)
    assert type(fused[2].lin) is nn.Linear and isinstance(fused[2].act, fastact.ReLU)
    assert isinstance(fused[3], fastact.FusedLinear) and fused[3].activation == "tanh"


def test_fuse_keeps_shared_layers_shared():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.ReLU())
    fused = fastact.fuse(model)
    assert fused[0] is fused[2] and len(list(fused.parameters())) == 2


def test_fused_training_follows_torch():
    row = compare("circles", epochs=30, warmup=1)
    assert row.matching_steps == 30 and row.agree


@pytest.mark.parametrize("bias_shape", [(1, 4), (4,), (1,), ()])
def test_fused_linear_with_a_broadcast_bias_as_torch(bias_shape):
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(bias_shape, requires_grad=True)
    out = F.fused_linear(x, w, b, "relu")
    expect = TF.relu(TF.linear(x, w, b))
    torch.testing.assert_close(out, expect)
    g = torch.randn(expect.shape)
    got, want = torch.autograd.grad(out, (x, w, b), g), torch.autograd.grad(expect, (x, w, b), g)
    for a, e in zip(got, want):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e)
