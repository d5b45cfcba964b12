"""TDPM-DIP on a photograph (truncated diffusion, as in chapter 03's task B): the DIP
estimate *replaces* the observation as the state at ``t_σ``, without fresh noise, and the
reverse chain runs from ``t_σ``. It differs from DIP→t0 (which adds noise at ``t0``) in
trusting the DIP output to carry the remaining noise of ``x_t``."""
from __future__ import annotations

import torch

from ..compute import Compute
from ..ddpm import TrainedDDPM, alphas_cumprod, to_model
from ..errors import check_images, check_sigma
from ..physics import sigma_to_t
from .ddpm_denoise import chain_from


def tdpm_dip(model: TrainedDDPM, x_dip: torch.Tensor, sigma: float, seed: int = 0,
             sampler: str = "ddim", steps: int = 20) -> tuple[torch.Tensor, Compute]:
    """``x_tσ = sqrt(abar_tσ) (2 x̂_DIP − 1)``, then at most ``steps`` denoiser calls from
    ``t_σ``. Returns the estimate and the chain's compute per image."""
    check_images(x_dip, "DIP estimate")
    t = sigma_to_t(check_sigma(sigma), model.beta_schedule, model.num_train_timesteps)
    if t == 0:
        return x_dip.clone(), Compute()
    rgb = x_dip.expand(-1, 3, -1, -1) if x_dip.shape[1] == 1 else x_dip
    abar = float(alphas_cumprod(model.beta_schedule, model.num_train_timesteps)[t])
    return chain_from(model, abar ** 0.5 * to_model(rgb), t, sampler, steps, seed,
                      x_dip.shape[1])
