"""fastact's CUDA kernels against torch on the same GPU: values and gradients
over dtypes, shapes, layouts and dims, every cross entropy form, opcheck on
CUDA tensors, torch.compile, CUDA graphs, no host synchronisation, the
device-side assert for a bad class index, 64-bit indexing, peak memory.

Runs where torch sees a GPU (skips cleanly elsewhere); there, a fastact
built without its CUDA kernels is a failure, not a skip."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import fastact
import fastact.functional as FF
from reference import CE_CASES
from test_opcheck import CASES

if not torch.cuda.is_available():
    # once for the module, not once per case: thousands of skipped GPU cases
    # in the summary read as alarming on a CPU machine
    pytest.skip("no CUDA device: the GPU tests run where torch sees one (bash bench/gpu_session.sh)",
                allow_module_level=True)

pytestmark = pytest.mark.cpp_only

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# torch.testing's defaults for the dtype, loosened for 16-bit floats where
# torch itself rounds intermediates that fastact keeps in fp32
TOLERANCES = {torch.float64: (1e-7, 1e-7), torch.float32: (1.3e-6, 1e-5), torch.float16: (2e-3, 2e-3),
              torch.bfloat16: (2e-2, 2e-2)}


@pytest.fixture(autouse=True)
def _built_with_cuda():
    assert "cuda=1" in fastact.backend().build, "torch has CUDA but fastact._C was built without its CUDA kernels"


def assert_close(actual, expected):
    rtol, atol = TOLERANCES[expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def reference(fn, *tensors, **kw):
    """torch's result in float64, rounded to the inputs' dtype: the value a
    kernel computing in higher precision should round to."""
    dtype = tensors[0].dtype
    return fn(*[t.double() if t.is_floating_point() else t for t in tensors], **kw).to(dtype)


def layout(x, kind):
    if kind == "transposed" and x.dim() >= 2:
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    if kind == "sliced" and x.dim() >= 1:
        return torch.cat([x, x], -1)[..., ::2]
    return x


def check_op(ours, theirs, x, grad=True):
    """Forward and backward of ours(x) against theirs(x) in float64."""
    xa = x.clone().requires_grad_(grad)
    xb = x.detach().double().requires_grad_(grad)
    ya, yb = ours(xa), theirs(xb)
    assert ya.dtype == x.dtype and ya.shape == yb.shape
    assert_close(ya, yb.to(x.dtype))
    if grad and ya.numel():
        g = torch.randn_like(ya)
        ya.backward(g)
        yb.backward(g.double())
        assert_close(xa.grad, xb.grad.to(x.dtype))


ACTIVATIONS = {
    "relu": (FF.relu, F.relu),
    "leaky_relu": (lambda x: FF.leaky_relu(x, 0.1), lambda x: F.leaky_relu(x, 0.1)),
    "leaky_relu_negative": (lambda x: FF.leaky_relu(x, -0.2), lambda x: F.leaky_relu(x, -0.2)),
    "sigmoid": (FF.sigmoid, torch.sigmoid),
    "tanh": (FF.tanh, torch.tanh),
    "gelu": (FF.gelu, F.gelu),
    "gelu_tanh": (lambda x: FF.gelu(x, approximate="tanh"), lambda x: F.gelu(x, approximate="tanh")),
    "selu": (FF.selu, F.selu),
}
# 0-d, empty, odd sizes (the scalar tail), a pack multiple, several blocks
SHAPES = [(), (0,), (7,), (5, 10), (2, 3, 4, 5), (1000, 37), (3, (1 << 16) + 3)]


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["contiguous", "transposed", "sliced"])
def test_activation(name, dtype, shape, kind):
    ours, theirs = ACTIVATIONS[name]
    x = layout(torch.randn(shape, device="cuda", dtype=dtype) * 3, kind)
    check_op(ours, theirs, x)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "selu"])
def test_inplace_activation_and_special_values(name):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, -2.0, 3.0] * 300, device="cuda")
    expected = getattr(F, name)(x.clone())
    y = x.clone()
    assert getattr(FF, name + "_")(y) is y
    assert_close(y, expected)
    sliced = torch.cat([x, x]).view(2, -1).t()  # not dense in memory order
    getattr(FF, name + "_")(sliced)
    assert_close(sliced, getattr(F, name)(torch.cat([x, x]).view(2, -1).t()))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int32, torch.int64])
def test_relu_integers(dtype):
    x = torch.arange(-50, 50, device="cuda").to(dtype)
    assert torch.equal(FF.relu(x), F.relu(x))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,dim", [((), 0), ((5, 10), -1), ((5, 10), 0), ((4, 1000), 1), ((3, 1025), -1),
                                       ((3, 5003), 1), ((4, 32000), -1), ((2, 33, 70), 1), ((6, 7, 9), 0)], ids=str)
def test_softmax(log, dtype, shape, dim):
    ours = FF.log_softmax if log else FF.softmax
    theirs = F.log_softmax if log else F.softmax
    x = torch.randn(shape, device="cuda", dtype=dtype) * 4
    check_op(lambda t: ours(t, dim), lambda t: theirs(t, dim), x)


def test_softmax_special_rows():
    inf, nan = float("inf"), float("nan")
    rows = [[1.0, 2.0, -inf], [-inf, -inf, -inf], [inf, 1.0, 2.0], [nan, 1.0, 2.0], [-inf, 0.0, 1.0]]
    for classes in (3, 3000):  # warp and block paths
        x = torch.tensor(rows, device="cuda").repeat_interleave(classes // 3, 1)
        for ours, theirs in ((FF.softmax, F.softmax), (FF.log_softmax, F.log_softmax)):
            torch.testing.assert_close(ours(x, 1), theirs(x, 1), equal_nan=True)




def ce_inputs(rows, classes, dtype, case, extra_dims=()):
    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (rows, classes, *extra_dims)
    x = torch.randn(shape, device="cuda", dtype=dtype, generator=gen) * 3
    kw = {"label_smoothing": case.get("label_smoothing", 0.0)}
    if case.get("weight"):
        kw["weight"] = torch.rand(classes, device="cuda", dtype=dtype, generator=gen) + 0.1
    if case.get("probs"):
        target = torch.softmax(torch.randn(shape, device="cuda", generator=gen), 1).to(dtype)
    else:
        target = torch.randint(0, classes, (rows, *extra_dims), device="cuda", generator=gen)
        if "ignore_index" in case:
            kw["ignore_index"] = case["ignore_index"]
            target[::3] = case["ignore_index"]
    return x, target, kw


@pytest.mark.parametrize("case", list(CE_CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,classes", [(1000, 10), (64, 1000), (16, 1025), (8, 5003), (8, 32000), (0, 5)],
                         ids=str)
def test_cross_entropy(case, reduction, dtype, rows, classes):
    x, target, kw = ce_inputs(rows, classes, dtype, CE_CASES[case])
    xa = x.clone().requires_grad_()
    xb = x.double().requires_grad_()
    kw_ref = {k: (v.double() if torch.is_tensor(v) else v) for k, v in kw.items()}
    ta = target
    tb = target.double() if target.is_floating_point() else target
    la = FF.cross_entropy(xa, ta, reduction=reduction, **kw)
    lb = F.cross_entropy(xb, tb, reduction=reduction, **kw_ref)
    assert_close(la, lb.to(dtype))
    if rows:
        g = torch.rand_like(la) + 0.5
        la.backward(g)
        lb.backward(g.double())
        assert_close(xa.grad, xb.grad.to(dtype))


def test_cross_entropy_nd_input_and_eval():
    x, target, kw = ce_inputs(4, 7, torch.float32, {}, extra_dims=(3, 5))
    assert_close(FF.cross_entropy(x, target), F.cross_entropy(x, target))
    with torch.no_grad():
        assert_close(FF.cross_entropy(x, target, label_smoothing=0.1), F.cross_entropy(x, target, label_smoothing=0.1))


def test_cross_entropy_backward_with_gradient_one_is_the_forward_gradient():
    x = torch.randn(64, 1000, device="cuda", requires_grad=True)
    y = torch.randint(0, 1000, (64,), device="cuda")
    FF.cross_entropy(x, y).backward()
    expected = torch.autograd.grad(F.cross_entropy(x, y), x)[0]
    assert_close(x.grad, expected)
    x.grad = None
    (FF.cross_entropy(x, y) * 3).backward()  # a gradient of 3: the scaling pass runs
    assert_close(x.grad, 3 * expected)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weights", [False, True])
def test_binary_cross_entropy_with_logits(reduction, dtype, weights):
    x = torch.randn(37, 129, device="cuda", dtype=dtype) * 4
    t = torch.rand(37, 129, device="cuda").to(dtype)
    kw = dict(weight=torch.rand(129, device="cuda").to(dtype), pos_weight=torch.rand(129, device="cuda").to(dtype) * 3) \
        if weights else {}
    xa, xb = x.clone().requires_grad_(), x.double().requires_grad_()
    la = FF.binary_cross_entropy_with_logits(xa, t, reduction=reduction, **kw)
    lb = F.binary_cross_entropy_with_logits(xb, t.double(), reduction=reduction,
                                            **{k: v.double() for k, v in kw.items()})
    assert_close(la, lb.to(dtype))
    g = torch.rand_like(la)
    la.backward(g)
    lb.backward(g.double())
    assert_close(xa.grad, xb.grad.to(dtype))


@pytest.mark.parametrize("activation", ["none", "relu", "leaky_relu", "sigmoid", "tanh"])
def test_fused_linear(activation):
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), *{
        "none": [], "relu": [torch.nn.ReLU()], "leaky_relu": [torch.nn.LeakyReLU(0.1)],
        "sigmoid": [torch.nn.Sigmoid()], "tanh": [torch.nn.Tanh()]}[activation]).cuda()
    fused = fastact.fuse(__import__("copy").deepcopy(model))
    x = torch.randn(64, 20, device="cuda")
    ya, yb = fused(x), model(x)
    torch.testing.assert_close(ya, yb)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(fused[0].weight.grad, model[0].weight.grad)


def _to_cuda(arg):
    if torch.is_tensor(arg):
        return arg.detach().cuda().requires_grad_(arg.requires_grad)
    return arg


@pytest.mark.parametrize("op,args", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_opcheck_on_cuda(op, args):
    torch.library.opcheck(getattr(torch.ops.fastact, op).default, tuple(_to_cuda(a) for a in args))


def test_opcheck_scale_grad():
    g = torch.randn(5, 7, device="cuda")
    for scale in (1.0, 2.5):
        torch.library.opcheck(torch.ops.fastact._scale_grad_.default, (g.clone(), torch.tensor(scale, device="cuda")))


def tutorial_model():
    return torch.nn.Sequential(fastact.FusedLinear(2, 64, activation="relu"), fastact.Fused(),
                               torch.nn.Linear(64, 64), fastact.LeakyReLU(0.1), torch.nn.Linear(64, 3),
                               fastact.LogSoftmax(1)).cuda()


def test_compile_fullgraph():
    model = tutorial_model()
    x = torch.randn(256, 2, device="cuda")
    y = torch.randint(0, 3, (256,), device="cuda")

    def step(x, y):
        out = model(x)
        return FF.cross_entropy(out, y) + FF.softmax(out, 1).sum() * 0

    compiled = torch.compile(step, fullgraph=True)
    torch.testing.assert_close(compiled(x, y), step(x, y))


def test_cuda_graph_capture_and_replay():
    x = torch.randn(512, 1000, device="cuda", requires_grad=True)
    y = torch.randint(0, 1000, (512,), device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up off the default stream, as torch's docs ask
        for _ in range(2):
            x.grad = None
            FF.cross_entropy(FF.relu(x), y).backward()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    x.grad = None
    with torch.cuda.graph(graph):
        loss = FF.cross_entropy(FF.log_softmax(FF.relu(x), 1), y, label_smoothing=0.1)
        loss.backward()
    with torch.no_grad():
        x.copy_(torch.randn_like(x))
    graph.replay()
    xr = x.detach().clone().requires_grad_()
    expected = F.cross_entropy(F.log_softmax(F.relu(xr), 1), y, label_smoothing=0.1)
    expected.backward()
    assert_close(loss, expected)
    assert_close(x.grad, xr.grad)


def test_compile_reduce_overhead():
    model = tutorial_model()
    x = torch.randn(256, 2, device="cuda")
    y = torch.randint(0, 3, (256,), device="cuda")
    compiled = torch.compile(lambda x, y: FF.cross_entropy(model(x), y), mode="reduce-overhead")
    for _ in range(3):
        got = compiled(x, y)
    torch.testing.assert_close(got, FF.cross_entropy(model(x), y))


def test_no_host_synchronisation():
    x = torch.randn(256, 3000, device="cuda", requires_grad=True)
    y = torch.randint(0, 3000, (256,), device="cuda")
    w = torch.rand(3000, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        h = FF.gelu(FF.leaky_relu(FF.relu(x), 0.1))
        loss = FF.cross_entropy(FF.log_softmax(FF.softmax(h, 1), 1), y, weight=w, label_smoothing=0.1)
        loss = loss + FF.binary_cross_entropy_with_logits(FF.sigmoid(FF.tanh(h)), torch.sigmoid(h.detach()))
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_out_of_range_class_index_trips_a_device_assert():
    code = ("import torch, fastact.functional as FF\n"
            "x = torch.randn(8, 5, device='cuda')\n"
            "y = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1], device='cuda')\n"
            "FF.cross_entropy(x, y)\n"
            "torch.cuda.synchronize()\n")
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_LAUNCH_BLOCKING": "1"})
    assert done.returncode != 0
    assert "device-side assert" in done.stderr or "Target is out of bounds" in done.stderr, done.stderr[-2000:]


def test_indexing_beyond_2_to_the_31():
    if torch.cuda.get_device_properties(0).total_memory < 24 << 30:
        pytest.skip("needs 24 GiB of GPU memory")
    rows, classes = 65537, 32768  # 2^31 + 2^15 elements
    x = torch.randn(rows, classes, device="cuda", dtype=torch.bfloat16)
    y = torch.randint(0, classes, (rows,), device="cuda")
    loss = FF.cross_entropy(x, y, reduction="none")
    tail = slice(rows - 4, rows)  # rows whose offsets pass 2^31
    assert_close(loss[tail], F.cross_entropy(x[tail].double(), y[tail], reduction="none").to(x.dtype))
    r = FF.relu(x)
    assert torch.equal(r[tail], F.relu(x[tail]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_peak_memory_is_at_most_half_of_torch(dtype):
    def peak(loss_fn):
        x = torch.randn(1024, 32000, device="cuda", dtype=dtype, requires_grad=True)
        y = torch.randint(0, 32000, (1024,), device="cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        loss_fn(x, y).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base + x.numel() * x.element_size()

    assert peak(FF.cross_entropy) <= 0.5 * peak(F.cross_entropy)
