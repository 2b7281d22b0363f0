"""The nn.Module drop-ins and fastact.swap: same constructor, repr,
state_dict, pickling and settings as torch's modules."""
import copy
import pickle

import pytest
import torch
from torch import nn

import fastact

PAIRS = [
    (fastact.ReLU, nn.ReLU, [(), (True,)]),
    (fastact.LeakyReLU, nn.LeakyReLU, [(), (0.2,), (0.3, True)]),
    (fastact.Sigmoid, nn.Sigmoid, [()]),
    (fastact.Tanh, nn.Tanh, [()]),
    (fastact.GELU, nn.GELU, [(), ("tanh",)]),
    (fastact.SELU, nn.SELU, [(), (True,)]),
    (fastact.Softmax, nn.Softmax, [(), (0,), (-1,)]),
    (fastact.LogSoftmax, nn.LogSoftmax, [(), (1,), (-2,)]),
]
INSTANCES = [(ours, theirs, args) for ours, theirs, all_args in PAIRS for args in all_args]
IDS = [f"{o.__name__}{a}" for o, _, a in INSTANCES]


@pytest.mark.parametrize("ours,theirs,args", INSTANCES, ids=IDS)
def test_mirrors_torch_module(ours, theirs, args):
    a, b = ours(*args), theirs(*args)
    assert repr(a) == repr(b)
    assert a.state_dict() == {} and list(a.parameters()) == []
    assert vars(a).keys() == vars(b).keys()
    assert isinstance(a, theirs)
    x = torch.randn(4, 6)
    with pytest.warns(UserWarning) if getattr(b, "dim", 0) is None else _no_warning():
        ya = a(x.clone())
    with pytest.warns(UserWarning) if getattr(b, "dim", 0) is None else _no_warning():
        yb = b(x.clone())
    torch.testing.assert_close(ya, yb)


class _no_warning:
    def __enter__(self):
        import warnings
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


@pytest.mark.parametrize("ours,theirs,args", INSTANCES, ids=IDS)
def test_pickle_and_deepcopy(ours, theirs, args):
    m = ours(*args)
    for clone in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert type(clone) is ours and repr(clone) == repr(m) and vars(clone).keys() == vars(m).keys()


def test_seed_example_with_fastact_softmax():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 3), nn.Softmax(dim=-1))
    fast = nn.Sequential(seq[0], seq[1], fastact.Softmax(dim=-1))
    x = torch.randn(5, 6)
    torch.testing.assert_close(fast(x), seq(x))
    fast(x).sum().backward()


def test_sequential_save_and_load_roundtrip(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), fastact.ReLU(), nn.Linear(4, 2), fastact.LogSoftmax(dim=1))
    torch.save(model, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)
    assert type(loaded[1]) is fastact.ReLU
    assert loaded.state_dict().keys() == model.state_dict().keys()


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 8), nn.LeakyReLU(0.3, inplace=True))
        self.heads = nn.ModuleList([nn.Linear(8, 4), nn.ReLU()])
        self.out = nn.ModuleDict({"p": nn.Softmax(dim=1), "lp": nn.LogSoftmax(dim=1)})

    def forward(self, x):
        h = self.heads[1](self.heads[0](self.body(x)))
        return self.out["p"](h), self.out["lp"](h)


class MyReLU(nn.ReLU):
    def forward(self, x):
        return super().forward(x) * 2


def test_swap_nested_model_keeps_settings_and_numbers():
    torch.manual_seed(0)
    model = nn.Sequential(Block(), nn.Sequential(Block()))
    ref = copy.deepcopy(model)
    model.train(False)
    hook_calls = []
    model[0].heads[1].register_forward_hook(lambda *a: hook_calls.append(1))
    assert fastact.swap(model) is model
    kinds = {type(m) for m in model.modules()}
    assert not kinds & {nn.ReLU, nn.LeakyReLU, nn.Softmax, nn.LogSoftmax}
    leaky = model[0].body[1]
    assert type(leaky) is fastact.LeakyReLU and leaky.negative_slope == 0.3 and leaky.inplace
    assert model[0].out["p"].dim == 1 and not model[0].out["p"].training
    x = torch.randn(5, 8)
    for a, b in zip(model[0](x), ref[0](x)):
        torch.testing.assert_close(a, b)
    assert hook_calls == [1], "hooks move with the module"
    assert model.state_dict().keys() == ref.state_dict().keys()


def test_swap_keeps_shared_modules_shared_and_leaves_subclasses():
    act = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), act, nn.Linear(2, 2), act, MyReLU())
    fastact.swap(model)
    assert model[1] is model[3] and type(model[1]) is fastact.ReLU
    assert type(model[4]) is MyReLU


def test_swap_root_module_and_idempotence():
    assert type(fastact.swap(nn.LeakyReLU(0.5))) is fastact.LeakyReLU
    assert fastact.swap(nn.LeakyReLU(0.5)).negative_slope == 0.5
    m = fastact.swap(nn.Sequential(nn.ReLU()))
    first = m[0]
    assert fastact.swap(m)[0] is first


def test_swap_changes_the_root_in_place():
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum")
    hook_calls = []
    criterion.register_forward_hook(lambda *args: hook_calls.append(1))
    assert fastact.swap(criterion) is criterion  # no assignment needed
    assert type(criterion) is fastact.CrossEntropyLoss
    assert (criterion.label_smoothing, criterion.reduction) == (0.1, "sum")
    x, t = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    torch.testing.assert_close(criterion(x, t), nn.functional.cross_entropy(x, t, label_smoothing=0.1, reduction="sum"))
    assert hook_calls == [1]
    subclass = MyReLU()
    assert fastact.swap(subclass) is subclass and type(subclass) is MyReLU


def test_summary_says_what_swap_and_fuse_did():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2), MyReLU())
    before = fastact.summary(model)
    assert "0 fastact module(s), 2 that fastact implements left to torch" in before
    assert "1: torch ReLU, not swapped" in before
    fastact.fuse(model)
    after = fastact.summary(model)
    assert ("0: fastact.LinearChain (in_features=2, out_features=3, bias=True, activation=relu, applies the next 1 "
            "Linear layer(s) too)") in after
    assert "1: fastact.Fused (relu, applied by the preceding FusedLinear)" in after
    assert "2: fastact.Chained (in_features=3, out_features=2, bias=True, activation=none, applied by" in after
    layered = fastact.summary(fastact.fuse(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)), chain=False))
    assert "0: fastact.FusedLinear (in_features=2, out_features=3, bias=True, activation=relu)" in layered
    assert "3: MyReLU, a subclass of nn.ReLU: left to torch" in after
    assert "(the model itself)" in fastact.summary(fastact.swap(nn.Softmax(dim=1)))


def test_torch_namespace_forms():
    x = torch.randn(4, 5)
    for name in ("relu", "sigmoid", "tanh", "selu"):
        torch.testing.assert_close(getattr(fastact, name)(x), getattr(torch, name)(x))
    torch.testing.assert_close(fastact.softmax(x, 1), torch.softmax(x, 1))
    torch.testing.assert_close(fastact.log_softmax(x, 0), torch.log_softmax(x, 0))
    y = x.clone()
    assert fastact.relu_(y) is y and torch.equal(y, torch.relu(x))
