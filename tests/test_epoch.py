"""TrainStep.epoch and TrainStep.fit: an epoch equals the Python loop of
TrainStep calls over torch's DataLoader — the same batches, losses,
parameters, .grad, optimizer state and RNG states, bit for bit — whether it
runs as one C++ call (the C++ backend, a loader fastact gathers, a chain and
fastact.optim) or as that loop; bad targets raise before the first step;
Ctrl-C stops at a batch boundary; a saved fit resumes exactly."""
import contextlib
import copy
import os
import signal
import threading
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader as TorchLoader
from torch.utils.data import TensorDataset

import fastact
from fastact import train_step

pytestmark = pytest.mark.filterwarnings("ignore:.*TF32.*")

OPTIMIZERS = {
    "adam": lambda p: fastact.optim.Adam(p, lr=1e-2),
    "adamw_amsgrad": lambda p: fastact.optim.AdamW(p, lr=1e-2, weight_decay=0.1, amsgrad=True),
    "sgd": lambda p: fastact.optim.SGD(p, lr=0.1),
    "sgd_nesterov": lambda p: fastact.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
}


def _data(rows=203, features=6, classes=4, target="index", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=g, dtype=dtype)
    if target == "index":
        y = torch.randint(0, classes, (rows,), generator=g)
    else:  # probabilities, or the MSE target
        y = torch.rand(rows, classes, generator=g, dtype=dtype).softmax(1)
    return x, y


def _model(features=6, classes=4, dtype=torch.float32, seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(),
                         nn.Linear(12, classes)).to(dtype)


def _step(model, criterion, optimizer="adam"):
    model = fastact.fuse(model)
    return fastact.TrainStep(model, criterion, OPTIMIZERS[optimizer](model.parameters()))


def _torch_loop(step, loader):
    """The learner's loop: torch's own DataLoader, a TrainStep call per batch."""
    return torch.stack([step(x, y) for x, y in loader])


def _assert_same_state(a, b):
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad)
    for p, q in zip(a.optimizer.param_groups[0]["params"], b.optimizer.param_groups[0]["params"]):
        sa, sb = a.optimizer.state[p], b.optimizer.state[q]
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


def _native_calls(monkeypatch):
    """Counts the epochs that ran as one C++ call."""
    calls = []
    native = train_step.TrainStep._native_epoch

    def spy(self, *args):
        calls.append(1)
        return native(self, *args)

    monkeypatch.setattr(train_step.TrainStep, "_native_epoch", spy)
    return calls


CASES = [  # (optimizer, criterion, target, shuffle, drop_last, generator, batch size)
    ("adam", "ce", "index", True, False, True, 32),
    ("adam", "ce", "index", True, True, False, 50),
    ("adamw_amsgrad", "ce_smooth", "index", False, False, False, 16),
    ("sgd", "ce", "probs", True, False, True, 203),
    ("sgd_nesterov", "mse", "dense", True, True, True, 7),
    ("sgd_nesterov", "ce_weight", "index", False, True, False, 64),
    ("adam", "bce", "dense", True, False, True, 30),
]


def _criterion(name, classes=4):
    return {"ce": lambda: nn.CrossEntropyLoss(), "ce_smooth": lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
            "ce_weight": lambda: nn.CrossEntropyLoss(weight=torch.rand(classes) + 0.5, ignore_index=2),
            "mse": lambda: nn.MSELoss(), "bce": lambda: nn.BCEWithLogitsLoss()}[name]()


@pytest.mark.parametrize("optimizer,criterion,target,shuffle,drop_last,generator,batch", CASES)
def test_epoch_equals_the_loop_over_torchs_loader(optimizer, criterion, target, shuffle, drop_last, generator,
                                                  batch, monkeypatch):
    x, y = _data(target=target)
    crit = _criterion(criterion)
    fast, slow = _step(_model(), crit, optimizer), _step(_model(), copy.deepcopy(crit), optimizer)
    make = lambda cls: cls(TensorDataset(x, y), batch_size=batch, shuffle=shuffle, drop_last=drop_last,
                           generator=torch.Generator().manual_seed(3) if generator else None)
    ours, theirs = make(fastact.DataLoader), make(TorchLoader)
    native = _native_calls(monkeypatch)
    for epoch in range(3):
        torch.manual_seed(10 + epoch)  # the global RNG: the base seed, and the sampler's seed without generator=
        a = fast.epoch(ours)
        global_after = torch.get_rng_state()
        torch.manual_seed(10 + epoch)
        b = _torch_loop(slow, theirs)
        assert a.dtype == b.dtype and torch.equal(a, b), epoch
        assert torch.equal(global_after, torch.get_rng_state())
        if generator:
            assert torch.equal(ours.generator.get_state(), theirs.generator.get_state())
        assert fast.batches_done == len(theirs)
    _assert_same_state(fast, slow)
    assert len(native) == (3 if fastact.backend().name == "cpp" else 0)


def test_a_loader_built_by_torch_and_fast_loader_take_the_one_call(monkeypatch):
    x, y = _data()
    fast, slow = _step(_model(), nn.CrossEntropyLoss()), _step(_model(), nn.CrossEntropyLoss())
    native = _native_calls(monkeypatch)
    loader = TorchLoader(TensorDataset(x, y), batch_size=20, shuffle=True, generator=torch.Generator().manual_seed(0))
    twin = TorchLoader(TensorDataset(x, y), batch_size=20, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fast.epoch(fastact.fast_loader(loader)), _torch_loop(slow, twin))
    assert torch.equal(fast.epoch(loader), _torch_loop(slow, twin))
    _assert_same_state(fast, slow)
    assert len(native) == (2 if fastact.backend().name == "cpp" else 0)


def _hooked_layer(step):
    step.model[0].register_forward_hook(lambda *a: None)


def _step_hook(step):
    step.optimizer.register_step_post_hook(lambda *a: None)


def _torch_optimizer(step):
    step.optimizer = torch.optim.Adam(step.model.parameters(), lr=1e-2)


def _frozen_outside_the_optimizer(step):
    # a parameter the optimizer does not step accumulates its .grad: torch's loop
    params = list(step.model.parameters())
    step.optimizer = fastact.optim.Adam(params[:-1], lr=1e-2)


FALLBACKS = {
    "layer_hook": (_hooked_layer, {}),
    "optimizer_step_hook": (_step_hook, {}),
    "torch_optimizer": (_torch_optimizer, {}),
    "param_outside_optimizer": (_frozen_outside_the_optimizer, {}),
    "custom_collate": (None, dict(collate_fn=lambda b: [torch.stack([s[0] for s in b]), torch.stack([s[1] for s in b])])),
    "bce_pos_weight": (None, {}),
    "workers": (None, dict(num_workers=1)),
    "autocast": (None, {}),
}


# which path an epoch takes is decided on the C++ backend; on Numba every epoch is the loop
@pytest.mark.cpp_only
@pytest.mark.parametrize("case", sorted(FALLBACKS))
def test_what_the_one_call_does_not_take_runs_the_loop_with_the_same_results(case, monkeypatch):
    change, loader_args = FALLBACKS[case]
    target = "dense" if case == "bce_pos_weight" else "index"
    x, y = _data(target=target)
    crit = nn.BCEWithLogitsLoss(pos_weight=torch.rand(4)) if case == "bce_pos_weight" else nn.CrossEntropyLoss()
    fast, slow = _step(_model(), crit), _step(_model(), copy.deepcopy(crit))
    if change:
        change(fast), change(slow)
    native = _native_calls(monkeypatch)
    make = lambda cls: cls(TensorDataset(x, y), batch_size=25, shuffle=True,
                           generator=torch.Generator().manual_seed(4), **loader_args)
    ours, theirs = make(fastact.DataLoader), make(TorchLoader)
    context = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if case == "autocast" else contextlib.nullcontext
    for _ in range(2):
        with context():
            a = fast.epoch(ours)
        with context():
            b = _torch_loop(slow, theirs)
        assert torch.equal(a, b)
    assert native == []
    for p, q in zip(fast.model.parameters(), slow.model.parameters()):
        assert torch.equal(p, q) and torch.equal(p.grad, q.grad)


def test_a_model_that_flattens_images_first(monkeypatch):
    x, y = torch.randn(90, 1, 4, 4), torch.randint(0, 3, (90,))
    nets = [nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    fast, slow = (fastact.TrainStep(fastact.fuse(m), nn.CrossEntropyLoss(), OPTIMIZERS["adam"](m.parameters()))
                  for m in nets)
    native = _native_calls(monkeypatch)
    make = lambda cls: cls(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))
    ours, theirs = make(fastact.DataLoader), make(TorchLoader)
    for _ in range(2):
        assert torch.equal(fast.epoch(ours), _torch_loop(slow, theirs))
    _assert_same_state(fast, slow)
    assert len(native) == (2 if fastact.backend().name == "cpp" else 0)


def test_any_iterable_of_batches_and_an_empty_epoch():
    x, y = _data(rows=40)
    fast, slow = _step(_model(), nn.CrossEntropyLoss()), _step(_model(), nn.CrossEntropyLoss())
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8)]
    assert torch.equal(fast.epoch(batches), torch.stack([slow(a, b) for a, b in batches]))
    _assert_same_state(fast, slow)
    empty = fast.epoch(fastact.DataLoader(TensorDataset(x[:5], y[:5]), batch_size=8, drop_last=True))
    assert empty.shape == (0,) and fast.batches_done == 0


def test_losses_follow_torchs_autograd_loop_over_three_epochs():
    """Against stock torch (autograd, torch.optim, torch's loader): within
    float rounding, the chain kernel's sums over rows run in its own order."""
    x, y = _data(rows=300, target="index")
    fast = _step(_model(), nn.CrossEntropyLoss())
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = lambda cls: cls(TensorDataset(x, y), batch_size=32, shuffle=True,
                             generator=torch.Generator().manual_seed(0))
    ours, theirs = loader(fastact.DataLoader), loader(TorchLoader)
    for _ in range(3):
        a = fast.epoch(ours)
        b = []
        for xb, yb in theirs:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            b.append(loss.detach())
        torch.testing.assert_close(a, torch.stack(b), rtol=1e-4, atol=1e-5)
    for p, q in zip(fast.model.parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-4)


def test_the_optimizer_state_loads_into_torchs_optimizer():
    x, y = _data()
    fast = _step(_model(), nn.CrossEntropyLoss())
    fast.epoch(fastact.DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True))
    twin = copy.deepcopy(fast.model)
    theirs = torch.optim.Adam(twin.parameters(), lr=1e-2)
    theirs.load_state_dict(copy.deepcopy(fast.optimizer.state_dict()))  # load_state_dict shares tensors
    for p, q in zip(twin.parameters(), fast.model.parameters()):
        p.grad = q.grad.clone()
    fast.optimizer.step(), theirs.step()
    for p, q in zip(twin.parameters(), fast.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("where", ["first", "middle"])
def test_a_bad_target_raises_before_any_step(where):
    x, y = _data()
    y[0 if where == "first" else 150] = 4  # 4 classes: out of range
    step = _step(_model(), nn.CrossEntropyLoss())
    before = copy.deepcopy(step.model.state_dict())
    with pytest.raises(IndexError, match="Target 4 is out of bounds."):
        step.epoch(fastact.DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
    assert all(torch.equal(before[k], v) for k, v in step.model.state_dict().items())
    assert not step.optimizer.state and all(p.grad is None for p in step.model.parameters())
    with pytest.raises(IndexError, match="Target 4 is out of bounds."):  # torch's own error, for comparison
        nn.CrossEntropyLoss()(torch.zeros(1, 4), torch.tensor([4]))


def test_mismatched_lengths_and_non_tensor_samples_raise_torchs_errors_before_any_step():
    x, y = _data(rows=40)
    step = _step(_model(), nn.CrossEntropyLoss())
    before = copy.deepcopy(step.model.state_dict())
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        TensorDataset(x, y[:39])  # torch's own check
    dataset = TensorDataset(x, y)
    dataset.tensors = (x, y[:39])  # replaced after it: torch's loop would fail at the 40th sample
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        step.epoch(fastact.DataLoader(dataset, batch_size=8))
    samples = [(row.tolist(), int(label)) for row, label in zip(x, y)]  # lists, not tensors
    with pytest.raises(TypeError, match="must be Tensor, not list"):
        step.epoch(fastact.DataLoader(samples, batch_size=8))
    with pytest.raises(TypeError, match="must be Tensor, not list"):
        step.model(next(iter(TorchLoader(samples, batch_size=8)))[0])  # torch's error, for comparison
    assert all(torch.equal(before[k], v) for k, v in step.model.state_dict().items())
    assert not step.optimizer.state


@pytest.mark.cpp_only  # both paths; the loop's is the same Python on either backend
@pytest.mark.parametrize("path", ["one_call", "loop"])
def test_ctrl_c_stops_at_a_batch_boundary_with_that_batchs_state(path, monkeypatch):
    # pytest-xdist runs tests on its workers' main threads, with Python's handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert threading.current_thread() is threading.main_thread()
    if path == "loop":
        monkeypatch.setattr(train_step.TrainStep, "_epoch_plan", lambda *a: None)
    x, y = _data(rows=1_000_000)  # an epoch of seconds: the signal comes mid-epoch
    step = _step(_model(), nn.CrossEntropyLoss())
    start = copy.deepcopy((step.model, step.optimizer.state_dict()))
    loader = fastact.DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                                generator=torch.Generator().manual_seed(5))
    rng = loader.generator.get_state()
    step.epoch([(x[:16], y[:16])])  # the optimizer's state exists: the rest can be one call
    sent = []
    timer = threading.Timer(0.1, lambda: (sent.append(time.perf_counter()), os.kill(os.getpid(), signal.SIGINT)))
    timer.start()
    with pytest.raises(KeyboardInterrupt) as caught:
        step.epoch(loader)
    stopped = time.perf_counter()
    timer.join()
    done = caught.value.batches_done
    assert done == step.batches_done and 0 < done < len(loader)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # the one call asks every 5 ms, the loop every batch: ~0.1 s is the
    # promise, 1 s the bound on a busy machine
    assert stopped - sent[0] < 1.0
    # replay: the same first step, then `done` batches of the same epoch
    model, state = start
    replay = fastact.TrainStep(model, nn.CrossEntropyLoss(), fastact.optim.Adam(model.parameters(), lr=1e-2))
    replay.optimizer.load_state_dict(state)
    replay(x[:16], y[:16])
    loader.generator.set_state(rng)
    for i, (xb, yb) in enumerate(loader):
        if i == done:
            break
        replay(xb, yb)
    _assert_same_state(step, replay)


def test_a_saved_fit_resumes_exactly_as_the_uninterrupted_one():
    x, y = _data()

    def setup():
        step = _step(_model(), nn.CrossEntropyLoss())
        loader = fastact.DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                                    generator=torch.Generator().manual_seed(7))
        return step, loader

    whole, whole_loader = setup()
    full = whole.fit(whole_loader, 4, progress=False)
    first, first_loader = setup()
    half = first.fit(first_loader, 2, progress=False)
    saved = copy.deepcopy((first.model.state_dict(), first.optimizer.state_dict(), first_loader.generator.get_state()))
    resumed, resumed_loader = setup()  # a fresh process's objects
    resumed.model.load_state_dict(saved[0])
    resumed.optimizer.load_state_dict(saved[1])
    resumed_loader.generator.set_state(saved[2])
    rest = resumed.fit(resumed_loader, 2, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(full, half + rest))
    for p, q in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_fit_callback_early_stopping_schedulers_and_progress(capsys):
    x, y = _data()
    step = _step(_model(), nn.CrossEntropyLoss())
    scheduler = torch.optim.lr_scheduler.StepLR(step.optimizer, step_size=1, gamma=0.5)
    seen = []

    def callback(epoch, losses):
        seen.append((epoch, losses.shape, step.optimizer.param_groups[0]["lr"]))
        scheduler.step()
        return epoch == 2  # stop after the third epoch

    loader = fastact.DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    history = step.fit(loader, 10, callback=callback)
    assert [e for e, _, _ in seen] == [0, 1, 2] and len(history) == 3
    assert [lr for _, _, lr in seen] == [1e-2, 5e-3, 2.5e-3]
    assert all(shape == (len(loader),) for _, shape, _ in seen)
    assert "fit" in capsys.readouterr().err
    step.fit(loader, 1, progress=False)
    assert capsys.readouterr().err == ""
