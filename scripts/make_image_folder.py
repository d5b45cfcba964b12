"""Write a folder of synthetic RGB photographs-without-labels for testing the `full` profile.

Each image is a smooth colour gradient with a few filled discs and boxes of random colours and a
little noise: structured enough that features see more than noise, and made from a seed alone.

    python scripts/make_image_folder.py OUT_DIR [--n 64] [--size 64] [--seed 0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def synthetic_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """One size×size×3 uint8 image: gradient background, two to four shapes, mild noise."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    a, b = rng.uniform(0, 1, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy + 1) / 2
    img = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    for _ in range(rng.integers(2, 5)):
        colour = rng.uniform(0, 1, 3)
        cy, cx = rng.uniform(0.15, 0.85, 2)
        r = rng.uniform(0.08, 0.3)
        if rng.random() < 0.5:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
        else:
            mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r * rng.uniform(0.5, 1.5))
        img[mask] = colour
    img = img + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_folder(out_dir: str | Path, n: int = 64, size: int = 64, seed: int = 0) -> Path:
    """Write ``n`` PNG images into ``out_dir`` (created); returns the folder."""
    from PIL import Image

    if n < 1 or size < 8:
        raise ValueError(f"need n ≥ 1 images of size ≥ 8, got n={n}, size={size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(synthetic_image(rng, size)).save(out / f"img_{i:05d}.png")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(write_folder(a.out_dir, a.n, a.size, a.seed))


if __name__ == "__main__":
    main()
