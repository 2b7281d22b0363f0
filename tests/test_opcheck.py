"""torch.library.opcheck on every fastact op: schema, fake kernel, autograd
registration and AOT dispatch, over several dtypes and layouts."""
import pytest
import torch

from reference import make_input

ops = torch.ops.fastact


def samples():
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        for layout in ("contiguous", "transposed", "sliced"):
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
            yield f"leaky_relu_neg-{tag}", ops.leaky_relu.default, (xg, -0.1)
            yield f"leaky_relu_-{tag}", ops.leaky_relu_.default, (x.clone(), 0.1)
            yield f"leaky_relu_backward-{tag}", ops.leaky_relu_backward.default, (g.clone().requires_grad_(), x, 0.1)
            for dim in (0, 1, -1):
                for name in ("softmax", "log_softmax"):
                    yield f"{name}-{dim}-{tag}", getattr(ops, name).default, (xg, dim)
                    yield (f"{name}_backward-{dim}-{tag}", getattr(ops, name + "_backward").default,
                           (g.clone().requires_grad_(), y.clone().requires_grad_(), dim))
    yield "relu-int", ops.relu.default, (torch.arange(-4, 4),)
    yield "relu-0d", ops.relu.default, (torch.tensor(-2.0, requires_grad=True),)
    yield "softmax-0d", ops.softmax.default, (torch.tensor(2.0, requires_grad=True), 0)
    yield "softmax-empty", ops.softmax.default, (torch.randn(0, 3, requires_grad=True), 1)
    yield "softmax-3d", ops.softmax.default, (torch.randn(2, 3, 4, requires_grad=True), 1)


CASES = list(samples())


@pytest.mark.parametrize("op,args", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_opcheck(op, args):
    torch.library.opcheck(op, args)


def test_every_op_is_covered():
    names = {c[1].name().split("::")[1] for c in CASES}
    registered = {n for n in dir(ops) if not n.startswith("_") and isinstance(getattr(ops, n), torch._ops.OpOverloadPacket)}
    assert registered <= names, f"ops without an opcheck case: {registered - names}"
