"""A learner's epoch, side by side: torch's DataLoader loop, the same loop on
fastact (fastact.DataLoader + fuse + TrainStep + fastact.optim), the one-call
TrainStep.epoch, its floor (the C++ loop alone) and scikit-learn's
MLPClassifier where installed (fastact_apps/bench/epochs.py).

    python -P bench/epoch_speed.py [--rounds N] [--case NAME ...]

Each round trains one epoch with every contender in turn; prints the median
milliseconds per epoch and microseconds per step, and torch's time over each.
"""
import argparse

import torch

from fastact_apps.bench import epochs
from fastact_apps.bench.timing import interleaved_medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--case", nargs="*", choices=sorted(epochs.CASES))
    args = parser.parse_args()
    print(f"median of {args.rounds} interleaved epochs, {torch.get_num_threads()} threads, torch {torch.__version__}")
    head = f"{'case':12s} {'batches':>7s} " + " ".join(f"{n + ' ms':>10s}" for n in ("torch", "loop", "epoch", "floor",
                                                                                     "sklearn"))
    print(head + "   torch/loop torch/epoch sklearn/epoch  epoch us/step floor us/step")
    for name in args.case or epochs.CASES:
        case = epochs.CASES[name]
        ms = {n: s * 1e3 for n, s in interleaved_medians(epochs.contenders(case), args.rounds).items()}
        b = epochs.batches_per_epoch(case)
        cell = lambda n: f"{ms[n]:10.3f}" if n in ms else f"{'-':>10s}"
        ratio = lambda a, c: f"{ms[a] / ms[c]:.1f}x" if a in ms and c in ms else "-"
        print(f"{name:12s} {b:7d} " + " ".join(cell(n) for n in ("torch", "loop", "epoch", "floor", "sklearn"))
              + f"   {ratio('torch', 'loop'):>10s} {ratio('torch', 'epoch'):>11s} {ratio('sklearn', 'epoch'):>13s}"
              + f"  {ms['epoch'] / b * 1e3:13.1f} " + (f"{ms['floor'] / b * 1e3:13.1f}" if "floor" in ms else "-"))


if __name__ == "__main__":
    main()
