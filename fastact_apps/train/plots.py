"""Loss curves and decision regions of the trained models (matplotlib,
imported only here)."""
from typing import List

import torch

from fastact_apps.train.trainer import Row


def plot(rows: List[Row], models: dict, path: str) -> None:
    """Loss curves (torch and fastact) per model and, for 2-D inputs, the
    fastact model's decision regions over the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3.2 * len(rows)), squeeze=False)
    for (ax_loss, ax_map), row in zip(axes, rows):
        for run, label in ((row.torch, "torch"), (row.fastact, "fastact")):
            ax_loss.plot(run.losses, label=f"{label} ({run.steps_per_s:.0f} steps/s)", alpha=0.8)
        ax_loss.set_title(f"{row.model}: loss, speedup {row.speedup:.2f}x")
        ax_loss.set_xlabel("step")
        ax_loss.legend()
        x, y = models[row.model]["data"]
        model = models[row.model]["fastact"]
        if x.shape[1] != 2 or y.dtype != torch.long:
            ax_map.axis("off")
            continue
        x, y = x.cpu(), y.cpu()
        lo, hi = x.min(0).values - 0.3, x.max(0).values + 0.3
        gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200), indexing="xy")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        with torch.no_grad():
            regions = model(grid.to(next(model.parameters()).device)).argmax(1).cpu().reshape(gx.shape)
        ax_map.contourf(gx, gy, regions, alpha=0.3, cmap="viridis")
        ax_map.scatter(x[:, 0], x[:, 1], c=y, s=6, cmap="viridis")
        ax_map.set_title(f"{row.model}: fastact model's decision regions")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
