"""Classical restorers at their usual settings: BM3D (the authors' package, told σ) and
scikit-image's blind NL-means, wavelet, TV, biharmonic inpainting and bicubic upsampling."""
from __future__ import annotations

import numpy as np
import torch

from ..compute import Compute, Timer
from ..errors import check_choice, check_images, check_sigma


def bm3d_denoise(y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, Compute]:
    """BM3D (``bm3d_rgb`` for colour) on each image, the authors' normal profile; no FLOPs."""
    import bm3d

    s = check_sigma(sigma) / 255.0
    profile = bm3d.BM3DProfile()  # the authors' normal profile ("np"), single-threaded: with
    profile.num_threads = 1       # more threads its aggregation order, and output, vary
    return _each(y, lambda a: bm3d.bm3d_rgb(a, s, profile) if a.shape[2] == 3
                 else bm3d.bm3d(a[..., 0], s, profile)[..., None])


def nl_means_denoise(y: torch.Tensor, sigma: float | None = None) -> tuple[torch.Tensor, Compute]:
    """Blind :func:`nl_means` on each image (``sigma`` is ignored)."""
    return _each(y, lambda a: nl_means(a)[0])


def _each(y: torch.Tensor, restorer) -> tuple[torch.Tensor, Compute]:
    """``restorer`` (H×W×C array to array) on each noisy image, clipped; its wall seconds each."""
    check_images(y, "noisy images")
    with Timer() as timer:
        outs = [_from_hwc(restorer(_hwc(img[None])))[0] for img in y]
    return torch.stack(outs), Compute(wall_s=timer.seconds / len(y))


# --------------------------------------------------------------------------- scikit-image
def _hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).double().numpy()


def _from_hwc(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.clip(a, 0, 1).astype(np.float32)).permute(2, 0, 1).unsqueeze(0)


def estimate_noise_sigma(y: torch.Tensor | np.ndarray) -> float:
    """Blind noise std in [0, 1] units (scikit-image's ``estimate_sigma``, channels averaged)."""
    from skimage.restoration import estimate_sigma

    y = _hwc(y) if isinstance(y, torch.Tensor) else y
    return float(estimate_sigma(y, channel_axis=-1, average_sigmas=True))


def nl_means(y: np.ndarray) -> tuple[np.ndarray, dict]:
    """NL-means: h = 0.8 σ̂, 5×5 patches, search distance 6, fast mode."""
    from skimage.restoration import denoise_nl_means

    sigma = estimate_noise_sigma(y)
    out = denoise_nl_means(y, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                           fast_mode=True, channel_axis=-1)
    return out, {"sigma_est_255": sigma * 255, "h_255": 0.8 * sigma * 255, "patch_size": 5,
                 "patch_distance": 6, "fast_mode": True}


def wavelet(y: np.ndarray) -> tuple[np.ndarray, dict]:
    """Wavelet BayesShrink, soft thresholds, in YCbCr for colour."""
    from skimage.restoration import denoise_wavelet

    ycbcr = y.shape[-1] == 3
    out = denoise_wavelet(y, method="BayesShrink", mode="soft", rescale_sigma=True,
                          convert2ycbcr=ycbcr, channel_axis=-1)
    return out, {"method": "BayesShrink", "mode": "soft", "rescale_sigma": True,
                 "convert2ycbcr": ycbcr, "sigma": "estimated by denoise_wavelet"}


def tv(y: np.ndarray) -> tuple[np.ndarray, dict]:
    """TV (Chambolle), weight 0.8 σ̂ on the [0, 1] scale."""
    from skimage.restoration import denoise_tv_chambolle

    sigma = estimate_noise_sigma(y)
    out = denoise_tv_chambolle(y, weight=0.8 * sigma, channel_axis=-1)
    return out, {"weight": 0.8 * sigma, "weight_rule": "0.8 × estimated sigma ([0,1] units)",
                 "sigma_est_255": sigma * 255}


def biharmonic(y: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, dict]:
    """Biharmonic inpainting of the pixels where ``missing`` (H×W bool) is set."""
    from skimage.restoration import inpaint_biharmonic

    return inpaint_biharmonic(y, missing, channel_axis=-1), {"missing_share": float(missing.mean())}


def bicubic(y: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """Bicubic upsampling to ``size`` (H, W)."""
    from skimage.transform import resize

    out = resize(y, (*size, y.shape[-1]), order=3, mode="reflect", anti_aliasing=False)
    return out, {"order": 3, "scale": 4}


BY_TASK = {"denoise": ("nl_means", "wavelet", "tv"), "inpaint": ("biharmonic",),
           "sr4": ("bicubic",)}


def restore(method: str, degradation, size: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    """A restorer of :data:`BY_TASK` on a 1×C×H×W degradation: clipped output and settings."""
    check_choice(f"classical method for task {degradation.task!r}", method,
                 BY_TASK[degradation.task])
    y = _hwc(degradation.observation)
    if method == "biharmonic":
        out, settings = biharmonic(y, (degradation.mask[0, 0] == 0).numpy())
    elif method == "bicubic":
        out, settings = bicubic(y, size)
    else:
        out, settings = {"nl_means": nl_means, "wavelet": wavelet, "tv": tv}[method](y)
    return _from_hwc(out), settings


NAMES = {"bm3d": "BM3D", "nl_means": "NL-means", "wavelet": "wavelet (BayesShrink)",
         "tv": "TV (Chambolle)", "biharmonic": "biharmonic inpainting",
         "bicubic": "bicubic upsampling"}
