"""``hybrid_red``: DIP regularised by the photo DDPM's denoiser, RED-style (Romano et al. 2017;
DeepRED, Mataev et al. 2019).

RED's objective for denoising is ``½‖x − y‖² + (λ/2) xᵀ(x − D(x))``; with its gradient rule
``∇ = (x − y) + λ (x − D(x))`` the stationary point satisfies the fixed point

    x = (y + λ D(x)) / (1 + λ).

DeepRED solves it with ADMM over DIP's weights. Here the simplest form: DIP's data-fit target
*is* that fixed point, with ``x`` the DIP's own moving-average output and ``D`` the DDPM's
one-step x̂0 at a small noise level ``σ_eff``, refreshed every ``refresh`` iterations. Until
the first refresh the target is ``y``. ``λ = 0`` is plain DIP, exactly.
"""
from __future__ import annotations

import torch

from ..compute import Compute
from ..ddpm import TrainedDDPM
from ..errors import check_images, check_positive_int, check_sigma
from .ddpm_denoise import ddpm_x0


class REDTarget:
    """The changing target of a DIP fit (``dip.fit(target=..., callback=...observe)``)."""

    def __init__(self, model: TrainedDDPM, y: torch.Tensor, lam: float, sigma_eff: float,
                 refresh: int):
        if not lam >= 0:
            raise ValueError(f"lambda must be >= 0, got {lam}")
        self.model, self.y = model, check_images(y, "noisy images")
        self.lam, self.sigma_eff = float(lam), check_sigma(sigma_eff)
        self.refresh = check_positive_int("refresh", refresh)
        self.current, self.compute = y, Compute()  # compute: the denoiser's, per image

    def __call__(self, i: int) -> torch.Tensor:
        return self.current

    def observe(self, i: int, out, out_ema, history) -> bool:
        """After DIP step ``i``: every ``refresh`` steps, ``D`` of the EMA output."""
        if self.lam > 0 and i % self.refresh == 0:
            d, c = ddpm_x0(self.model, out_ema.detach().cpu().clamp(0, 1), self.sigma_eff)
            self.current = (self.y + self.lam * d) / (1 + self.lam)
            self.compute = self.compute + c
        return False
