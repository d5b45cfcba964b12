"""Offline data: scikit-learn's digits, scikit-image's photographs, or a user's image folder.

Every loader returns float32 tensors N×C×H×W in [0, 1]. Nothing is downloaded.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import check_choice, check_images, check_positive_int

#: scikit-image sample photographs that ship inside the package (no download).
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "cat", "coins", "moon",
          "immunohistochemistry", "clock", "brick", "gravel")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def split_indices(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/test split of ``range(n)``: the same ``seed`` gives the same split."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def load_digits(size: int = 16, split: str = "train", test_fraction: float = 0.2,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits, upscaled (bilinear) to ``size``×``size``.

    Returns ``(images N×1×size×size in [0,1], labels N)`` for ``split`` in train/test/all.
    """
    from sklearn.datasets import load_digits as _load

    check_choice("split", split, ("train", "test", "all"))
    size = check_positive_int("size", size)
    bunch = _load()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    if split == "all":
        return x, y
    train, test = split_indices(len(x), test_fraction, seed)
    idx = torch.from_numpy(train if split == "train" else test)
    return x[idx], y[idx]


def _to_tensor(img: np.ndarray, size: int, color: str) -> torch.Tensor:
    """HWC/HW uint8|float|bool array → 1×C×size×size, shorter side resized, centre-cropped."""
    from skimage.color import gray2rgb, rgb2gray, rgba2rgb
    from skimage.transform import resize
    from skimage.util import img_as_float32

    img = img_as_float32(img)
    if img.ndim == 3 and img.shape[2] == 4:
        img = rgba2rgb(img)
    if img.ndim == 3 and img.shape[2] not in (1, 3):
        raise ValueError(f"image has {img.shape[2]} channels; expected 1, 3 or 4 (RGBA)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if color == "gray" and img.ndim == 3:
        img = rgb2gray(img)
    elif color == "rgb" and img.ndim == 2:
        img = gray2rgb(img)
    h, w = img.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    img = resize(img, (nh, nw), anti_aliasing=True, preserve_range=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    img = img[top:top + size, left:left + size]
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
    return check_images(t.unsqueeze(0).clamp(0, 1), "image")


def load_photo(name: str, size: int = 128, color: str = "rgb") -> torch.Tensor:
    """A scikit-image sample photograph as 1×C×size×size in [0,1] (``size`` a multiple of 32)."""
    import skimage.data

    check_choice("photograph", name, PHOTOS)
    check_choice("color", color, ("rgb", "gray"))
    size = check_positive_int("size", size)
    if size % 32:
        raise ValueError(f"photo size must be a multiple of 32, got {size}")
    return _to_tensor(getattr(skimage.data, name)(), size, color)


def load_folder(path: str | Path, size: int = 64) -> torch.Tensor:
    """Every image in a folder (recursively), resized and centre-cropped, as N×3×size×size RGB.

    Non-image and unreadable files are skipped with a warning; an error is raised if the
    folder does not exist or no image is left.
    """
    from skimage.io import imread

    size = check_positive_int("size", size)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"data folder {root} is empty")
    images, skipped = [], []
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(p.name)
            continue
        try:
            images.append(_to_tensor(imread(p), size, "rgb"))
        except Exception as err:  # unreadable or corrupt: skip it, say so
            skipped.append(f"{p.name} ({type(err).__name__}: {err})")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} non-image or unreadable file(s) in {root}: "
                      f"{', '.join(skipped[:5])}{' …' if len(skipped) > 5 else ''}")
    if not images:
        raise ValueError(f"data folder {root} holds no readable image "
                         f"(supported: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return torch.cat(images)


def load_generation_data(profile, split: str = "train") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The profile's generation data set: digits (with labels) or its image folder (no labels)."""
    if profile.dataset == "digits":
        return load_digits(profile.image_size, split, profile.test_fraction)
    check_choice("dataset", profile.dataset, ("digits", "folder"))
    if not profile.data_dir:
        raise ValueError("dataset 'folder' needs data_dir (DATA=/path/to/images)")
    x = load_folder(profile.data_dir, profile.image_size)
    train, test = split_indices(len(x), profile.test_fraction)
    return x[torch.from_numpy(train if split == "train" else test)], None
