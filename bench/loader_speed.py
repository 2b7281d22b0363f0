"""One epoch of torch's DataLoader against fastact.DataLoader over a small TensorDataset.

    python -P bench/loader_speed.py [--rounds N]

The dataset is the shape of sklearn's digits: X (1797, 64) float32, y int64;
batch 32, shuffle=True, 57 batches an epoch. The loaders take turns, round
after round, with a third contender: the floor, a bare loop of two
index_select calls per batch over a permutation drawn up front (what any
loader must at least do). Prints the median microseconds per batch of each,
and torch's over fastact's.
"""
import argparse
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import fastact
from fastact_apps.bench.timing import interleaved_medians

N, FEATURES, BATCH = 1797, 64, 32


def epoch_seconds(loader) -> float:
    start = time.perf_counter()
    for _batch in loader:
        pass
    return time.perf_counter() - start


def floor_seconds(X, y, generator) -> float:
    start = time.perf_counter()
    for rows in torch.randperm(len(X), generator=generator).split(BATCH):
        X.index_select(0, rows), y.index_select(0, rows)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    X, y = torch.randn(N, FEATURES), torch.randint(0, 10, (N,))
    ds = TensorDataset(X, y)
    g = torch.Generator().manual_seed(0)
    loaders = {"torch": DataLoader(ds, batch_size=BATCH, shuffle=True, generator=g),
               "fastact": fastact.DataLoader(ds, batch_size=BATCH, shuffle=True, generator=g)}
    batches = len(loaders["torch"])
    epochs = {name: (lambda loader=loader: epoch_seconds(loader)) for name, loader in loaders.items()}
    epochs["floor"] = lambda: floor_seconds(X, y, g)
    per_batch = {name: s / batches * 1e6 for name, s in interleaved_medians(epochs, args.rounds).items()}

    print(f"TensorDataset X {tuple(X.shape)} float32, y int64; batch {BATCH}, shuffle=True, {batches} batches an "
          f"epoch; median of {args.rounds} interleaved rounds, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for name, us in per_batch.items():
        print(f"  {name:8s} {us:7.2f} us/batch")
    print(f"  torch / fastact: {per_batch['torch'] / per_batch['fastact']:.1f}x; "
          f"fastact / floor: {per_batch['fastact'] / per_batch['floor']:.1f}x")


if __name__ == "__main__":
    main()
