"""Offline data as float32 N×C×H×W in [0, 1]: scikit-learn's digits, the photographs that
scikit-image and scikit-learn ship (:data:`PHOTOS`), a user's image file or folder."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import check_choice, check_images, check_positive_int

# scikit-image samples, except china and flower (scikit-learn) and the two stereo_motorcycle views
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "china", "moon",
          "immunohistochemistry", "clock", "brick", "gravel", "grass", "hubble_deep_field",
          "retina", "motorcycle_left", "motorcycle_right", "flower")
DUPLICATES = {"cat": "chelsea"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def split_indices(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/test split of ``range(n)``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def load_digits(size: int = 16, split: str = "train", test_fraction: float = 0.2,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits, upscaled (bilinear) to ``size``, and their labels."""
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


def _to_tensor(img: np.ndarray, size: int, color: str, crop: bool = True) -> torch.Tensor:
    """H×W(×C) array → 1×C×size×size: shorter side resized, centre-cropped (``crop``)."""
    from skimage.color import gray2rgb, rgb2gray, rgba2rgb
    from skimage.transform import resize
    from skimage.util import img_as_float32

    img = img_as_float32(img)
    if img.ndim == 3 and img.shape[2] not in (1, 3, 4):
        raise ValueError(f"image has {img.shape[2]} channels; expected 1, 3 or 4 (RGBA)")
    if img.ndim == 3 and img.shape[2] != 3:
        img = rgba2rgb(img) if img.shape[2] == 4 else img[..., 0]
    if color == "gray" and img.ndim == 3:
        img = rgb2gray(img)
    elif color == "rgb" and img.ndim == 2:
        img = gray2rgb(img)
    h, w = img.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    img = resize(img, (nh, nw), anti_aliasing=True, preserve_range=True)
    if crop:
        top, left = (nh - size) // 2, (nw - size) // 2
        img = img[top:top + size, left:left + size]
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
    return check_images(t.unsqueeze(0).clamp(0, 1), "image")


def is_photo_path(name) -> bool:
    """Whether ``name`` means an image file (a Path, or a string with a separator or suffix)."""
    return isinstance(name, Path) or isinstance(name, str) and name not in PHOTOS and (
        name not in DUPLICATES and ("/" in name or "\\" in name or Path(name).suffix != ""))


def photo_name(name) -> str:
    """The name a photograph's results are stored under (a file's stem)."""
    return Path(name).stem if is_photo_path(name) else name


def check_photo(name, what: str = "photograph", min_size: int | None = None) -> str:
    """``name`` if it is one of :data:`PHOTOS` or a readable image file of at least ``min_size`` px."""
    if is_photo_path(name):
        path = Path(name)
        if path.is_dir():
            raise ValueError(f"{what} {str(path)!r} is a folder; give one image file (PNG or JPEG)")
        if not path.is_file():
            raise ValueError(f"{what} {str(path)!r}: no such file")
        try:
            img = _read_image(path)
        except Exception as err:  # noqa: BLE001 — any reader failure means "not an image"
            raise ValueError(f"{what} {str(path)!r} is not a readable image "
                             f"({type(err).__name__}: {err})") from None
        if min_size is not None and min(img.shape[:2]) < min_size:
            raise ValueError(f"{what} {str(path)!r} is too small: {img.shape[1]}×{img.shape[0]} px, "
                             f"and its shorter side must be at least {min_size} px (it is not upscaled)")
        return str(path)
    if isinstance(name, str) and name in DUPLICATES:
        raise ValueError(f"{what} {name!r} is the same picture as {DUPLICATES[name]!r}; use "
                         f"{DUPLICATES[name]!r}; valid choices: {', '.join(PHOTOS)}")
    try:
        check_choice(what, name, PHOTOS)
    except ValueError as err:
        raise ValueError(f"{err}, or a path to an image file (PNG, JPEG, …)") from None
    return name


def _read_image(path: Path) -> np.ndarray:
    from skimage.io import imread

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"suffix {path.suffix or '(none)'} is not one of "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))}")
    img = np.asarray(imread(path))
    if img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
        raise ValueError(f"shape {img.shape} is not an image")
    return img


def check_photos(names, what: str = "photographs", min_size: int | None = None) -> tuple[str, ...]:
    """A non-empty tuple of distinct photographs (names or files with distinct stems)."""
    names = (names,) if isinstance(names, (str, Path)) else tuple(names)
    names = tuple(str(n) if isinstance(n, Path) else n for n in names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{what} must be a non-empty list of distinct photograph names, got "
                         f"{list(names)}; valid choices: {', '.join(PHOTOS)}, or image files")
    for n in names:
        check_photo(n, f"photograph in {what}", min_size)
    stems = [photo_name(n) for n in names]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{what}: two photographs share the name {sorted(s for s in stems if stems.count(s) > 1)[0]!r}; "
                         f"results are stored by name or file stem, so rename one")
    return names


def _photo_array(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(skimage.data, name)()


def load_photo(name, size: int = 128, color: str = "rgb") -> torch.Tensor:
    """A photograph by name or file, as 1×C×size×size in [0,1] (``size`` a multiple of 32)."""
    check_choice("color", color, ("rgb", "gray"))
    size = check_positive_int("size", size)
    if size % 32:
        raise ValueError(f"photo size must be a multiple of 32, got {size}")
    name = check_photo(name, min_size=size)
    return _to_tensor(_read_image(Path(name)) if is_photo_path(name) else _photo_array(name),
                      size, color)


def photo_roles(profile, names) -> dict[str, str]:
    """``{name: "eval" | "tune" | "prior_train" | "user" (a file) | "none"}``, by profile set."""
    sets = ("eval", "tune", "prior_train")
    return {n: "user" if is_photo_path(n) else
            next((r for r in sets if n in getattr(profile, f"{r}_photos")), "none") for n in names}


def load_folder(path: str | Path, size: int = 64) -> torch.Tensor:
    """Every image in a folder (recursively) as N×3×size×size RGB; others skipped, warned."""
    size, root = check_positive_int("size", size), _folder(path)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"data folder {root} is empty")
    images, skipped = [], []
    for p in files:
        try:
            images.append(_to_tensor(_read_image(p), size, "rgb"))
        except Exception as err:  # unreadable or corrupt: skip it, say so
            skipped.append(f"{p.name} ({type(err).__name__}: {err})")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} non-image or unreadable file(s) in {root}: "
                      f"{', '.join(skipped[:5])}{' …' if len(skipped) > 5 else ''}")
    if not images:
        raise ValueError(f"data folder {root} holds no readable image "
                         f"(supported: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return torch.cat(images)


def check_folder(path) -> str:
    """``path`` if it is a folder holding a file with an image suffix (a cheap check)."""
    root = _folder(path)
    if not any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in root.rglob("*")):
        raise ValueError(f"data folder {root} holds no image file "
                         f"(supported: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return str(root)


def _folder(path) -> Path:
    if not path:
        raise ValueError("dataset 'folder' needs data_dir (DATA=/path/to/images)")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"data folder {Path(path)} does not exist")
    return Path(path)


def load_generation_data(profile, split: str = "train") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The profile's generation data: digits with labels, or its image folder without."""
    if profile.dataset == "digits":
        return load_digits(profile.image_size, split, profile.test_fraction)
    check_choice("dataset", profile.dataset, ("digits", "folder"))
    x = load_folder(profile.data_dir, profile.image_size)
    train, test = split_indices(len(x), profile.test_fraction)
    return x[torch.from_numpy(train if split == "train" else test)], None
