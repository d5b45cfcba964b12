"""Classical denoisers at a photograph's noise level: BM3D (Dabov et al. 2007; the authors'
``bm3d`` package, told the true σ, as its authors run it) and NL-means (scikit-image, with its
own noise estimate, as in chapter 02)."""
from __future__ import annotations

import numpy as np
import torch

from ..compute import Compute, Timer
from ..errors import check_images, check_sigma


def bm3d_denoise(y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, Compute]:
    """BM3D on each image of ``y`` (N×C×H×W, C = 1 or 3) with noise std ``sigma`` (0-255):
    ``bm3d_rgb`` (its opponent colour transform) for colour, ``bm3d`` for grey, the authors'
    normal profile on one thread (same input, same output). Its FLOPs are not counted
    (compiled code); its wall time is."""
    import bm3d

    check_images(y, "noisy images")
    s = check_sigma(sigma) / 255.0
    profile = bm3d.BM3DProfile()  # the authors' normal profile ("np"), single-threaded: with
    profile.num_threads = 1       # more threads its aggregation order, and output, vary
    outs = []
    with Timer() as timer:
        for img in y:
            a = img.permute(1, 2, 0).double().numpy()
            out = (bm3d.bm3d_rgb(a, s, profile) if a.shape[2] == 3
                   else bm3d.bm3d(a[..., 0], s, profile)[..., None])
            outs.append(torch.from_numpy(np.clip(out, 0, 1).astype(np.float32)).permute(2, 0, 1))
    return torch.stack(outs), Compute(wall_s=timer.seconds / len(y))


def nl_means_denoise(y: torch.Tensor, sigma: float | None = None) -> tuple[torch.Tensor, Compute]:
    """NL-means (scikit-image, fast mode, 5×5 patches, h = 0.8 σ̂) on each image, with σ̂
    estimated from the image itself (``sigma`` is ignored: NL-means is run blind, as in
    chapter 02)."""
    from ..dip import Degradation
    from ..restoration import _CLASSICAL_FNS, _from_hwc

    check_images(y, "noisy images")
    outs = []
    with Timer() as timer:
        for img in y:
            out, _ = _CLASSICAL_FNS["nl_means"](Degradation("denoise", img[None]), img.shape[-2:])
            outs.append(_from_hwc(out)[0])
    return torch.stack(outs), Compute(wall_s=timer.seconds / len(y))
