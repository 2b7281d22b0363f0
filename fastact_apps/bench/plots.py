"""Speedup against size (matplotlib, imported only here)."""
import math
from typing import List

from fastact_apps.bench.cases import Result


def plot(results: List[Result], path: str, settings: str = "") -> None:
    """Speedup over torch (torch time / fastact time) against tensor size,
    one panel per mode, one line per op. Both axes are logarithmic: a 2x
    gain and a 2x loss sit equally far from the 1x line, and one noisy
    outlier does not flatten the rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    modes = list(dict.fromkeys(r.mode for r in results))
    ops = list(dict.fromkeys(r.op for r in results))
    # colour and marker together (10 colours, 11 markers: 110 distinct pairs)
    colours = plt.get_cmap("tab10").colors
    markers = "osD^v<>pPX*"
    style = {op: (colours[i % len(colours)], markers[i % len(markers)]) for i, op in enumerate(ops)}
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes) + 2.5, 5), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes):
        for op in ops:
            points = sorted((math.prod(r.shape), r.ratio) for r in results if r.op == op and r.mode == mode)
            if points:
                colour, marker = style[op]
                ax.plot(*zip(*points), marker=marker, color=colour, label=op, lw=1.2, ms=5)
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_xlabel("elements (log)")
        ax.set_title(mode)
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("speedup over torch, log scale (above the dashed line: fastact faster)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle("fastact bench" + (f": {settings}" if settings else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.8 / fig.get_figwidth(), 1))
    # beside the data, not on it
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1 - 1.75 / fig.get_figwidth(), 0.5), fontsize=8,
               frameon=False)
    fig.savefig(path, dpi=80)
    plt.close(fig)
