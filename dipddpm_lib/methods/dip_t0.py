"""DIP→t0: SDEdit (Meng et al. 2022) from a DIP estimate, noised to ``t0`` and denoised by the
DDPM's chain (img2img's ``strength``). Every compute is per image."""
from __future__ import annotations

import time

import torch

from ..compute import Compute
from ..ddpm import TrainedDDPM, prior_noise, q_sample
from ..dip import Degradation, DIPConfig, fit
from ..errors import check_images, check_timestep
from .ddpm_denoise import chain_from


def check_iterations(iterations) -> list[int]:
    """DIP iteration counts, sorted and distinct, each a whole number >= 0."""
    its = sorted({int(i) for i in iterations})
    if not its or its[0] < 0:
        raise ValueError(f"dip_iterations must be whole numbers >= 0, got {list(iterations)}")
    return its


def fit_dip_snapshots(target: torch.Tensor, cfg: DIPConfig, iterations, seed: int = 0,
                      lr: float = 0.01, reg_noise_std: float = 1.0 / 30.0,
                      net_input: torch.Tensor | None = None, progress: bool = True,
                      desc: str = "DIP prior", device: str = "cpu") -> dict[int, tuple]:
    """One batched DIP fit to ``target``: ``{i: (EMA output, compute up to i)}`` per count ``i > 0``."""
    its = [i for i in check_iterations(iterations) if i > 0]
    if not its:
        return {}
    start, n, stamps = time.perf_counter(), target.shape[0], {}

    def grab(i, _out, out_ema, _hist):
        if i in its:
            stamps[i] = (out_ema.detach().cpu().clone(), time.perf_counter() - start)
        return False

    res = fit(Degradation("denoise", target), cfg, its[-1], lr=lr, reg_noise_std=reg_noise_std,
              seed=seed, callback=grab, net_input=net_input, progress=progress,
              desc=desc, device=device)
    flops_per_it = res.compute.flops / res.stopped_at / n
    return {i: (x, Compute(flops=flops_per_it * i, dip_iters=i, wall_s=wall / n))
            for i, (x, wall) in ((i, stamps[i]) for i in its)}


def prior_channels(model: TrainedDDPM, x: torch.Tensor) -> torch.Tensor:
    """``x`` with the prior's channel count (a grey image repeated for an RGB prior)."""
    rgb = x.shape[1] == 1 and model.unet.config.in_channels == 3
    return x.expand(-1, 3, -1, -1) if rgb else x


def dip_t0(model: TrainedDDPM, x_dip: torch.Tensor, t0: int, seed: int = 0,
           sampler: str = "ddim", steps: int = 20) -> tuple[torch.Tensor, Compute]:
    """Noise ``x_dip`` to ``t0`` and denoise it in at most ``steps`` calls (the chain's compute)."""
    check_images(x_dip, "DIP estimate")
    check_timestep("t0", t0, model.num_train_timesteps)
    if t0 == 0:
        return x_dip.clone(), Compute()
    x = prior_channels(model, x_dip)
    noise = prior_noise(len(x), tuple(x.shape[1:]), seed + 10_000)
    x_t0 = q_sample(x, t0, noise, model.beta_schedule, model.num_train_timesteps)
    return chain_from(model, x_t0, t0, sampler, steps, seed, x_dip.shape[1])
