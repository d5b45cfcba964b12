"""Restoration baselines for chapter 02: DIP over images × seeds, beside classical methods.

* Classical baselines (scikit-image, their usual settings) for each task:
  denoising: ``denoise_nl_means``, ``denoise_wavelet`` (BayesShrink), ``denoise_tv_chambolle``;
  inpainting: ``inpaint_biharmonic``; ×4 super-resolution: bicubic upsampling.
* DIP fits through :func:`dipddpm_lib.dip.fit`, cached: for every seed, one grouped fit holds
  one independent network per image (``dip.fit`` with N observations fits N networks).
* Summaries: final and peak PSNR, iteration of the peak, SSIM, wall seconds and FLOPs, as
  mean ± spread over seeds; the comparison with the classical methods; tables, prose, figures.

The observation of each image is fixed (noise seed 0 by default): seeds vary the DIP
initialisation (network weights, input noise and reg-noise) only.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import dip
from .cache import Cache
from .compute import Compute, Timer
from .data import check_photos, load_photo, photo_name, photo_roles
from .errors import check_choice, check_positive_float, check_positive_int, check_sigma, check_seeds
from .metrics import psnr, ssim
from .plots import to_hwc
from .profiles import Profile, check_device, get_profile
from .results import fmt, markdown_table, spread

#: Classical baselines per task, in the order the tables show them.
CLASSICAL = {"denoise": ("nl_means", "wavelet", "tv"), "inpaint": ("biharmonic",),
             "sr4": ("bicubic",)}
#: Tasks shown once each beside the main task (noiseless, on one image each).
SHOWCASE_TASKS = ("inpaint", "sr4")
#: Network knobs the ``arch`` parameter may set.
ARCH_KEYS = ("scales", "channels", "skip_channels", "input_depth", "upsample")
NOTEBOOK = "02_dip_baseline"
FIT_CACHE_VERSION = 1
FLOPS_NOT_COUNTED = "not counted: scikit-image code, outside torch's FLOP counter"


# --------------------------------------------------------------------------- numpy views
def _to_hwc(x: torch.Tensor) -> np.ndarray:
    """1×C×H×W tensor → H×W×C float64 array (what scikit-image takes with channel_axis=-1)."""
    return x[0].permute(1, 2, 0).double().numpy()


def _from_hwc(a: np.ndarray) -> torch.Tensor:
    """H×W×C array → 1×C×H×W float32 tensor clipped to [0, 1]."""
    return torch.from_numpy(np.clip(a, 0, 1).astype(np.float32)).permute(2, 0, 1).unsqueeze(0)


def estimate_noise_sigma(observation: torch.Tensor) -> float:
    """Blind noise std of a 1×C×H×W observation in [0,1] units (scikit-image's wavelet
    ``estimate_sigma``, averaged over channels): the classical methods, like DIP, are not told
    the true sigma."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(_to_hwc(observation), channel_axis=-1, average_sigmas=True))


def observed_image(degradation: dip.Degradation, size: tuple[int, int]) -> torch.Tensor:
    """The observation at the clean image's size (×4 nearest-neighbour for ``sr4``), clipped:
    what the reader sees as the input, and what ``observed_psnr`` scores."""
    y = degradation.observation
    if tuple(y.shape[-2:]) != tuple(size):
        y = F.interpolate(y, size=size, mode="nearest")
    return y.clamp(0, 1)


# --------------------------------------------------------------------------- classical
def _nl_means(deg: dip.Degradation, size) -> tuple[np.ndarray, dict]:
    from skimage.restoration import denoise_nl_means

    sigma = estimate_noise_sigma(deg.observation)
    out = denoise_nl_means(_to_hwc(deg.observation), h=0.8 * sigma, sigma=sigma, patch_size=5,
                           patch_distance=6, fast_mode=True, channel_axis=-1)
    return out, {"sigma_est_255": sigma * 255, "h_255": 0.8 * sigma * 255, "patch_size": 5,
                 "patch_distance": 6, "fast_mode": True}


def _wavelet(deg: dip.Degradation, size) -> tuple[np.ndarray, dict]:
    from skimage.restoration import denoise_wavelet

    ycbcr = deg.observation.shape[1] == 3
    out = denoise_wavelet(_to_hwc(deg.observation), method="BayesShrink", mode="soft",
                          rescale_sigma=True, convert2ycbcr=ycbcr, channel_axis=-1)
    return out, {"method": "BayesShrink", "mode": "soft", "rescale_sigma": True,
                 "convert2ycbcr": ycbcr, "sigma": "estimated by denoise_wavelet"}


def _tv(deg: dip.Degradation, size) -> tuple[np.ndarray, dict]:
    from skimage.restoration import denoise_tv_chambolle

    sigma = estimate_noise_sigma(deg.observation)
    out = denoise_tv_chambolle(_to_hwc(deg.observation), weight=0.8 * sigma, channel_axis=-1)
    return out, {"weight": 0.8 * sigma, "weight_rule": "0.8 × estimated sigma ([0,1] units)",
                 "sigma_est_255": sigma * 255}


def _biharmonic(deg: dip.Degradation, size) -> tuple[np.ndarray, dict]:
    from skimage.restoration import inpaint_biharmonic

    missing = (deg.mask[0, 0] == 0).numpy()
    out = inpaint_biharmonic(_to_hwc(deg.observation), missing, channel_axis=-1)
    return out, {"missing_share": float(missing.mean())}


def _bicubic(deg: dip.Degradation, size) -> tuple[np.ndarray, dict]:
    from skimage.transform import resize

    out = resize(_to_hwc(deg.observation), (*size, deg.observation.shape[1]), order=3,
                 mode="reflect", anti_aliasing=False)
    return out, {"order": 3, "scale": 4}


_CLASSICAL_FNS: dict[str, Callable] = {"nl_means": _nl_means, "wavelet": _wavelet, "tv": _tv,
                                       "biharmonic": _biharmonic, "bicubic": _bicubic}


@dataclass
class ClassicalResult:
    """One classical restoration: its output, scores against the clean image, wall seconds."""

    method: str
    output: torch.Tensor
    psnr: float
    ssim: float
    wall_s: float
    settings: dict

    def to_dict(self) -> dict:
        """JSON-able summary (no FLOP count: see ``FLOPS_NOT_COUNTED``)."""
        return {"psnr": self.psnr, "ssim": self.ssim, "wall_s": self.wall_s, "flops": None,
                "flops_note": FLOPS_NOT_COUNTED, "settings": self.settings}


def classical_restore(method: str, degradation: dip.Degradation,
                      clean: torch.Tensor) -> ClassicalResult:
    """Restore one observation with a classical method of its task (see ``CLASSICAL``)."""
    check_choice(f"classical method for task {degradation.task!r}", method,
                 CLASSICAL[degradation.task])
    size = tuple(clean.shape[-2:])
    with Timer() as timer:
        out, settings = _CLASSICAL_FNS[method](degradation, size)
    x = _from_hwc(out)
    return ClassicalResult(method, x, float(psnr(x, clean)), float(ssim(x, clean)),
                           timer.seconds, settings)


def run_classical(degradation: dip.Degradation, clean: torch.Tensor) -> dict[str, ClassicalResult]:
    """Every classical baseline of the degradation's task on one image."""
    return {m: classical_restore(m, degradation, clean) for m in CLASSICAL[degradation.task]}


# --------------------------------------------------------------------------- cached DIP fits
def _digest(t: torch.Tensor | None) -> str | None:
    """Short SHA-256 of a tensor's shape and values (None for None)."""
    if t is None:
        return None
    a = t.detach().cpu().contiguous().numpy()
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def stack_degradations(degradations: list[dip.Degradation]) -> dip.Degradation:
    """One degradation of N images from N single-image ones of the same task and shape."""
    tasks = {d.task for d in degradations}
    if len(tasks) != 1:
        raise ValueError(f"cannot stack degradations of different tasks: {sorted(tasks)}")
    shapes = {tuple(d.observation.shape[1:]) for d in degradations}
    if len(shapes) != 1:
        raise ValueError(f"cannot stack observations of different shapes: {sorted(shapes)}")
    masks = [d.mask for d in degradations]
    mask = None if masks[0] is None else torch.cat(masks)
    return dip.Degradation(tasks.pop(), torch.cat([d.observation for d in degradations]), mask)


@dataclass
class DIPImageFit:
    """One image's DIP fit under one seed (one network of a grouped fit)."""

    seed: int
    history: dict[str, np.ndarray]
    output: torch.Tensor
    output_ema: torch.Tensor
    best_output: torch.Tensor
    best_iteration: int
    flops: float
    wall_s: float
    from_cache: bool


@dataclass
class GroupFit:
    """A DIP fit of N images under one seed: N independent networks run as one grouped net.

    ``history`` arrays are iterations × N; ``compute`` covers all N networks.
    """

    seed: int
    output: torch.Tensor
    output_ema: torch.Tensor
    best_output: torch.Tensor
    best_iteration: np.ndarray
    history: dict[str, np.ndarray]
    compute: Compute
    from_cache: bool

    def image(self, i: int) -> DIPImageFit:
        """Image ``i``'s share: its network's outputs and history, FLOPs and wall seconds
        divided evenly among the N networks."""
        n = len(self.best_iteration)
        return DIPImageFit(self.seed, {k: v[:, i] for k, v in self.history.items()},
                           self.output[i:i + 1], self.output_ema[i:i + 1],
                           self.best_output[i:i + 1], int(self.best_iteration[i]),
                           self.compute.flops / n, self.compute.wall_s / n, self.from_cache)


def fit_config(degradation: dip.Degradation, clean: torch.Tensor, cfg: dip.DIPConfig,
               iterations: int, seed: int, lr: float, reg_noise_std: float, ema: float,
               device: str) -> dict:
    """The cache key's content for one fit: data digests and every knob that changes it."""
    return {"task": degradation.task, "observation": _digest(degradation.observation),
            "mask": _digest(degradation.mask), "clean": _digest(clean), "arch": asdict(cfg),
            "iterations": iterations, "seed": seed, "lr": lr, "reg_noise_std": reg_noise_std,
            "ema": ema, "device": device, "v": FIT_CACHE_VERSION}


def _as_columns(v) -> np.ndarray:
    """A history array as iterations × N (``dip.fit`` drops the N axis for one image)."""
    a = np.asarray(v, dtype=np.float32)
    return a.reshape(len(a), -1)


def _fit_tensors(r: dip.DIPResult) -> tuple[dict[str, torch.Tensor], dict]:
    """What the cache stores for a fit: outputs, histories, peak iterations; compute in meta."""
    tensors = {"output": r.output, "output_ema": r.output_ema, "best_output": r.best_output,
               "best_iteration": torch.from_numpy(np.atleast_1d(np.asarray(r.best_iteration,
                                                                           dtype=np.int64)))}
    tensors.update({f"history.{k}": torch.from_numpy(_as_columns(v)) for k, v in r.history.items()})
    return tensors, {"compute": asdict(r.compute), "stopped_at": r.stopped_at}


def fit_cached(degradation: dip.Degradation, clean: torch.Tensor, cfg: dip.DIPConfig,
               iterations: int, seed: int = 0, lr: float = 0.01,
               reg_noise_std: float = 1.0 / 30.0, ema: float = 0.99,
               cache: Cache | None = None, device: str = "cpu", progress: bool = False,
               callback: Callable | None = None) -> GroupFit:
    """``dip.fit`` of all images in ``degradation`` under ``seed``, through the cache.

    ``callback`` is ``dip.fit``'s per-step callback (it must not stop the fit: a cached fit
    always runs every iteration). A cached fit is returned as stored, with the wall seconds
    measured when it was computed (``from_cache`` says so).
    """
    cache = cache or Cache()
    config = fit_config(degradation, clean, cfg, iterations, seed, lr, reg_noise_std, ema, device)
    hit = cache.get("dip_fit", config)
    if hit is None:
        r = dip.fit(degradation, cfg, iterations, clean=clean, lr=lr,
                    reg_noise_std=reg_noise_std, ema=ema, seed=seed, device=device,
                    progress=progress, desc=f"DIP seed {seed}", callback=callback)
        tensors, meta = _fit_tensors(r)
        cache.put("dip_fit", config, tensors, meta)
    else:
        tensors, meta = hit
    hist = {k.split(".", 1)[1]: t.numpy() for k, t in tensors.items() if k.startswith("history.")}
    return GroupFit(seed, tensors["output"], tensors["output_ema"], tensors["best_output"],
                    tensors["best_iteration"].numpy(), hist, Compute(**meta["compute"]),
                    hit is not None)


# --------------------------------------------------------------------------- one image
@dataclass
class ImageRestoration:
    """One image's restoration: observation, DIP fits over seeds, classical baselines."""

    name: str
    clean: torch.Tensor
    degradation: dip.Degradation
    fits: list[DIPImageFit]
    classical: dict[str, ClassicalResult]

    @property
    def task(self) -> str:
        """The degradation's task."""
        return self.degradation.task

    @property
    def observed(self) -> torch.Tensor:
        """The observation at the clean size (see :func:`observed_image`)."""
        return observed_image(self.degradation, tuple(self.clean.shape[-2:]))

    def observed_psnr(self) -> float:
        """PSNR of the observation (as shown) against the clean image."""
        return float(psnr(self.observed, self.clean))

    def curves(self) -> dict[str, np.ndarray]:
        """Each logged PSNR curve as seeds × iterations."""
        return {k: np.stack([f.history[k] for f in self.fits]) for k in self.fits[0].history}

    def final_outputs(self) -> torch.Tensor:
        """DIP's final (EMA) outputs, one per seed: S×C×H×W."""
        return torch.cat([f.output_ema for f in self.fits])

    def peak_outputs(self) -> torch.Tensor:
        """DIP's peak (best clean PSNR, raw or EMA) outputs, one per seed: S×C×H×W."""
        return torch.cat([f.best_output for f in self.fits])

    def dip_summary(self) -> dict:
        """DIP's figures as mean ± spread over seeds (see :func:`dip_summary`)."""
        return dip_summary(self.fits, self.clean)

    def metrics(self) -> dict:
        """Everything reported for this image: observation, DIP, each classical method."""
        out = {"observed_psnr": self.observed_psnr(),
               "observed_ssim": float(ssim(self.observed, self.clean)),
               "dip": self.dip_summary(),
               **{m: c.to_dict() for m, c in self.classical.items()}}
        out["comparison"] = compare(out, list(self.classical))
        return out


def _peak(curve: np.ndarray) -> tuple[float, int]:
    """Peak value and its 1-based iteration."""
    j = int(np.nanargmax(curve))
    return float(curve[j]), j + 1


def dip_summary(fits: list[DIPImageFit], clean: torch.Tensor) -> dict:
    """Final, peak, iteration of the peak, SSIM, wall seconds and GFLOPs over seeds.

    Final = the EMA output after the last iteration (``final_psnr_raw``: the raw output).
    Peak = the best clean-PSNR output, raw or EMA: an oracle, it needs the clean image.
    """
    per_seed = {k: [] for k in ("final_psnr", "final_psnr_raw", "peak_psnr", "peak_iteration",
                                "peak_psnr_raw", "peak_iteration_raw", "peak_psnr_ema",
                                "peak_iteration_ema", "final_ssim", "peak_ssim", "wall_s",
                                "gflops")}
    for f in fits:
        raw, avg = _peak(f.history["psnr_clean"]), _peak(f.history["psnr_clean_ema"])
        values = {"final_psnr": f.history["psnr_clean_ema"][-1],
                  "final_psnr_raw": f.history["psnr_clean"][-1],
                  "peak_psnr": max(raw[0], avg[0]), "peak_iteration": f.best_iteration,
                  "peak_psnr_raw": raw[0], "peak_iteration_raw": raw[1],
                  "peak_psnr_ema": avg[0], "peak_iteration_ema": avg[1],
                  "final_ssim": float(ssim(f.output_ema, clean)),
                  "peak_ssim": float(ssim(f.best_output, clean)),
                  "wall_s": f.wall_s, "gflops": f.flops / 1e9}
        for k, v in values.items():
            per_seed[k].append(float(v))
    out = {k: spread(v) for k, v in per_seed.items()}
    out.update(iterations=len(fits[0].history["psnr_clean"]), seeds=[f.seed for f in fits],
               from_cache=[f.from_cache for f in fits],
               final="EMA output after the last iteration",
               peak="best clean-PSNR output, raw or EMA (oracle: needs the clean image)",
               wall_s_note="a seed's grouped fit of all images, divided by the number of images")
    return out


def compare(image_metrics: dict, methods: list[str]) -> dict:
    """Where the classical methods stand against DIP's final and peak (mean over seeds)."""
    d = image_metrics["dip"]
    scores = {m: image_metrics[m]["psnr"] for m in methods}
    best = max(scores, key=scores.get)
    return {"best_classical": best, "best_classical_psnr": scores[best],
            "classical_at_least_dip_final": [m for m in methods if scores[m] >= d["final_psnr"]["mean"]],
            "classical_at_least_dip_peak": [m for m in methods if scores[m] >= d["peak_psnr"]["mean"]],
            "dip_peak_gain_db_worst_seed": d["peak_psnr"]["min"] - image_metrics["observed_psnr"],
            "dip_peak_gain_db_mean": d["peak_psnr"]["mean"] - image_metrics["observed_psnr"],
            "dip_final_below_peak_db": d["peak_psnr"]["mean"] - d["final_psnr"]["mean"],
            "peak_before_last_iteration": d["peak_iteration"]["max"] < d["iterations"]}


def restore(images: dict[str, torch.Tensor], task: str, sigma: float, cfg: dip.DIPConfig,
            iterations: int, seeds, noise_seed: int = 0, lr: float = 0.01,
            reg_noise_std: float = 1.0 / 30.0, ema: float = 0.99, cache: Cache | None = None,
            device: str = "cpu", progress: bool = True) -> list[ImageRestoration]:
    """Degrade every image (noise seed fixed), run the classical baselines, then DIP under
    every seed: one grouped, cached fit per seed holds one network per image."""
    check_choice("task", task, dip.TASKS)
    sigma, iterations, seeds = check_sigma(sigma), check_positive_int("iterations", iterations), check_seeds(seeds)
    clean_stack = _check_images_dict(images, cfg)
    degs = {name: dip.degrade(x, task, sigma, seed=noise_seed) for name, x in images.items()}
    classical = {name: run_classical(degs[name], x) for name, x in images.items()}
    stacked = stack_degradations(list(degs.values()))
    with tqdm(total=len(seeds) * iterations, disable=not progress, mininterval=5,
              desc=f"DIP {task}: {len(images)} image(s) × {len(seeds)} seed(s), steps") as bar:
        def tick(*_):
            bar.update(1)

        fits = []
        for s in seeds:
            fits.append(fit_cached(stacked, clean_stack, cfg, iterations, s, lr, reg_noise_std,
                                   ema, cache, device, callback=tick))
            bar.update(iterations if fits[-1].from_cache else 0)
    return [ImageRestoration(name, x, degs[name], [f.image(i) for f in fits], classical[name])
            for i, (name, x) in enumerate(images.items())]


def _check_images_dict(images: dict[str, torch.Tensor], cfg: dip.DIPConfig) -> torch.Tensor:
    """Stack clean images of one shape, checking the network accepts their size."""
    if not images:
        raise ValueError("no images given; name at least one photograph")
    shapes = {tuple(x.shape) for x in images.values()}
    if len(shapes) != 1:
        raise ValueError(f"images must share one shape (load them at one size), got {sorted(shapes)}")
    check_image_size(cfg, shapes.pop()[-1])
    return torch.cat(list(images.values()))


def check_image_size(cfg: dip.DIPConfig, size: int) -> int:
    """``size`` must be a positive multiple of 32 (photo loader) and of 2**scales (network)."""
    size = check_positive_int("image_size", size)
    step = max(32, cfg.min_size)
    if size % step:
        raise ValueError(f"image_size must be a multiple of {step} (photographs load at multiples "
                         f"of 32; a {cfg.scales}-scale DIP halves the image {cfg.scales} times), "
                         f"got {size}")
    return size


# --------------------------------------------------------------------------- the chapter's plan
@dataclass(frozen=True)
class BaselinePlan:
    """Chapter 02's parameters, resolved against the profile and validated."""

    profile: Profile
    seeds: tuple[int, ...]
    images: tuple[str, ...]
    image_size: int
    sigma: float
    task: str
    iterations: int
    arch: dip.DIPConfig
    showcase_iterations: int
    showcases: dict = field(default_factory=dict)  # task -> image name
    noise_seed: int = 0
    settings: dict = field(default_factory=dict)  # where the tunable settings came from

    def to_dict(self) -> dict:
        """The run's settings for ``metrics.json``, with where each tunable one came from
        (``settings_source``: tuned file, profile, or this run's parameters) and the photo
        set of each image (``photo_sets``: eval, tune, prior_train)."""
        p = self.profile
        return {"profile": p.name, "seeds": list(self.seeds), "images": list(self.images),
                "photo_sets": photo_roles(p, [*self.images, *self.showcases.values()]),
                "settings_source": self.settings,
                "image_size": self.image_size, "sigma": self.sigma, "task": self.task,
                "iterations": self.iterations, "arch": asdict(self.arch),
                "optimiser": {"name": "Adam", "lr": p.dip_lr, "reg_noise_std": p.dip_reg_noise_std,
                              "ema": p.dip_ema},
                "noise_seed": self.noise_seed, "showcases": dict(self.showcases),
                "showcase_iterations": self.showcase_iterations, "showcase_sigma": 0.0}

    def load(self, names) -> dict[str, torch.Tensor]:
        """The named photographs at ``image_size`` (RGB; grayscale ones repeated ×3)."""
        return {n: load_photo(n, self.image_size) for n in names}

    def _restore(self, images, task, sigma, iterations, cache, progress) -> list[ImageRestoration]:
        p = self.profile
        return restore(images, task, sigma, self.arch, iterations, self.seeds, self.noise_seed,
                       p.dip_lr, p.dip_reg_noise_std, p.dip_ema, cache, p.device, progress)

    def run_main(self, cache: Cache | None = None, progress: bool = True) -> list[ImageRestoration]:
        """The main task on every image."""
        return self._restore(self.load(self.images), self.task, self.sigma, self.iterations,
                             cache, progress)

    def run_showcases(self, cache: Cache | None = None,
                      progress: bool = True) -> dict[str, ImageRestoration]:
        """Each showcase task (noiseless) on its one image."""
        return {task: self._restore(self.load([name]), task, 0.0, self.showcase_iterations,
                                    cache, progress)[0]
                for task, name in self.showcases.items()}


def make_arch(profile: Profile, arch: dict | None) -> dip.DIPConfig:
    """The profile's DIP network with the knobs in ``arch`` (keys: ``ARCH_KEYS``) overridden."""
    arch = dict(arch or {})
    unknown = sorted(set(arch) - set(ARCH_KEYS))
    if unknown:
        raise ValueError(f"unknown arch key(s) {unknown}; valid keys: {', '.join(ARCH_KEYS)}")
    cfg = dip.DIPConfig.from_profile(profile, **arch)
    for key in ("scales", "channels", "input_depth"):
        check_positive_int(f"arch {key}", getattr(cfg, key))
    if isinstance(cfg.skip_channels, bool) or not isinstance(cfg.skip_channels, int) \
            or cfg.skip_channels < 0:
        raise ValueError(f"arch skip_channels must be a whole number >= 0, got {cfg.skip_channels!r}")
    check_choice("arch upsample", cfg.upsample, dip.UPSAMPLE_MODES)
    return cfg


def _check_photo_names(what: str, names, min_size: int | None = None) -> tuple[str, ...]:
    """A non-empty list of distinct photographs: ``data.PHOTOS`` names or image files whose
    shorter side is at least ``min_size``."""
    return check_photos(names, what, min_size)


def make_plan(profile: str = "quick", seeds=None, images=None, image_size=None,
              sigma=25.0, task: str = "denoise", iterations=None, arch: dict | None = None,
              showcase_iterations=None, inpaint_image: str | None = None,
              sr4_image: str | None = None, lr=None, tuned=None, device=None) -> BaselinePlan:
    """Validate the notebook's parameters and fill the ``None`` ones from the profile.

    Raises ``ValueError`` naming the valid choices before anything is loaded or fitted.
    Showcases: every task of ``SHOWCASE_TASKS`` other than ``task``, on ``inpaint_image``
    (default: the first image) and ``sr4_image`` (default: the last image). ``lr``: DIP's
    Adam step size (``None`` → the profile's ``dip_lr``). ``tuned``: a ``tuned.json`` written
    by the ablation grids' collate step, whose DIP depth, width and learning rate replace the
    profile's (``None``: the profile's; an explicit ``arch`` key or ``lr`` wins over both);
    a bad file or value raises here, before any work, as does a ``device`` (default: the
    profile's) that this machine lacks.
    """
    from .sweep import tuned_overrides

    given = dict(arch or {}) if isinstance(arch, dict) else {}
    overrides, record = tuned_overrides(profile, tuned, NOTEBOOK, {
        "dip_scales": given.get("scales"), "dip_channels": given.get("channels"), "dip_lr": lr})
    if device is not None:
        overrides = {**overrides, "device": device}
    prof = check_device(get_profile(profile, **overrides))
    if lr is not None:
        prof = get_profile(profile, **{**overrides, "dip_lr": check_positive_float("lr", lr)})
    check_choice("task", task, dip.TASKS)
    cfg = make_arch(prof, arch)
    size = prof.photo_size if image_size is None else image_size
    names = _check_photo_names("images", prof.dip_baseline_photos if images is None else images,
                               size if isinstance(size, int) else None)
    chosen = {"inpaint": inpaint_image or names[0], "sr4": sr4_image or names[-1]}
    showcases = {t: _check_photo_names(f"{t}_image", chosen[t], size if isinstance(size, int) else None)[0]
                 for t in SHOWCASE_TASKS if t != task}
    return BaselinePlan(
        profile=prof, seeds=check_seeds(prof.seeds if seeds is None else seeds), images=names,
        image_size=check_image_size(cfg, prof.photo_size if image_size is None else image_size),
        sigma=check_sigma(sigma), task=task,
        iterations=check_positive_int("iterations", prof.dip_baseline_iterations
                                      if iterations is None else iterations),
        arch=cfg,
        showcase_iterations=check_positive_int("showcase_iterations", prof.dip_showcase_iterations
                                               if showcase_iterations is None else showcase_iterations),
        showcases=showcases, settings=record)


# --------------------------------------------------------------------------- results
def chapter_metrics(plan: BaselinePlan, main: list[ImageRestoration],
                    showcases: dict[str, ImageRestoration], min_gain_db: float = 5.0) -> dict:
    """Everything chapter 02 reports, as one JSON-able dict for ``metrics.json``."""
    per_image = {r.name: r.metrics() for r in main}
    return {**plan.to_dict(), "per_image": per_image,
            "summary": summarise(per_image, list(CLASSICAL[plan.task]), min_gain_db),
            **{task: {"image": r.name, "sigma": 0.0, "iterations": plan.showcase_iterations,
                      "seeds": list(plan.seeds), **r.metrics()} for task, r in showcases.items()},
            "compute": compute_totals([*main, *showcases.values()])}


def summarise(per_image: dict, methods: list[str], min_gain_db: float = 5.0) -> dict:
    """Means over images, the quality bar (DIP's worst-seed peak beats the observation by
    ``min_gain_db`` on every image) and where each classical method matches DIP."""
    names = list(per_image)
    mean = lambda f: float(np.mean([f(per_image[n]) for n in names]))  # noqa: E731
    gains = {n: per_image[n]["comparison"]["dip_peak_gain_db_worst_seed"] for n in names}
    return {
        "mean_over_images": {
            "observed_psnr": mean(lambda m: m["observed_psnr"]),
            "dip_final_psnr": mean(lambda m: m["dip"]["final_psnr"]["mean"]),
            "dip_peak_psnr": mean(lambda m: m["dip"]["peak_psnr"]["mean"]),
            "dip_final_ssim": mean(lambda m: m["dip"]["final_ssim"]["mean"]),
            "dip_peak_ssim": mean(lambda m: m["dip"]["peak_ssim"]["mean"]),
            **{f"{k}_psnr": mean(lambda m, k=k: m[k]["psnr"]) for k in methods},
            **{f"{k}_ssim": mean(lambda m, k=k: m[k]["ssim"]) for k in methods}},
        "quality_bar": {"rule": f"DIP peak PSNR (worst seed) - observed PSNR >= {min_gain_db} dB "
                                "on every image", "threshold_db": min_gain_db, "gain_db": gains,
                        "passed": bool(all(g >= min_gain_db for g in gains.values()))},
        "classical_at_least_dip_final": {k: [n for n in names if k in
                                             per_image[n]["comparison"]["classical_at_least_dip_final"]]
                                         for k in methods},
        "classical_at_least_dip_peak": {k: [n for n in names if k in
                                            per_image[n]["comparison"]["classical_at_least_dip_peak"]]
                                        for k in methods},
        "peak_before_last_iteration": {n: per_image[n]["comparison"]["peak_before_last_iteration"]
                                       for n in names},
    }


def compute_totals(restorations: list[ImageRestoration]) -> dict:
    """Total DIP compute (iterations, GFLOPs, wall seconds) and classical wall seconds."""
    fits = [f for r in restorations for f in r.fits]
    return {"dip": {"networks_fitted": len(fits),
                    "iterations": int(sum(len(f.history["psnr_clean"]) for f in fits)),
                    "gflops": float(sum(f.flops for f in fits) / 1e9),
                    "wall_s": float(sum(f.wall_s for f in fits)),
                    "all_from_cache": bool(all(f.from_cache for f in fits)),
                    "wall_s_note": "measured when each fit was computed (cached fits keep it)"},
            "classical": {"runs": sum(len(r.classical) for r in restorations),
                          "wall_s": float(sum(c.wall_s for r in restorations
                                              for c in r.classical.values())),
                          "flops": None, "flops_note": FLOPS_NOT_COUNTED}}


def save_arrays(out_dir, restoration: ImageRestoration, prefix: str = "") -> list[str]:
    """Save ``clean_``, ``observed_``, ``dip_final_``, ``dip_peak_`` (S×C×H×W, one per seed),
    each classical output and, for inpainting, the mask, as ``<prefix><kind>_<image>.npy``
    (``<image>``: the photograph's name, or its file's stem)."""
    from .results import save_array

    r, n = restoration, photo_name(restoration.name)
    arrays = {"clean": r.clean, "observed": r.degradation.observation,
              "dip_final": r.final_outputs(), "dip_peak": r.peak_outputs(),
              **{m: c.output for m, c in r.classical.items()}}
    if r.degradation.mask is not None:
        arrays["mask"] = r.degradation.mask
    return [save_array(out_dir, f"{prefix}{kind}_{n}", x).name for kind, x in arrays.items()]


# --------------------------------------------------------------------------- tables and prose
METHOD_NAMES = {"nl_means": "NL-means", "wavelet": "wavelet (BayesShrink)",
                "tv": "TV (Chambolle)", "biharmonic": "biharmonic inpainting",
                "bicubic": "bicubic upsampling"}


def quality_table(per_image: dict) -> str:
    """Markdown table: PSNR dB (SSIM) of the observation, DIP final and peak, each classical."""
    methods = _methods(per_image)
    columns = {"image": "image", "observed": "observed", "final": "DIP final",
               "peak": "DIP peak (oracle)", "at": "peak iteration",
               **{k: METHOD_NAMES[k] for k in methods}}
    rows = []
    for name, m in per_image.items():
        d = m["dip"]
        rows.append({"image": name, "observed": f"{m['observed_psnr']:.2f} ({m['observed_ssim']:.3f})",
                     "final": f"{fmt(d['final_psnr'])} ({d['final_ssim']['mean']:.3f})",
                     "peak": f"{fmt(d['peak_psnr'])} ({d['peak_ssim']['mean']:.3f})",
                     "at": fmt(d["peak_iteration"], 0),
                     **{k: f"{m[k]['psnr']:.2f} ({m[k]['ssim']:.3f})" for k in methods}})
    return markdown_table(rows, columns) + "\n\n" + interval_note(per_image)


def interval_note(per_image: dict) -> str:
    """What ± means in this chapter's tables, with n read from the results."""
    ns = sorted({m["dip"]["final_psnr"]["n"] for m in per_image.values()})
    n = ns[0] if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return (f"DIP: mean ± half-width of the 95 % t-interval over the n = {n} seeds (DIP "
            f"initialisations) of each image, the observation held fixed; the classical methods "
            f"are deterministic given the observation.")


def compute_table(per_image: dict) -> str:
    """Markdown table: DIP iterations, wall seconds and GFLOPs; classical wall seconds."""
    methods = _methods(per_image)
    columns = {"image": "image", "iterations": "DIP iterations",
               "wall_s": "DIP wall s (per network)", "gflops": "DIP GFLOPs",
               **{k: f"{METHOD_NAMES[k]} wall s" for k in methods}}
    rows = [{"image": name, "iterations": m["dip"]["iterations"],
             "wall_s": fmt(m["dip"]["wall_s"], 1), "gflops": f"{m['dip']['gflops']['mean']:.4g}",
             **{k: f"{m[k]['wall_s']:.3f}" for k in methods}} for name, m in per_image.items()]
    return markdown_table(rows, columns) + "\n\n" + interval_note(per_image)


def _methods(per_image: dict) -> list[str]:
    first = next(iter(per_image.values()))
    return [k for k in METHOD_NAMES if k in first]


def photos_text(profile: Profile, names) -> str:
    """Which photo set the run's photographs come from, in one sentence (names from the
    profile): eval photos give the report's numbers, tune photos choose settings."""
    roles = photo_roles(profile, names)
    if all(r == "eval" for r in roles.values()):
        return (f"Its photographs are **eval** photos ({', '.join(roles)}): no setting of this "
                f"chapter was chosen on them (settings are chosen on the tune photos "
                f"{', '.join(profile.tune_photos)}).")
    if all(r == "tune" for r in roles.values()):
        return (f"Its photographs are **tune** photos ({', '.join(roles)}): this is a tuning "
                f"run (an ablation point), its numbers choose settings and are not the report's.")
    return ("Its photographs come from several sets (" + ", ".join(f"{n}: {r}" for n, r in roles.items())
            + "): its numbers are neither a clean evaluation nor a clean tuning run.")


def plan_text(plan: BaselinePlan) -> str:
    """One Markdown paragraph that states what this run does, read from the plan: its set-up,
    the photo set of its images, and where its DIP depth, width and learning rate came from."""
    from .sweep import settings_markdown

    a = plan.arch
    shows = "; ".join(f"{t} on {n}" for t, n in plan.showcases.items()) or "none"
    tail = f"\n\n{photos_text(plan.profile, plan.images)}"
    if plan.settings:
        tail += f" {settings_markdown(plan.settings)}"
    return (f"**This run** (profile `{plan.profile.name}`): task **{plan.task}** at σ = "
            f"{plan.sigma:g} (0-255 scale) on {len(plan.images)} photograph(s) "
            f"({', '.join(plan.images)}) at {plan.image_size}×{plan.image_size} px; DIP with "
            f"{a.scales} scales × {a.channels} channels ({a.skip_channels} skip channels, "
            f"{a.input_depth}-channel input, {a.upsample} upsampling), {plan.iterations} "
            f"iterations of Adam at lr {plan.profile.dip_lr:g}, seeds {', '.join(map(str, plan.seeds))}; noiseless showcases ({shows}) "
            f"with {plan.showcase_iterations} iterations." + tail)


def _names(items) -> str:
    items = list(items)
    return "none" if not items else ", ".join(items[:-1]) + (" and " if len(items) > 1 else "") + items[-1]


def findings(metrics: dict) -> str:
    """The chapter's findings as Markdown prose, every number read from ``metrics``."""
    s, per = metrics["summary"], metrics["per_image"]
    bar, mean = s["quality_bar"], s["mean_over_images"]
    gains = bar["gain_db"]
    drops = {n: per[n]["comparison"]["dip_final_below_peak_db"] for n in per}
    lines = [
        f"- **DIP against its input.** Over {len(per)} image(s) ({metrics['task']}, σ = "
        f"{metrics['sigma']:g}), DIP's peak PSNR beats the observation by "
        f"{min(gains.values()):.2f} to {max(gains.values()):.2f} dB (worst seed). The quality bar "
        f"(≥ {bar['threshold_db']:g} dB on every image) is "
        f"**{'met' if bar['passed'] else 'not met'}**"
        + ("" if bar["passed"] else f": it fails on {_names(n for n, g in gains.items() if g < bar['threshold_db'])}")
        + ".",
        f"- **Overfitting.** After {metrics['iterations']} iterations the final (EMA) output is "
        f"{min(drops.values()):.2f} to {max(drops.values()):.2f} dB below the peak (mean over "
        f"images: {mean['dip_peak_psnr'] - mean['dip_final_psnr']:.2f} dB). The peak comes before "
        f"the last iteration on {sum(s['peak_before_last_iteration'].values())} of {len(per)} "
        "image(s). The peak is an oracle (it needs the clean image): a real run must decide when "
        "to stop without it, which is chapter 04's subject.",
    ]
    for k, at_final in s["classical_at_least_dip_final"].items():
        at_peak = s["classical_at_least_dip_peak"][k]
        lines.append(
            f"- **{METHOD_NAMES[k]}** ({mean[f'{k}_psnr']:.2f} dB mean) does as well as or better "
            f"than DIP's final output on {len(at_final)} of {len(per)} image(s) "
            f"({_names(at_final)}), and as well as or better than DIP's oracle peak on "
            f"{len(at_peak)} ({_names(at_peak)}).")
    lines.append(f"- Means over images: observed {mean['observed_psnr']:.2f} dB, DIP final "
                 f"{mean['dip_final_psnr']:.2f} dB, DIP peak {mean['dip_peak_psnr']:.2f} dB.")
    return "\n".join(lines)


def _still_rising(dip_metrics: dict) -> str:
    """A note when the peak is the last iteration (the curve had not turned yet)."""
    last, at = dip_metrics["iterations"], dip_metrics["peak_iteration"]
    if at["min"] == last:
        return " (the last iteration on every seed: still rising, no overfitting yet)"
    if at["max"] == last:
        return " (the last iteration on some seeds: still rising there)"
    return ""


def showcase_text(metrics: dict) -> str:
    """One line per showcase task, its numbers read from ``metrics``."""
    lines = []
    for task in SHOWCASE_TASKS:
        if task not in metrics:
            continue
        m = metrics[task]
        d, (k,) = m["dip"], CLASSICAL[task]
        verdict = "beats" if d["final_psnr"]["mean"] > m[k]["psnr"] else "does not beat"
        rising = _still_rising(d)
        lines.append(
            f"- **{task}** on {m['image']} ({m['iterations']} iterations, noiseless): observed "
            f"{m['observed_psnr']:.2f} dB, DIP final {fmt(d['final_psnr'])} dB, peak "
            f"{fmt(d['peak_psnr'])} dB at iteration {fmt(d['peak_iteration'], 0)}{rising}; "
            f"{METHOD_NAMES[k]} {m[k]['psnr']:.2f} dB. DIP's final output {verdict} it (± the "
            f"95 % t-interval over its n = {d['final_psnr']['n']} seeds).")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures
_CURVES = {"psnr_obs": ("vs observation, raw", "tab:blue", "--"),
           "psnr_obs_ema": ("vs observation, EMA", "tab:blue", "-"),
           "psnr_clean": ("vs clean, raw", "tab:red", "--"),
           "psnr_clean_ema": ("vs clean, EMA", "tab:red", "-")}


def plot_psnr_curve(r: ImageRestoration, ax) -> None:
    """PSNR against iteration (mean over seeds, min–max band) for the raw and EMA output,
    against the observation and the clean image; stars mark the clean curves' peaks."""
    curves = r.curves()
    it = np.arange(1, curves["psnr_clean"].shape[1] + 1)
    for key, (label, color, ls) in _CURVES.items():
        c = curves[key]
        ax.plot(it, c.mean(0), color=color, ls=ls, lw=1.2, label=label)
        if len(c) > 1:
            ax.fill_between(it, c.min(0), c.max(0), color=color, alpha=0.12, lw=0)
    for key, name, color in (("psnr_clean", "raw", "dimgray"), ("psnr_clean_ema", "EMA", "k")):
        value, at = _peak(curves[key].mean(0))
        ax.plot(at, value, marker="*", ms=11, color=color, ls="none", label=f"peak ({name})")
        right = at > 0.75 * len(it)
        ax.annotate(f"{value:.1f} dB @ {at}", (at, value), textcoords="offset points",
                    xytext=(-6 if right else 6, 6 if name == "EMA" else -12),
                    ha="right" if right else "left", fontsize=7, color=color,
                    bbox=dict(fc="white", ec="none", alpha=0.75, pad=0.3))
    ax.axhline(r.observed_psnr(), color="gray", ls="-.", lw=1, label="observed input")
    if r.classical:
        best = max(r.classical.values(), key=lambda c: c.psnr)
        ax.axhline(best.psnr, color="tab:green", ls="-.", lw=1, label="best classical method")
        ax.annotate(METHOD_NAMES[best.method], (0, best.psnr), xycoords=("axes fraction", "data"),
                    xytext=(3, 3), textcoords="offset points", ha="left", fontsize=7,
                    color="tab:green")
    low = min(r.observed_psnr(), float(np.nanmin(curves["psnr_clean"][:, len(it) // 10:])))
    ax.set_ylim(bottom=low - 2)
    ax.set(xlabel="DIP iteration", ylabel="PSNR (dB)", title=f"{r.name}: {r.task}")


def plot_psnr_curves(restorations: list[ImageRestoration], ncols: int = 3):
    """:func:`plot_psnr_curve` for each image, in a grid with one shared legend."""
    n = len(restorations)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    height = 3.4 * nrows + 0.5
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, height), squeeze=False)
    for ax, r in zip(axes.flat, restorations):
        plot_psnr_curve(r, ax)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.5 / height, 1, 1))
    return fig


def panels(r: ImageRestoration, seed_index: int = 0) -> list[tuple[str, torch.Tensor]]:
    """(title, image) pairs: clean, observed, each classical output, DIP final and peak."""
    f = r.fits[seed_index]
    out = [("clean", r.clean), (f"observed\n{r.observed_psnr():.2f} dB", r.observed)]
    out += [(f"{METHOD_NAMES[m]}\n{c.psnr:.2f} dB", c.output) for m, c in r.classical.items()]
    out += [(f"DIP final (seed {f.seed})\n{float(psnr(f.output_ema, r.clean)):.2f} dB", f.output_ema),
            (f"DIP peak @ {f.best_iteration}\n{float(psnr(f.best_output, r.clean)):.2f} dB",
             f.best_output)]
    return out


def plot_restorations(restorations: list[ImageRestoration], seed_index: int = 0):
    """One row per image: :func:`panels` side by side; returns the figure."""
    rows = [panels(r, seed_index) for r in restorations]
    ncols = max(len(p) for p in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.9 * ncols, 2.2 * len(rows)),
                             squeeze=False)
    for ax_row, (r, row) in zip(axes, zip(restorations, rows)):
        for ax, (title, img) in zip(ax_row, row):
            ax.imshow(to_hwc(img[0]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=7.5)
        ax_row[0].set_ylabel(f"{r.name} ({r.task})", fontsize=8)
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.images:
                ax.set_axis_off()
    fig.tight_layout()
    return fig
