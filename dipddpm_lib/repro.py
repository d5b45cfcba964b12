"""Determinism switches. On the CPU everything here is deterministic already; on a GPU
``deterministic()`` trades speed for bit-identical reruns (see the README)."""
from __future__ import annotations

import os


def deterministic(enabled: bool = True) -> None:
    """Deterministic kernels (cuDNN without benchmarking, a fixed cuBLAS workspace), before any
    CUDA work; ops without one (DIP's interpolation and padding backward) only warn."""
    import torch  # here: importing the library must not import torch (the build's steps)

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def from_environment() -> bool:
    """Apply ``deterministic()`` when ``DIPDDPM_DETERMINISTIC=1``; return whether it did."""
    on = os.environ.get("DIPDDPM_DETERMINISTIC", "") == "1"
    if on:
        deterministic(True)
    return on
