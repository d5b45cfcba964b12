"""Figures shared by the chapters: image grids and quality-against-compute plots."""
from __future__ import annotations

import numpy as np
import torch


def to_hwc(img) -> np.ndarray:
    """C×H×W tensor/array in [0,1] → H×W(×3) numpy image for ``imshow``."""
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    a = np.clip(a, 0, 1)
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def image_grid(images, ax, nrow: int = 8, title: str | None = None):
    """Show N×C×H×W images in [0,1] as one grid on ``ax``."""
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    rows = (n + ncol - 1) // ncol
    grid = torch.ones(c, rows * (h + 1) + 1, ncol * (w + 1) + 1)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[i]
    ax.imshow(to_hwc(grid), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def metric_vs_compute(summary: dict, metric: str, groups: dict[str, list[str]], ax,
                      x: str = "gflops_per_image", xlabel: str = "GFLOPs per image",
                      ylabel: str | None = None, connect=(), logy: bool = False):
    """``metric`` (mean ± std over seeds) against compute (log) for ``groups`` (legend label ->
    method names); groups in ``connect`` are drawn as lines."""
    for label, methods in groups.items():
        methods = [m for m in methods if m in summary and metric in summary[m]]
        if not methods:
            continue
        methods.sort(key=lambda m: summary[m][x]["mean"])
        xs = [max(summary[m][x]["mean"], 1e-3) for m in methods]
        ys = [summary[m][metric]["mean"] for m in methods]
        es = [summary[m][metric]["std"] for m in methods]
        ax.errorbar(xs, ys, yerr=es, fmt="-o" if label in connect else "o", ms=4, capsize=2,
                    label=label, alpha=0.85)
    ax.set(xscale="log", **({"yscale": "log"} if logy else {}), xlabel=xlabel, ylabel=ylabel or metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax
