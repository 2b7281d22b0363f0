"""Bytes autograd keeps for backward: a 784-1024-1024-10 LeakyReLU MLP, stock
torch against fastact, batch 4096 (distinct storages, via saved_tensors_hooks).

    python -P bench/saved_tensors.py
"""
import torch
from torch import nn

import fastact


def saved_bytes(model, x):
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


if __name__ == "__main__":
    batch = 4096
    x = torch.randn(batch, 784)
    theirs = saved_bytes(mlp(lambda: nn.LeakyReLU(0.01)), x)
    ours = saved_bytes(mlp(lambda: fastact.LeakyReLU(0.01)), x)
    act = batch * 1024 * 4
    mib = 1 << 20
    print(f"saved for backward, 784-1024-1024-10 LeakyReLU MLP, batch {batch}, float32")
    print(f"  torch   {theirs / mib:8.1f} MiB")
    print(f"  fastact {ours / mib:8.1f} MiB   ({(theirs - ours) / act:.1f} activations of 4096x1024 = "
          f"{(theirs - ours) / mib:.1f} MiB less; goal: at least 1)")
