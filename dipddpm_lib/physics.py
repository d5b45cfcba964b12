"""Degradations as small objects, and the bridge between a photograph's noise level and a
diffusion step.

Noise is σ on the 0-255 scale for images in [0, 1]. A DDPM's forward process in model space
[-1, 1] gives ``x_t / sqrt(abar_t) = x_0 + sqrt((1 - abar_t) / abar_t) ε``: the clean image
plus Gaussian noise of std ``sqrt((1 - abar_t) / abar_t)`` in model units, that is
``σ(t) = 255/2 · sqrt((1 - abar_t) / abar_t)`` on the 0-255 scale. So "denoise at σ" and
"denoise at diffusion step t" are one problem: :func:`sigma_to_t` finds the step whose
equivalent noise is nearest σ, :func:`t_to_sigma` goes back.
"""
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
    """The Gaussian noise level σ (0-255 scale, image in [0, 1]) equivalent to step ``t``:
    ``sqrt((1 - abar_t) / abar_t) = 2σ/255``."""
    check_timestep("t", t, num_train_timesteps)
    return float(sigma_per_step(beta_schedule, num_train_timesteps)[t])


def sigma_to_t(sigma: float, beta_schedule: str = "linear", num_train_timesteps: int = 1000) -> int:
    """The diffusion step whose equivalent noise level is nearest ``sigma`` (0-255 scale).

    ``sigma = 0`` gives ``t = 0``. A σ beyond the schedule's last step raises ``ValueError``:
    that noise is stronger than anything the DDPM was trained to remove."""
    sigma = check_sigma(sigma)
    levels = sigma_per_step(beta_schedule, num_train_timesteps)
    if sigma > levels[-1]:
        raise ValueError(f"sigma={sigma:g} is above the {beta_schedule} schedule's largest "
                         f"noise level {levels[-1]:.4g} at t=T={num_train_timesteps}")
    return int(np.argmin(np.abs(levels - sigma)))
