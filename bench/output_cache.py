"""The output cache under two loads (fastact's own outputs, C++ backend):

1. a training-like loop whose batch size varies step by step: how many bytes
   the cache holds, and the process's resident memory, as the loop goes on;
2. then a steady shape (an 8 MiB relu): per-call time, beside torch's, once
   the cache has been filled by step 1.

    python -P bench/output_cache.py [--steps 500] [--json FILE]
"""
import argparse
import json
import random
import statistics
import time

import torch

import fastact
from fastact.functional import relu, softmax


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def median_us(fn, x, calls=200):
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--json")
    args = parser.parse_args()
    fastact.set_backend("cpp")
    cached = torch.ops.fastact._cached_bytes
    random.seed(0)
    torch.manual_seed(0)
    trace = []
    for step in range(args.steps):
        batch = random.randint(256, 4096)
        x = torch.randn(batch, 1024)
        h = relu(x)
        p = softmax(h, -1)
        del h, p
        if step % 50 == 0 or step == args.steps - 1:
            trace.append((step, cached() / 2**20, resident_mib()))
    x = torch.randn(2048, 1024)  # 8 MiB
    steady = {"fastact_us": median_us(relu, x), "torch_us": median_us(torch.relu, x)}
    info = fastact.backend().build
    capacity = next((w.split("=")[1] for w in info.split() if w.startswith("output_cache_capacity_bytes=")), "?")
    print(f"cache capacity {int(capacity) / 2**20:.0f} MiB" if capacity != "?" else "cache capacity ?")
    print(f"{'step':>6} {'cached MiB':>11} {'resident MiB':>13}")
    for step, c, r in trace:
        print(f"{step:>6} {c:>11.0f} {r:>13.0f}")
    print(f"steady 2048x1024 relu after the loop: fastact {steady['fastact_us']:.0f} us, torch {steady['torch_us']:.0f} us "
          f"(torch/fastact {steady['torch_us'] / steady['fastact_us']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"trace": trace, "steady": steady}, f, indent=1)


if __name__ == "__main__":
    main()
