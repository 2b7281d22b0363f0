"""fastact.optim against torch.optim: the same parameters and state, bit
for bit (torch.equal), step after step, as torch's default implementation,
over every option, dtype and shape, the groups that run torch's own
implementation, state_dict in both directions, closures, schedulers,
hooks, sparse gradients, and autograd's version counter."""
import copy

import pytest
import torch

import fastact

OPTIMIZERS = {"SGD": (torch.optim.SGD, fastact.optim.SGD), "Adam": (torch.optim.Adam, fastact.optim.Adam),
              "AdamW": (torch.optim.AdamW, fastact.optim.AdamW)}

# Options over the C++ path (lr as set by the tutorials and others).
SETTINGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.25, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1, maximize=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.5, foreach=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.8), amsgrad=True, maximize=True)),  # 1 - beta1 >= 0.5: lerp's other form
    ("Adam", dict(lr=0.01, foreach=False, decoupled_weight_decay=True, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.003, weight_decay=0.3, amsgrad=True, foreach=True)),
]
SHAPES = [(10, 2), (10,), (), (0, 3), (37, 33), (3, 70001)]  # the last: split across threads


def _params(shapes, dtype, seed=0, non_contiguous=False):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for shape in shapes:
        if non_contiguous and len(shape) == 2:
            t = torch.randn(shape[::-1], generator=gen, dtype=torch.float64).to(dtype).t()
        else:
            t = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        out.append(torch.nn.Parameter(t))
    return out


def _set_grads(ours, theirs, step):
    gen = torch.Generator().manual_seed(1000 + step)
    for p, q in zip(ours, theirs):
        g = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
        if step == 2 and p.numel():
            g.view(-1)[0] = 0.0
        p.grad, q.grad = g.clone(), g.clone()


def assert_same(torch_opt, fastact_opt, torch_params, fastact_params):
    for p, q in zip(torch_params, fastact_params):
        assert torch.equal(p, q), (p - q).abs().max()
    ours, theirs = fastact_opt.state_dict(), torch_opt.state_dict()
    strip = lambda groups: [{k: v for k, v in g.items() if k != "foreach"} for g in groups]  # noqa: E731
    assert strip(ours["param_groups"]) == strip(theirs["param_groups"])
    assert ours["state"].keys() == theirs["state"].keys()
    for key, state in theirs["state"].items():
        assert state.keys() == ours["state"][key].keys()
        for name, value in state.items():
            assert torch.equal(value, ours["state"][key][name]), name
            assert value.dtype == ours["state"][key][name].dtype and value.device == ours["state"][key][name].device


def run_both(name, settings, params, steps=6):
    torch_cls, fastact_cls = OPTIMIZERS[name]
    theirs = copy.deepcopy(params)
    # fastact's one call stands for torch's default implementation whatever
    # foreach= says; on the Numba backend the step is torch's own, foreach too
    cpp = fastact.backend().name == "cpp"
    torch_settings = {k: v for k, v in settings.items() if k != "foreach" or not cpp}
    torch_opt, fastact_opt = torch_cls(theirs, **torch_settings), fastact_cls(params, **settings)
    for step in range(steps):
        _set_grads(params, theirs, step)
        torch_opt.step()
        fastact_opt.step()
        assert_same(torch_opt, fastact_opt, theirs, params)
    return torch_opt, fastact_opt, theirs


@pytest.mark.parametrize("name,settings", SETTINGS, ids=[f"{n}-{s}" for n, s in SETTINGS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_steps_equal_torch_default(name, settings, dtype):
    shapes = SHAPES if dtype in (torch.float32, torch.float64) else SHAPES[:-1]
    run_both(name, settings, _params(shapes, dtype))


@pytest.mark.parametrize("name,settings", SETTINGS[5:], ids=[f"{n}-{s}" for n, s in SETTINGS[5:]])
def test_large_float_adam_equals_torch_over_every_exponent(name, settings):
    # From 2^18 elements the float kernel computes torch's sqrt inline where
    # it matches the call bit for bit: gradients scaled from 1e-25 to 1e15
    # put exp_avg_sq on every exponent, subnormals, 0 and inf included.
    params = _params([(520, 510)], torch.float32)
    theirs = copy.deepcopy(params)
    torch_settings = {k: v for k, v in settings.items() if k != "foreach"}
    torch_opt, fastact_opt = OPTIMIZERS[name][0](theirs, **torch_settings), OPTIMIZERS[name][1](params, **settings)
    gen = torch.Generator().manual_seed(7)
    for _ in range(4):
        scale = 10.0 ** torch.randint(-25, 16, params[0].shape, generator=gen)
        g = torch.randn(params[0].shape, generator=gen) * scale
        params[0].grad, theirs[0].grad = g.clone(), g.clone()
        torch_opt.step()
        fastact_opt.step()
        assert torch.equal(params[0].isnan(), theirs[0].isnan())
        assert torch.equal(params[0].nan_to_num(), theirs[0].nan_to_num())
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(fastact_opt.state[params[0]][key], torch_opt.state[theirs[0]][key])


@pytest.mark.parametrize("name,settings", SETTINGS[1:2] + SETTINGS[6:8], ids=["SGD", "Adam", "Adam-amsgrad"])
def test_non_contiguous_and_mixed_dtype_params(name, settings):
    params = _params([(5, 7), (4, 6)], torch.float32, non_contiguous=True)
    params += _params([(9,)], torch.float64) + _params([(3, 3)], torch.bfloat16)
    run_both(name, settings, params)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_complex_params(name):
    params = [torch.nn.Parameter(torch.randn(4, 3, dtype=torch.complex64))]
    run_both(name, dict(lr=0.01, amsgrad=True, weight_decay=0.1), params)


def test_nan_and_inf_gradients_propagate_as_torch():
    params = _params([(40,)], torch.float32)
    theirs = copy.deepcopy(params)
    torch_opt, fastact_opt = torch.optim.Adam(theirs, lr=0.01, amsgrad=True), fastact.optim.Adam(params, lr=0.01,
                                                                                                   amsgrad=True)
    g = torch.randn(40)
    g[3], g[17], g[33] = float("nan"), float("inf"), -float("inf")
    params[0].grad, theirs[0].grad = g.clone(), g.clone()
    torch_opt.step()
    fastact_opt.step()
    assert torch.equal(params[0].isnan(), theirs[0].isnan())
    assert torch.equal(params[0].nan_to_num(), theirs[0].nan_to_num())


# Groups that run torch's own implementation: still equal to torch with the same options.
TORCH_PATH = [
    ("SGD", dict(lr=torch.tensor(0.1), momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, fused=True)),
    ("SGD", dict(lr=0.1, differentiable=True)),
    ("Adam", dict(lr=torch.tensor(0.01))),
    ("Adam", dict(lr=0.01, fused=True)),
    ("AdamW", dict(lr=0.01, betas=(torch.tensor(0.9), torch.tensor(0.99)))),
]


@pytest.mark.parametrize("name,settings", TORCH_PATH, ids=[f"{n}-{list(s)[-1]}" for n, s in TORCH_PATH])
def test_options_outside_the_cpp_path_run_torch(name, settings):
    params = _params([(10, 2), (10,), (37, 33)], torch.float32)
    if settings.get("differentiable"):  # torch's differentiable mode updates tensors autograd may record
        params = [p.detach() for p in params]
    run_both(name, settings, params, steps=3)


def test_capturable_goes_to_torch_which_refuses_cpu_params():
    for cls in (torch.optim.Adam, fastact.optim.Adam):
        p = torch.nn.Parameter(torch.randn(3))
        p.grad = torch.ones(3)
        with pytest.raises(AssertionError, match="If capturable=True"):
            cls([p], capturable=True).step()


def test_one_group_each_way_and_a_group_added_later():
    params = _params([(10, 2), (10,), (6,), (5, 5)], torch.float32)
    theirs = copy.deepcopy(params)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:3], "lr": torch.tensor(0.02), "amsgrad": True}]
    torch_opt, fastact_opt = torch.optim.Adam(groups(theirs), lr=0.01), fastact.optim.Adam(groups(params), lr=0.01)
    for step in range(5):
        if step == 2:
            torch_opt.add_param_group({"params": theirs[3:], "weight_decay": 0.1})
            fastact_opt.add_param_group({"params": params[3:], "weight_decay": 0.1})
        _set_grads(params, theirs, step)
        if step == 1:  # a parameter without a gradient is skipped, its state untouched
            params[1].grad = theirs[1].grad = None
        torch_opt.step()
        fastact_opt.step()
        assert_same(torch_opt, fastact_opt, theirs, params)


@pytest.mark.parametrize("name,settings", [SETTINGS[2], SETTINGS[7], SETTINGS[10]], ids=["SGD", "Adam", "AdamW"])
def test_state_dict_loads_both_ways(name, settings):
    torch_cls, fastact_cls = OPTIMIZERS[name]
    torch_opt, fastact_opt, theirs = run_both(name, settings, _params([(10, 2), (10,)], torch.float32), steps=3)
    params = fastact_opt.param_groups[0]["params"]
    # swap: torch continues from fastact's state and fastact from torch's
    torch_next, fastact_next = torch_cls(copy.deepcopy(params), **settings), fastact_cls(copy.deepcopy(theirs), **settings)
    torch_next.load_state_dict(fastact_opt.state_dict())
    fastact_next.load_state_dict(torch_opt.state_dict())
    a, b = torch_next.param_groups[0]["params"], fastact_next.param_groups[0]["params"]
    for step in range(3, 6):
        _set_grads(b, a, step)
        torch_next.step()
        fastact_next.step()
        assert_same(torch_next, fastact_next, a, b)


def test_closure_and_lr_scheduler():
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    twin = copy.deepcopy(model)
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    opts = [cls(m.parameters(), lr=0.1, momentum=0.5) for cls, m in ((torch.optim.SGD, twin),
                                                                      (fastact.optim.SGD, model))]
    schedulers = [torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in opts]
    for _ in range(5):
        losses = []
        for m, o, s in zip((twin, model), opts, schedulers):
            def closure(m=m, o=o):
                o.zero_grad()
                loss = torch.nn.functional.mse_loss(m(x), y)
                loss.backward()
                return loss
            losses.append(o.step(closure))
            s.step()
        assert torch.equal(losses[0], losses[1])
    for p, q in zip(twin.parameters(), model.parameters()):
        assert torch.equal(p, q)
    assert opts[1].param_groups[0]["lr"] == opts[0].param_groups[0]["lr"] == 0.025


@pytest.mark.parametrize("settings", [dict(momentum=0.9), dict(), dict(maximize=True)])
def test_sparse_gradients(settings):
    emb = torch.nn.Embedding(10, 3, sparse=True)
    twin = copy.deepcopy(emb)
    opts = (torch.optim.SGD(twin.parameters(), lr=0.1, **settings), fastact.optim.SGD(emb.parameters(), lr=0.1,
                                                                                      **settings))
    idx = torch.tensor([1, 4, 4, 7])
    for _ in range(3):
        for m, o in zip((twin, emb), opts):
            o.zero_grad()
            m(idx).sum().backward()
            o.step()
    assert torch.equal(emb.weight, twin.weight)
    for cls in (torch.optim.SGD, fastact.optim.SGD):  # torch's error, whichever path
        sgd = cls(emb.parameters(), lr=0.1, weight_decay=0.1, **settings)
        emb(idx).sum().backward()
        with pytest.raises(RuntimeError, match=r"add\(sparse, dense\) is not supported"):
            sgd.step()
    adam = fastact.optim.Adam(emb.parameters())
    emb(idx).sum().backward()
    with pytest.raises(RuntimeError, match="Adam does not support sparse gradients"):
        adam.step()


def test_hooks_profiler_and_zero_grad():
    p = torch.nn.Parameter(torch.randn(4))
    opt = fastact.optim.SGD([p], lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda *a: calls.append("pre"))
    opt.register_step_post_hook(lambda *a: calls.append("post"))
    p.grad = torch.ones(4)
    opt.step()
    assert calls == ["pre", "post"]
    with torch.profiler.profile() as prof:
        opt.step()
        opt.zero_grad()
    names = {e.key for e in prof.key_averages()}
    assert "Optimizer.step#SGD.step" in names and "Optimizer.zero_grad#SGD.zero_grad" in names
    assert p.grad is None
    p.grad = torch.ones(4)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(4))


def test_a_graph_that_saved_a_parameter_refuses_the_stale_value():
    # torch's in-place updates bump the version counter; so does the C++ step
    w = torch.nn.Parameter(torch.randn(3))
    opt = fastact.optim.Adam([w])
    loss = (w * w).sum()
    w.grad = torch.ones(3)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_the_step_is_not_recorded_by_autograd():
    w = torch.nn.Parameter(torch.randn(3))
    fastact.optim.SGD([w], lr=0.1, momentum=0.9)
    opt = fastact.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = torch.ones(3)
    opt.step()
    assert w.grad_fn is None and w.is_leaf and w.requires_grad


@pytest.mark.cpp_only
def test_opcheck_the_step_ops():
    # schema (the mutated lists are marked) and autograd registration. The
    # fake-tensor checks do not apply: like torch's default Adam, the step
    # reads its count on the host.
    checks = ("test_schema", "test_autograd_registration")
    params, grads = _params([(4, 3), (5,)], torch.float32), [torch.randn(4, 3), torch.randn(5)]
    bufs = [torch.zeros(4, 3), torch.zeros(5)]
    torch.library.opcheck(torch.ops.fastact._sgd_step_.default,
                          (params, grads, bufs, 0.1, 0.01, 0.9, 0.0, True, False, False), test_utils=checks)
    states = [[torch.zeros(4, 3), torch.zeros(5)] for _ in range(3)]
    steps = [torch.tensor(0.0), torch.tensor(0.0)]
    torch.library.opcheck(torch.ops.fastact._adam_step_.default,
                          (params, grads, *states, steps, 0.01, 0.9, 0.999, 0.0, 1e-8, True, False, False),
                          test_utils=checks)


@pytest.mark.cpp_only
def test_the_step_ops_check_their_lists():
    p = [torch.nn.Parameter(torch.randn(3))]
    with pytest.raises(RuntimeError, match="expected 1 momentum buffers"):
        torch.ops.fastact._sgd_step_(p, [torch.randn(3)], [], 0.1, 0.0, 0.9, 0.0, False, False, False)
    with pytest.raises(RuntimeError, match="expected 1 gradients"):
        torch.ops.fastact._adam_step_(p, [], [torch.zeros(3)], [torch.zeros(3)], [], [torch.tensor(0.0)], 0.01, 0.9,
                                      0.999, 0.0, 1e-8, False, False, False)
    with pytest.raises(RuntimeError):  # a gradient of another shape: torch's own broadcasting error
        torch.ops.fastact._sgd_step_(p, [torch.randn(4)], [], 0.1, 0.0, 0.0, 0.0, False, False, False)


def test_training_a_tutorial_model_matches_torch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 10), torch.nn.ReLU(), torch.nn.Linear(10, 2))
    twin = copy.deepcopy(model)
    x, y = torch.randn(100, 2), torch.randint(0, 2, (100,))
    for torch_cls, fastact_cls, kw in ((torch.optim.Adam, fastact.optim.Adam, dict(lr=0.01)),
                                       (torch.optim.SGD, fastact.optim.SGD, dict(lr=0.1))):
        opts = torch_cls(twin.parameters(), **kw), fastact_cls(fastact.fuse(model, chain=False).parameters(), **kw)
        for _ in range(20):
            for m, o in zip((twin, model), opts):
                o.zero_grad()
                torch.nn.functional.cross_entropy(m(x), y).backward()
                o.step()
        for p, q in zip(twin.parameters(), model.parameters()):
            assert torch.equal(p, q)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name,settings", [SETTINGS[3], SETTINGS[7]], ids=["SGD", "Adam"])
def test_cuda_params_equal_torch_single_tensor(name, settings):
    # on CUDA the step runs torch's ops one by one: torch's single-tensor loop
    params = [torch.nn.Parameter(p.detach().cuda()) for p in _params([(10, 2), (37, 33)], torch.float32)]
    run_both(name, dict(settings, foreach=False), params, steps=3)
