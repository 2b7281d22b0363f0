"""fastact.TrainStep against torch's eager training step across batch sizes.

    python -P bench/train_step_sizes.py [--repeats N]

Two tutorial-shaped models (2-10-2 ReLU and 11-20-12-6-4, cross entropy,
Adam) at a tiny batch (16 rows), cache-resident ones (1024, 8192) and a large
one (131072 rows, memory-bound); the two steps take turns, medians.
"""
import argparse
import copy
import statistics
import time

import torch
from torch import nn

import fastact
from fastact_apps.train.tutorials import mlp

MODELS = {"2-10-2": (2, 10, 2), "11-20-12-6-4": (11, 20, 12, 6, 4)}
BATCHES = (16, 1024, 8192, 131072)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; microseconds per training step "
          "(median, interleaved)")
    print(f"{'model':14s} {'rows':>7s} {'torch':>10s} {'TrainStep':>10s} {'speedup':>8s}")
    for name, dims in MODELS.items():
        for rows in BATCHES:
            torch.manual_seed(0)
            model = mlp(*dims)()
            x, y = torch.randn(rows, dims[0]), torch.randint(0, dims[-1], (rows,))
            ours = fastact.fuse(copy.deepcopy(model))
            theirs_opt = torch.optim.Adam(model.parameters(), lr=0.01)
            loss = nn.CrossEntropyLoss()

            def torch_step():
                theirs_opt.zero_grad()
                loss(model(x), y).backward()
                theirs_opt.step()

            steps = {"torch": torch_step,
                     "fastact": fastact.TrainStep(ours, fastact.CrossEntropyLoss(),
                                                  fastact.optim.Adam(ours.parameters(), lr=0.01)).__call__}
            times = {k: [] for k in steps}
            repeats = max(20, args.repeats * 1024 // max(rows, 1024))
            for i in range(repeats + 5):
                for k in (("torch", "fastact") if i % 2 else ("fastact", "torch")):
                    start = time.perf_counter()
                    steps[k](x, y) if k == "fastact" else steps[k]()
                    if i >= 5:
                        times[k].append(time.perf_counter() - start)
            t, f = (statistics.median(times[k]) * 1e6 for k in ("torch", "fastact"))
            print(f"{name:14s} {rows:7d} {t:10.1f} {f:10.1f} {t / f:8.2f}")


if __name__ == "__main__":
    main()
