"""The training comparison as a picture (matplotlib, imported only here):
the headline first, the speedup per model, then each model's loss curves
and, for 2-D classifiers, the fastact model's decision regions."""
import math
from typing import List

import torch

from fastact_apps.train.trainer import Row


def plot(rows: List[Row], models: dict, path: str, settings: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = [row for row in rows if _is_2d_classifier(models[row.model]["data"])]
    panels = len(rows) + len(maps)
    cols = min(3, max(1, panels))
    grid_rows = 1 + math.ceil(panels / cols)
    fig = plt.figure(figsize=(4.2 * cols, 3.3 * grid_rows))
    spec = fig.add_gridspec(grid_rows, cols)
    _speedups(fig.add_subplot(spec[0, :]), rows)
    axes = [fig.add_subplot(spec[1 + i // cols, i % cols]) for i in range(panels)]
    for ax, row in zip(axes, rows):
        _losses(ax, row)
    for ax, row in zip(axes[len(rows):], maps):
        _regions(ax, row, models[row.model])
    fig.suptitle("fastact train: stock torch against fastact" + (f" ({settings})" if settings else ""), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _speedups(ax, rows: List[Row]) -> None:
    """The headline: training steps/s of fastact over torch's, per model."""
    names = [row.model for row in rows]
    x = range(len(rows))
    compiled = any(row.speedup_vs_compiled for row in rows)
    width = 0.4 if compiled else 0.6
    bars = ax.bar([i - (width / 2 if compiled else 0) for i in x], [row.speedup for row in rows], width,
                  label="vs torch eager", color="tab:blue")
    ax.bar_label(bars, fmt="%.2fx", fontsize=8)
    if compiled:
        bars = ax.bar([i + width / 2 for i in x], [row.speedup_vs_compiled or 0 for row in rows], width,
                      label="vs torch.compile", color="tab:orange")
        ax.bar_label(bars, fmt="%.2fx", fontsize=8)
        ax.legend(fontsize=8, loc="upper right")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xticks(list(x), names, fontsize=9)
    ax.set_ylabel("speedup (steps/s ratio)")
    ax.set_title("training speed, fastact over torch (higher is better; dashed: same speed)", fontsize=10)


def _losses(ax, row: Row) -> None:
    # torch wide and pale, fastact thin and dashed on top: where the two agree
    # (the usual case) both stay visible
    ax.plot(row.torch.losses, color="tab:blue", lw=3, alpha=0.35, label=f"torch ({row.torch.steps_per_s:.0f} steps/s)")
    ax.plot(row.fastact.losses, color="tab:red", lw=1, ls="--", label=f"fastact ({row.fastact.steps_per_s:.0f} steps/s)")
    if min(min(row.torch.losses), min(row.fastact.losses)) > 0:
        ax.set_yscale("log")
    agree = "agree" if row.agree else "DIFFER"
    ax.set_title(f"{row.model}: loss ({agree}, {row.matching_steps} steps match)", fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)


def _is_2d_classifier(data) -> bool:
    x, y = data
    return x.shape[1] == 2 and y.dtype == torch.long


def _regions(ax, row: Row, entry: dict) -> None:
    x, y = (t.cpu() for t in entry["data"])
    model = entry["fastact"]
    lo, hi = x.min(0).values - 0.3, x.max(0).values + 0.3
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200), indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    with torch.no_grad():
        regions = model(grid.to(next(model.parameters()).device)).argmax(1).cpu().reshape(gx.shape)
    ax.contourf(gx, gy, regions, alpha=0.3, cmap="viridis")
    ax.scatter(x[:, 0], x[:, 1], c=y, s=6, cmap="viridis")
    ax.set_title(f"{row.model}: fastact model's decision regions", fontsize=9)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
