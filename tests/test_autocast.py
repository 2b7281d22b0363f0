"""Under torch.autocast every fastact op follows torch's policy for the op it
replaces: same output dtype, and the value torch computes (losses in float32,
the fused Linear in the autocast dtype, activations in their input's dtype)."""
import pytest
import torch
import torch.nn.functional as TF

import fastact.functional as F

TARGET = torch.tensor([0, 1, 2, 3, 4, 0])
PROBS = torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(2)), 1)
W, B = torch.randn(5, 7), torch.randn(5)

PAIRS = {  # name -> (fastact form, torch form), each of one input tensor
    "relu": (F.relu, TF.relu),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda x: TF.leaky_relu(x, 0.1)),
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "tanh": (F.tanh, torch.tanh),
    "gelu": (F.gelu, TF.gelu),
    "selu": (F.selu, TF.selu),
    "softmax": (lambda x: F.softmax(x, -1), lambda x: TF.softmax(x, -1)),
    "log_softmax": (lambda x: F.log_softmax(x, -1), lambda x: TF.log_softmax(x, -1)),
    "cross_entropy": (lambda x: F.cross_entropy(x, TARGET[: len(x)]), lambda x: TF.cross_entropy(x, TARGET[: len(x)])),
    "cross_entropy_weighted_smoothed": (
        lambda x: F.cross_entropy(x, TARGET, weight=torch.rand(5, generator=torch.Generator().manual_seed(1)).to(x.dtype),
                                  label_smoothing=0.1),
        lambda x: TF.cross_entropy(x, TARGET, weight=torch.rand(5, generator=torch.Generator().manual_seed(1)).to(x.dtype),
                                   label_smoothing=0.1)),
    "cross_entropy_probs": (lambda x: F.cross_entropy(x, PROBS.to(x.dtype)),
                            lambda x: TF.cross_entropy(x, PROBS.to(x.dtype))),
    "bce_with_logits": (lambda x: F.binary_cross_entropy_with_logits(x, PROBS.to(x.dtype)),
                        lambda x: TF.binary_cross_entropy_with_logits(x, PROBS.to(x.dtype))),
    "bce_with_logits_float32_target": (lambda x: F.binary_cross_entropy_with_logits(x, PROBS),
                                       lambda x: TF.binary_cross_entropy_with_logits(x, PROBS)),
    "linear_relu": (lambda x: F.fused_linear(x @ torch.ones(5, 7, dtype=x.dtype), W, B, "relu"),
                    lambda x: TF.relu(TF.linear(x @ torch.ones(5, 7, dtype=x.dtype), W, B))),
}


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_autocast_cpu_follows_torchs_policy(name, autocast_dtype, input_dtype):
    fast, ref = PAIRS[name]
    x64 = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    xf, xt = x64.to(input_dtype).requires_grad_(), x64.to(input_dtype).requires_grad_()
    with torch.autocast("cpu", dtype=autocast_dtype):
        yf, yt = fast(xf), ref(xt)
    assert yf.dtype == yt.dtype, f"{name}: {yf.dtype} under autocast, torch gives {yt.dtype}"
    tol = dict(atol=2e-2, rtol=2e-2) if yt.dtype in (torch.bfloat16, torch.float16) else dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(yf, yt, **tol)
    g = torch.ones_like(yt)
    (gf,), (gt,) = torch.autograd.grad(yf, xf, g), torch.autograd.grad(yt, xt, g)
    assert gf.dtype == gt.dtype == input_dtype
    torch.testing.assert_close(gf, gt, atol=3e-2, rtol=3e-2)


def test_autocast_cross_entropy_is_computed_in_float32():
    # the case: bf16 logits of a large loss; torch 7.0753, float32 truth 7.0755
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(64, 1000, generator=gen) * 4).bfloat16()
    y = torch.randint(0, 1000, (64,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lf, lt = F.cross_entropy(x, y), TF.cross_entropy(x, y)
    assert lf.dtype == torch.float32
    torch.testing.assert_close(lf, lt, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lf, TF.cross_entropy(x.double(), y).float(), atol=1e-5, rtol=1e-5)


def test_autocast_off_inside_the_op_and_float64_passes_through():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.cross_entropy(x, TARGET).dtype == torch.float64
        assert F.fused_linear(torch.randn(3, 7), W, B, "tanh").dtype == torch.bfloat16


@pytest.mark.parametrize("widths, act", [((6, 12, 3), torch.nn.ReLU), ((6, 80, 3), torch.nn.GELU)])
def test_autocast_a_fused_chain_computes_what_the_torch_model_does(widths, act):
    # the chain casts what each nn.Linear casts: its node sees one dtype (bf16) in backward
    import copy

    import fastact
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(widths[0], widths[1]), act(), torch.nn.Linear(widths[1], widths[2]))
    fused = fastact.fuse(copy.deepcopy(ref))
    assert type(fused[0]) is fastact.LinearChain
    x = torch.randn(10, widths[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yf, yt = fused(x), ref(x)
    assert yf.dtype == yt.dtype == torch.bfloat16
    torch.testing.assert_close(yf, yt, atol=0, rtol=0)
    yf.float().square().sum().backward()
    yt.float().square().sum().backward()
    for p, q in zip(fused.parameters(), ref.parameters()):
        assert p.grad.dtype == torch.float32
        torch.testing.assert_close(p.grad, q.grad, atol=0, rtol=0)
