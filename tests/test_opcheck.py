"""torch.library.opcheck on every fastact op: schema, fake kernel, autograd
registration and AOT dispatch, over several dtypes and layouts."""
import pytest
import torch

from reference import backend_ops, make_input


class _Names:
    """Stands for torch.ops.<backend namespace> while the cases are built:
    each case names its op, resolved on the backend the test runs on."""

    def __getattr__(self, name):
        return _OpName(name)


class _OpName(str):
    @property
    def default(self):
        return self


ops = _Names()


# opcheck tests what the dispatcher sees (schema, fake kernel, autograd
# registration, AOT dispatch), which depends on dtype and layout each, not
# on their combination: float32 in every layout and every variant, the other
# dtypes in one layout and fewer variants. (The kernels' values over every
# combination are the per-family tests'.)
DTYPE_LAYOUTS = [(torch.float32, "contiguous"), (torch.float32, "transposed"), (torch.float32, "sliced"),
                 (torch.float64, "transposed"), (torch.bfloat16, "sliced")]
# float32: every reduction (activation) below; float64 and bfloat16: these
OTHER_DTYPES_REDUCTIONS = {torch.float64: (0, 1), torch.bfloat16: (1, 2)}
OTHER_DTYPES_ACTIVATIONS = {torch.float64: ("relu", "tanh"), torch.bfloat16: ("none", "sigmoid")}


def samples():
    for dtype, layout in DTYPE_LAYOUTS:
        # the variants below that change an argument, not the dtype (a slope's
        # sign, gelu's approximation, what selu's backward reads, the dim):
        # every one on float32, in every layout; one each on the other dtypes
        every_variant = dtype == torch.float32
        x = make_input((4, 9), dtype, layout)
        xg = make_input((4, 9), dtype, layout).requires_grad_()
        g = make_input((4, 9), dtype, seed=3)
        y = torch.softmax(x.float(), 1).to(dtype)
        tag = f"{dtype}-{layout}"
        yield f"relu-{tag}", ops.relu.default, (x,)
        yield f"relu-grad-{tag}", ops.relu.default, (xg,)
        yield f"relu_-{tag}", ops.relu_.default, (x.clone(),)
        yield f"relu_backward-{tag}", ops.relu_backward.default, (g, x)
        yield f"relu_backward-grad-{tag}", ops.relu_backward.default, (g.clone().requires_grad_(), x)
        yield f"leaky_relu-{tag}", ops.leaky_relu.default, (xg, 0.1)
        if every_variant:
            yield f"leaky_relu_neg-{tag}", ops.leaky_relu.default, (xg, -0.1)
        yield f"leaky_relu_-{tag}", ops.leaky_relu_.default, (x.clone(), 0.1)
        yield f"leaky_relu_backward-{tag}", ops.leaky_relu_backward.default, (g.clone().requires_grad_(), x, 0.1)
        for name in ("sigmoid", "tanh", "selu"):
            yield f"{name}-{tag}", getattr(ops, name).default, (xg,)
        for name in ("sigmoid", "tanh"):
            yield f"{name}_backward-{tag}", getattr(ops, name + "_backward").default, (g.clone().requires_grad_(), y)
        for is_result in (False, True) if every_variant else (dtype == torch.float64,):
            yield (f"selu_backward-{is_result}-{tag}", ops.selu_backward.default,
                   (g.clone().requires_grad_(), x, is_result))
        yield f"selu_-{tag}", ops.selu_.default, (x.clone(),)
        for approximate in ("none", "tanh") if every_variant else ("none" if dtype == torch.float64 else "tanh",):
            yield f"gelu-{approximate}-{tag}", ops.gelu.default, (xg, approximate)
            yield (f"gelu_backward-{approximate}-{tag}", ops.gelu_backward.default,
                   (g.clone().requires_grad_(), x, approximate))
        for dim in (0, 1, -1) if every_variant else (0 if dtype == torch.float64 else -1,):
            for name in ("softmax", "log_softmax"):
                yield f"{name}-{dim}-{tag}", getattr(ops, name).default, (xg, dim)
                yield (f"{name}_backward-{dim}-{tag}", getattr(ops, name + "_backward").default,
                       (g.clone().requires_grad_(), y.clone().requires_grad_(), dim))
    yield "relu-int", ops.relu.default, (torch.arange(-4, 4),)
    yield "sigmoid-int", ops.sigmoid.default, (torch.arange(-4, 4),)
    yield "tanh-bool", ops.tanh.default, (torch.tensor([True, False]),)
    yield "relu-0d", ops.relu.default, (torch.tensor(-2.0, requires_grad=True),)
    yield "softmax-0d", ops.softmax.default, (torch.tensor(2.0, requires_grad=True), 0)
    yield "softmax-empty", ops.softmax.default, (torch.randn(0, 3, requires_grad=True), 1)
    yield "softmax-3d", ops.softmax.default, (torch.randn(2, 3, 4, requires_grad=True), 1)


def cross_entropy_samples():
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = torch.randn(6, 5, dtype=dtype)
        y = torch.tensor([0, 1, 2, 3, 4, 1])
        t = torch.softmax(torch.randn(6, 5), 1).to(dtype)
        w = torch.rand(5, dtype=dtype)
        for reduction in OTHER_DTYPES_REDUCTIONS.get(dtype, (0, 1, 2)):
            for grad in (False, True):
                xx = x.clone().requires_grad_(grad)
                yield "cross_entropy-" + f"{dtype}-r{reduction}-g{int(grad)}", ops.cross_entropy.default, (xx, y, None, reduction, -100, 0.0, grad)
                yield "cross_entropy-" + f"w-{dtype}-r{reduction}-g{int(grad)}", ops.cross_entropy.default, (xx, y, w, reduction, 1, 0.3, grad)
                yield "cross_entropy-" + f"probs-{dtype}-r{reduction}-g{int(grad)}", ops.cross_entropy.default, (xx, t, w, reduction, -100, 0.1, grad)
    # an empty batch (sum: opcheck cannot compare the NaN that mean gives, as torch)
    yield "cross_entropy-empty", ops.cross_entropy.default, (torch.randn(0, 3, requires_grad=True), torch.zeros(0, dtype=torch.long), None, 2, -100, 0.0, True)


def bce_samples():
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = torch.randn(6, 5, dtype=dtype)
        t = torch.rand(6, 5).to(dtype)
        w = torch.rand(6, 5).to(dtype)
        for reduction in OTHER_DTYPES_REDUCTIONS.get(dtype, (0, 1, 2)):
            for grad in (False, True):
                xx = x.clone().requires_grad_(grad)
                yield f"bce-{dtype}-r{reduction}-g{int(grad)}", ops.binary_cross_entropy_with_logits.default, \
                    (xx, t, None, None, reduction, grad)
                yield f"bce-w-{dtype}-r{reduction}-g{int(grad)}", ops.binary_cross_entropy_with_logits.default, \
                    (xx, t, w, w * 2, reduction, grad)


def linear_samples():
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        for activation, slope in (("none", 0.0), ("relu", 0.0), ("leaky_relu", 0.1), ("leaky_relu", -0.1),
                                  ("sigmoid", 0.0), ("tanh", 0.0)):
            if activation not in OTHER_DTYPES_ACTIVATIONS.get(dtype, (activation,)):
                continue
            x = torch.randn(5, 4, dtype=dtype, requires_grad=True)
            w = torch.randn(3, 4, dtype=dtype, requires_grad=True)
            b = torch.randn(3, dtype=dtype, requires_grad=True)
            tag = f"{activation}{slope}-{dtype}"
            yield f"linear_act-{tag}", ops.linear_act.default, (x, w, b, activation, slope)
            yield f"linear_act-nobias-{tag}", ops.linear_act.default, (x.detach(), w, None, activation, slope)
    yield "linear_act-3d", ops.linear_act.default, (torch.randn(2, 3, 4, requires_grad=True),
                                                     torch.randn(5, 4, requires_grad=True), None, "relu", 0.0)
    yield "linear_act-1d", ops.linear_act.default, (torch.randn(4, requires_grad=True),
                                                     torch.randn(5, 4), torch.randn(5), "tanh", 0.0)


CASES = list(samples()) + list(cross_entropy_samples()) + list(bce_samples()) + list(linear_samples())


@pytest.mark.parametrize("op,args", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_opcheck(op, args):
    torch.library.opcheck(getattr(backend_ops(), op).default, args)


def test_every_op_is_covered():
    names = {str(c[1]) for c in CASES}
    namespace = backend_ops()
    registered = {n for n in dir(namespace)
                  if not n.startswith("_") and isinstance(getattr(namespace, n), torch._ops.OpOverloadPacket)}
    assert registered <= names, f"ops without an opcheck case: {registered - names}"


@pytest.mark.cpp_only
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_opcheck_scale_grad(scale):
    # the fused losses' backward (C++ backend only: the Numba backend scales in Python)
    grad = torch.randn(4, 9)
    torch.library.opcheck(torch.ops.fastact._scale_grad_.default, (grad, torch.tensor(scale)))
    expected = grad.clone() * scale
    torch.ops.fastact._scale_grad_(grad, torch.tensor(scale))
    assert torch.equal(grad, expected)
