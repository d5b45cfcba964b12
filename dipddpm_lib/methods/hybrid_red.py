"""The hybrids in which the DDPM's denoiser ``D`` (one-step x̂0) guides a DIP fit, and their control.

``BlendTarget`` (``hybrid_target``): DIP fits ``y_λ = (y + λ D_σ(y)) / (1 + λ)``, RED's fixed point
with ``D`` applied once, to ``y``: the noise DIP can fit shrinks.

``REDTarget`` (``hybrid_red``, Romano et al. 2017): the target is RED's fixed point
``(y + λ D(x)) / (1 + λ)``, ``x`` DIP's EMA output, ``D`` at ``σ_eff``, refreshed every ``refresh``
steps. Warm start: DIP's early output is a blur that would drag the target towards it, so ``D``
sees ``x_init`` until DIP fits ``y`` at least as closely (per image, no clean image read).

``λ = 0`` is plain DIP in both. ``fuse_avg``: the average of the two estimates, a control."""
from __future__ import annotations

import torch

from ..compute import Compute
from ..ddpm import TrainedDDPM
from ..errors import check_images, check_positive_int, check_sigma
from .ddpm_denoise import ddpm_x0


def fuse_avg(x_dip: torch.Tensor, x_ddpm: torch.Tensor) -> torch.Tensor:
    """``(x̂_DIP + x̂_DDPM) / 2``."""
    check_images(x_dip, "DIP estimate")
    check_images(x_ddpm, "DDPM estimate", channels=x_dip.shape[1])
    if x_dip.shape != x_ddpm.shape:
        raise ValueError(f"estimates differ in shape: {tuple(x_dip.shape)} vs {tuple(x_ddpm.shape)}")
    return (x_dip + x_ddpm) / 2


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


class REDTarget(BlendTarget):
    """The changing target of a DIP fit (``dip.fit(target=..., callback=...observe)``)."""

    def __init__(self, model: TrainedDDPM, y: torch.Tensor, lam: float, sigma_eff: float,
                 refresh: int, x_init: torch.Tensor | None = None):
        if not lam >= 0:
            raise ValueError(f"lambda must be >= 0, got {lam}")
        self.model, self.y = model, check_images(y, "noisy images")
        self.lam, self.sigma_eff = float(lam), check_sigma(sigma_eff)
        self.refresh = check_positive_int("refresh", refresh)
        self.current, self.compute = y, Compute()  # compute: the denoiser's, per image
        self.x_init = None if x_init is None else check_images(x_init, "x_init", channels=y.shape[1])
        self.switched = torch.zeros(len(y), dtype=torch.bool)  # D applied to DIP's output yet?
        if self.x_init is not None and self.lam > 0:
            self._refresh(self.x_init)

    def _refresh(self, x: torch.Tensor) -> None:
        d, c = ddpm_x0(self.model, x.clamp(0, 1), self.sigma_eff)
        self.current = (self.y + self.lam * d) / (1 + self.lam)
        self.compute = self.compute + c

    def observe(self, i: int, out, out_ema, history) -> bool:
        """After DIP step ``i``."""
        if self.lam > 0 and i % self.refresh == 0:
            f = out_ema.detach().cpu()
            if self.x_init is not None:
                fit_f = (f - self.y).pow(2).flatten(1).mean(1)
                fit_0 = (self.x_init - self.y).pow(2).flatten(1).mean(1)
                self.switched |= fit_f <= fit_0
                f = torch.where(self.switched.view(-1, 1, 1, 1), f, self.x_init)
            self._refresh(f)
        return False
