"""fastact's CUDA kernels and glue, run on an emulated GPU (CUDA threads as
host threads, tests/cuda_emulator) against torch in float64: every op,
forward and backward, over dtypes, each launch path (warp, block and
thread-per-row; 16-byte packs and the unaligned fallback; grid-stride loops;
multi-block reductions) and every cross entropy form. On a machine without
a GPU this is what checks the kernels' arithmetic and indexing; tests/
test_cuda.py checks them on real hardware where there is one."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import cuda_emulation
from reference import CE_CASES

pytestmark = pytest.mark.cpp_only  # independent of the fastact backend: run it once

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
TOLERANCES = {torch.float64: (1e-7, 1e-7), torch.float32: (1.3e-6, 1e-5), torch.float16: (2e-3, 2e-3),
              torch.bfloat16: (2e-2, 2e-2)}


@pytest.fixture(scope="module")
def ops():
    if cuda_emulation.cuda_include_dir() is None:
        pytest.skip("CUDA headers not found (no nvcc): the emulated GPU cannot be built")
    return cuda_emulation.load()


def assert_close(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    rtol, atol = TOLERANCES[expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def layout(x, kind):
    """contiguous; transposed (dense, not contiguous); sliced (not dense);
    offset (contiguous but 1 element past a 16-byte boundary: no packs)."""
    if kind == "transposed" and x.dim() >= 2:
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    if kind == "sliced" and x.dim() >= 1:
        return torch.cat([x, x], -1)[..., ::2]
    if kind == "offset":
        return torch.cat([x.new_zeros(1), x.flatten()])[1:].view(x.shape)
    return x


def float64_grad(fn, x, g):
    x64 = x.detach().double().requires_grad_()
    fn(x64).backward(g.double())
    return x64.grad


FORWARD = {  # op name -> (emulated call, torch reference)
    "relu": (lambda o, x: o.relu(x), F.relu),
    "leaky_relu": (lambda o, x: o.leaky_relu(x, 0.1), lambda x: F.leaky_relu(x, 0.1)),
    "sigmoid": (lambda o, x: o.sigmoid(x), torch.sigmoid),
    "tanh": (lambda o, x: o.tanh(x), torch.tanh),
    "gelu": (lambda o, x: o.gelu(x, "none"), F.gelu),
    "gelu_tanh": (lambda o, x: o.gelu(x, "tanh"), lambda x: F.gelu(x, approximate="tanh")),
    "selu": (lambda o, x: o.selu(x), F.selu),
}
BACKWARD = {  # op name -> (emulated backward given (g, x, y), torch function)
    "relu": (lambda o, g, x, y: o.relu_backward(g, y), F.relu),
    "leaky_relu": (lambda o, g, x, y: o.leaky_relu_backward(g, y, 0.1), lambda x: F.leaky_relu(x, 0.1)),
    "leaky_relu_negative": (lambda o, g, x, y: o.leaky_relu_backward(g, x, -0.2), lambda x: F.leaky_relu(x, -0.2)),
    "sigmoid": (lambda o, g, x, y: o.sigmoid_backward(g, y), torch.sigmoid),
    "tanh": (lambda o, g, x, y: o.tanh_backward(g, y), torch.tanh),
    "gelu": (lambda o, g, x, y: o.gelu_backward(g, x, "none"), F.gelu),
    "gelu_tanh": (lambda o, g, x, y: o.gelu_backward(g, x, "tanh"), lambda x: F.gelu(x, approximate="tanh")),
    "selu": (lambda o, g, x, y: o.selu_backward(g, x, False), F.selu),
    "selu_from_output": (lambda o, g, x, y: o.selu_backward(g, y, True), F.selu),
}
# empty, 0-d, a scalar tail, packs and a tail
SHAPES = [(0,), (), (7,), (5, 13)]


# layout() leaves x as it is where a kind does not apply (transposed below 2
# dims, sliced at 0-d): those would repeat the contiguous case
FORWARD_LAYOUTS = [(shape, kind) for shape in SHAPES for kind in ["contiguous", "transposed", "sliced", "offset"]
                   if not (kind == "transposed" and len(shape) < 2 or kind == "sliced" and len(shape) < 1)]


@pytest.mark.parametrize("name", list(FORWARD))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kind", FORWARD_LAYOUTS, ids=[f"{k}-{s}" for s, k in FORWARD_LAYOUTS])
def test_activation_forward(ops, name, dtype, shape, kind):
    ours, theirs = FORWARD[name]
    x = layout(torch.randn(shape, dtype=dtype) * 3, kind)
    y = ours(ops, x)
    assert y.stride() == torch.empty_like(x).stride()  # the layout the fake kernel promises
    assert_close(y, theirs(x.double()).to(dtype))


@pytest.mark.parametrize("name", ["relu", "gelu"])
def test_activation_grid_stride_loop(ops, name):
    # more packs than the emulated GPU's 2 SMs take at once (64 blocks of 256)
    ours, theirs = FORWARD[name]
    x = torch.randn(70001) * 3
    assert_close(ours(ops, x), theirs(x.double()).float())


@pytest.mark.parametrize("name", list(BACKWARD))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["contiguous", "offset", "sliced"])
def test_activation_backward(ops, name, dtype, kind):
    ours, fn = BACKWARD[name]
    x = layout(torch.randn(9, 13, dtype=dtype) * 3, kind)
    y = fn(x.double()).to(dtype)
    g = layout(torch.randn(9, 13, dtype=dtype), "transposed")  # another layout than x
    assert_close(ours(ops, g, x, y), float64_grad(fn, x, g).to(dtype))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_relu_integers(ops, dtype):
    x = torch.arange(-70, 70).to(dtype)
    assert torch.equal(ops.relu(x), F.relu(x))


def test_errors(ops):
    with pytest.raises(NotImplementedError, match='"leaky_relu" not implemented for \'Long\''):
        ops.leaky_relu(torch.arange(3), 0.1)
    with pytest.raises(RuntimeError, match="Boolean inputs not supported for relu"):
        ops.relu(torch.tensor([True]))
    with pytest.raises(RuntimeError, match="approximate argument must be either none or tanh"):
        ops.gelu(torch.randn(3), "fast")


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "selu"])
@pytest.mark.parametrize("kind", ["contiguous", "sliced"])
def test_inplace(ops, name, kind):
    values = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, -2.0, 3.0] * 5)
    x = layout(values.view(5, 7), kind)
    expected = getattr(F, name)(x.clone())
    args = (0.01,) if name == "leaky_relu" else ()
    getattr(ops, name + "_")(x, *args)
    assert_close(x, expected)


def test_scale_grad(ops):
    g = torch.randn(1001)
    kept = g.clone()
    ops._scale_grad_(g, torch.tensor(1.0))
    assert torch.equal(g, kept)  # a scale of 1 leaves the gradient untouched
    ops._scale_grad_(g, torch.tensor(2.5))
    assert torch.equal(g, kept * 2.5)


# (shape, dim): warp per row, block per row (packed and not), thread per row
# (non-last dim), 0-d, empty
SOFTMAX_CASES = [((5, 10), 1), ((3, 1500), -1), ((3, 1501), 1), ((5, 10), 0), ((2, 3, 4), 1), ((), 0), ((0, 4), 1)]


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,dim", SOFTMAX_CASES, ids=str)
def test_softmax(ops, log, dtype, shape, dim):
    fn = F.log_softmax if log else F.softmax
    x = layout(torch.randn(shape, dtype=dtype) * 4, "transposed")
    y = (ops.log_softmax if log else ops.softmax)(x, dim)
    assert y.is_contiguous()
    assert_close(y, fn(x.double(), dim).to(dtype))
    if x.numel():
        g = torch.randn(shape, dtype=dtype)
        backward = ops.log_softmax_backward if log else ops.softmax_backward
        assert_close(backward(g, y, dim), float64_grad(lambda t: fn(t, dim), x, g).to(dtype))


def test_softmax_special_rows(ops):
    inf, nan = float("inf"), float("nan")
    rows = torch.tensor([[1.0, 2.0, -inf], [-inf, -inf, -inf], [inf, 1.0, 2.0], [nan, 1.0, 2.0], [-inf, 0.0, 1.0]])
    for repeat in (1, 600):  # warp and block paths
        x = rows.repeat_interleave(repeat, 1)
        assert_close(ops.softmax(x, 1), F.softmax(x, 1))
        assert_close(ops.log_softmax(x, 1), F.log_softmax(x, 1))


REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def ce_case(rows, classes, dtype, case, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, classes, generator=gen, dtype=torch.float64).mul(3).to(dtype)
    weight = (torch.rand(classes, generator=gen, dtype=torch.float64) + 0.1).to(dtype) if case.get("weight") else None
    if case.get("probs"):
        target = torch.softmax(torch.randn(rows, classes, generator=gen, dtype=torch.float64), 1).to(dtype)
    else:
        target = torch.randint(0, classes, (rows,), generator=gen)
        if "ignore_index" in case:
            target[::3] = case["ignore_index"]
    return x, target, weight


def cross_entropy_params():
    """Every form and dtype on each shape, with the reductions in rotation
    (the emulator launches a host thread per CUDA thread: each case costs
    launches, whatever its size), so every (form, reduction), (dtype,
    reduction) and (form, dtype) pair runs on each shape: on the block-per-row
    shapes and the empty batch each (form, dtype) pair with one reduction,
    on the warp-per-row shape (37 x 10) with two of the three."""
    reductions = list(REDUCTIONS)
    for rows, classes in [(37, 10), (5, 1030), (3, 2048), (0, 5)]:
        per_pair = 2 if (rows, classes) == (37, 10) else 1
        for d, dtype in enumerate(DTYPES):
            for r, reduction in enumerate(reductions):
                for c, case in enumerate(CE_CASES):
                    if (r - c - d) % len(reductions) < per_pair:
                        yield pytest.param(case, reduction, dtype, rows, classes,
                                           id=f"{rows}x{classes}-{dtype}-{reduction}-{case}")


@pytest.mark.parametrize("case,reduction,dtype,rows,classes", list(cross_entropy_params()))
def test_cross_entropy(ops, case, reduction, dtype, rows, classes):
    spec = CE_CASES[case]
    x, target, weight = ce_case(rows, classes, dtype, spec)
    ignore_index = spec.get("ignore_index", -100)
    smoothing = spec.get("label_smoothing", 0.0)
    for compute_grad in (True, False):
        loss, grad = ops.cross_entropy(x, target, weight, REDUCTIONS[reduction], ignore_index, smoothing,
                                       compute_grad)
        x64 = x.double().requires_grad_()
        expected = F.cross_entropy(x64, target.double() if target.is_floating_point() else target,
                                   weight=None if weight is None else weight.double(), ignore_index=ignore_index,
                                   label_smoothing=smoothing, reduction=reduction)
        assert_close(loss, expected.detach().to(dtype))
        if not compute_grad:
            assert grad.numel() == 0
        elif rows:
            expected.sum().backward()  # 'none': the gradient for a gradient of 1 per row
            assert_close(grad, x64.grad.to(dtype))


def test_cross_entropy_rows_beyond_one_grid(ops):
    # more rows than the (emulated) GPU's resident warps and blocks: the
    # row loops stride over the grid, and the loss partials add up in order
    for rows, classes in ((700, 3), (40, 1100)):
        x, target, weight = ce_case(rows, classes, torch.float32, CE_CASES["weight"])
        loss, grad = ops.cross_entropy(x, target, weight, 1, -100, 0.0, True)
        x64 = x.double().requires_grad_()
        expected = F.cross_entropy(x64, target, weight=weight.double())
        expected.backward()
        assert_close(loss, expected.detach().float())
        assert_close(grad, x64.grad.float())
        again, _ = ops.cross_entropy(x, target, weight, 1, -100, 0.0, True)
        assert torch.equal(loss, again)  # fixed summation order: the same bits


def test_cross_entropy_all_ignored_and_empty(ops):
    x = torch.randn(4, 6)
    target = torch.full((4,), -100)
    loss, grad = ops.cross_entropy(x, target, None, 1, -100, 0.0, True)
    assert torch.isnan(loss) and torch.equal(grad, torch.zeros_like(x))  # 0 / 0, as torch
    loss, _ = ops.cross_entropy(torch.randn(0, 6), torch.zeros(0, dtype=torch.long), None, 2, -100, 0.0, True)
    assert loss.item() == 0


def test_out_of_range_class_index_aborts_like_a_device_assert():
    code = ("import sys; sys.path.insert(0, 'tests'); import cuda_emulation, torch\n"
            "ops = cuda_emulation.load()\n"
            "ops.cross_entropy(torch.randn(4, 5), torch.tensor([0, 1, 5, 2]), None, 1, -100, 0.0, True)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode != 0
    assert "Target is out of bounds" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("reduction", list(REDUCTIONS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weights", [False, True])
def test_binary_cross_entropy_with_logits(ops, reduction, dtype, weights):
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(37, 13, generator=gen, dtype=torch.float64) * 4).to(dtype)
    t = torch.rand(37, 13, generator=gen, dtype=torch.float64).to(dtype)
    w = pw = None
    if weights:
        w = torch.rand(37, 13, generator=gen, dtype=torch.float64).to(dtype)
        pw = (torch.rand(37, 13, generator=gen, dtype=torch.float64) * 3).to(dtype)
    loss, grad = ops.binary_cross_entropy_with_logits(x, t, w, pw, REDUCTIONS[reduction], True)
    x64 = x.double().requires_grad_()
    expected = F.binary_cross_entropy_with_logits(x64, t.double(), weight=None if w is None else w.double(),
                                                  pos_weight=None if pw is None else pw.double(), reduction=reduction)
    expected.sum().backward()
    assert_close(loss, expected.detach().to(dtype))
    assert_close(grad, x64.grad.to(dtype))


def test_loss_argument_errors(ops):
    x = torch.randn(4, 5)
    with pytest.raises(RuntimeError, match="weight tensor should be defined either for all 5 classes"):
        ops.cross_entropy(x, torch.zeros(4, dtype=torch.long), torch.ones(3), 1, -100, 0.0, False)
    with pytest.raises(RuntimeError, match="expected int64 class indices"):
        ops.cross_entropy(x, torch.zeros(4, dtype=torch.int32), None, 1, -100, 0.0, False)
    with pytest.raises(RuntimeError, match="must be the same as input size"):
        ops.binary_cross_entropy_with_logits(x, torch.rand(4, 4), None, None, 1, False)
