"""``fuse_avg``: the plain average of the DIP and the one-step DDPM estimates. A control, not
a method: a hybrid in which the DDPM guides the DIP fit must beat it to mean anything."""
from __future__ import annotations

import torch

from ..errors import check_images


def fuse_avg(x_dip: torch.Tensor, x_ddpm: torch.Tensor) -> torch.Tensor:
    """``(x̂_DIP + x̂_DDPM) / 2``; the compute is the sum of the two estimates'."""
    check_images(x_dip, "DIP estimate")
    check_images(x_ddpm, "DDPM estimate", channels=x_dip.shape[1])
    if x_dip.shape != x_ddpm.shape:
        raise ValueError(f"estimates differ in shape: {tuple(x_dip.shape)} vs {tuple(x_ddpm.shape)}")
    return (x_dip + x_ddpm) / 2
