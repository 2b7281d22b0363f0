"""fastact.functional.cross_entropy / fastact.CrossEntropyLoss against torch:
every target form, shape, reduction, weight, smoothing and ignore_index;
numerics, errors, and the fused backward's memory behaviour."""
import copy
import pickle

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import fastact
import fastact.functional as F
from reference import DTYPES, assert_same, backend_ops, check_retained_graph_gradients, eager_op, eager_ops

# few classes (tiled rows) and many (row by row, from 128 float32 classes)
SHAPES = [(7,), (0, 5), (6, 5), (4, 5, 3), (2, 6, 3, 2), (3, 40), (5, 200), (2, 300, 2)]
REDUCTIONS = ["mean", "sum", "none"]


def make_problem(shape, dtype, form, weighted, smoothing, ignore, seed=0, scale=3.0):
    """(input, target, kwargs) for one case; called twice to get two copies."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
    class_dim = 1 if len(shape) >= 2 else 0
    C = shape[class_dim]
    batch = shape[:class_dim] + shape[class_dim + 1:]
    if form == "index":
        target = torch.randint(0, C, batch, generator=gen)
        if ignore and target.numel():
            target.view(-1)[:: 3] = 1  # class 1 is the ignored one
    else:
        target = torch.softmax(torch.randn(shape, generator=gen, dtype=torch.float64) * 2, class_dim).to(dtype)
    kwargs = {"label_smoothing": smoothing}
    if weighted:
        kwargs["weight"] = (torch.rand(C, generator=gen, dtype=torch.float64) + 0.1).to(dtype)
    if ignore and form == "index":
        kwargs["ignore_index"] = 1
    return x, target, kwargs


def check_case(shape, dtype, form, reduction, weighted=False, smoothing=0.0, ignore=False, seed=0, scale=3.0,
               upstream=1.0):
    make = lambda: make_problem(shape, dtype, form, weighted, smoothing, ignore, seed, scale)
    (xf, t, kw), (xt, _, _), (x64, t64, kw64) = make(), make(), make()
    xf.requires_grad_()
    xt.requires_grad_()
    x64 = x64.double().requires_grad_()
    t64 = t64.double() if form == "probs" else t64
    kw64 = {k: (v.double() if torch.is_tensor(v) else v) for k, v in kw64.items()}
    lf = F.cross_entropy(xf, t, reduction=reduction, **kw)
    lt = TF.cross_entropy(xt, t, reduction=reduction, **kw)
    l64 = TF.cross_entropy(x64, t64, reduction=reduction, **kw64)
    assert_same(lf, lt, l64)
    g = torch.full_like(lt, upstream) if lt.dim() == 0 else torch.rand(lt.shape, dtype=torch.float64).to(dtype)
    (gf,) = torch.autograd.grad(lf, xf, g)
    (gt,) = torch.autograd.grad(lt, xt, g)
    (g64,) = torch.autograd.grad(l64, x64, g.double())
    assert_same(gf, gt, g64, scale_tol=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("form", ["index", "probs"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torch(dtype, shape, form, reduction):
    check_case(shape, dtype, form, reduction)


# ignore_index only with index targets: torch refuses it for probabilities (tested below)
@pytest.mark.parametrize("form,ignore", [("index", False), ("index", True), ("probs", False)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("shape", [(6, 5), (4, 5, 3)])
def test_options_in_every_combination(form, ignore, reduction, weighted, smoothing, shape):
    check_case(shape, torch.float64, form, reduction, weighted, smoothing, ignore)
    check_case(shape, torch.float32, form, reduction, weighted, smoothing, ignore, upstream=2.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["index", "probs"])
def test_stable_for_large_logits(dtype, form):
    check_case((16, 50), dtype, form, "mean", scale=1e4 / 3)
    check_case((4, 300), dtype, form, "mean", weighted=True, scale=1e4 / 3)
    check_case((16, 50), dtype, form, "none", weighted=True, smoothing=0.1, scale=1e4 / 3)


@pytest.mark.parametrize("form", ["index", "probs"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_inf_and_nan_rows_as_torch(form, reduction):
    inf, nan = float("inf"), float("nan")
    x = torch.randn(6, 4)
    x[0, 2] = -inf            # a -inf logit that is not the target
    x[1] = -inf               # a whole row of -inf
    x[2, 1] = nan             # NaN in, NaN out
    x[3, 0] = 1e4
    target = torch.tensor([0, 1, 2, 3, 0, 1]) if form == "index" else torch.softmax(torch.randn(6, 4), 1)
    xf, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    lf, lt = F.cross_entropy(xf, target, reduction=reduction), TF.cross_entropy(xt, target, reduction=reduction)
    assert_same(lf, lt)
    g = torch.ones_like(lt)
    assert_same(torch.autograd.grad(lf, xf, g)[0], torch.autograd.grad(lt, xt, g)[0])


def test_target_logit_minus_inf_gives_inf_loss():
    x = torch.tensor([[-float("inf"), 0.0, 1.0]])
    assert F.cross_entropy(x, torch.tensor([0])).item() == float("inf") == TF.cross_entropy(x, torch.tensor([0])).item()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_all_targets_ignored(reduction, smoothing):
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.full((4,), -100)
    lf, lt = F.cross_entropy(x, y, reduction=reduction, label_smoothing=smoothing), \
        TF.cross_entropy(x, y, reduction=reduction, label_smoothing=smoothing)
    assert_same(lf, lt)  # mean: nan, as torch
    assert_same(torch.autograd.grad(lf.sum(), x)[0], torch.autograd.grad(lt.sum(), x)[0])


def test_uint8_targets_and_legacy_reduction_args():
    x = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 1], dtype=torch.uint8)
    assert_same(F.cross_entropy(x, y), TF.cross_entropy(x, y))
    with pytest.warns(UserWarning):
        expect = TF.cross_entropy(x, y.long(), size_average=False)
    with pytest.warns(UserWarning):
        assert_same(F.cross_entropy(x, y.long(), size_average=False), expect)


def test_seed_notebook_one_hot_double_target():
    scores = torch.tensor([[-0.1211, 0.1059]]).double()
    one_hot = torch.tensor([[1, 0]]).double()
    assert_same(F.cross_entropy(scores, one_hot), TF.cross_entropy(scores, one_hot))
    assert_same(fastact.CrossEntropyLoss()(scores, one_hot), torch.nn.CrossEntropyLoss()(scores, one_hot))


def test_probability_target_of_another_float_dtype():
    x = torch.randn(3, 4, dtype=torch.float64)
    t = torch.softmax(torch.randn(3, 4), 1)
    assert_same(F.cross_entropy(x, t), TF.cross_entropy(x, t))


@pytest.mark.parametrize("bad_target,error,match", [
    (torch.tensor([0, 1, 5]), IndexError, "Target 5 is out of bounds"),
    (torch.tensor([0, -1, 2]), IndexError, "Target -1 is out of bounds"),
    (torch.tensor([0, 1, 2], dtype=torch.int32), RuntimeError, "expected target dtype to be Long or Byte, but got Int$"),
    (torch.tensor([0, 1, 2], dtype=torch.int16), RuntimeError, "expected target dtype to be Long or Byte, but got Short"),
    (torch.tensor([0.0, 1.0, 2.0]), RuntimeError, "expected target dtype to be Long or Byte, but got Float"),
    (torch.tensor([0, 1]), ValueError, r"Expected input batch_size \(3\) to match target batch_size \(2\)"),
    (torch.zeros(3, 4, dtype=torch.long), RuntimeError, "Expected floating point type for target with class probabilities"),
])
def test_bad_targets_raise_like_torch(bad_target, error, match):
    x = torch.randn(3, 4)
    with pytest.raises(error):
        TF.cross_entropy(x, bad_target)
    with pytest.raises(error, match=match):
        F.cross_entropy(x, bad_target)


def test_bad_options_raise_like_torch():
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    cases = [
        (dict(weight=torch.ones(5)), RuntimeError, "weight tensor should be defined either for all 4 classes"),
        (dict(label_smoothing=1.5), RuntimeError, "label_smoothing must be between 0.0 and 1.0"),
        (dict(reduction="avg"), ValueError, "avg is not a valid value for reduction"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error):
            TF.cross_entropy(x, y, **kwargs)
        with pytest.raises(error, match=match):
            F.cross_entropy(x, y, **kwargs)
    t = torch.softmax(torch.randn(3, 4), 1)
    with pytest.raises(RuntimeError, match="ignore_index is not supported for floating point target"):
        F.cross_entropy(x, t, ignore_index=1)
    with pytest.raises(RuntimeError, match=r"Expected target size \[2, 3\], got \[2, 4\]"):
        F.cross_entropy(torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.long))


def test_out_of_range_target_leaves_nothing_half_done():
    x = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(IndexError, match="Target 7"):
        F.cross_entropy(x, torch.tensor([0, 1, 2, 7]), reduction="none")
    assert x.grad is None


def test_input_is_never_overwritten():
    x = torch.randn(8, 5, requires_grad=True)
    before = x.detach().clone()
    loss = F.cross_entropy(x, torch.randint(0, 5, (8,)))
    loss.backward()
    torch.testing.assert_close(x.detach(), before)


def test_no_grad_writes_no_gradient(monkeypatch):
    seen = []
    op = eager_op("cross_entropy")
    monkeypatch.setattr(eager_ops(), "cross_entropy", lambda *a: seen.append(a[-1]) or op(*a))
    x, y = torch.randn(8, 5, requires_grad=True), torch.randint(0, 5, (8,))
    with torch.no_grad():
        F.cross_entropy(x, y)
    F.cross_entropy(x.detach(), y)
    F.cross_entropy(x, y)
    assert seen == [False, False, True], "compute_grad only when the input will get a gradient"
    _, grad = op(x.detach(), y, None, 1, -100, 0.0, False)
    assert grad.numel() == 0
    with pytest.raises(RuntimeError, match="compute_grad=False"):
        op(x, y, None, 1, -100, 0.0, False)


def _capture_incoming_gradient(reduction="mean", upstream=None, retain=False):
    """Runs the op directly and records the data pointer of the gradient
    reaching the logits' producer, to see whether backward copied."""
    base = torch.randn(16, 6, requires_grad=True)
    logits = base * 1  # non-leaf: its grad flows on to MulBackward
    seen = []
    logits.register_hook(lambda g: seen.append((g.data_ptr(), g.clone())))
    loss, grad = backend_ops().cross_entropy(logits, torch.randint(0, 6, (16,)), None,
                                                 {"none": 0, "mean": 1, "sum": 2}[reduction], -100, 0.0, True)
    ptr = grad.data_ptr()
    expected = grad.clone()
    del grad
    if upstream is None:
        loss.backward(retain_graph=retain)
    else:
        loss.backward(upstream, retain_graph=retain)
    return ptr, expected, seen, loss


@pytest.mark.cpp_only  # the C++ node's optimizations; the Numba backend scales out of place
def test_backward_with_unit_gradient_is_no_pass_at_all():
    ptr, expected, seen, _ = _capture_incoming_gradient()
    assert seen[0][0] == ptr, "the forward's gradient is handed on as it is"
    torch.testing.assert_close(seen[0][1], expected)


@pytest.mark.cpp_only
def test_backward_scales_in_place_when_the_graph_is_not_retained():
    ptr, expected, seen, _ = _capture_incoming_gradient(upstream=torch.tensor(3.0))
    assert seen[0][0] == ptr
    torch.testing.assert_close(seen[0][1], expected * 3)


def test_retain_graph_backward_twice_gives_the_same_gradient():
    ptr, expected, seen, loss = _capture_incoming_gradient(upstream=torch.tensor(2.0), retain=True)
    loss.backward(torch.tensor(2.0))
    assert len(seen) == 2
    torch.testing.assert_close(seen[0][1], expected * 2)
    torch.testing.assert_close(seen[1][1], expected * 2)


def test_backward_twice_without_retain_graph_raises():
    x = torch.randn(4, 3, requires_grad=True)
    loss = F.cross_entropy(x * 1, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_none_reduction_backward_scales_each_row():
    x = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0])
    w = torch.rand(4)
    up = torch.randn(5)
    (gf,) = torch.autograd.grad(F.cross_entropy(x, y, w, reduction="none"), x, up)
    (gt,) = torch.autograd.grad(TF.cross_entropy(x, y, w, reduction="none"), x, up)
    torch.testing.assert_close(gf, gt)


@pytest.mark.parametrize("form", ["index", "probs"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck(form, reduction):
    x, t, kw = make_problem((5, 4, 2), torch.float64, form, weighted=True, smoothing=0.2,
                            ignore=form == "index")
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda v: F.cross_entropy(v, t, reduction=reduction, **kw), (x,))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_training_step(backend):
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
    fast = fastact.swap(copy.deepcopy(ref))
    loss_ref, loss_fast = torch.nn.CrossEntropyLoss(label_smoothing=0.1), fastact.CrossEntropyLoss(label_smoothing=0.1)

    def forward(model, criterion, x, y):
        return criterion(model(x), y)

    compiled = torch.compile(forward, fullgraph=True, backend=backend)
    x, y = torch.randn(32, 6), torch.randint(0, 5, (32,))
    loss_f, loss_r = compiled(fast, loss_fast, x, y), forward(ref, loss_ref, x, y)
    torch.testing.assert_close(loss_f, loss_r)
    loss_f.backward()
    loss_r.backward()
    for a, b in zip(fast.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_module_mirrors_torch():
    w = torch.rand(4)
    for kwargs in ({}, dict(weight=w, ignore_index=2, reduction="sum", label_smoothing=0.1)):
        ours, theirs = fastact.CrossEntropyLoss(**kwargs), torch.nn.CrossEntropyLoss(**kwargs)
        assert repr(ours) == repr(theirs)
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        clone = pickle.loads(pickle.dumps(ours))
        assert type(clone) is fastact.CrossEntropyLoss and clone.reduction == ours.reduction
        x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 1])
        assert_same(ours(x, y), theirs(x, y))


def test_swap_replaces_cross_entropy_loss():
    holder = torch.nn.ModuleDict({"loss": torch.nn.CrossEntropyLoss(label_smoothing=0.2, ignore_index=3)})
    fastact.swap(holder)
    assert type(holder["loss"]) is fastact.CrossEntropyLoss
    assert holder["loss"].label_smoothing == 0.2 and holder["loss"].ignore_index == 3


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.integers(0, 9), st.integers(1, 40), st.lists(st.integers(1, 4), max_size=2),
       st.sampled_from(["index", "probs"]), st.sampled_from(REDUCTIONS), st.booleans(),
       st.sampled_from([0.0, 0.1, 0.5]), st.booleans(), st.sampled_from([torch.float32, torch.float64]),
       st.integers(0, 1000))
def test_properties(n, c, spatial, form, reduction, weighted, smoothing, ignore, dtype, seed):
    check_case((n, c, *spatial), dtype, form, reduction, weighted, smoothing, ignore and c > 1, seed)


@pytest.mark.parametrize("shape", [(5003, 10), (1003, 100), (997, 23), (257, 300)])
@pytest.mark.parametrize("form", ["index", "probs"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_many_rows_split_across_threads(shape, form, reduction):
    # both row paths (tiled for few classes, row by row for many), chunks
    # ending mid-tile, weights, smoothing and ignored targets together
    check_case(shape, torch.float32, form, reduction, weighted=True, smoothing=0.1, ignore=form == "index")


# ---- where fastact differed from torch (each of these failed before the fix) ----

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("form", ["index", "probs"])
def test_retained_graph_backwards_never_share_memory(reduction, form):
    target = torch.tensor([0, 3, 1, 2, 4, 0]) if form == "index" else torch.softmax(torch.randn(6, 5), 1)
    weight = torch.rand(6)
    check_retained_graph_gradients(
        lambda x: (F.cross_entropy(x * 1, target, reduction=reduction) * weight[: 1 if reduction != "none" else 6]).sum(),
        lambda: torch.randn(6, 5))
    # the leaf itself (CE reaches it through a view) and a mean loss of gradient exactly 1
    check_retained_graph_gradients(lambda x: F.cross_entropy(x, target), lambda: torch.randn(6, 5))


def test_retained_graph_through_a_linear_layer_matches_torch():
    torch.manual_seed(0)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    grads = []
    for ce in (F.cross_entropy, TF.cross_entropy):
        torch.manual_seed(1)
        layer = torch.nn.Linear(8, 4)
        logits = layer(x)
        loss = ce(logits, y)
        (g,) = torch.autograd.grad(loss, logits, retain_graph=True)
        g /= g.norm()  # the user's tensor: the next backward must not see this
        loss.backward()
        grads.append(layer.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_the_ops_gradient_output_held_by_the_caller_is_never_written():
    x = torch.randn(6, 5, requires_grad=True)
    loss, grad = backend_ops().cross_entropy(x, torch.randint(0, 5, (6,)), None, 1, -100, 0.0, True)
    before = grad.clone()
    loss.backward(torch.tensor(3.0))
    torch.testing.assert_close(grad, before)
    torch.testing.assert_close(x.grad, before * 3)


def test_second_backward_on_a_leaf_without_retain_graph_raises():
    x = torch.randn(4, 3, requires_grad=True)
    loss = F.cross_entropy(x, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


@pytest.mark.parametrize("weight,target", [
    ([1.0, -1.0, 2.0], [0, 1, 0, 1]),   # sum 0, mixed signs
    ([1.0, -2.0, 1.0], [0, 1, 1, 2]),   # sum -1
    ([1.0, -2.0, 1.0], [1, 1, 1, 0]),   # sum -5
    ([0.0, 1.0, 1.0], [0, 0, 0, 0]),    # sum 0, zero weights
    ([1.0, -1.0, 1.0], [0, 1, 2, -100]),  # with an ignored row
])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_weights_summing_to_zero_or_less_as_torch(weight, target, reduction, smoothing):
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w, y = torch.tensor(weight, dtype=torch.float64), torch.tensor(target)
    lf = F.cross_entropy(x, y, weight=w, reduction=reduction, label_smoothing=smoothing)
    lt = TF.cross_entropy(x, y, weight=w, reduction=reduction, label_smoothing=smoothing)
    torch.testing.assert_close(lf, lt, equal_nan=True)
    up = torch.ones_like(lt)
    torch.testing.assert_close(torch.autograd.grad(lf, x, up)[0], torch.autograd.grad(lt, x, up)[0], equal_nan=True)


def _outcome(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the test compares exception types
        return type(e)


@pytest.mark.parametrize("shape", [(3, 0), (0,)])
@pytest.mark.parametrize("form", ["ignored", "index", "probs"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_classes_as_torch(shape, form, reduction):
    batch = shape[:1] + shape[2:] if len(shape) >= 2 else ()
    target = {"ignored": torch.full(batch, -100), "index": torch.zeros(batch, dtype=torch.long),
              "probs": torch.rand(shape)}[form]
    xf, xt = torch.randn(shape, requires_grad=True), torch.randn(shape, requires_grad=True)
    lf = _outcome(lambda: F.cross_entropy(xf, target, reduction=reduction))
    lt = _outcome(lambda: TF.cross_entropy(xt, target, reduction=reduction))
    if isinstance(lt, type):
        assert lf is lt  # IndexError: Target 0 is out of bounds.
        with pytest.raises(lt, match="Target 0 is out of bounds"):
            F.cross_entropy(xf, target, reduction=reduction)
        return
    torch.testing.assert_close(lf, lt, equal_nan=True)
    (gf,) = torch.autograd.grad(lf.sum(), xf)
    assert gf.shape == xf.shape


@pytest.mark.parametrize("smoothing", [-0.1, -2.0, float("nan"), 0.0, 1.0])
@pytest.mark.parametrize("form", ["index", "probs"])
def test_label_smoothing_values_torch_accepts(smoothing, form):
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0]) if form == "index" else torch.softmax(torch.randn(5, 4, dtype=torch.float64), 1)
    lf, lt = F.cross_entropy(x, y, label_smoothing=smoothing), TF.cross_entropy(x, y, label_smoothing=smoothing)
    torch.testing.assert_close(lf, lt)
    torch.testing.assert_close(torch.autograd.grad(lf, x)[0], torch.autograd.grad(lt, x)[0])


@pytest.mark.parametrize("target,error", [
    (torch.tensor([2]), None), (torch.tensor(2), None),
    (torch.tensor([2, 1]), ValueError), (torch.tensor([[2]]), RuntimeError),
])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_d_input_takes_a_one_element_target_as_torch(target, error, reduction):
    x = torch.randn(4)
    if error is None:
        lf, lt = F.cross_entropy(x, target, reduction=reduction), TF.cross_entropy(x, target, reduction=reduction)
        assert lf.shape == lt.shape
        torch.testing.assert_close(lf, lt)
        return
    with pytest.raises(error):
        TF.cross_entropy(x, target, reduction=reduction)
    message = {ValueError: "For 1D input, 1D target must have size 1", RuntimeError: "0D or 1D target"}[error]
    with pytest.raises(error, match=message):
        F.cross_entropy(x, target, reduction=reduction)


@pytest.mark.parametrize("input_dtype,target_dtype,weight_dtype", [
    (torch.float32, torch.float64, None), (torch.float64, torch.float32, None),
    (torch.float16, torch.float32, None), (torch.bfloat16, torch.float16, None),
    (torch.float32, torch.float32, torch.float64), (torch.float32, torch.float16, torch.float64),
])
def test_probability_target_dtypes_promote_as_torch(input_dtype, target_dtype, weight_dtype):
    x64 = torch.randn(5, 4, dtype=torch.float64)
    t64 = torch.softmax(torch.randn(5, 4, dtype=torch.float64), 1)
    w = torch.rand(4, dtype=weight_dtype) if weight_dtype else None
    xf, xt = x64.to(input_dtype).requires_grad_(), x64.to(input_dtype).requires_grad_()
    lf, lt = F.cross_entropy(xf, t64.to(target_dtype), weight=w), TF.cross_entropy(xt, t64.to(target_dtype), weight=w)
    assert lf.dtype == lt.dtype
    torch.testing.assert_close(lf, lt, atol=1e-2, rtol=1e-2)
    (gf,), (gt,) = torch.autograd.grad(lf, xf), torch.autograd.grad(lt, xt)
    assert gf.dtype == gt.dtype == input_dtype
    torch.testing.assert_close(gf, gt, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("target", [torch.tensor([0, 1]), torch.rand(2, 3)])
def test_integer_logits_raise_not_implemented(target):
    x = torch.arange(6).view(2, 3)
    with pytest.raises(NotImplementedError, match="\"cross_entropy\" not implemented for 'Long'"):
        F.cross_entropy(x, target)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_classes_with_spatial_dims(reduction):
    # torch raises "size mismatch (got input: [2, 0, 0, 0] ..." here, from its
    # internal 4-D reshape, for index targets (not for probabilities): fastact
    # gives what (N, 0) gives, which is what the formula says
    x = torch.randn(2, 0, 4, requires_grad=True)
    expect = {"mean": float("nan"), "sum": 0.0, "none": torch.zeros(2, 4)}[reduction]
    torch.testing.assert_close(F.cross_entropy(x, torch.full((2, 4), -100), reduction=reduction),
                               torch.as_tensor(expect, dtype=torch.float32), equal_nan=True)
    with pytest.raises(IndexError, match="Target 0 is out of bounds"):
        F.cross_entropy(x, torch.zeros(2, 4, dtype=torch.long), reduction=reduction)
    t = torch.rand(2, 0, 4)
    torch.testing.assert_close(F.cross_entropy(x, t, reduction=reduction),
                               TF.cross_entropy(x, t, reduction=reduction), equal_nan=True)


# ---- the sign of a zero loss --------------------------------------------------------------

def _zero_signs(t):
    return (torch.signbit(t) & (t == 0)).tolist()


@pytest.mark.parametrize("shape,form", [(shape, form) for shape in [(3, 1), (3, 4), (0, 4), (4, 0), (2, 0, 3)]
                                        for form in ["index", "probs", "zero_probs"]
                                        if shape[1] or form != "index"])  # no class index for zero classes
def test_zero_losses_have_torchs_sign(shape, form):
    # torch forms -(w_y log p_y) and -(sum w t log p): a zero loss is -0 there
    # (one class; all-zero probabilities; an empty sum over zero classes or rows)
    C = shape[1]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    batch = shape[:1] + shape[2:]
    weights = [None, torch.rand(C, generator=gen) + 0.5, torch.zeros(C)]
    for weight, reduction, smoothing in [(w, r, e) for w in weights for r in REDUCTIONS for e in (0.0, 0.3)]:
        if form == "index":
            target = torch.zeros(batch, dtype=torch.long)
        else:
            target = torch.rand(shape, generator=gen) if form == "probs" else torch.zeros(shape)
        kw = dict(weight=weight, reduction=reduction, label_smoothing=smoothing)
        for requires_grad in (False, True):
            ours = F.cross_entropy(x.clone().requires_grad_(requires_grad), target, **kw)
            theirs = TF.cross_entropy(x, target, **kw)
            torch.testing.assert_close(ours.detach(), theirs, equal_nan=True)
            assert _zero_signs(ours) == _zero_signs(theirs), (kw, requires_grad, ours, theirs)
