"""Speedup against size (matplotlib, imported only here)."""
import math
from typing import List

from fastact_apps.bench.cases import Result


def plot(results: List[Result], path: str) -> None:
    """Speedup over torch (ratio) against tensor size, one line per op and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for (op, mode) in dict.fromkeys((r.op, r.mode) for r in results):
        points = sorted((math.prod(r.shape), r.ratio) for r in results if r.op == op and r.mode == mode)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{op} {mode}")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("elements")
    ax.set_ylabel("speedup over torch (torch time / fastact time)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
