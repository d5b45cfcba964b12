"""``hybrid_red``: DIP regularised by the DDPM's denoiser, RED-style (Romano et al. 2017).
DIP's target is RED's fixed point ``(y + λ D(x)) / (1 + λ)``, ``x`` its EMA output, ``D`` the
one-step x̂0 at ``σ_eff``, refreshed every ``refresh`` steps; ``λ = 0`` is plain DIP.

Warm start: DIP's early output is a blur that would drag the target towards it, so ``D`` sees
``x_init`` until DIP fits ``y`` at least as closely (per image, no clean image read)."""
from __future__ import annotations

import torch

from ..compute import Compute
from ..ddpm import TrainedDDPM
from ..errors import check_images, check_positive_int, check_sigma
from .ddpm_denoise import ddpm_x0


class REDTarget:
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

    def __call__(self, i: int) -> torch.Tensor:
        return self.current

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
