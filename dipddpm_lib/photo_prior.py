"""A DDPM prior for photographs: :func:`~dipddpm_lib.ddpm.train_ddpm` on a bank of random crops.
The UNet has no attention, so it runs on whole images of any size its depth divides."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import Cache, cached
from .compute import Compute, Timer, count_flops
from .data import _photo_array, _to_tensor, check_photos
from .ddpm import TrainedDDPM, alphas_cumprod, predict_x0, to_model, train_ddpm
from .errors import check_images, check_positive_int, check_sigma
from .physics import sigma_to_t


def crop_bank(names, crop: int, n: int, short_sides, seed: int = 0,
              progress: bool = True) -> torch.Tensor:
    """``n`` RGB crops: a uniform photograph, short side, position, flip and quarter turn each."""
    names = check_photos(names, "prior-train photographs")
    crop, n = check_positive_int("crop", crop), check_positive_int("n", n)
    sides = tuple(check_positive_int("short side", s) for s in short_sides)
    if not sides or min(sides) < crop:
        raise ValueError(f"every short side must be at least the crop size {crop}, got {sides}")
    scaled = {(name, s): _to_tensor(_photo_array(name), s, "rgb", crop=False)[0]  # 3×H×W, short side s
              for name in names for s in sides}
    rng = np.random.default_rng(seed)
    out = torch.empty(n, 3, crop, crop)
    for i in tqdm(range(n), desc="photo crops", disable=not progress, mininterval=2):
        img = scaled[names[rng.integers(len(names))], sides[rng.integers(len(sides))]]
        top = rng.integers(img.shape[1] - crop + 1)
        left = rng.integers(img.shape[2] - crop + 1)
        c = img[:, top:top + crop, left:left + crop]
        if rng.random() < 0.5:
            c = c.flip(2)
        out[i] = torch.rot90(c, int(rng.integers(4)), dims=(1, 2))
    return out


def train_photo_prior(profile, seed: int = 0, cache: Cache | None = None,
                      progress: bool = True) -> TrainedDDPM:
    """Train (or load from the cache) the photo DDPM: ``train_ddpm`` with the profile's ``prior_*``
    fields in place of the digit DDPM's, keyed by its settings and the crops' recipe."""
    n = len(profile.prior_unet_channels)
    pp = dataclasses.replace(
        profile, dataset="photo_crops", data_dir=None, image_size=profile.prior_photo_size,
        unet_channels=tuple(profile.prior_unet_channels), unet_attention=(False,) * n,
        unet_layers_per_block=profile.prior_layers_per_block,
        train_steps=profile.prior_train_steps, batch_size=profile.prior_batch_size,
        lr=profile.prior_lr, warmup_steps=profile.prior_warmup_steps,
        ema_decay=profile.prior_ema_decay, low_t_fraction=profile.prior_low_t_fraction,
        train_precision=profile.prior_train_precision)
    recipe = {"photos": list(profile.prior_train_photos), "crop": pp.image_size,
              "n": profile.prior_n_crops, "short_sides": list(profile.prior_short_sides),
              "seed": seed}
    bank = lambda: crop_bank(profile.prior_train_photos, pp.image_size,  # noqa: E731
                             profile.prior_n_crops, profile.prior_short_sides, seed, progress)
    shape = (profile.prior_n_crops, 3, pp.image_size, pp.image_size)
    return train_ddpm(bank, pp, pp.beta_schedule, seed=seed, cache=cache, progress=progress,
                      data_key=recipe, shape=shape)  # the crops are made only to train


def observation_state(model: TrainedDDPM, y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, int]:
    """``(x_t, t_σ)``: ``y = x + n`` (σ on 0-255) rescaled *is* the diffusion state at ``t_σ``,
    ``x_t = sqrt(abar_t) (2y − 1)``; grey goes in as three channels."""
    check_images(y, "noisy images")
    t = sigma_to_t(check_sigma(sigma), model.beta_schedule, model.num_train_timesteps)
    abar = float(alphas_cumprod(model.beta_schedule, model.num_train_timesteps)[t])
    rgb = y.expand(-1, 3, -1, -1) if y.shape[1] == 1 else y
    return abar ** 0.5 * to_model(rgb), t


def denoise_x0(model: TrainedDDPM, y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, Compute]:
    """One-step x̂0 of ``y`` from its :func:`observation_state`; grey is averaged back."""
    x_t, t = observation_state(model, y, sigma)
    with Timer() as timer:
        x0 = predict_x0(model.unet, x_t, t, model.beta_schedule, model.num_train_timesteps)
    flops = unet_flops(model, tuple(x_t.shape[1:])) * len(y) if t > 0 else 0.0
    x0 = x0.mean(1, keepdim=True) if y.shape[1] == 1 else x0
    return x0, Compute(flops=flops, nfe=int(t > 0), wall_s=timer.seconds)


def denoise_x0_each(model: TrainedDDPM, noisy: torch.Tensor, sigmas) -> tuple[torch.Tensor, float]:
    """:func:`denoise_x0` of each image at its own σ, clipped, and the calls' GFLOPs."""
    done = [denoise_x0(model, noisy[n:n + 1], float(s)) for n, s in enumerate(np.asarray(sigmas, float))]
    return (torch.cat([x0.detach().cpu().float().clamp(0, 1) for x0, _ in done]),
            sum(c.flops for _, c in done) / 1e9)


def unet_flops(model: TrainedDDPM, shape: tuple[int, int, int]) -> float:
    """FLOPs of one denoiser call on one C×H×W image."""
    device = next(model.unet.parameters()).device
    x = torch.zeros(1, *shape, device=device)
    with torch.no_grad():
        return count_flops(model.unet, x, torch.zeros(1, dtype=torch.long, device=device))[0]


def one_step_curve(model: TrainedDDPM, names, size: int, sigmas, seeds,
                   progress: bool = True, cache: Cache | None = None) -> list[dict]:
    """One row per (photo, σ, seed): PSNR of the noisy input (clipped), blind NL-means and the
    one-step x̂0."""
    from .data import load_photo, photo_name
    from .dip import degrade
    from .metrics import psnr
    from .methods.classical import nl_means_denoise

    names = check_photos(names, "photographs", min_size=size)
    if cache is not None:
        key = {"model": model.meta["config"], "size": size, "sigmas": [float(s) for s in sigmas],
               "photos": {photo_name(n): load_photo(n, size) for n in names},
               "seeds": [int(s) for s in seeds]}
        _, meta = cached("photo_prior_curve", key, lambda: (
            {}, {"rows": one_step_curve(model, names, size, sigmas, seeds, progress)}), cache)
        return meta["rows"]
    rows = []
    for name in tqdm(names, desc="one-step x̂0 vs σ", disable=not progress):
        clean = load_photo(name, size)
        for sigma in sigmas:
            t = sigma_to_t(sigma, model.beta_schedule, model.num_train_timesteps)
            for seed in seeds:
                y = degrade(clean, "denoise", sigma, seed=seed).observation
                x0, _ = denoise_x0(model, y, sigma)
                nlm, _ = nl_means_denoise(y)
                rows.append({"photo": photo_name(name), "sigma": float(sigma), "t_sigma": t,
                             "seed": int(seed), "noisy": float(psnr(y.clamp(0, 1), clean)),
                             "nl_means": float(psnr(nlm, clean)), "ddpm_x0": float(psnr(x0, clean))})
    return rows


def sample_crops(model: TrainedDDPM, n: int, seed: int = 0, steps: int = 50) -> torch.Tensor:
    """``n`` crops drawn from the prior with DDIM (``steps`` calls), at its training size."""
    from .ddpm import sample

    return sample(model.unet, model.beta_schedule, "ddim", steps, num_samples=n, seed=seed,
                  progress=False).images


def main(argv=None) -> None:
    """``python -m dipddpm_lib.photo_prior --profile quick``: train the profile's photo prior
    into the cache (the report build's first step), or say that it is there already."""
    import argparse

    from .profiles import check_device, get_profile

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the profile's)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    prof = get_profile(args.profile, **({} if args.device is None else {"device": args.device}))
    model = train_photo_prior(check_device(prof))
    print(f"photo prior ({args.profile}): {model.meta['n_params'] / 1e6:.2f} M parameters, trained "
          f"in {model.meta['train_seconds']:.0f} s, final loss {model.meta['final_loss']:.4f}; "
          f"ready in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
