"""Meta tensors (shape inference, torch.device('meta') model init, the fake
tensors tracers make) on every backend: each op returns what torch's returns
for the same meta inputs (shape, dtype), forward and backward, and the
model-level paths (a swapped and a fused model) run on them."""
import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import fastact
import fastact.functional as F


def _cases(device, requires_grad):
    gen = torch.Generator().manual_seed(0)

    def make(*shape, dtype=torch.float32):
        t = torch.randn(*shape, generator=gen).to(dtype).to(device)
        return t.requires_grad_(requires_grad) if dtype.is_floating_point else t

    x, w, b = make(4, 5), make(3, 5), make(3)
    xi = torch.randint(0, 3, (4, 5)).to(device)
    index, probs = torch.randint(0, 5, (4,)).to(device), torch.rand(4, 5).to(device)
    return {
        "relu": (F.relu, TF.relu, (x,)),
        "leaky_relu": (lambda u: F.leaky_relu(u, 0.1), lambda u: TF.leaky_relu(u, 0.1), (x,)),
        "sigmoid": (F.sigmoid, torch.sigmoid, (x,)),
        "sigmoid_int": (F.sigmoid, torch.sigmoid, (xi,)),
        "tanh": (F.tanh, torch.tanh, (x,)),
        "gelu": (F.gelu, TF.gelu, (x,)),
        "selu": (F.selu, TF.selu, (x,)),
        "softmax": (lambda u: F.softmax(u, 1), lambda u: TF.softmax(u, 1), (x,)),
        "log_softmax": (lambda u: F.log_softmax(u, -1), lambda u: TF.log_softmax(u, -1), (x,)),
        "cross_entropy": (F.cross_entropy, TF.cross_entropy, (x, index)),
        "cross_entropy_none": (lambda u, t: F.cross_entropy(u, t, reduction="none"),
                               lambda u, t: TF.cross_entropy(u, t, reduction="none"), (x, index)),
        "cross_entropy_probs": (F.cross_entropy, TF.cross_entropy, (x, probs)),
        "bce_with_logits": (F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, (x, probs)),
        "fused_linear": (lambda u, v, c: F.fused_linear(u, v, c, "relu"), lambda u, v, c: TF.relu(TF.linear(u, v, c)),
                         (x, w, b)),
        "linear_chain": (lambda u, v, c: F.fused_linear_chain(u, [v], [c], ["tanh"], [0.0]),
                         lambda u, v, c: torch.tanh(TF.linear(u, v, c)), (x, w, b)),
    }


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("name", list(_cases("cpu", False)))
def test_ops_on_meta_tensors_are_torchs(name, requires_grad):
    ours, theirs, args = _cases("meta", requires_grad)[name]
    _, _, cpu_args = _cases("cpu", requires_grad)[name]
    out, expected = ours(*args), theirs(*cpu_args)
    assert out.device.type == "meta"
    assert (out.shape, out.dtype) == (expected.shape, expected.dtype)
    if requires_grad and out.requires_grad:
        leaves = [a for a in args if a.requires_grad]
        grads = torch.autograd.grad(out.sum(), leaves)
        assert [(g.device.type, g.shape, g.dtype) for g in grads] == [("meta", a.shape, a.dtype) for a in leaves]


def test_models_built_on_the_meta_device_run():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3),
                              nn.LogSoftmax(dim=1))
    x = torch.empty(5, 8, device="meta")
    for fast in (fastact.swap(model), fastact.fuse(model)):
        out = fast(x)
        assert (out.device.type, out.shape) == ("meta", (5, 3))
        loss = F.cross_entropy(out, torch.empty(5, dtype=torch.long, device="meta"))
        loss.backward()
        assert all(p.grad.device.type == "meta" for p in fast.parameters())
        fast.zero_grad()
