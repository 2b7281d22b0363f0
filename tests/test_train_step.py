"""fastact.TrainStep: each call equals optimizer.zero_grad(); loss =
criterion(model(x), y); loss.backward(); optimizer.step() — the losses,
gradients, parameters and optimizer state, step after step — whether it
takes the chain op (torch.ops.fastact._linear_chain_loss_grad, no autograd
graph) or autograd; and it takes the op only where it may."""
import copy

import pytest
import torch
import torch.nn.functional as TF
from torch import nn
from torch.nn.modules import module as torch_module
from torch.utils.data import TensorDataset
from torch.utils.hooks import RemovableHandle

import fastact

pytestmark = pytest.mark.filterwarnings("ignore:.*TF32.*")

# Within float rounding of the autograd step: the op sums over rows in its
# own order. A sum over rows that cancels keeps an absolute error of the
# size of its terms, so the first step's gradients are compared against the
# largest gradient; later steps, after Adam has normalized tiny gradients
# whose last bits differ, more loosely.
GRAD_TOL = {torch.float32: 2e-6, torch.float64: 1e-13}
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def _mlp(dims=(6, 12, 9, 3), acts=(nn.ReLU, nn.Tanh), bias=True):
    layers = []
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(acts):
            layers.append(acts[i]())
    return nn.Sequential(*layers)


class _Spy(fastact.TrainStep):
    """Counts the calls that went through autograd."""
    autograd_calls = 0

    def autograd_step(self, input, target):
        self.autograd_calls += 1
        return super().autograd_step(input, target)


def _twins(model, criterion, make_optimizer, dtype=torch.float32):
    """The same fused model, criterion and optimizer twice: one stepped by
    TrainStep, one by the autograd step."""
    model = fastact.fuse(model.to(dtype))
    other = copy.deepcopy(model)
    return (_Spy(model, criterion, make_optimizer(model.parameters())),
            _Spy(other, copy.deepcopy(criterion), make_optimizer(other.parameters())))


def _run(fast, slow, x, y, steps=5, dtype=torch.float32):
    for step in range(steps):
        a = fast(x, y)
        b = slow.autograd_step(x, y)
        assert not a.requires_grad and a.shape == () and a.dtype == b.dtype
        if step == 0:
            torch.testing.assert_close(a, b, equal_nan=True, rtol=GRAD_TOL[dtype], atol=GRAD_TOL[dtype])
            grads = [q.grad for q in slow.model.parameters() if q.grad is not None]
            scale = max([g.abs().max().item() for g in grads if g.numel()] + [1.0])
            for p, q in zip(fast.model.parameters(), slow.model.parameters()):
                assert (p.grad is None) == (q.grad is None)
                if q.grad is not None:
                    torch.testing.assert_close(p.grad, q.grad, equal_nan=True, rtol=GRAD_TOL[dtype],
                                               atol=GRAD_TOL[dtype] * scale)
        torch.testing.assert_close(a, b, equal_nan=True, **TOL[dtype])
    for p, q in zip(fast.model.parameters(), slow.model.parameters()):
        torch.testing.assert_close(p, q, **TOL[dtype])
    for p, q in zip(fast.model.parameters(), slow.model.parameters()):
        for key, value in slow.optimizer.state[q].items():
            torch.testing.assert_close(fast.optimizer.state[p][key], value, **TOL[dtype])


def _expect_fast(step):
    # the C++ backend takes the op; the Numba backend is autograd's
    assert step.autograd_calls == (0 if fastact.backend().name == "cpp" else step.autograd_calls)


CRITERIA = {
    "ce": lambda: nn.CrossEntropyLoss(),
    "ce-fastact": lambda: fastact.CrossEntropyLoss(),
    "ce-sum": lambda: nn.CrossEntropyLoss(reduction="sum"),
    "ce-weight-ignore": lambda: nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2.0, 1.0]), ignore_index=1),
    "ce-smoothing": lambda: nn.CrossEntropyLoss(label_smoothing=0.2),
    "ce-probabilities": lambda: nn.CrossEntropyLoss(),
    "mse": lambda: nn.MSELoss(),
    "mse-sum": lambda: nn.MSELoss(reduction="sum"),
    "bce": lambda: nn.BCEWithLogitsLoss(),
    "bce-fastact-sum": lambda: fastact.BCEWithLogitsLoss(reduction="sum"),
}


def _target(name, rows, dtype):
    torch.manual_seed(1)
    if name == "ce-probabilities":
        return torch.softmax(torch.randn(rows, 3), 1).to(dtype)
    if name.startswith("mse"):
        return torch.randn(rows, 3, dtype=dtype)
    if name.startswith("bce"):
        return torch.rand(rows, 3, dtype=dtype)
    return torch.randint(0, 3, (rows,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loss", sorted(CRITERIA))
@pytest.mark.parametrize("rows", [1, 37, 1000])
def test_equals_the_autograd_step(loss, dtype, rows):
    torch.manual_seed(0)
    criterion = CRITERIA[loss]()
    if getattr(criterion, "weight", None) is not None:
        criterion.weight = criterion.weight.to(dtype)
    fast, slow = _twins(_mlp(), criterion, lambda p: fastact.optim.Adam(p, lr=0.01), dtype)
    x = torch.randn(rows, 6, dtype=dtype)
    _run(fast, slow, x, _target(loss, rows, dtype), dtype=dtype)
    _expect_fast(fast)


@pytest.mark.parametrize("acts", [(), (nn.ReLU,), (lambda: nn.LeakyReLU(0.1), nn.Sigmoid), (nn.Tanh, nn.ReLU)],
                         ids=["linear", "relu", "leaky-sigmoid", "tanh-relu"])
@pytest.mark.parametrize("dims", [(2, 10, 2), (11, 20, 12, 4), (2, 64, 3), (30, 70, 5)],
                         ids=["circles", "datacamp", "spiral", "wide"])
def test_layers_and_activations(dims, acts):
    torch.manual_seed(0)
    fast, slow = _twins(_mlp(dims, acts), nn.CrossEntropyLoss(), lambda p: fastact.optim.SGD(p, lr=0.1, momentum=0.9))
    x, y = torch.randn(300, dims[0]), torch.randint(0, dims[-1], (300,))
    _run(fast, slow, x, y)
    _expect_fast(fast)


def test_a_leading_flatten():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3))
    fast, slow = _twins(model, nn.CrossEntropyLoss(), lambda p: fastact.optim.Adam(p, lr=0.01))
    _run(fast, slow, torch.randn(40, 3, 2, 2), torch.randint(0, 3, (40,)))
    _expect_fast(fast)
    # a Flatten of other dims, or one later in the model, is the model's own
    for flatten, x in ((nn.Flatten(2), torch.randn(5, 3, 2, 2)), (nn.Flatten(0, 1), torch.randn(5, 3, 4))):
        fast, slow = _twins(nn.Sequential(flatten, nn.Linear(4, 3)), nn.MSELoss(),
                            lambda p: fastact.optim.SGD(p, lr=0.1))
        _run(fast, slow, x, torch.randn(fast.model(x).shape))
        assert fast.autograd_calls == 5


@pytest.mark.parametrize("weights", ["weight", "pos_weight"])
def test_bce_with_weights_takes_autograd(weights):
    torch.manual_seed(0)
    criterion = nn.BCEWithLogitsLoss(**{weights: torch.rand(3) + 0.5})
    fast, slow = _twins(_mlp(), criterion, lambda p: fastact.optim.Adam(p, lr=0.01))
    _run(fast, slow, torch.randn(20, 6), torch.rand(20, 3))
    assert fast.autograd_calls == 5


@pytest.mark.parametrize("optimizer", [
    lambda p: fastact.optim.SGD(p, lr=0.1),
    lambda p: fastact.optim.AdamW(p, lr=0.01, weight_decay=0.1, amsgrad=True),
    lambda p: torch.optim.SGD(p, lr=0.1, nesterov=True, momentum=0.5),
    lambda p: torch.optim.Adam(p, lr=0.01, foreach=True),
], ids=["sgd", "adamw-amsgrad", "torch-sgd", "torch-adam"])
def test_any_optimizer(optimizer):
    torch.manual_seed(0)
    fast, slow = _twins(_mlp(bias=False), nn.MSELoss(), optimizer)
    x = torch.randn(50, 3, 6)  # a batch dim more: MSE takes any shape
    _run(fast, slow, x, torch.randn(50, 3, 3))
    _expect_fast(fast)


def test_frozen_layers_and_parameters_outside_the_optimizer():
    torch.manual_seed(0)
    model = _mlp()
    model[0].weight.requires_grad_(False)
    fast, slow = _twins(model, nn.CrossEntropyLoss(),
                        lambda p: fastact.optim.SGD([q for q in p if q.shape != (3,)], lr=0.1))
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    _run(fast, slow, x, y, steps=3)
    _expect_fast(fast)
    assert fast.model[0].weight.grad is None
    # the last bias is not in the optimizer: zero_grad leaves it, so its gradient accumulates
    bias, single = fast.model[4].bias, slow.model[4].bias
    assert all(q is not bias for q in fast.optimizer.param_groups[0]["params"])
    torch.testing.assert_close(bias.grad, single.grad, rtol=1e-5, atol=1e-5)


def test_gradients_are_fresh_tensors_each_step():
    torch.manual_seed(0)
    model = fastact.fuse(_mlp())
    step = fastact.TrainStep(model, nn.CrossEntropyLoss(), fastact.optim.SGD(model.parameters(), lr=0.1))
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    step(x, y)
    kept = [p.grad for p in model.parameters()]
    copies = [g.clone() for g in kept]
    step(x, y)
    for p, g, c in zip(model.parameters(), kept, copies):
        assert p.grad is not g and torch.equal(g, c)


@pytest.mark.parametrize("case", ["hook", "reduction-none", "input-grad", "no-grad", "subclass-loss", "tied",
                                  "not-a-chain", "dropout-drops", "autocast"])
def test_what_takes_autograd(case):
    torch.manual_seed(0)
    model, criterion = fastact.fuse(_mlp()), nn.CrossEntropyLoss()
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    seen = []
    if case == "hook":
        model[2].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    if case == "reduction-none":
        criterion = nn.CrossEntropyLoss(reduction="none")
    if case == "input-grad":
        x.requires_grad_()
    if case == "subclass-loss":
        class Mine(nn.CrossEntropyLoss):
            pass
        criterion = Mine()
    if case == "tied":
        model = fastact.fuse(nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)))
        model[2].weight = model[0].weight
    if case == "not-a-chain":  # a Softplus of another threshold than the op's splits the chain
        model = fastact.fuse(nn.Sequential(nn.Linear(6, 3), nn.Softplus(threshold=5.0), nn.Linear(3, 3)))
    if case == "dropout-drops":
        model = fastact.fuse(nn.Sequential(nn.Linear(6, 3), nn.Dropout(0.5), nn.Linear(3, 3)))
    step = _Spy(model, criterion, fastact.optim.SGD(model.parameters(), lr=0.1))
    if case == "reduction-none":
        with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
            step(x, y)
    elif case == "no-grad":
        with torch.no_grad(), pytest.raises(RuntimeError, match="does not require grad"):
            step(x, y)
    elif case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step(x, y)
    else:
        step(x, y)
    assert step.autograd_calls == 1
    if case == "hook":
        assert len(seen) == 1
    if case == "input-grad":
        assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("act", [nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.Softplus])
def test_activations_that_keep_their_pre_activation_take_the_op(act):
    torch.manual_seed(0)
    fast, slow = _twins(_mlp(acts=(act, nn.ReLU)), nn.CrossEntropyLoss(),
                        lambda p: fastact.optim.Adam(p, lr=0.01))
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    _run(fast, slow, x, y, steps=3)
    _expect_fast(fast)


def test_dropouts_that_do_not_drop_keep_the_op():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 9), nn.Tanh(), nn.Dropout(0.0),
                          nn.Linear(9, 3))
    fast, slow = _twins(model, nn.CrossEntropyLoss(), lambda p: fastact.optim.Adam(p, lr=0.01))
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    fast.model.eval(), slow.model.eval()
    _run(fast, slow, x, y, steps=2)
    _expect_fast(fast)
    # model.train() between steps: Dropout(0.3) drops now, the same masks as autograd's from the same seed
    fast.model.train(), slow.model.train()
    for _ in range(2):
        torch.manual_seed(7)
        a = fast(x, y)
        torch.manual_seed(7)
        b = slow.autograd_step(x, y)
        torch.testing.assert_close(a, b)
    assert fast.autograd_calls == (2 if fastact.backend().name == "cpp" else 4)
    for p, q in zip(fast.model.parameters(), slow.model.parameters()):
        torch.testing.assert_close(p, q, **TOL[torch.float32])


def test_bce_with_a_weight_parameter_takes_autograd():
    # a weight set as a Parameter lives in _parameters, not _buffers: the op must not drop it
    torch.manual_seed(0)
    criterion = nn.BCEWithLogitsLoss()
    criterion.weight = nn.Parameter(torch.rand(3), requires_grad=False)
    fast, slow = _twins(_mlp(), criterion, lambda p: fastact.optim.SGD(p, lr=0.1))
    x, y = torch.randn(20, 6), torch.rand(20, 3)
    _run(fast, slow, x, y, steps=2)
    assert fast.autograd_calls == 2


def _new_weight(step, seen):
    layer, group = step.model[0], step.optimizer.param_groups[0]
    new = nn.Parameter(layer.weight.detach() * 0.5)
    group["params"] = [new if p is layer.weight else p for p in group["params"]]
    layer.weight = new


def _not_contiguous(step, seen):
    weight = step.model[2].weight
    weight.data = weight.data.t().contiguous().t()


def _bias_in_a_group_of_its_own(step, seen):
    bias, group = step.model[4].bias, step.optimizer.param_groups[0]
    group["params"] = [p for p in group["params"] if p is not bias]
    step.optimizer.add_param_group({"params": [bias], "lr": 0.02})


# What may change between two steps, done to both twins after a first step:
# (whether the steps after it take autograd on the C++ backend, the changes,
# two steps after each). TrainStep keeps what it found in the model from one
# call to the next; each of these must reach the next step.
CHANGES = {
    "new-weight": (False, [_new_weight]),
    "hook-layer": (True, [lambda step, seen: step.model[0].register_forward_hook(lambda *a: seen.append(1))]),
    "hook-model": (True, [lambda step, seen: step.model.register_forward_pre_hook(lambda *a: seen.append(1))]),
    "hook-criterion": (True, [lambda step, seen: step.criterion.register_forward_hook(lambda *a: seen.append(1))]),
    "hook-global": (True, [lambda step, seen: torch_module.register_module_forward_hook(lambda *a: seen.append(1))]),
    "hook-tensors": (True, [lambda step, seen: step.model[0].weight.register_hook(lambda g: g * 2),
                            lambda step, seen: step.model[2].bias.register_post_accumulate_grad_hook(seen.append)]),
    "frozen-bias": (False, [lambda step, seen: step.model[0].bias.requires_grad_(False)]),
    "thawed-bias": (False, [lambda step, seen: step.model[0].bias.requires_grad_(True)]),  # frozen at first
    "not-contiguous": (True, [_not_contiguous]),
    "reduction": (False, [lambda step, seen: setattr(step.criterion, "reduction", "sum")]),
    "label-smoothing": (False, [lambda step, seen: setattr(step.criterion, "label_smoothing", 0.2)]),
    "class-weight": (False, [lambda step, seen: setattr(step.criterion, "weight", torch.tensor([0.5, 2.0, 1.0]))]),
    "class-weight-parameter": (False, [lambda step, seen: setattr(  # a Parameter: no longer a buffer
        step.criterion, "weight", nn.Parameter(torch.tensor([0.5, 2.0, 1.0]), requires_grad=False))]),
    "double": (False, [lambda step, seen: step.model.double()]),
    "new-module": (True, [lambda step, seen: step.model.__setitem__(1, nn.Tanh())]),
    "lr": (False, [lambda step, seen: step.optimizer.param_groups[0].update(lr=0.02)]),
    "param-group": (False, [_bias_in_a_group_of_its_own]),
}


@pytest.mark.parametrize("case", sorted(CHANGES))
def test_a_change_between_steps_reaches_the_next_step(case):
    torch.manual_seed(0)
    model = _mlp()
    if case == "thawed-bias":
        model[0].bias.requires_grad_(False)
    fast, slow = _twins(model, nn.CrossEntropyLoss(), lambda p: fastact.optim.SGD(p, lr=0.1))
    x, y = torch.randn(30, 6), torch.randint(0, 3, (30,))
    _run(fast, slow, x, y, steps=1)
    takes_autograd, changes = CHANGES[case]
    seen, handles = [], []
    try:
        for change in changes:
            handles += [change(step, seen) for step in (fast, slow)]
            x = x.to(fast.model[0].weight.dtype)
            _run(fast, slow, x, y, steps=2)
    finally:
        for handle in handles:
            if isinstance(handle, RemovableHandle):
                handle.remove()
    calls = 2 * len(changes) if takes_autograd else 0
    assert fast.autograd_calls == (calls if fastact.backend().name == "cpp" else fast.autograd_calls)
    assert bool(seen) == case.startswith("hook-")


def test_an_epoch_sees_a_parameter_frozen_since_the_last():
    # the epoch's C++ loop takes the chain's arguments as a step does: a bias
    # frozen since the last epoch is neither stepped nor given a gradient
    torch.manual_seed(0)
    model = fastact.fuse(_mlp())
    step = fastact.TrainStep(model, nn.CrossEntropyLoss(), fastact.optim.SGD(model.parameters(), lr=0.1))
    loader = fastact.DataLoader(TensorDataset(torch.randn(64, 6), torch.randint(0, 3, (64,))), batch_size=16)
    step.epoch(loader)
    bias = model[0].bias.requires_grad_(False)
    kept = bias.detach().clone()
    step.epoch(loader)
    assert torch.equal(bias, kept) and bias.grad is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_the_op_too(dtype):
    torch.manual_seed(0)
    fast, slow = _twins(_mlp(), nn.CrossEntropyLoss(), lambda p: torch.optim.SGD(p, lr=0.1), dtype)
    x, y = torch.randn(16, 6, dtype=dtype), torch.randint(0, 3, (16,))
    for _ in range(2):
        torch.testing.assert_close(fast(x, y), slow.autograd_step(x, y), rtol=2e-2, atol=2e-2)
    _expect_fast(fast)


def test_bad_input_gets_the_errors_of_the_autograd_step():
    model = fastact.fuse(_mlp())
    step = fastact.TrainStep(model, nn.CrossEntropyLoss(), fastact.optim.SGD(model.parameters(), lr=0.1))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(IndexError, match="out of bounds"):
        step(torch.randn(4, 6), torch.tensor([0, 1, 3, 2]))
    with pytest.raises(IndexError, match="out of bounds"):
        step(torch.randn(4, 6), torch.tensor([0, 1, -5, 2]))
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        step(torch.randn(4, 5), torch.tensor([0, 1, 2, 2]))
    with pytest.raises(RuntimeError, match="must have the same dtype"):
        step(torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 2]))
    with pytest.raises(ValueError, match="batch_size"):
        step(torch.randn(4, 6), torch.tensor([0, 1, 2]))
    # nothing was stepped
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)


@pytest.mark.cpp_only
def test_opcheck_and_compile():
    torch.manual_seed(0)
    ws = [torch.randn(7, 5, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)]
    bs = [torch.randn(7, dtype=torch.float64), None]
    x = torch.randn(9, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    op = torch.ops.fastact._linear_chain_loss_grad.default
    cases = [(x, y, ws, bs, [1, 3], [0.0, 0.0], [0, 1, 1, 1, 0], 0, None, 1, -100, 0.0),
             (x, y, ws, bs, [2, 0], [0.1, 0.0], [1, 1, 1, 0, 0], 0, torch.rand(3, dtype=torch.float64), 2, 2, 0.1),
             (x, torch.randn(9, 3, dtype=torch.float64), ws, bs, [4, 0], [0.0, 0.0], [0, 1, 1, 1, 0], 1, None, 1,
              -100, 0.0)]
    for args in cases:
        torch.library.opcheck(op, args)
    # the gradients are torch's autograd gradients
    leaves = [t.clone().requires_grad_() for t in (x, ws[0], bs[0], ws[1])]
    h = torch.tanh(leaves[0] @ leaves[1].T + leaves[2])
    loss = TF.mse_loss(h @ leaves[3].T, cases[2][1])
    expect = torch.autograd.grad(loss, leaves)
    value, grads = op(*cases[2][:6], [1, 1, 1, 1, 0], *cases[2][7:])
    torch.testing.assert_close(value, loss.detach())
    for g, e in zip([grads[0], grads[1], grads[2], grads[3]], expect):
        torch.testing.assert_close(g, e)
    assert grads[4].numel() == 0
    torch.compiler.reset()
    compiled = torch.compile(lambda *a: op(*a), fullgraph=True, backend="aot_eager")
    got = compiled(*cases[0])
    want = op(*cases[0])
    torch.testing.assert_close(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        torch.testing.assert_close(g, w)
    with pytest.raises(ValueError, match="reduction"):
        op(*cases[0][:9], 0, -100, 0.0)


def test_lr_schedulers_and_state_dicts_carry_over():
    torch.manual_seed(0)
    fast, slow = _twins(_mlp(), nn.CrossEntropyLoss(), lambda p: fastact.optim.Adam(p, lr=0.05))
    schedulers = [torch.optim.lr_scheduler.StepLR(s.optimizer, step_size=2, gamma=0.5) for s in (fast, slow)]
    x, y = torch.randn(30, 6), torch.randint(0, 3, (30,))
    for _ in range(4):
        fast(x, y)
        slow.autograd_step(x, y)
        for s in schedulers:
            s.step()
    state = fast.optimizer.state_dict()
    slow.optimizer.load_state_dict(copy.deepcopy(state))
    slow.model.load_state_dict(fast.model.state_dict())
    _run(fast, slow, x, y, steps=2)
    assert fast.optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)
    assert "TrainStep(model=Sequential" in repr(fast)


@pytest.mark.parametrize("rows", [20000, 16, 17, 0])
def test_many_rows_few_rows_and_none(rows):
    # many: several blocks and, with threads, several tasks; 0: the composite path's nan
    torch.manual_seed(0)
    fast, slow = _twins(_mlp((11, 20, 12, 4), (lambda: nn.LeakyReLU(0.01), nn.Sigmoid)), nn.CrossEntropyLoss(),
                        lambda p: fastact.optim.SGD(p, lr=0.1))
    x, y = torch.randn(rows, 11), torch.randint(0, 4, (rows,))
    _run(fast, slow, x, y, steps=2)
    _expect_fast(fast)


@pytest.mark.parametrize("where", ["input", "weight"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_inf_as_the_autograd_step(where, value):
    torch.manual_seed(0)
    fast, slow = _twins(_mlp((5, 7, 3), (nn.Tanh,)), nn.CrossEntropyLoss(), lambda p: fastact.optim.SGD(p, lr=0.1))
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    if where == "input":
        x[3, 1] = value
    else:
        with torch.no_grad():
            fast.model[0].weight[2, 4] = value
            slow.model[0].weight[2, 4] = value
    a, b = fast(x, y), slow.autograd_step(x, y)
    torch.testing.assert_close(a, b, equal_nan=True)
    for p, q in zip(fast.model.parameters(), slow.model.parameters()):
        assert torch.equal(p.grad.isnan(), q.grad.isnan())
        torch.testing.assert_close(p.grad, q.grad, equal_nan=True, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_step_is_the_ops_in_turn():
    # on CUDA the op is the chain's and the loss's ops in turn (cuBLAS, fastact's CUDA kernels)
    torch.manual_seed(0)
    model = _mlp((11, 20, 12, 4), (nn.ReLU, nn.Tanh)).cuda()
    fast, slow = _twins(model, nn.CrossEntropyLoss(), lambda p: fastact.optim.Adam(p, lr=0.01))
    x, y = torch.randn(500, 11, device="cuda"), torch.randint(0, 4, (500,), device="cuda")
    _run(fast, slow, x, y)
    _expect_fast(fast)


@pytest.mark.cpp_only
def test_the_op_refuses_bad_input_clearly():
    op = torch.ops.fastact._linear_chain_loss_grad.default
    ws, bs = [torch.randn(4, 3), torch.randn(2, 4)], [torch.randn(4), None]
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    args = ([1, 0], [0.0, 0.0], [0, 1, 1, 1, 0])
    with pytest.raises(IndexError, match="Target 2 is out of bounds"):
        op(x, torch.tensor([0, 1, 2, 0, 1]), ws, bs, *args, 0, None, 1, -100, 0.0)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        op(torch.randn(5, 4), y, ws, bs, *args, 0, None, 1, -100, 0.0)
    with pytest.raises(RuntimeError, match="must have the same dtype"):
        op(x.double(), y, ws, bs, *args, 0, None, 1, -100, 0.0)
    with pytest.raises(RuntimeError, match="expected int64 class indices"):  # the loss op's own check
        op(x, y.int(), ws, bs, *args, 0, None, 1, -100, 0.0)
    with pytest.raises(RuntimeError, match="mse_loss needs a target of the output's shape"):
        op(x, torch.randn(5, 3), ws, bs, *args, 1, None, 1, -100, 0.0)
    with pytest.raises(ValueError, match="loss must be 0"):
        op(x, y, ws, bs, *args, 7, None, 1, -100, 0.0)
    with pytest.raises(RuntimeError, match="needs"):
        op(x, y, ws, bs, [1, 0], [0.0, 0.0], [0, 1], 0, None, 1, -100, 0.0)
