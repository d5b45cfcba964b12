"""Input validation shared by every module: one clear error, raised before any work."""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: importing this module imports no torch
    import torch


def check_choice(what: str, value, choices: Iterable) -> None:
    """Raise ``ValueError`` if ``value`` is not one of ``choices``, naming the valid ones."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {', '.join(map(str, choices))}")


def check_positive_int(what: str, value) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` unless it is a whole number > 0."""
    whole = isinstance(value, int) or isinstance(value, float) and value.is_integer()
    if isinstance(value, bool) or not whole or value <= 0:
        raise ValueError(f"{what} must be a positive whole number, got {value!r}")
    return int(value)


def check_positive_float(what: str, value) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` unless it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


def check_timestep(what: str, value, num_train_timesteps: int) -> int:
    """Check a diffusion time in ``[0, T]`` (0 = clean, T = pure noise)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer in [0, {num_train_timesteps}], got {value!r}")
    if not 0 <= value <= num_train_timesteps:
        raise ValueError(f"{what} must be in [0, T={num_train_timesteps}], got {value}")
    return value


def check_sigma(sigma) -> float:
    """Check a noise level on the 0-255 scale."""
    if not isinstance(sigma, numbers.Real) or isinstance(sigma, bool) or math.isnan(sigma) \
            or not 0 <= sigma <= 255:
        raise ValueError(f"sigma is on the 0-255 scale and must be in [0, 255], got {sigma!r}")
    return float(sigma)


def check_images(x: torch.Tensor, what: str = "image", channels: int | None = None,
                 min_size: int | None = None) -> torch.Tensor:
    """Check an N×C×H×W (or C×H×W) float tensor: finite values, channel count, minimum size."""
    import torch  # here: the build's steps import this module without torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4):
        raise ValueError(f"{what} must be C×H×W or N×C×H×W, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} holds NaN or Inf values")
    c = x.shape[-3]
    if channels is not None and c != channels:
        raise ValueError(f"{what} has {c} channel(s); expected {channels} (1 = grayscale, 3 = RGB)")
    if channels is None and c not in (1, 3):
        raise ValueError(f"{what} has {c} channel(s); expected 1 (grayscale) or 3 (RGB)")
    if min_size is not None and min(x.shape[-2:]) < min_size:
        raise ValueError(f"{what} is {tuple(x.shape[-2:])} pixels; this network needs at least "
                         f"{min_size}×{min_size}")
    return x


def check_seeds(seeds) -> tuple[int, ...]:
    """A non-empty sequence of distinct non-negative integer seeds."""
    try:
        seeds = tuple(seeds)
    except TypeError:
        raise ValueError(f"seeds must be a list of non-negative integers, got {seeds!r}") from None
    ok = all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds)
    if not seeds or not ok or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct non-negative integers, "
                         f"got {seeds!r}")
    return tuple(int(s) for s in seeds)
