"""Chapter 04's guided DIP fit: stage targets ``y + s_k ε_k`` whose extra noise ``s_k`` follows a
DDPM noise schedule down to 0 (the observation), each image stopped online by
:func:`dipddpm_lib.stopping.guided_stop` (the derivation is in the notebook)."""
from __future__ import annotations

import numpy as np
import torch

from ..ddpm import alphas_cumprod
from ..errors import check_choice, check_positive_int, check_sigma
from ..metrics import psnr, ssim
from ..stopping import Stop, absorbed_fraction, guided_stop

STAGE_SCHEDULES = ("linear", "cosine", "log")


def extra_noise_std(timesteps, beta_schedule: str = "linear") -> np.ndarray:
    """Std on [0, 1] images of the noise in ``x_t / √ᾱ_t = x_0 + √((1 − ᾱ_t)/ᾱ_t) ε``."""
    abar = alphas_cumprod(beta_schedule).double().numpy()
    t = np.asarray(timesteps, dtype=int)
    return 0.5 * np.sqrt((1.0 - abar[t]) / abar[t])


def start_timestep(sigma: float, start_ratio: float, beta_schedule: str = "linear") -> int:
    """The first diffusion time whose extra noise std reaches ``start_ratio`` × σ."""
    if not check_sigma(sigma) > 0:
        raise ValueError(f"sigma must be > 0 for progressive targets, got {sigma}")
    if not start_ratio > 0:
        raise ValueError(f"start_ratio must be positive, got {start_ratio}")
    levels = extra_noise_std(np.arange(len(alphas_cumprod(beta_schedule))), beta_schedule)
    reach = np.flatnonzero(levels >= start_ratio * sigma / 255.0)
    if not reach.size:
        raise ValueError(f"start_ratio {start_ratio} × sigma {sigma} is beyond the schedule's "
                         f"largest noise ({levels[-1] * 255:.0f}/255)")
    return max(1, int(reach[0]))


def stage_timesteps(num_stages: int, t_start: int, stage_schedule: str = "linear") -> np.ndarray:
    """Diffusion times of the stage targets, from ``t_start`` down to 0: evenly spaced, slow at
    first (``cosine``) or geometric (``log``, dense near 0)."""
    check_choice("stage schedule", stage_schedule, STAGE_SCHEDULES)
    num_stages = check_positive_int("num_stages", num_stages)
    if num_stages < 2:
        raise ValueError(f"num_stages must be at least 2 (noisy stages, then the observation), "
                         f"got {num_stages}")
    t_start = check_positive_int("t_start", t_start)
    u = np.arange(num_stages) / (num_stages - 1)
    if stage_schedule == "linear":
        t = t_start * (1.0 - u)
    elif stage_schedule == "cosine":
        t = t_start * np.cos(0.5 * np.pi * u)
    else:
        v = np.arange(num_stages - 1) / max(num_stages - 2, 1)
        t = np.r_[float(t_start) ** (1.0 - v), 0.0]
    t = np.round(t).astype(int)
    t[-1] = 0
    return t


def stage_noise_levels(sigma: float, num_stages: int, stage_schedule: str = "linear",
                       start_ratio: float = 1.0, beta_schedule: str = "linear"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(timesteps, extra noise std per stage)`` for an observation with noise σ (0-255)."""
    t = stage_timesteps(num_stages, start_timestep(sigma, start_ratio, beta_schedule),
                        stage_schedule)
    return t, extra_noise_std(t, beta_schedule)


class ProgressiveTargets:
    """``dip.fit``'s ``target`` and ``callback`` for the guided scheme: logs the fit to each
    stage's target, and at each stage end the residual and absorbed share, then applies
    :func:`guided_stop` per image. The fit ends when every image has stopped."""

    def __init__(self, noisy: torch.Tensor, sigmas, noise_stds: np.ndarray,
                 stage_iterations: int, seed: int = 0):
        self.noisy, self.sigmas = noisy, np.asarray(sigmas, dtype=float)
        self.noise_stds = torch.as_tensor(np.asarray(noise_stds), dtype=torch.float32)
        self.num_stages = self.noise_stds.shape[1]
        self.stage_iterations = stage_iterations
        gen = torch.Generator().manual_seed(10_000 + seed)
        self.noise = torch.randn((self.num_stages, *noisy.shape), generator=gen)
        n = len(self.sigmas)
        self.rows: dict[str, list] = {"psnr_target": [], "ssim_target": [], "residual": []}
        self.stage_residual = np.full((self.num_stages, n), np.nan)
        self.stage_absorbed = np.full((self.num_stages, n), np.nan)
        self.stage_outputs = torch.zeros((self.num_stages, *noisy.shape))
        self.stops: list[Stop | None] = [None] * n
        self.outputs = torch.zeros_like(noisy)
        self._before = None

    def stage_of(self, i: int) -> int:
        """The stage of step ``i`` (1-based)."""
        return min((i - 1) // self.stage_iterations, self.num_stages - 1)

    def stage_target(self, k: int) -> torch.Tensor:
        """Every image's stage-``k`` target ``y + s_k ε_k``."""
        return self.noisy + self.noise_stds[:, k].view(-1, 1, 1, 1) * self.noise[k]

    def target(self, i: int) -> torch.Tensor:
        """The target of step ``i`` (passed to ``dip.fit`` as ``target``)."""
        return self.stage_target(self.stage_of(i))

    def __call__(self, i: int, out: torch.Tensor, out_ema: torch.Tensor, hist) -> bool:
        k, ema = self.stage_of(i), out_ema.detach().cpu()
        if self._before is None:
            self._before = ema.clone()
        tgt = self.stage_target(k)
        self.rows["psnr_target"].append(psnr(ema, tgt).double().numpy())
        self.rows["ssim_target"].append(ssim(ema, tgt).double().numpy())
        self.rows["residual"].append((ema - self.noisy).pow(2).flatten(1).mean(1).double().numpy())
        if i % self.stage_iterations:
            return False
        self.stage_residual[k] = self.rows["residual"][-1]  # the stage ends: apply the rule
        if k < self.num_stages - 1:
            self.stage_absorbed[k] = absorbed_fraction(ema, self._before, self.noise[k],
                                                       self.noise_stds[:, k]).double().numpy()
        self.stage_outputs[k], self._before = ema, ema.clone()
        for n, sigma in enumerate(self.sigmas):
            if self.stops[n] is None:
                stop = guided_stop(self.stage_residual[:k + 1, n], self.stage_absorbed[:k + 1, n],
                                   sigma, self.stage_iterations)
                if stop.fired or k == self.num_stages - 1:
                    self.stops[n], self.outputs[n] = Stop(i, i, stop.fired), ema[n]
        return all(s is not None for s in self.stops)
