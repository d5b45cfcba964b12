"""Figures shared by the chapters: image grids and quality-against-compute plots."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_hwc(img) -> np.ndarray:
    """C×H×W tensor/array in [0,1] → H×W(×3) numpy image for ``imshow``."""
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    a = np.clip(a, 0, 1)
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def image_grid(images, nrow: int = 8, ax=None, title: str | None = None):
    """Show N×C×H×W images in [0,1] as one grid on ``ax`` (a new figure if None)."""
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    rows = (n + ncol - 1) // ncol
    grid = torch.ones(c, rows * (h + 1) + 1, ncol * (w + 1) + 1)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[i]
    if ax is None:
        _, ax = plt.subplots(figsize=(ncol * 0.6 + 1, rows * 0.6 + 0.5))
    ax.imshow(to_hwc(grid), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax
