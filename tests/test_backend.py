"""fastact.backend(), `python -m fastact info`, and a broken extension that
must degrade to a clear error instead of breaking `import fastact`."""
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

import fastact


@pytest.mark.cpp_only
def test_backend_reports_cpp():
    info = fastact.backend()
    assert info.name == "cpp" and "cpu" in info.devices
    assert "_C" in info.reason and "cpu_capability=" in info.build
    assert "cpp" in str(info)


def run_python(code, cwd=None, **env):
    return subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300, cwd=cwd)


def requested_backends(request):
    """The backends this run tests (--backends): an install without _C is
    tested with --backends numba (.ci/run)."""
    return request.config.getoption("--backends").split(",")


@pytest.mark.once
def test_cli_info(request):
    for name in requested_backends(request):
        out = subprocess.run([sys.executable, "-P", "-m", "fastact", "info"], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "FASTACT_BACKEND": name})
        assert out.returncode == 0, out.stderr
        assert f"fastact backend: {name}" in out.stdout


def _broken_copy(tmp_path):
    """fastact's package copied into tmp_path with a _C that cannot load."""
    pkg = os.path.dirname(fastact.__file__)
    copy = tmp_path / "fastact"
    # without the build record: a copy from an install whose build failed
    # (.ci/run tests one) would say that instead of trying the _C below
    shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("_C*", "__pycache__", "_build.json"))
    (copy / ("_C" + sysconfig.get_config_var("EXT_SUFFIX"))).write_bytes(b"not a shared library")


_USE_A_RELU = (
    "import torch, warnings, fastact\n"
    "assert fastact.__file__.startswith(%r), fastact.__file__\n"
    "print(fastact.backend().name)\n"
    "m = torch.nn.Sequential(fastact.ReLU())\n"
    "try:\n    print(m(torch.tensor([-1.0, 2.0])).tolist())\nexcept RuntimeError as e:\n    print('ERR', e)\n"
)


@pytest.mark.once
def test_broken_extension_falls_back_to_numba(tmp_path):
    _broken_copy(tmp_path)
    out = run_python(_USE_A_RELU % str(tmp_path), cwd=str(tmp_path), PYTHONPATH=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["numba", "[0.0, 2.0]"]
    assert out.stderr.count("falling back to the slower Numba backend") == 1, out.stderr  # one warning
    assert "pip install --no-build-isolation" in out.stderr


@pytest.mark.once
def test_broken_extension_with_cpp_required_gives_a_clear_error(tmp_path):
    _broken_copy(tmp_path)
    out = run_python(_USE_A_RELU % str(tmp_path), cwd=str(tmp_path), PYTHONPATH=str(tmp_path), FASTACT_BACKEND="cpp")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "unavailable"
    assert lines[1].startswith("ERR") and "pip install --no-build-isolation" in lines[1]


def test_backend_env_and_set_backend(request):
    if "cpp" in requested_backends(request):
        out = run_python("import fastact; print(fastact.backend().name); fastact.set_backend('cpp'); "
                         "print(fastact.backend().name)", FASTACT_BACKEND="numba")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["numba", "cpp"]
    info = fastact.set_backend("numba")
    assert info.name == "numba" and info.devices == ("cpu",) and "numba" in info.build
    with pytest.raises(ValueError, match="unknown backend"):
        fastact.set_backend("fortran")


@pytest.mark.cpp_only
def test_output_cache_reuses_and_empties():
    import torch

    fastact.empty_cache()
    assert torch.ops.fastact._cached_bytes() == 0
    x = torch.randn(1024, 1024)  # 4 MiB: on fastact's own mappings
    y = fastact.functional.relu(x)
    ptr = y.data_ptr()
    del y
    assert torch.ops.fastact._cached_bytes() >= 4 << 20
    assert fastact.functional.relu(x).data_ptr() == ptr, "the freed output is reused"
    fastact.empty_cache()
    assert torch.ops.fastact._cached_bytes() == 0


# The cache's policy, in a process of its own with a 64 MiB cache: size
# classes, least recently freed out first, and a bound that holds.
_CACHE_POLICY_SCRIPT = r"""
import random, torch, fastact
from fastact.functional import relu
cached, capacity = torch.ops.fastact._cached_bytes, 64 << 20
# outputs of 1000 and 1020 rows (3.9 and 3.98 MiB) fall in one size class (4 MiB): the second reuses the first's mapping
a = relu(torch.randn(1000, 1024)); ptr = a.data_ptr(); del a
assert relu(torch.randn(1020, 1024)).data_ptr() == ptr, "one size class"
# a loop whose batch size varies: the bound holds at every step (the inputs
# are leading rows of one tensor: what varies is the outputs' sizes)
random.seed(0)
rows = torch.randn(4096, 1024)
for step in range(300):
    ys = [relu(rows[:random.randint(64, 4096)]) for _ in range(3)]
    del ys
    assert cached() <= capacity, (step, cached())
# a steady shape after that still comes from the cache (its mapping is reused)
x = torch.randn(2048, 1024)  # 8 MiB
y = relu(x); ptr = y.data_ptr(); del y
assert all(relu(x).data_ptr() == ptr for _ in range(5)), "the steady shape is cached"
# a mapping larger than the whole cache is never kept
del x
big = relu(torch.randn(80 << 18)); del big
assert cached() <= capacity
print("ok")
"""


@pytest.mark.cpp_only
def test_output_cache_size_classes_eviction_and_bound():
    import os
    import subprocess
    import sys

    env = dict(os.environ, FASTACT_CACHE_MB="64", FASTACT_BACKEND="cpp")
    result = subprocess.run([sys.executable, "-P", "-c", _CACHE_POLICY_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


@pytest.mark.once
def test_numba_keeps_its_compiled_kernels_outside_the_package(tmp_path):
    """pip uninstall removes only what it installed: a cache inside the package
    would leave a directory that imports as an empty namespace package."""
    package_cache = os.path.join(os.path.dirname(fastact.__file__), "_backends", "numba", "__pycache__")

    def cached_in_package():
        if not os.path.isdir(package_cache):
            return {}
        return {f: os.path.getmtime(os.path.join(package_cache, f)) for f in os.listdir(package_cache)
                if f.endswith((".nbi", ".nbc"))}

    before = cached_in_package()
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-P", "-c", "import torch, fastact.functional as F; "
                          "print(F.relu(torch.tensor([-1.0, 2.0])).tolist())"], capture_output=True, text=True,
                         timeout=300, env={**environ, "FASTACT_BACKEND": "numba",
                                           "FASTACT_NUMBA_CACHE_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0.0, 2.0]"
    assert cached_in_package() == before
    assert any(f.endswith(".nbi") for _, _, files in os.walk(tmp_path) for f in files)


@pytest.mark.once
def test_an_unbuilt_source_tree_says_so_in_one_sentence(tmp_path):
    """`python -m fastact` in the repository root (no -P) imports the source
    tree; without an extension built there, the warning names that cause and
    its fix, not an import error from inside the package."""
    pkg = os.path.dirname(fastact.__file__)
    shutil.copytree(pkg, tmp_path / "fastact", ignore=shutil.ignore_patterns("_C*", "__pycache__", "_build.json"))
    (tmp_path / "setup.py").write_text("# a checkout\n")
    out = run_python(_USE_A_RELU % str(tmp_path), cwd=str(tmp_path), PYTHONPATH=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["numba", "[0.0, 2.0]"]
    assert out.stderr.count("this is fastact's source tree") == 1 and "python -P" in out.stderr
    assert "circular import" not in out.stderr and "partially initialized" not in out.stderr


@pytest.mark.parametrize("big", [False, True])
def test_numba_hands_small_inputs_to_torch(monkeypatch, big):
    """Below TORCH_BELOW elements the Numba backend runs torch's own op (same
    values, torch's autograd node); from there on, its kernels (the rest of
    the suite runs with TORCH_BELOW = 0, on the kernels at every size)."""
    import torch
    import torch.nn.functional as TF

    import fastact.functional as F
    from fastact._backends import numba as numba_backend

    fastact.set_backend("numba")  # (the autouse fixture sets the next test's backend)
    monkeypatch.setattr(numba_backend, "TORCH_BELOW", 64)
    x = torch.randn(8, 8 if big else 7, requires_grad=True)
    target = torch.randint(0, x.shape[1], (8,))
    calls = {"sigmoid": (F.sigmoid(x), torch.sigmoid(x)), "gelu": (F.gelu(x), TF.gelu(x)),
             "softmax": (F.softmax(x, 1), torch.softmax(x, 1)),
             "cross_entropy": (F.cross_entropy(x, target), TF.cross_entropy(x, target)),
             "bce": (F.binary_cross_entropy_with_logits(x, x.sigmoid().detach()),
                     TF.binary_cross_entropy_with_logits(x, x.sigmoid().detach())),
             "relu_": (F.relu_(x * 1), torch.relu_(x * 1))}
    for name, (got, expected) in calls.items():
        torch.testing.assert_close(got, expected, rtol=2e-6, atol=1e-6)
        torch_node = type(expected.grad_fn).__name__
        assert (type(got.grad_fn).__name__ == torch_node) is not big, (name, got.grad_fn)


def test_numba_large_outputs_are_reused_bounded_and_emptied(monkeypatch):
    import torch

    from fastact._backends.numba import outputs

    monkeypatch.setattr(outputs, "pool", outputs._Pool(3 * (8 << 20)))
    a = outputs.empty((1 << 21,), torch.float32)  # 8 MiB
    first = a.data_ptr()
    del a
    b = outputs.empty((1024, 2048), torch.float32)  # the same bytes, another shape: reused
    assert b.data_ptr() == first and b.shape == (1024, 2048) and b.is_contiguous()
    c = outputs.empty((1 << 21,), torch.float32)
    assert c.data_ptr() != first  # b still holds it
    rows = b[1:]  # a view keeps the storage
    del b
    assert outputs.pool.held == 0
    del rows
    assert outputs.pool.held == 8 << 20
    fastact.empty_cache()
    assert outputs.pool.held == 0
    big = outputs.empty((1 << 24,), torch.float32)  # 64 MiB, more than the pool holds: freed, not kept
    del big, c
    assert outputs.pool.held == 8 << 20  # (c came back; big did not)
    assert outputs.empty((3,), torch.float32).numel() == 3  # small ones: torch's allocator


_FIRST_USE_IN_THE_BACKGROUND = r'''
import os
import numba, torch
import fastact, fastact.functional as F
from fastact._backends.numba import kernels, warmup

fastact.set_backend("numba")
x = torch.randn(4, 8, requires_grad=True)
assert type(F.relu(x).grad_fn).__name__ == "ReluBackward0"  # torch's op while the worker compiles
assert "compiling in the background" in warmup.state(), warmup.state()
assert warmup.wait(timeout=600) and os.path.exists(warmup.marker_path())
assert type(F.relu(x).grad_fn).__name__ != "ReluBackward0"  # the kernel, from the cache

# every other signature the ops give the kernels is in the cache too: no call compiles
big = torch.randn(300, 300, requires_grad=True)  # threaded: the kernels see slices
for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
    for v in (x.to(dtype), x.to(dtype).t(), big.to(dtype)):
        v = v.detach().requires_grad_()
        outs = [F.relu(v), F.leaky_relu(v, -0.2), F.sigmoid(v), F.tanh(v), F.gelu(v, approximate="tanh"),
                F.selu(v), F.softmax(v, 0), F.log_softmax(v, 1), F.softmax(v.unsqueeze(0), 1)]
        weight = torch.rand(v.shape[1], dtype=dtype)
        target = torch.randint(0, v.shape[1], (v.shape[0],))
        outs += [F.cross_entropy(v, target, weight, ignore_index=1, label_smoothing=0.1),
                 F.cross_entropy(v, torch.softmax(v.detach().float(), 1).to(dtype), weight, label_smoothing=0.2),
                 F.binary_cross_entropy_with_logits(v, torch.rand_like(v), weight, pos_weight=weight.flip(0)),
                 F.selu_(v * 1)]
        torch.autograd.grad(sum(o.float().sum() for o in outs), v)
        with torch.no_grad():
            F.cross_entropy(v, target, reduction="none")
            F.binary_cross_entropy_with_logits(v, torch.rand_like(v), reduction="sum")
            for op in (F.relu_, F.leaky_relu_, F.selu_):
                op(v.clone())
for act in ("none", "relu", "leaky_relu", "sigmoid", "tanh"):
    F.fused_linear(x, torch.randn(5, 8, requires_grad=True), None, act).sum().backward()
misses = {name: dict(d.stats.cache_misses) for name, d in vars(kernels).items()
          if isinstance(d, numba.core.registry.CPUDispatcher) and d.stats.cache_misses}
assert not misses, misses
print("ok")
'''


@pytest.mark.numba_only
def test_numba_first_use_compiles_in_the_background_and_torch_runs_meanwhile(tmp_path):
    """On an empty kernel cache the first call that needs a kernel starts a
    worker process that compiles them all, and runs torch's op meanwhile;
    afterwards the kernels load from the cache for every signature the ops
    give them. A second process finds the cache warm at once."""
    env = {"FASTACT_NUMBA_WARMUP": "background", "FASTACT_NUMBA_CACHE_DIR": str(tmp_path),
           "FASTACT_NUMBA_TORCH_BELOW": "0"}
    out = run_python(_FIRST_USE_IN_THE_BACKGROUND, **env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.stdout, out.stderr,
                                                                 (tmp_path / "warmup.log").read_text())
    again = run_python("import torch, fastact, fastact.functional as F\n"
                       "from fastact._backends.numba import warmup\n"
                       "fastact.set_backend('numba')\n"
                       "print(type(F.sigmoid(torch.randn(3, requires_grad=True)).grad_fn).__name__, "
                       "warmup.state())", **env)
    assert again.returncode == 0, again.stderr
    assert "SigmoidBackward0" not in again.stdout and "from the kernel cache" in again.stdout, again.stdout


@pytest.mark.numba_only
def test_numba_eager_calls_keep_the_dispatcher_where_something_must_see_the_op():
    """Plain eager calls on the Numba backend run the ops' functions without
    the dispatcher (autograd.direct); a dispatch mode and the profiler must
    still see the ops, forward and backward."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    import fastact.functional as F

    seen = []

    class Seen(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    x = torch.randn(4, 8, requires_grad=True)
    with Seen():
        F.softmax(x, 1).sum().backward()
    assert "fastact_numba.softmax.default" in seen and "fastact_numba.softmax_backward.default" in seen, seen
    with torch.profiler.profile() as prof:
        F.relu(x).sum().backward()
    names = {e.name for e in prof.events()}
    assert {"fastact_numba::relu", "fastact_numba::relu_backward"} <= names, sorted(names)
