"""What autograd keeps for backward: fastact's LeakyReLU saves its output,
which the next Linear saves anyway, so no pre-activation is kept."""
import torch
from torch import nn

import fastact


def saved_bytes(model, x):
    """Bytes of the distinct storages autograd saves for one forward."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return sum(storages.values())


def mlp(act):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 1024), act(), nn.Linear(1024, 1024), act(), nn.Linear(1024, 10))


def test_leaky_relu_mlp_keeps_no_pre_activation():
    batch = 512
    x = torch.randn(batch, 784)
    theirs = saved_bytes(mlp(lambda: nn.LeakyReLU(0.01)), x)
    ours = saved_bytes(mlp(lambda: fastact.LeakyReLU(0.01)), x)
    one_activation = batch * 1024 * 4
    # both LeakyReLUs' pre-activations are gone
    assert ours == theirs - 2 * one_activation
