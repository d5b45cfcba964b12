"""DIP→t0 on a photograph: SDEdit (Meng et al. 2022) with a DIP start. The DIP estimate is
forward-noised to ``t0 ≤ t_σ``, ``x_t0 = sqrt(abar_t0) x̂ + sqrt(1 − abar_t0) ε``, and the
photo DDPM's reverse chain runs from there (diffusers img2img's ``strength``, with DIP's
output as the image)."""
from __future__ import annotations

import torch

from ..compute import Compute
from ..ddpm import TrainedDDPM, prior_noise, q_sample
from ..errors import check_images, check_timestep
from .ddpm_denoise import chain_from


def dip_t0(model: TrainedDDPM, x_dip: torch.Tensor, t0: int, seed: int = 0,
           sampler: str = "ddim", steps: int = 20) -> tuple[torch.Tensor, Compute]:
    """Noise the DIP estimates ``x_dip`` (N×C×H×W in [0, 1]) to ``t0`` and denoise them with at
    most ``steps`` denoiser calls. ``t0 = 0`` returns ``x_dip`` unchanged. The compute is the
    chain's, per image (add the DIP fit's)."""
    check_images(x_dip, "DIP estimate")
    check_timestep("t0", t0, model.num_train_timesteps)
    if t0 == 0:
        return x_dip.clone(), Compute()
    rgb = x_dip.expand(-1, 3, -1, -1) if x_dip.shape[1] == 1 else x_dip
    noise = prior_noise(len(rgb), tuple(rgb.shape[1:]), seed + 10_000)
    x_t0 = q_sample(rgb, t0, noise, model.beta_schedule, model.num_train_timesteps)
    return chain_from(model, x_t0, t0, sampler, steps, seed, x_dip.shape[1])
