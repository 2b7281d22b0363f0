"""torch.func and higher-order autograd, against torch: forward-mode AD,
vmap (batching rules, batched gradients), double backward, gradients with
respect to a loss's target and weights, complex inputs.

Every op and every loss form goes through gradcheck and gradgradcheck with
all their checks on (forward AD, batched gradients, forward-over-reverse);
the torch.func transforms run on the three model kinds the issue names (a
tanh MLP, a GELU MLP, a softmax cross-entropy classifier), fused and unfused,
and must give torch's numbers."""
import contextlib

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as TF
from torch import nn
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vjp, vmap

import fastact
import fastact.functional as F

D = torch.float64


def _randn(*shape, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=D, generator=g).requires_grad_(requires_grad)


# name -> (fastact function, torch function, input shape); each differentiable in its tensor arguments
POINTWISE = {
    "relu": (F.relu, TF.relu),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    "leaky_relu_negative": (lambda x: F.leaky_relu(x, -0.3), lambda x: TF.leaky_relu(x, -0.3)),
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "tanh": (F.tanh, torch.tanh),
    "gelu": (F.gelu, TF.gelu),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    "selu": (F.selu, TF.selu),
    "softmax": (lambda x: F.softmax(x, 1), lambda x: TF.softmax(x, 1)),
    "softmax_dim0": (lambda x: F.softmax(x, 0), lambda x: TF.softmax(x, 0)),
    "log_softmax": (lambda x: F.log_softmax(x, -1), lambda x: TF.log_softmax(x, -1)),
    "log_softmax_dim0": (lambda x: F.log_softmax(x, 0), lambda x: TF.log_softmax(x, 0)),
    # in place, on a copy (the copy is differentiable)
    "relu_": (lambda x: F.relu(x * 1, inplace=True), lambda x: TF.relu(x * 1, inplace=True)),
    "leaky_relu_": (lambda x: F.leaky_relu(x * 1, 0.2, inplace=True), lambda x: TF.leaky_relu(x * 1, 0.2, True)),
    "selu_": (lambda x: F.selu(x * 1, inplace=True), lambda x: TF.selu(x * 1, inplace=True)),
}

_Y = torch.tensor([0, 2, 1, 4, 2, 3])
_Y_IGNORED = torch.tensor([0, -100, 1, 4, -100, 3])
_W = torch.rand(5, dtype=D, generator=torch.Generator().manual_seed(1)) + 0.5
_P = torch.softmax(torch.randn(6, 5, dtype=D, generator=torch.Generator().manual_seed(2)), 1)
_T = torch.rand(6, 5, dtype=D, generator=torch.Generator().manual_seed(3))
_PW = torch.rand(5, dtype=D, generator=torch.Generator().manual_seed(4)) * 2

# every loss form: (fastact loss, torch loss) as functions of the input alone
LOSSES = {
    "ce_mean": lambda f: lambda x: f.cross_entropy(x, _Y),
    "ce_sum_weight": lambda f: lambda x: f.cross_entropy(x, _Y, _W, reduction="sum"),
    "ce_none_smoothing": lambda f: lambda x: f.cross_entropy(x, _Y, reduction="none", label_smoothing=0.2),
    "ce_mean_weight_smoothing_ignore": lambda f: lambda x: f.cross_entropy(x, _Y_IGNORED, _W, label_smoothing=0.1),
    "ce_probs": lambda f: lambda x: f.cross_entropy(x, _P),
    "ce_probs_weight_smoothing_sum": lambda f: lambda x: f.cross_entropy(x, _P, _W, reduction="sum",
                                                                         label_smoothing=0.3),
    "ce_spatial": lambda f: lambda x: f.cross_entropy(x.view(2, 5, 3), _Y.view(2, 3) % 5),
    "bce_mean": lambda f: lambda x: f.binary_cross_entropy_with_logits(x, _T),
    "bce_none_weight_pos_weight": lambda f: lambda x: f.binary_cross_entropy_with_logits(
        x, _T, _W, reduction="none", pos_weight=_PW),
    "bce_sum_pos_weight": lambda f: lambda x: f.binary_cross_entropy_with_logits(x, _T, reduction="sum",
                                                                                  pos_weight=_PW),
}

ALL_CHECKS = dict(check_forward_ad=True, check_batched_grad=True, check_batched_forward_grad=True)


@pytest.mark.parametrize("name", sorted(POINTWISE))
def test_pointwise_and_softmax_gradchecks(name):
    fast, _ = POINTWISE[name]
    x = _randn(4, 5)
    assert torch.autograd.gradcheck(fast, (x,), **ALL_CHECKS)
    assert torch.autograd.gradgradcheck(fast, (x,), check_fwd_over_rev=True, check_batched_grad=True)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradchecks(name):
    fast = LOSSES[name](F)
    x = _randn(6, 5)
    assert torch.autograd.gradcheck(fast, (x,), **ALL_CHECKS)
    assert torch.autograd.gradgradcheck(fast, (x,), check_fwd_over_rev=True, check_batched_grad=True)


@pytest.mark.parametrize("activation,slope", [("none", 0.0), ("relu", 0.0), ("leaky_relu", 0.1),
                                              ("leaky_relu", -0.5), ("sigmoid", 0.0), ("tanh", 0.0)])
def test_fused_linear_gradchecks(activation, slope):
    x, w, b = _randn(6, 5, seed=1), _randn(3, 5, seed=2), _randn(3, seed=3)
    fn = lambda x, w, b: F.fused_linear(x, w, b, activation, slope)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b), **ALL_CHECKS)
    assert torch.autograd.gradgradcheck(fn, (x, w, b), check_fwd_over_rev=True)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_torch_func_transforms_match_torch(name):
    fast, ref = LOSSES[name](F), LOSSES[name](TF)
    x = _randn(6, 5, requires_grad=False)
    t = _randn(6, 5, seed=9, requires_grad=False)
    total = lambda f: lambda u: f(u).sum()  # noqa: E731
    torch.testing.assert_close(jvp(fast, (x,), (t,)), jvp(ref, (x,), (t,)))
    torch.testing.assert_close(jacfwd(fast)(x), jacfwd(ref)(x))
    torch.testing.assert_close(jacrev(fast)(x), jacrev(ref)(x))
    torch.testing.assert_close(hessian(total(fast))(x), hessian(total(ref))(x))
    torch.testing.assert_close(jacfwd(jacfwd(total(fast)))(x), hessian(total(ref))(x))
    torch.testing.assert_close(jacrev(jacrev(total(fast)))(x), hessian(total(ref))(x))


@pytest.mark.parametrize("name", sorted(POINTWISE))
def test_pointwise_torch_func_transforms_match_torch(name):
    fast, ref = POINTWISE[name]
    x = _randn(3, 4, requires_grad=False)
    t = _randn(3, 4, seed=9, requires_grad=False)
    torch.testing.assert_close(jvp(fast, (x,), (t,)), jvp(ref, (x,), (t,)))
    total = lambda f: lambda u: f(u).pow(2).sum()  # noqa: E731
    torch.testing.assert_close(hessian(total(fast))(x), hessian(total(ref))(x))
    if not name.endswith("_"):  # torch's own in-place ops fail under jacfwd(jacfwd) ("ZeroTensors are immutable")
        torch.testing.assert_close(jacfwd(jacfwd(total(fast)))(x), hessian(total(ref))(x))
    xs = torch.stack([x, 0.5 * x])  # a batch of (3, 4) samples
    torch.testing.assert_close(vmap(grad(total(fast)))(xs), vmap(grad(total(ref)))(xs))


def test_forward_ad_dual_tensors_match_torch():
    for name, (fast, ref) in POINTWISE.items():
        x, t = _randn(3, 4, requires_grad=False), _randn(3, 4, seed=5, requires_grad=False)
        with fwAD.dual_level():
            ours = fwAD.unpack_dual(fast(fwAD.make_dual(x, t)))
            theirs = fwAD.unpack_dual(ref(fwAD.make_dual(x, t)))
        torch.testing.assert_close(ours.primal, theirs.primal, msg=name)
        torch.testing.assert_close(ours.tangent, theirs.tangent, msg=name)


def test_inplace_forward_ad_updates_the_tangent_in_place():
    x, t = _randn(3, 4, requires_grad=False), _randn(3, 4, seed=5, requires_grad=False)
    for fast, ref in ((F.relu_, torch.relu_), (F.selu_, torch.selu_),
                      (lambda d: F.leaky_relu_(d, 0.2), lambda d: TF.leaky_relu_(d, 0.2))):
        with fwAD.dual_level():
            d, e = fwAD.make_dual(x.clone(), t.clone()), fwAD.make_dual(x.clone(), t.clone())
            tangent = fwAD.unpack_dual(d).tangent
            fast(d)
            ref(e)
            assert fwAD.unpack_dual(d).tangent is tangent  # the same tensor, updated
            torch.testing.assert_close(fwAD.unpack_dual(d).tangent, fwAD.unpack_dual(e).tangent)
    # a negative slope loses the input's sign: torch refuses, and so does fastact
    with fwAD.dual_level():
        for fn in (F.leaky_relu_, TF.leaky_relu_):
            with pytest.raises(RuntimeError, match="In-place leakyReLu"):
                fn(fwAD.make_dual(x.clone(), t.clone()), -0.5)


# ---- the models: tanh MLP, GELU MLP, softmax cross-entropy classifier -----------

def _model(kind, activation):
    torch.manual_seed(0)
    act = {"tanh": activation.Tanh, "gelu": activation.GELU, "ce": activation.ReLU}[kind]
    return nn.Sequential(nn.Linear(3, 8), act(), nn.Linear(8, 8), act(), nn.Linear(8, 4)).to(D)


def _variants(kind):
    """(fastact model, torch model): unfused (fastact modules) and fused (fastact.fuse)."""
    ref = _model(kind, nn)
    unfused = _model(kind, fastact)
    fused = fastact.fuse(_model(kind, nn)) if kind != "gelu" else fastact.fuse(_model(kind, fastact))
    return ref, {"unfused": unfused, "fused": fused}


_XS = _randn(5, 3, seed=11, requires_grad=False)
_YS = torch.tensor([0, 3, 1, 2, 1])


def _scalar_fn(kind, model, loss):
    params = {k: v.detach() for k, v in model.named_parameters()}

    def per_input(x):  # physics-informed style: a scalar function of one point
        return functional_call(model, params, (x.unsqueeze(0),)).sum()

    def per_params(p, x, y):
        out = functional_call(model, p, (x.unsqueeze(0),))
        return loss(out, y.unsqueeze(0)) if kind == "ce" else out.pow(2).sum()

    return per_input, per_params, params


@pytest.mark.parametrize("kind", ["tanh", "gelu", "ce"])
@pytest.mark.parametrize("variant", ["unfused", "fused"])
def test_models_under_torch_func_match_torch(kind, variant):
    ref, ours = _variants(kind)
    model = ours[variant]
    f_in, f_par, params = _scalar_fn(kind, model, F.cross_entropy)
    r_in, r_par, r_params = _scalar_fn(kind, ref, TF.cross_entropy)
    x = _XS[0]
    torch.testing.assert_close(jvp(f_in, (x,), (torch.ones_like(x),)), jvp(r_in, (x,), (torch.ones_like(x),)))
    torch.testing.assert_close(jacfwd(f_in)(x), jacfwd(r_in)(x))
    torch.testing.assert_close(jacrev(f_in)(x), jacrev(r_in)(x))
    torch.testing.assert_close(hessian(f_in)(x), hessian(r_in)(x))  # forward-over-reverse
    torch.testing.assert_close(jacrev(jacrev(f_in))(x), hessian(r_in)(x))
    # per-sample gradients
    ours_ps = vmap(grad(f_par), in_dims=(None, 0, 0))(params, _XS, _YS)
    theirs_ps = vmap(grad(r_par), in_dims=(None, 0, 0))(r_params, _XS, _YS)
    torch.testing.assert_close(ours_ps, theirs_ps)
    # batched model outputs
    torch.testing.assert_close(vmap(lambda u: functional_call(model, params, (u,)))(_XS.view(5, 1, 3)),
                               vmap(lambda u: functional_call(ref, r_params, (u,)))(_XS.view(5, 1, 3)))


def test_gradient_penalty_through_cross_entropy_matches_torch():
    # double backward through the loss: the gradient's norm as a penalty
    ref, ours = _variants("ce")
    for model_ours in ours.values():
        grads = []
        for model, loss in ((model_ours, F.cross_entropy), (ref, TF.cross_entropy)):
            x = _XS.clone().requires_grad_()
            (gx,) = torch.autograd.grad(loss(model(x), _YS), x, create_graph=True)
            penalty = gx.pow(2).sum()
            grads.append(torch.autograd.grad(penalty, list(model.parameters())))
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b)


def test_loss_input_modified_in_place_before_a_recorded_backward_raises():
    x = _randn(6, 5)
    logits = x * 1
    loss = F.cross_entropy(logits, _Y)
    logits.mul_(2)  # the gradient the forward wrote still holds, but not a recomputation from these logits
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(loss, x, create_graph=True)
    logits = x * 1
    loss = F.cross_entropy(logits, _Y)
    logits.mul_(2)
    loss.backward()  # the plain backward never reads them: as torch's, which keeps log-probabilities
    torch.testing.assert_close(x.grad, torch.autograd.grad(TF.cross_entropy(x * 1, _Y), x)[0])


# ---- gradients for the target and the weights ---------------------------------------

def test_cross_entropy_gradients_for_probability_target_and_weight():
    x, p, w = _randn(6, 5), _P.clone().requires_grad_(), _W.clone().requires_grad_()
    for kw in (dict(), dict(label_smoothing=0.2, reduction="sum"), dict(reduction="none")):
        fn = lambda x, p, w: F.cross_entropy(x, p, w, **kw)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, p, w), **ALL_CHECKS)
        assert torch.autograd.gradgradcheck(fn, (x, p, w))
        ours = torch.autograd.grad(fn(x, p, w).sum(), (x, p, w))
        theirs = torch.autograd.grad(TF.cross_entropy(x, p, w, **kw).sum(), (x, p, w))
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b)
    # index targets: torch has no gradient for the weight, and says so; fastact too
    for loss in (F.cross_entropy, TF.cross_entropy):
        with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'weight'"):
            loss(x, _Y_IGNORED, w)


def test_bce_gradients_for_target_and_torchs_refusals_for_weights():
    x, t = _randn(6, 5), _T.clone().requires_grad_()
    for reduction in ("mean", "sum", "none"):
        fn = lambda x, t: F.binary_cross_entropy_with_logits(  # noqa: E731
            x, t, _W, reduction=reduction, pos_weight=_PW)
        assert torch.autograd.gradcheck(fn, (x, t), **ALL_CHECKS)
        assert torch.autograd.gradgradcheck(fn, (x, t))
        ours = torch.autograd.grad(fn(x, t).sum(), (x, t))
        theirs = torch.autograd.grad(TF.binary_cross_entropy_with_logits(
            x, t, _W, reduction=reduction, pos_weight=_PW).sum(), (x, t))
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b)
    # torch has no gradient for weight or pos_weight, and says so; fastact too
    for loss in (F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits):
        for kw, name in ((dict(weight=_W.clone().requires_grad_()), "weight"),
                         (dict(pos_weight=_PW.clone().requires_grad_()), "pos_weight")):
            with pytest.raises(RuntimeError, match=f"not differentiable with respect to argument '{name}'"):
                loss(x, t, **kw)


def test_distillation_with_soft_targets_that_carry_gradients():
    teacher, student = _randn(6, 5, seed=20), _randn(6, 5, seed=21)
    for loss in (F.cross_entropy, TF.cross_entropy):
        teacher.grad = student.grad = None
        loss(student, torch.softmax(teacher / 2, 1)).backward()
        if loss is F.cross_entropy:
            ours = (teacher.grad.clone(), student.grad.clone())
    torch.testing.assert_close(ours, (teacher.grad, student.grad))


# ---- vmap runs batching rules, not torch's per-sample loop --------------------------

@contextlib.contextmanager
def _no_vmap_fallback():
    torch._C._functorch._set_vmap_fallback_enabled(False)
    try:
        yield
    finally:
        torch._C._functorch._set_vmap_fallback_enabled(True)


def test_vmap_uses_batching_rules():
    x = _randn(4, 3, 5, requires_grad=False)
    with _no_vmap_fallback():  # torch's loop would raise now
        for name, (fast, ref) in POINTWISE.items():
            for in_dim in (0, 1, 2):
                torch.testing.assert_close(vmap(fast, in_dims=in_dim)(x), vmap(ref, in_dims=in_dim)(x), msg=name)
                g_fast = vmap(grad(lambda u: fast(u).pow(2).sum()), in_dims=in_dim)(x)
                g_ref = vmap(grad(lambda u: ref(u).pow(2).sum()), in_dims=in_dim)(x)
                torch.testing.assert_close(g_fast, g_ref, msg=name)
        ws = _randn(4, 2, 5, requires_grad=False)  # an ensemble of layers
        torch.testing.assert_close(vmap(lambda w: F.fused_linear(x[0], w, None, "tanh"))(ws),
                                   vmap(lambda w: torch.tanh(TF.linear(x[0], w)))(ws))
        torch.testing.assert_close(vmap(lambda u: F.fused_linear(u, ws[0], None, "relu"), in_dims=1)(x),
                                   vmap(lambda u: TF.relu(TF.linear(u, ws[0])), in_dims=1)(x))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_vmap_softmax_dim_out_of_range_raises_as_torch(name):
    x = _randn(4, 3, 5, requires_grad=False)
    for dim in (2, 5, -3):  # each sample is 2-d
        for fn in (getattr(F, name), getattr(TF, name)):
            with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\]"):
                vmap(lambda u: fn(u, dim))(x)


def test_losses_vmap_per_sample():
    x = _randn(4, 6, 5, requires_grad=False)
    y = torch.randint(0, 5, (4, 6), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(vmap(F.cross_entropy)(x, y), vmap(TF.cross_entropy)(x, y))
    torch.testing.assert_close(vmap(grad(F.cross_entropy))(x, y), vmap(grad(TF.cross_entropy))(x, y))


# ---- complex inputs: torch's ------------------------------------------------------------

@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_complex_inputs_are_torchs(name):
    z = torch.randn(7, dtype=torch.complex64)
    torch.testing.assert_close(getattr(fastact, name)(z), getattr(torch, name)(z))
    torch.testing.assert_close(getattr(F, name)(z), getattr(torch, name)(z))
    module = {"sigmoid": fastact.Sigmoid, "tanh": fastact.Tanh}[name]()
    torch.testing.assert_close(module(z), getattr(torch, name)(z))
    zg = z.to(torch.complex128).requires_grad_()
    assert torch.autograd.gradcheck(getattr(fastact, name), (zg,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_forward_ad_with_fastact_in_the_torch_namespace(monkeypatch, name, dtype):
    # PyTorch's own test_ops_fwd_gradients checks (forward AD, batched
    # forward grads, forward-over-reverse) on its OpInfo samples, with
    # fastact's function patched in as torch.<name>: the complex fallback
    # must reach torch's kernel, not the patched name again
    from torch.testing._internal import common_methods_invocations  # (needs expecttest: the test extra)
    (op,) = [o for o in common_methods_invocations.op_db if o.name == name and o.variant_test_name == ""]
    ours = getattr(F, name)
    monkeypatch.setattr(torch, name, ours)
    samples = list(op.sample_inputs("cpu", dtype, requires_grad=True))
    assert samples
    for sample in samples:
        assert torch.autograd.gradcheck(ours, (sample.input,), check_forward_ad=True, check_backward_ad=False,
                                        check_batched_grad=False, check_batched_forward_grad=True,
                                        check_undefined_grad=False)
        assert torch.autograd.gradgradcheck(ours, (sample.input,), check_fwd_over_rev=True, check_rev_over_rev=False,
                                            check_undefined_grad=False)
