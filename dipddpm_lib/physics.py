"""A photograph's noise level σ (0-255 scale, images in [0, 1]) and the diffusion step t with
the same noise: ``x_t / sqrt(abar_t) = x_0 + sqrt((1 - abar_t) / abar_t) ε`` in model space
[-1, 1], so ``σ(t) = 255/2 · sqrt((1 - abar_t) / abar_t)``."""
from __future__ import annotations

import numpy as np

from .errors import check_positive_int, check_sigma, check_timestep


def sigma_per_step(beta_schedule: str = "linear", num_train_timesteps: int = 1000) -> np.ndarray:
    """``σ(t)`` on the 0-255 scale for t = 0..T (``σ(0) = 0``; increasing in t)."""
    from .ddpm import alphas_cumprod

    check_positive_int("num_train_timesteps", num_train_timesteps)
    abar = alphas_cumprod(beta_schedule, num_train_timesteps).double().numpy()
    return 127.5 * np.sqrt((1.0 - abar) / abar)


def t_to_sigma(t: int, beta_schedule: str = "linear", num_train_timesteps: int = 1000) -> float:
    """The noise level σ (0-255 scale) equivalent to step ``t``."""
    check_timestep("t", t, num_train_timesteps)
    return float(sigma_per_step(beta_schedule, num_train_timesteps)[t])


def sigma_to_t(sigma: float, beta_schedule: str = "linear", num_train_timesteps: int = 1000) -> int:
    """The step whose noise level is nearest ``sigma`` (0-255); ``ValueError`` beyond step T."""
    sigma = check_sigma(sigma)
    levels = sigma_per_step(beta_schedule, num_train_timesteps)
    if sigma > levels[-1]:
        raise ValueError(f"sigma={sigma:g} is above the {beta_schedule} schedule's largest "
                         f"noise level {levels[-1]:.4g} at t=T={num_train_timesteps}")
    return int(np.argmin(np.abs(levels - sigma)))
