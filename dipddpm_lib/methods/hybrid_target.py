"""``hybrid_target``: DIP fitted to ``y_λ = (y + λ D_σ(y)) / (1 + λ)``, RED's fixed point with
``D`` applied once, to ``y``: the noise DIP can fit shrinks. ``λ = 0`` is plain DIP."""
from __future__ import annotations

import torch

from ..compute import Compute
from ..ddpm import TrainedDDPM
from ..errors import check_images
from .ddpm_denoise import ddpm_x0


class BlendTarget:
    """The fixed target ``y_λ`` of a DIP fit (``dip.fit(target=...)``)."""

    def __init__(self, model: TrainedDDPM, y: torch.Tensor, lam: float, sigma: float,
                 x0: tuple[torch.Tensor, Compute] | None = None):
        if not lam >= 0:
            raise ValueError(f"lambda must be >= 0, got {lam}")
        self.y, self.lam = check_images(y, "noisy images"), float(lam)
        if self.lam == 0:
            self.current, self.compute = y, Compute()
            return
        # x0: the caller's (x̂0, its compute per image) of this very y, to save a call
        x0, self.compute = ddpm_x0(model, y, sigma) if x0 is None else x0
        self.current = (y + self.lam * x0) / (1 + self.lam)

    def __call__(self, i: int) -> torch.Tensor:
        return self.current

    def observe(self, i: int, out, out_ema, history) -> bool:
        """The target never changes."""
        return False
