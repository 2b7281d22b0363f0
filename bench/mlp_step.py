"""The 784-512-512-10 MLP's training step (batch 256, SGD, cross entropy):
torch's eager step, fastact.TrainStep, and the step's matrix products alone.

    python -P bench/mlp_step.py [--repeats N]

The products (3 forward addmm, 3 weight-gradient and 2 input-gradient mm, as
both steps compute them through MKL) are timed as one group with nothing
else, so the table shows how far each step is from them: what TrainStep can
still remove is its distance to that floor. The three take turns; medians.
"""
import argparse
import copy

import torch
from torch import nn

import fastact
from fastact_apps.bench.timing import interleaved_medians
from fastact_apps.train.tutorials import mlp

DIMS, BATCH = (784, 512, 512, 10), 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = mlp(*DIMS)()
    ours = fastact.fuse(copy.deepcopy(model))
    x, y = torch.randn(BATCH, DIMS[0]), torch.randint(0, DIMS[-1], (BATCH,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    criterion = nn.CrossEntropyLoss()
    step = fastact.TrainStep(ours, fastact.CrossEntropyLoss(), fastact.optim.SGD(ours.parameters(), lr=0.05))
    weights = [m.weight.detach() for m in model if isinstance(m, nn.Linear)]
    biases = [m.bias.detach() for m in model if isinstance(m, nn.Linear)]

    def torch_step():
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()

    def products():
        hidden = [x]
        for w, b in zip(weights, biases):
            hidden.append(torch.addmm(b, hidden[-1], w.t()))
        grad = hidden[-1]
        for layer in reversed(range(len(weights))):
            grad.t().mm(hidden[layer])
            if layer:
                grad = grad.mm(weights[layer])

    cases = {"torch eager": torch_step, "fastact.TrainStep": lambda: step(x, y), "products alone": products}
    medians = {k: s * 1e3 for k, s in interleaved_medians(cases, args.repeats, warmup=5).items()}
    flops = 2 * BATCH * sum(a * b for a, b in zip(DIMS, DIMS[1:]))  # forward
    flops += 2 * flops - 2 * BATCH * DIMS[0] * DIMS[1]  # weight gradients, input gradients but the first
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {'-'.join(map(str, DIMS))} MLP, batch "
          f"{BATCH}, SGD; ms per step (median, interleaved)")
    for name, ms in medians.items():
        print(f"{name:18s} {ms:8.3f} ms  {flops / ms / 1e6:6.1f} GFLOP/s")
    print(f"TrainStep vs torch eager: {medians['torch eager'] / medians['fastact.TrainStep']:.3f}x; "
          f"the products alone would be {medians['torch eager'] / medians['products alone']:.3f}x")


if __name__ == "__main__":
    main()
