"""fastact.optim's step against torch.optim's, side by side in one process.

    python -P bench/optimizer_step.py [--repeats N] [--large-repeats N]

For each tutorial model (its own optimizer and settings, as `fastact train`
has them), for 100K and 300K parameters (cache-resident) and for a
10M-parameter model (two 2500x2000 layers), the step
alone (gradients already in place) with torch's default implementation, its
foreach and fused implementations, and fastact's one call; the steps take
turns, and each figure is a median. Prints microseconds per step and the
speedups over torch's default and over torch's fused step.

Then AdamW's arithmetic alone, where it is not hidden by memory: fastact's
op against torch's fused op on one 1M-element float parameter in cache, on
one thread and on all, minimum over interleaved chunks of calls. fastact's
equals torch's default step, whose sqrt is MKL's (reproduced inline from
2^18 elements); the fused op takes the correctly rounded sqrt instead.
"""
import argparse
import statistics
import time

import torch

import fastact
from fastact_apps.train.tutorials import TUTORIALS

IMPLEMENTATIONS = ("default", "foreach", "fused", "fastact")


def _optimizers(params_fn, cls_name, settings):
    out = {}
    for impl in IMPLEMENTATIONS:
        params = params_fn()
        for p in params:
            p.grad = torch.randn_like(p)
        extra = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(impl, {})
        cls = getattr(fastact.optim if impl == "fastact" else torch.optim, cls_name)
        out[impl] = cls(params, **settings, **extra)
    return out


def _interleaved(optimizers, repeats):
    times = {k: [] for k in optimizers}
    for o in optimizers.values():
        for _ in range(3):
            o.step()
    for i in range(repeats):
        order = list(optimizers.items())
        order = order[i % len(order):] + order[:i % len(order)]
        for name, o in order:
            start = time.perf_counter()
            o.step()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) * 1e6 for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--large-repeats", type=int, default=30)
    args = parser.parse_args()
    cases = []
    for name, tutorial in TUTORIALS.items():
        if name == "mlp":
            continue
        cls, settings = tutorial.optimizer
        torch.manual_seed(0)
        model = tutorial.build()
        cases.append((name, cls.__name__, settings, lambda m=model: [p.detach().clone() for p in m.parameters()],
                      args.repeats))
    # cache-resident (below and above the 2^18 elements from which Adam's
    # float sqrt may be inline) and memory-bound
    sizes = [("100K params", [(320, 320)], max(args.repeats // 10, 20)),
             ("300K params", [(600, 500)], max(args.repeats // 20, 20)),
             ("10M params", [(2500, 2000), (2500,), (2000, 2500), (2000,)], args.large_repeats)]
    for label, shapes, repeats in sizes:
        for cls_name in ("SGD", "Adam", "AdamW"):
            settings = {"lr": 0.01, "momentum": 0.9} if cls_name == "SGD" else {"lr": 0.001}
            cases.append((label, cls_name, settings, lambda shapes=shapes: [torch.randn(s) for s in shapes], repeats))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; microseconds per optimizer step "
          "(median, interleaved)")
    head = (f"{'model':16s} {'optimizer':18s} " + " ".join(f"{k:>10s}" for k in IMPLEMENTATIONS)
            + f" {'vs default':>10s} {'vs fused':>9s}")
    print(head)
    print("-" * len(head))
    for name, cls_name, settings, params_fn, repeats in cases:
        t = _interleaved(_optimizers(params_fn, cls_name, settings), repeats)
        label = cls_name + "(" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")"
        print(f"{name:16s} {label:18s} " + " ".join(f"{t[k]:10.1f}" for k in IMPLEMENTATIONS)
              + f" {t['default'] / t['fastact']:10.2f} {t['fused'] / t['fastact']:9.2f}")
    _kernels_alone()


def _kernels_alone(n: int = 1 << 20, chunks: int = 40, calls: int = 20) -> None:
    p, g, m, v = (torch.randn(n) for _ in range(4))
    m.zero_()
    v.zero_()
    step = torch.tensor(0.0)
    ops = {
        "fused": lambda: torch._fused_adamw_([p], [g], [m], [v], [], [step], lr=1e-3, beta1=0.9, beta2=0.999,
                                             weight_decay=0.01, eps=1e-8, amsgrad=False, maximize=False),
        "fastact": lambda: torch.ops.fastact._adam_step_([p], [g], [m], [v], [], [step], 1e-3, 0.9, 0.999, 0.01,
                                                         1e-8, False, False, True),
    }
    threads = torch.get_num_threads()
    for count in sorted({1, threads}):
        torch.set_num_threads(count)
        best = {k: float("inf") for k in ops}
        for op in ops.values():
            op()
        for _ in range(chunks):
            for name, op in ops.items():
                start = time.perf_counter()
                for _ in range(calls):
                    op()
                best[name] = min(best[name], (time.perf_counter() - start) / calls)
        print(f"AdamW arithmetic alone, {n} floats, {count} thread(s): fastact {best['fastact'] * 1e6:.0f} us, "
              f"torch fused {best['fused'] * 1e6:.0f} us, fused/fastact {best['fused'] / best['fastact']:.2f}")
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
