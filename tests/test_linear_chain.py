"""fastact.fuse's chains of layers (LinearChain, fastact.functional.
fused_linear_chain, the C++ op fastact::_linear_chain): values and every
gradient against torch's unfused layers over dtypes, shapes, feature sizes
on both sides of the small-matmul limit, activations, requires_grad mixes,
NaN; gradcheck and double backward, forward AD, vmap, opcheck,
torch.compile, bad input, and how fuse forms chains."""
import copy

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import fastact
from fastact import functional as F

ACTS = {"none": lambda t, s: t, "relu": lambda t, s: TF.relu(t), "leaky_relu": TF.leaky_relu,
        "sigmoid": lambda t, s: torch.sigmoid(t), "tanh": lambda t, s: torch.tanh(t),
        # differentiated from the pre-activation the chain keeps (s: ELU's alpha, Softplus's beta)
        "gelu": lambda t, s: TF.gelu(t), "gelu_tanh": lambda t, s: TF.gelu(t, approximate="tanh"),
        "silu": lambda t, s: TF.silu(t), "elu": TF.elu, "selu": lambda t, s: TF.selu(t), "softplus": TF.softplus}
# (feature sizes, activations): small layers (fastact's matmul), large ones (torch's), and mixed
CHAINS = [
    ((2, 10, 2), ("relu", "none")),
    ((11, 20, 12, 6, 4), ("leaky_relu", "sigmoid", "tanh", "none")),
    ((3, 64, 64, 5), ("tanh", "relu", "none")),
    ((100, 30, 70, 3), ("relu", "sigmoid", "none")),
    ((7, 17, 33, 1), ("sigmoid", "leaky_relu", "tanh")),
    ((5, 12, 70, 9, 3), ("gelu", "silu", "elu", "softplus")),
    ((6, 8, 8, 4), ("gelu_tanh", "relu", "selu")),
]
# float and double: fastact's matmul sums in another order (a weight
# gradient sums 300 rows: where they cancel, float32 keeps ~1e-5 absolute);
# half types: each layer is torch's matmul, with fastact's activation kernels
# (which compute in float)
TOL = {torch.float32: dict(rtol=1e-5, atol=3e-5), torch.float64: dict(rtol=1e-12, atol=1e-12),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2), torch.float16: dict(rtol=4e-3, atol=4e-3)}


def _layers(dims, dtype, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ws = [(torch.randn(o, i, generator=gen, dtype=torch.float64) / i ** 0.5).to(dtype).requires_grad_()
          for i, o in zip(dims, dims[1:])]
    bs = [torch.randn(o, generator=gen, dtype=torch.float64).to(dtype).requires_grad_() if bias else None
          for o in dims[1:]]
    return ws, bs


def _reference(x, ws, bs, acts, slope=0.1):
    for w, b, a in zip(ws, bs, acts):
        x = ACTS[a](TF.linear(x, w, b), slope)
    return x


def _chain(x, ws, bs, acts, slope=0.1):
    return F.fused_linear_chain(x, ws, bs, acts, [slope] * len(acts))


def _grads(y, inputs, g):
    wanted = [t for t in inputs if t is not None and t.requires_grad]
    return torch.autograd.grad(y, wanted, g)


@pytest.mark.parametrize("dims,acts", CHAINS, ids=[str(c[0]) for c in CHAINS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch", [(300,), (), (4, 5), (0,)], ids=["2d", "1d", "3d", "empty"])
def test_values_and_gradients_match_torch(dims, acts, dtype, batch):
    torch.manual_seed(0)
    ws, bs = _layers(dims, dtype)
    x = torch.randn(*batch, dims[0], dtype=torch.float64).to(dtype).requires_grad_()
    y, expect = _chain(x, ws, bs, acts), _reference(x, ws, bs, acts)
    assert y.shape == expect.shape and y.dtype == dtype
    torch.testing.assert_close(y, expect, **TOL[dtype])
    g = torch.randn(expect.shape, dtype=torch.float64).to(dtype)
    for a, b in zip(_grads(y, [x, *ws, *bs], g), _grads(expect, [x, *ws, *bs], g)):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_large_layers_are_torchs_arithmetic_bit_for_bit():
    ws, bs = _layers((100, 80, 70), torch.float32)
    x = torch.randn(64, 100, requires_grad=True)
    y, expect = _chain(x, ws, bs, ("relu", "none")), _reference(x, ws, bs, ("relu", "none"))
    assert torch.equal(y, expect)
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, [x, *ws, *bs], g), _grads(expect, [x, *ws, *bs], g)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("frozen", ["input", "first", "last", "biases", "all_but_input"])
def test_any_mix_of_requires_grad(frozen):
    ws, bs = _layers((5, 9, 7, 3), torch.float64, seed=3)
    x = torch.randn(20, 5, dtype=torch.float64, requires_grad=frozen == "all_but_input")
    if frozen == "first":
        ws[0].requires_grad_(False), bs[0].requires_grad_(False)
    if frozen == "last":
        ws[-1].requires_grad_(False)
    if frozen == "biases":
        for b in bs:
            b.requires_grad_(False)
    if frozen == "all_but_input":
        for t in ws + bs:
            t.requires_grad_(False)
    acts = ("tanh", "relu", "none")
    y, expect = _chain(x, ws, bs, acts), _reference(x, ws, bs, acts)
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, [x, *ws, *bs], g), _grads(expect, [x, *ws, *bs], g)):
        torch.testing.assert_close(a, b)
    none_need = [t.requires_grad_(False) for t in [x, *ws, *bs]]
    assert not _chain(x, ws, bs, acts).requires_grad and none_need


def test_no_bias_non_contiguous_input_and_nan():
    ws, _ = _layers((6, 8, 4), torch.float32)
    x = torch.randn(4, 30)[:, ::5].requires_grad_()
    x.data[1, 2] = float("nan")
    x.data[2, 0] = float("inf")
    y, expect = _chain(x, ws, [None, None], ("relu", "tanh")), _reference(x, ws, [None, None], ("relu", "tanh"))
    torch.testing.assert_close(y, expect, equal_nan=True)
    assert torch.equal(y.isnan(), expect.isnan())


@pytest.mark.parametrize("acts", [("tanh", "sigmoid", "none"), ("silu", "gelu", "softplus")])
def test_gradcheck_and_double_backward(acts):
    ws, bs = _layers((3, 5, 4, 2), torch.float64, seed=5)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, *p: _chain(x, p[:3], p[3:], acts)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, *ws, *bs))
    assert torch.autograd.gradgradcheck(fn, (x, *ws, *bs))
    # a gradient penalty, as torch computes it
    outs = []
    for f in (fn, lambda x, *p: _reference(x, p[:3], p[3:], acts)):
        (gx,) = torch.autograd.grad(f(x, *ws, *bs).pow(2).sum(), x, create_graph=True)
        outs.append(torch.autograd.grad(gx.pow(2).sum(), ws + bs))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("acts", [("relu", "none"), ("gelu", "elu")])
def test_forward_ad_and_vmap(acts):
    import torch.autograd.forward_ad as fwAD

    ws, bs = _layers((4, 6, 3), torch.float64)
    x, t = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    with fwAD.dual_level():
        ours = fwAD.unpack_dual(_chain(fwAD.make_dual(x, t), ws, bs, acts)).tangent
        theirs = fwAD.unpack_dual(_reference(fwAD.make_dual(x, t), ws, bs, acts)).tangent
    torch.testing.assert_close(ours, theirs)
    batched = torch.func.vmap(lambda u: _chain(u, ws, bs, acts))(x.view(5, 1, 4))
    torch.testing.assert_close(batched, _reference(x.view(5, 1, 4), ws, bs, acts))
    # a batch of weights (an ensemble)
    w_stack = torch.stack([ws[0], ws[0] * 2])
    ens = torch.func.vmap(lambda w: _chain(x, [w, ws[1]], bs, acts))(w_stack)
    torch.testing.assert_close(ens[1], _reference(x, [ws[0] * 2, ws[1]], bs, acts))


@pytest.mark.cpp_only
def test_opcheck():
    ws, bs = _layers((3, 5, 2), torch.float32)
    x = torch.randn(4, 3, requires_grad=True)
    torch.library.opcheck(torch.ops.fastact._linear_chain.default, (x, ws, bs, [1, 0], [0.0, 0.0]))
    torch.library.opcheck(torch.ops.fastact._linear_chain.default, (x.detach()[0], ws, [None, bs[1]], [3, 4], [0.0, 0.0]))
    # with the pre-activations it keeps, after the outputs
    outputs = torch.ops.fastact._linear_chain(x, ws, bs, [5, 10], [0.0, 2.0])
    assert len(outputs) == 4 and outputs[2].shape == (4, 5) and outputs[3].shape == (4, 2)
    torch.library.opcheck(torch.ops.fastact._linear_chain.default, (x, ws, bs, [5, 10], [0.0, 2.0]))
    torch.library.opcheck(torch.ops.fastact._linear_chain.default, (x, ws, bs, [2, 0], [-0.3, 0.0]))


@pytest.mark.cpp_only
def test_bad_input_gets_a_clear_error():
    ws, bs = _layers((3, 5, 2), torch.float32)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        _chain(torch.randn(4, 4), ws, bs, ("relu", "none"))
    with pytest.raises(RuntimeError, match="same dtype"):
        _chain(torch.randn(4, 3, dtype=torch.float64), ws, bs, ("relu", "none"))
    with pytest.raises(ValueError, match="activation must be one of"):
        _chain(torch.randn(4, 3), ws, bs, ("swish", "none"))
    with pytest.raises(ValueError, match="activation code must be 0 to 10"):
        torch.ops.fastact._linear_chain(torch.randn(4, 3), ws, bs, [11, 0], [0.0, 0.0])
    with pytest.raises(RuntimeError, match="one bias"):
        torch.ops.fastact._linear_chain(torch.randn(4, 3), ws, bs[:1], [1, 0], [0.0, 0.0])


def _tutorial_mlp(leaky=0.01):
    return nn.Sequential(nn.Linear(11, 20), nn.LeakyReLU(leaky), nn.Linear(20, 12), nn.ReLU(), nn.Linear(12, 6),
                         nn.Tanh(), nn.Linear(6, 4))


def test_fuse_forms_one_chain_and_trains_like_torch():
    torch.manual_seed(0)
    model = _tutorial_mlp()
    twin = copy.deepcopy(model)
    fused = fastact.fuse(model)
    assert isinstance(fused[0], fastact.LinearChain) and len(fused[0].rest) == 3
    x, y = torch.randn(200, 11), torch.randint(0, 4, (200,))
    opts = torch.optim.Adam(twin.parameters(), lr=0.01), fastact.optim.Adam(fused.parameters(), lr=0.01)
    for _ in range(30):
        for m, o, loss in ((twin, opts[0], TF.cross_entropy), (fused, opts[1], F.cross_entropy)):
            o.zero_grad()
            loss(m(x), y).backward()
            o.step()
    for p, q in zip(twin.parameters(), fused.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    # conversions reach every layer of the chain, and a copy is a chain of its own copies
    double = copy.deepcopy(fused).double()
    assert double[0].rest[0] is double[2] and double[2].weight.dtype == torch.float64
    torch.testing.assert_close(double(x.double()).float(), fused(x), rtol=1e-4, atol=1e-5)


def test_fuse_does_not_chain_what_it_cannot():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(-0.2), shared, nn.ReLU(), shared, nn.ReLU())
    fused = fastact.fuse(model)
    # a layer used twice stays FusedLinear (a negative slope is a chain: it keeps the pre-activation)
    assert [type(m).__name__ for m in fused] == ["LinearChain", "Fused", "FusedLinear", "Fused", "FusedLinear", "Fused"]
    assert fused[2] is fused[4]
    single = fastact.fuse(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()))  # a run of one is a chain too
    assert [type(m).__name__ for m in single] == ["LinearChain", "Fused"] and single[0].rest == ()
    split = fastact.fuse(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.Softplus(threshold=5),
                                       nn.Linear(5, 2), nn.Tanh(), nn.Linear(2, 2), nn.Dropout()))
    assert [type(m).__name__ for m in split] == ["LinearChain", "Fused", "Chained", "Softplus", "LinearChain",
                                                 "Fused", "Chained", "Dropout"]  # a Dropout after the run stays


def test_a_chain_takes_the_dropouts_between_its_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 16), nn.Tanh(), nn.Dropout(0.2),
                          nn.Dropout(0.5), nn.Linear(16, 3))
    fused = fastact.fuse(copy.deepcopy(model))
    assert [type(m).__name__ for m in fused] == ["LinearChain", "Fused", "ChainedDropout", "Chained", "Fused",
                                                 "ChainedDropout", "ChainedDropout", "Chained"]
    assert [(after, d.p) for after, d in fused[0].dropouts] == [(0, 0.3), (1, 0.2), (1, 0.5)]
    x = torch.randn(50, 4)
    for training in (True, False):
        model.train(training), fused.train(training)
        outs = []
        for m in (model, fused):
            torch.manual_seed(1)
            y = m(x)
            # the same masks from the same generator states, and the generator left as torch leaves it
            outs.append((y, torch.autograd.grad(y.pow(2).sum(), list(m.parameters())), torch.get_rng_state()))
        (y_t, g_t, rng_t), (y_f, g_f, rng_f) = outs
        torch.testing.assert_close(y_f, y_t)
        for a, b in zip(g_f, g_t):
            torch.testing.assert_close(a, b)
        assert torch.equal(rng_f, rng_t)
    # in eval mode the chain is one op, and a copy's chain holds the copy's Dropouts
    assert fused[0].active_dropouts() == [] and len(fused[0].dropouts) == 3
    twin = copy.deepcopy(fused)
    assert twin[0].dropouts[0][1] is twin[2] and twin[0].rest[0] is twin[3]


def test_a_chain_under_torch_compile_fullgraph():
    torch.manual_seed(0)
    model = fastact.fuse(_tutorial_mlp())
    x = torch.randn(32, 11, requires_grad=True)
    expect = model(x)
    (ge,) = torch.autograd.grad(expect.sum(), x)
    torch.compiler.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    (gc,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, expect)
    torch.testing.assert_close(gc, ge)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dims,acts", CHAINS[:2], ids=["circles", "datacamp"])
def test_cuda_chain_is_torchs_layers(dims, acts):
    # on CUDA the chain runs each layer as linear_act (cuBLAS and fastact's activation kernels)
    ws, bs = _layers(dims, torch.float32)
    ws = [w.detach().cuda().requires_grad_() for w in ws]
    bs = [b.detach().cuda().requires_grad_() for b in bs]
    x = torch.randn(300, dims[0], device="cuda", requires_grad=True)
    y, expect = _chain(x, ws, bs, acts), _reference(x, ws, bs, acts)
    torch.testing.assert_close(y, expect)
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, [x, *ws, *bs], g), _grads(expect, [x, *ws, *bs], g)):
        torch.testing.assert_close(a, b)
