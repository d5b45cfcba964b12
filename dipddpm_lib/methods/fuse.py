"""``fuse_avg``: the average of the DIP and one-step DDPM estimates, a control for the hybrids."""
from __future__ import annotations

import torch

from ..errors import check_images


def fuse_avg(x_dip: torch.Tensor, x_ddpm: torch.Tensor) -> torch.Tensor:
    """``(x̂_DIP + x̂_DDPM) / 2``."""
    check_images(x_dip, "DIP estimate")
    check_images(x_ddpm, "DDPM estimate", channels=x_dip.shape[1])
    if x_dip.shape != x_ddpm.shape:
        raise ValueError(f"estimates differ in shape: {tuple(x_dip.shape)} vs {tuple(x_ddpm.shape)}")
    return (x_dip + x_ddpm) / 2
