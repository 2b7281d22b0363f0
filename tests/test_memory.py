"""What autograd keeps for backward: fastact's LeakyReLU saves its output,
which the next Linear saves anyway, so no pre-activation is kept."""
import torch
from torch import nn

import fastact
from fastact_apps.bench.memory import leaky_mlp, saved_tensor_bytes


def test_leaky_relu_mlp_keeps_no_pre_activation():
    batch = 512
    x = torch.randn(batch, 784)
    theirs = saved_tensor_bytes(leaky_mlp(lambda: nn.LeakyReLU(0.01)), x)
    ours = saved_tensor_bytes(leaky_mlp(lambda: fastact.LeakyReLU(0.01)), x)
    # both LeakyReLUs' pre-activations (batch x 1024 floats each) are gone
    assert ours == theirs - 2 * batch * 1024 * 4
