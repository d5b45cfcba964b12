"""The photo DDPM alone: ``y = x + n`` rescaled is the state at ``t_σ``, ``sqrt(abar_t) (2y − 1)``;
from there one call (``ddpm_x0``), the ancestral chain (``ddpm_chain``) or DDIM (``ddim_<k>``)."""
from __future__ import annotations

import torch

from ..compute import Compute
from ..ddpm import TrainedDDPM, sample
from ..errors import check_positive_int
from ..photo_prior import denoise_x0, observation_state


def ddpm_x0(model: TrainedDDPM, y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, Compute]:
    """One denoiser call at ``t_σ``: the network's posterior-mean estimate E[x | y]."""
    x0, c = denoise_x0(model, y, sigma)
    return x0, c.per_image(len(y))


def chain_from(model: TrainedDDPM, x_t: torch.Tensor, t: int, sampler: str, steps: int,
               seed: int = 0, channels: int = 3) -> tuple[torch.Tensor, Compute]:
    """The chain from ``x_t`` at step ``t``, at most ``steps`` calls: images in [0, 1]
    (``channels=1`` averages RGB back to grey) and the compute per image."""
    res = sample(model.unet, model.beta_schedule, sampler, min(check_positive_int("steps", steps),
                 max(t, 1)), x_start=x_t, t_start=t, seed=seed, progress=False,
                 num_train_timesteps=model.num_train_timesteps)
    return (res.images.mean(1, keepdim=True) if channels == 1 else res.images,
            res.compute.per_image(len(x_t)))


def ddpm_chain(model: TrainedDDPM, y: torch.Tensor, sigma: float, seed: int = 0) -> tuple[torch.Tensor, Compute]:
    """Ancestral sampling from ``t_σ``: all ``t_σ`` steps (T caps nothing), each a denoiser call."""
    return ddim(model, y, sigma, model.num_train_timesteps, seed, "ddpm")


def ddim(model: TrainedDDPM, y: torch.Tensor, sigma: float, k: int, seed: int = 0,
         sampler: str = "ddim") -> tuple[torch.Tensor, Compute]:
    """DDIM (deterministic; or ``sampler``) from ``t_σ`` with at most ``k`` denoiser calls."""
    x_t, t = observation_state(model, y, sigma)
    return chain_from(model, x_t, t, sampler, k, seed, y.shape[1])
