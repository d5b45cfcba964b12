"""Determinism switches. On the CPU everything here is deterministic already; on a GPU
``deterministic()`` trades speed for bit-identical reruns (see the README)."""
from __future__ import annotations

import os


def deterministic(enabled: bool = True) -> None:
    """Force deterministic kernels: ``torch.use_deterministic_algorithms``, cuDNN without
    benchmarking, and a fixed cuBLAS workspace. Call it before any CUDA work. Ops that have no
    deterministic CUDA kernel (the backward of bilinear interpolation and reflection padding,
    both in DIP's net) warn instead of raising: DIP on a GPU is not made bit-reproducible."""
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
