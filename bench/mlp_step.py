"""An MLP's training step (784-512-512-10, batch 256, SGD unless told; cross
entropy): torch's eager step, fastact.TrainStep, and its matrix products alone.

    python -P bench/mlp_step.py [--repeats N] [--dims 64 32 10 --batch 32 --optimizer adam]

The products (a forward addmm per layer, the weight-gradient and
input-gradient mm, as torch's step computes them through MKL) are timed as
one group with nothing else, so the table shows how far each step is from
them: what TrainStep can still remove is its distance to that floor. The
three take turns; medians. The last line times TrainStep's own checks alone
(what it reads from the input, the model and the criterion before its op,
_chain_arguments): --dims 64 32 10 --batch 32 --optimizer adam, the digits
tutorial's step, is where they weigh most.
"""
import argparse
import copy
import statistics
import timeit

import torch
from torch import nn

import fastact
from fastact_apps.bench.timing import interleaved_medians
from fastact_apps.train.tutorials import mlp

OPTIMIZERS = {"sgd": ("SGD", 0.05), "adam": ("Adam", 0.01)}  # class name in torch.optim and fastact.optim, lr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--dims", type=int, nargs="+", default=[784, 512, 512, 10], help="layer sizes")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    args = parser.parse_args()
    dims, batch = tuple(args.dims), args.batch
    name, lr = OPTIMIZERS[args.optimizer]
    torch.manual_seed(0)
    model = mlp(*dims)()
    ours = fastact.fuse(copy.deepcopy(model))
    x, y = torch.randn(batch, dims[0]), torch.randint(0, dims[-1], (batch,))
    optimizer = getattr(torch.optim, name)(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    step = fastact.TrainStep(ours, fastact.CrossEntropyLoss(), getattr(fastact.optim, name)(ours.parameters(), lr=lr))
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
    flops = 2 * batch * sum(a * b for a, b in zip(dims, dims[1:]))  # forward
    flops += 2 * flops - 2 * batch * dims[0] * dims[1]  # weight gradients, input gradients but the first
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {'-'.join(map(str, dims))} MLP, batch "
          f"{batch}, {name}; ms per step (median, interleaved)")
    for case, ms in medians.items():
        print(f"{case:18s} {ms:8.3f} ms  {flops / ms / 1e6:6.1f} GFLOP/s")
    print(f"TrainStep vs torch eager: {medians['torch eager'] / medians['fastact.TrainStep']:.3f}x; "
          f"the products alone would be {medians['torch eager'] / medians['products alone']:.3f}x")
    checks = timeit.Timer(lambda: step._chain_arguments(x, y))
    per_call = statistics.median(checks.timeit(1000) / 1000 for _ in range(max(args.repeats // 4, 5)))
    print(f"TrainStep's own checks (_chain_arguments) alone: {per_call * 1e6:.2f} us per call (median)")


if __name__ == "__main__":
    main()
