"""TDPM-DIP (truncated diffusion): a DIP output *is* the state at ``t``, with no fresh noise, and
the chain runs from there. ``space="image"``: an estimate in [0, 1] (photographs); ``"state"``:
DIP fitted the noisy state itself in model units (digits). Every compute is per image."""
from __future__ import annotations

import torch

from ..compute import Compute
from ..ddpm import TrainedDDPM, alphas_cumprod, from_model, prior_noise, q_sample, to_model
from ..dip import DIPConfig
from ..errors import check_choice, check_images, check_timestep
from .ddpm_denoise import chain_from
from .dip_t0 import check_iterations, fit_dip_snapshots, prior_channels


def tdpm_dip(model: TrainedDDPM, x_dip: torch.Tensor, t: int, seed: int = 0, sampler: str = "ddim",
             steps: int = 20, space: str = "image") -> tuple[torch.Tensor, Compute]:
    """The chain from DIP's output taken as the state at ``t``, at most ``steps`` calls."""
    check_images(x_dip, "DIP estimate")
    check_timestep("t", t, model.num_train_timesteps)
    check_choice("space", space, ("image", "state"))
    if t == 0:
        return (x_dip.clone() if space == "image" else from_model(x_dip)), Compute()
    x_t = x_dip
    if space == "image":
        abar = float(alphas_cumprod(model.beta_schedule, model.num_train_timesteps)[t])
        x_t = abar ** 0.5 * to_model(prior_channels(model, x_dip))
    return chain_from(model, x_t, t, sampler, steps, seed, x_dip.shape[1])


def tdpm_fit(model: TrainedDDPM, x_t: torch.Tensor, t: int, cfg: DIPConfig, iterations,
             seed: int = 0, sampler: str = "ddim", steps: int = 20, lr: float = 0.01,
             net_input: torch.Tensor | None = None, progress: bool = True,
             device: str = "cpu") -> dict[int, tuple[torch.Tensor, Compute]]:
    """DIP (linear output) fits ``x_t`` for each count of ``iterations`` (0: no DIP), then the
    chain from ``t``. ``net_input``: fed to DIP instead of its code, with no reg-noise."""
    check_images(x_t, "state")
    its = check_iterations(iterations)
    extra = {} if net_input is None else {"input_depth": x_t.shape[1]}
    cfg = DIPConfig(**{**cfg.__dict__, **extra, "output": "linear"})
    starts = {0: (x_t, Compute())} if 0 in its else {}
    starts.update(fit_dip_snapshots(x_t, cfg, its, seed, lr=lr, net_input=net_input,
                                    reg_noise_std=1.0 / 30.0 if net_input is None else 0.0,
                                    progress=progress, desc=f"TDPM-DIP t={t}", device=device))
    return {i: (x0, c_dip + c_chain) for i, (x, c_dip) in starts.items()
            for x0, c_chain in [tdpm_dip(model, x, t, seed, sampler, steps, "state")]}


def truncated_start(x_ref: torch.Tensor, t_trunc: int, z: torch.Tensor, beta_schedule: str,
                    num_train_timesteps: int = 1000) -> torch.Tensor:
    """``x_T'`` of ``x_ref`` with noise ``z`` (at ``T' = T``, ``z`` itself: abar_T ≈ 0 as 0)."""
    check_timestep("T_trunc", t_trunc, num_train_timesteps)
    if t_trunc == num_train_timesteps:
        return z.clone()
    return q_sample(x_ref, t_trunc, z, beta_schedule, num_train_timesteps)


def tdpm_generate(model: TrainedDDPM, x_ref: torch.Tensor, t_trunc: int, cfg: DIPConfig,
                  iterations, seed: int = 0, **kwargs) -> dict[int, tuple[torch.Tensor, Compute]]:
    """Task A: DIP, fed the sampler's prior draw ``z``, fits the references' truncated start."""
    check_images(x_ref, "reference images")
    z = prior_noise(len(x_ref), tuple(x_ref.shape[1:]), seed)
    target = truncated_start(x_ref, t_trunc, z, model.beta_schedule, model.num_train_timesteps)
    return tdpm_fit(model, target, t_trunc, cfg, iterations, seed, net_input=z, **kwargs)
