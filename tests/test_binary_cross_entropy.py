"""fastact.functional.binary_cross_entropy_with_logits / BCEWithLogitsLoss
against torch: dtypes, shapes, reductions, weight and pos_weight
broadcasting, extreme logits, errors."""
import pickle

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import fastact
import fastact.functional as F
from reference import backward_node_name, DTYPES, assert_same, check_retained_graph_gradients

REDUCTIONS = ["mean", "sum", "none"]


def check(shape, dtype, reduction, weight_shape=None, pos_weight_shape=None, scale=3.0, seed=0, special=False):
    gen = torch.Generator().manual_seed(seed)
    x64 = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    if special and x64.numel() >= 4:
        x64.view(-1)[:4] = torch.tensor([float("inf"), -float("inf"), 200.0, -200.0], dtype=torch.float64)
    t64 = torch.rand(shape, generator=gen, dtype=torch.float64)
    w64 = torch.rand(weight_shape, generator=gen, dtype=torch.float64) + 0.1 if weight_shape is not None else None
    pw64 = torch.rand(pos_weight_shape, generator=gen, dtype=torch.float64) * 3 if pos_weight_shape is not None else None
    cast = lambda v: None if v is None else v.to(dtype)
    results = []
    for fn, d in ((F.binary_cross_entropy_with_logits, dtype), (TF.binary_cross_entropy_with_logits, dtype),
                  (TF.binary_cross_entropy_with_logits, torch.float64)):
        x = x64.to(d).requires_grad_()
        kw = dict(weight=None if w64 is None else w64.to(d), pos_weight=None if pw64 is None else pw64.to(d))
        loss = fn(x, t64.to(d), reduction=reduction, **kw)
        up = torch.rand(loss.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(d)
        results.append((loss, torch.autograd.grad(loss, x, up)[0]))
    (lf, gf), (lt, gt), (l64, g64) = results
    # logits of 1e4 make float32 losses of 1e4 whose last bits depend on the
    # order of operations: values too are held to torch or float64 at that scale
    assert_same(lf, lt, l64, scale_tol=True)
    assert_same(gf, gt, g64, scale_tol=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (7,), (5, 10), (2, 3, 4), (3, 4100)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torch(dtype, shape, reduction):
    check(shape, dtype, reduction)


@pytest.mark.parametrize("weight_shape,pos_weight_shape", [
    ((6,), None), (None, (6,)), ((4, 1), (6,)), ((4, 6), (4, 6)), ((), ()), ((1, 6), (1,)),
])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weight_and_pos_weight_broadcast_like_torch(weight_shape, pos_weight_shape, reduction):
    check((4, 6), torch.float64, reduction, weight_shape, pos_weight_shape)
    check((4, 6), torch.float32, reduction, weight_shape, pos_weight_shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_extreme_and_infinite_logits(dtype, reduction):
    check((8, 16), dtype, reduction, scale=1e4 / 3)
    check((8, 16), dtype, reduction, pos_weight_shape=(16,), special=True)


def test_large_input_parallel_path():
    check((1024, 1000), torch.float32, "mean", weight_shape=(1000,), pos_weight_shape=(1000,))
    check((1024, 1000), torch.float32, "none")


def test_errors_like_torch():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"Target size \(torch.Size\(\[3, 5\]\)\) must be the same as input size"):
        F.binary_cross_entropy_with_logits(x, torch.rand(3, 5))
    for fn in (TF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits):
        with pytest.raises(RuntimeError):
            fn(x, torch.randint(0, 2, (3, 4)))
        with pytest.raises(RuntimeError):
            fn(x, torch.rand(3, 4), pos_weight=torch.rand(5))
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.binary_cross_entropy_with_logits(x, torch.rand(3, 4), reduction="avg")


def test_input_is_never_overwritten_and_backward_keeps_only_the_gradient():
    x = torch.randn(8, 5, requires_grad=True)
    before = x.detach().clone()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        loss = F.binary_cross_entropy_with_logits(x, torch.rand(8, 5))
    assert saved == [], "no saved input: the node keeps only the gradient it wrote (and references)"
    loss.backward()
    torch.testing.assert_close(x.detach(), before)
    assert loss.grad_fn.name() == backward_node_name("binary_cross_entropy_with_logits",
                                                    "FastactBinaryCrossEntropyWithLogitsBackward")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck(reduction):
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.rand(4, 5, dtype=torch.float64)
    w, pw = torch.rand(5, dtype=torch.float64), torch.rand(5, dtype=torch.float64) * 2
    assert torch.autograd.gradcheck(
        lambda v: F.binary_cross_entropy_with_logits(v, t, w, reduction=reduction, pos_weight=pw), (x,))


def test_compiled():
    def loss_fn(x, t, pw):
        return F.binary_cross_entropy_with_logits(x, t, pos_weight=pw)

    x = torch.randn(6, 5, requires_grad=True)
    xr = x.detach().clone().requires_grad_()
    t, pw = torch.rand(6, 5), torch.rand(5)
    out = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")(x, t, pw)
    expect = TF.binary_cross_entropy_with_logits(xr, t, pos_weight=pw)
    torch.testing.assert_close(out, expect)
    out.backward()
    expect.backward()
    torch.testing.assert_close(x.grad, xr.grad)


def test_module_mirrors_torch_and_swaps():
    kwargs = dict(weight=torch.rand(4), reduction="sum", pos_weight=torch.rand(4))
    ours, theirs = fastact.BCEWithLogitsLoss(**kwargs), torch.nn.BCEWithLogitsLoss(**kwargs)
    assert repr(ours) == repr(theirs) and ours.state_dict().keys() == theirs.state_dict().keys()
    assert type(pickle.loads(pickle.dumps(ours))) is fastact.BCEWithLogitsLoss
    x, t = torch.randn(3, 4), torch.rand(3, 4)
    assert_same(ours(x, t), theirs(x, t))
    holder = torch.nn.ModuleList([torch.nn.BCEWithLogitsLoss(pos_weight=torch.ones(2))])
    fastact.swap(holder)
    assert type(holder[0]) is fastact.BCEWithLogitsLoss and holder[0].pos_weight is not None


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 9), min_size=0, max_size=3), st.sampled_from(REDUCTIONS), st.booleans(),
       st.booleans(), st.sampled_from([torch.float32, torch.float64]), st.integers(0, 1000))
def test_properties(shape, reduction, weighted, positive_weighted, dtype, seed):
    last = shape[-1:] if shape else ()
    check(tuple(shape), dtype, reduction, last if weighted else None, last if positive_weighted else None,
          seed=seed)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_retained_graph_backwards_never_share_memory(reduction):
    target, scale = torch.rand(6, 5), torch.rand(6, 5)
    check_retained_graph_gradients(
        lambda x: (F.binary_cross_entropy_with_logits(x, target, reduction=reduction) *
                   (scale if reduction == "none" else 1)).sum(),
        lambda: torch.randn(6, 5))
    check_retained_graph_gradients(lambda x: F.binary_cross_entropy_with_logits(x, target), lambda: torch.randn(6, 5))


@pytest.mark.parametrize("input_dtype,target_dtype", [
    (torch.float32, torch.float64), (torch.float64, torch.float32), (torch.float32, torch.float16),
    (torch.float16, torch.float32), (torch.bfloat16, torch.float64),
])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_result_dtype_as_torch(input_dtype, target_dtype, reduction):
    # torch's result takes the target's dtype ((1 - target).mul_(input)...)
    x64, t64 = torch.randn(4, 5, dtype=torch.float64), torch.rand(4, 5, dtype=torch.float64)
    xf, xt = x64.to(input_dtype).requires_grad_(), x64.to(input_dtype).requires_grad_()
    weight = torch.rand(5, dtype=torch.float64)
    lf = F.binary_cross_entropy_with_logits(xf, t64.to(target_dtype), weight=weight, reduction=reduction)
    lt = TF.binary_cross_entropy_with_logits(xt, t64.to(target_dtype), weight=weight, reduction=reduction)
    assert lf.dtype == lt.dtype
    torch.testing.assert_close(lf, lt, atol=2e-2, rtol=2e-2)
    up = torch.ones_like(lt)
    (gf,), (gt,) = torch.autograd.grad(lf, xf, up), torch.autograd.grad(lt, xt, up)
    assert gf.dtype == gt.dtype == input_dtype
    torch.testing.assert_close(gf, gt, atol=2e-2, rtol=2e-2)


def test_integer_logits_raise_not_implemented():
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        F.binary_cross_entropy_with_logits(torch.arange(6).view(2, 3), torch.rand(2, 3))
