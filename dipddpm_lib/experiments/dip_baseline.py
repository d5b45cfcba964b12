"""Chapter 02: DIP over images × seeds beside the task's classical restorers. Each image is
degraded once (noise seed fixed): seeds vary DIP's initialisation only."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import dip
from ..cache import Cache, cached
from ..compute import Compute, Timer
from ..data import check_photos, load_photo, photo_name, photo_roles
from ..errors import check_choice, check_positive_float, check_positive_int, check_seeds, check_sigma
from ..methods import classical
from ..metrics import psnr, ssim
from ..profiles import Profile, check_device, get_profile
from ..results import save_array, spread

NOTEBOOK = "02_dip_baseline"
CLASSICAL = classical.BY_TASK
#: Tasks shown once each beside the main task (noiseless, on one image each).
SHOWCASE_TASKS = ("inpaint", "sr4")
ARCH_KEYS = ("scales", "channels", "skip_channels", "input_depth", "upsample")


@dataclass
class ClassicalResult:
    method: str
    output: torch.Tensor
    psnr: float
    ssim: float
    wall_s: float
    settings: dict

    def to_dict(self) -> dict:  # FLOPs: None, scikit-image code is outside torch's counter
        """JSON-able summary (FLOPs are not counted for classical methods)."""
        return {"psnr": self.psnr, "ssim": self.ssim, "wall_s": self.wall_s, "flops": None,
                "settings": self.settings}


def classical_restore(method: str, degradation: dip.Degradation,
                      clean: torch.Tensor) -> ClassicalResult:
    """Restore one observation with a classical method of its task, scored against ``clean``."""
    with Timer() as timer:
        x, settings = classical.restore(method, degradation, tuple(clean.shape[-2:]))
    return ClassicalResult(method, x, float(psnr(x, clean)), float(ssim(x, clean)), timer.seconds,
                           settings)


# --------------------------------------------------------------------------- cached DIP fits
@dataclass
class DIPImageFit:
    """One network of a grouped fit (its FLOPs and wall seconds shared evenly among them)."""
    seed: int
    history: dict[str, np.ndarray]
    output_ema: torch.Tensor
    best_output: torch.Tensor
    best_iteration: int
    flops: float
    wall_s: float
    from_cache: bool


def fit_cached(degradation: dip.Degradation, clean: torch.Tensor, cfg: dip.DIPConfig,
               iterations: int, seed: int = 0, lr: float = 0.01,
               reg_noise_std: float = 1.0 / 30.0, ema: float = 0.99,
               cache: Cache | None = None, device: str = "cpu",
               callback=None) -> list[DIPImageFit]:
    """Cached grouped ``dip.fit`` of the N images under ``seed``: one :class:`DIPImageFit` each.
    ``callback`` sees every step but cannot stop the fit; a cached fit keeps its wall seconds."""
    computed = []

    def compute():  # a cached fit runs every iteration, whatever the callback returns
        r = dip.fit(degradation, cfg, iterations, clean=clean, lr=lr, reg_noise_std=reg_noise_std,
                    ema=ema, seed=seed, device=device, progress=False,
                    callback=None if callback is None else lambda *a: callback(*a) and False)
        computed.append(True)
        best = np.atleast_1d(np.asarray(r.best_iteration, dtype=np.int64))
        columns = {k: np.asarray(v, np.float32).reshape(len(v), -1) for k, v in r.history.items()}
        return ({"output_ema": r.output_ema, "best_output": r.best_output,  # histories: steps × N
                 "best_iteration": torch.from_numpy(best),
                 **{f"history.{k}": torch.from_numpy(v) for k, v in columns.items()}},
                {"compute": asdict(r.compute), "stopped_at": r.stopped_at})

    key = {"task": degradation.task, "observation": degradation.observation,
           "mask": degradation.mask, "clean": clean, "arch": cfg, "iterations": iterations,
           "seed": seed, "lr": lr, "reg_noise_std": reg_noise_std, "ema": ema, "device": device}
    t, meta = cached("dip_fit", key, compute, cache)
    hist = {k.split(".", 1)[1]: v.numpy() for k, v in t.items() if k.startswith("history.")}
    c, n = Compute(**meta["compute"]), len(t["best_iteration"])
    return [DIPImageFit(seed, {k: v[:, i] for k, v in hist.items()}, t["output_ema"][i:i + 1],
                        t["best_output"][i:i + 1],
                        int(t["best_iteration"][i]), c.flops / n, c.wall_s / n, not computed)
            for i in range(n)]


# --------------------------------------------------------------------------- one image
def peak(curve: np.ndarray) -> tuple[float, int]:
    """Peak value and its 1-based iteration."""
    j = int(np.nanargmax(curve))
    return float(curve[j]), j + 1


@dataclass
class ImageRestoration:
    name: str
    clean: torch.Tensor
    degradation: dip.Degradation
    fits: list[DIPImageFit]
    classical: dict[str, ClassicalResult]

    @property
    def observed(self) -> torch.Tensor:
        """The observation as shown: at the clean size (×4 nearest for ``sr4``), clipped."""
        y = self.degradation.observation
        if y.shape[-2:] != self.clean.shape[-2:]:
            y = F.interpolate(y, size=tuple(self.clean.shape[-2:]), mode="nearest")
        return y.clamp(0, 1)

    def observed_psnr(self) -> float:
        """PSNR of the observation (as shown) against the clean image."""
        return float(psnr(self.observed, self.clean))

    def curves(self) -> dict[str, np.ndarray]:  # each as seeds × iterations
        """Each logged PSNR curve as seeds × iterations."""
        return {k: np.stack([f.history[k] for f in self.fits]) for k in self.fits[0].history}

    def dip_summary(self) -> dict:
        """Spreads over seeds. Final: the last EMA output; peak: the best clean-PSNR output, raw
        or EMA (an oracle)."""
        per_seed = []
        for f in self.fits:
            raw, avg = f.history["psnr_clean"], f.history["psnr_clean_ema"]
            peak_raw, peak_avg = peak(raw)[0], peak(avg)[0]
            per_seed.append({
                "final_psnr": avg[-1], "peak_psnr": max(peak_raw, peak_avg),
                "peak_iteration": f.best_iteration, "peak_psnr_raw": peak_raw, "peak_psnr_ema": peak_avg,
                "final_ssim": ssim(f.output_ema, self.clean),
                "peak_ssim": ssim(f.best_output, self.clean), "wall_s": f.wall_s,
                "gflops": f.flops / 1e9})
        out = {k: spread([float(s[k]) for s in per_seed]) for k in per_seed[0]}
        return {**out, "iterations": len(self.fits[0].history["psnr_clean"]),
                "seeds": [f.seed for f in self.fits]}

    def metrics(self) -> dict:
        """Everything reported for this image."""
        out = {"observed_psnr": self.observed_psnr(),
               "observed_ssim": float(ssim(self.observed, self.clean)), "dip": self.dip_summary(),
               **{m: c.to_dict() for m, c in self.classical.items()}}
        return {**out, "comparison": compare(out, list(self.classical))}


def compare(image_metrics: dict, methods: list[str]) -> dict:
    """Where the classical methods stand against DIP's final and peak (mean over seeds)."""
    d, observed = image_metrics["dip"], image_metrics["observed_psnr"]
    scores = {m: image_metrics[m]["psnr"] for m in methods}
    return {"classical_at_least_dip_final": [m for m in methods if scores[m] >= d["final_psnr"]["mean"]],
            "classical_at_least_dip_peak": [m for m in methods if scores[m] >= d["peak_psnr"]["mean"]],
            "dip_peak_gain_db_worst_seed": d["peak_psnr"]["min"] - observed,
            "dip_final_below_peak_db": d["peak_psnr"]["mean"] - d["final_psnr"]["mean"],
            "peak_before_last_iteration": d["peak_iteration"]["max"] < d["iterations"]}


# --------------------------------------------------------------------------- the chapter's plan
@dataclass(frozen=True)
class BaselinePlan:
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
        """The run's settings, where each tunable one came from, and each image's photo set."""
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

    def restore(self, names, task: str, sigma: float, iterations: int, cache: Cache | None = None,
                progress: bool = True) -> list[ImageRestoration]:
        """Degrade each photograph once, run the classical restorers, then one grouped, cached
        DIP fit per seed (one network per image)."""
        p, steps = self.profile, check_positive_int("iterations", iterations)
        images = {n: load_photo(n, self.image_size) for n in names}
        degs = {n: dip.degrade(x, task, sigma, seed=self.noise_seed) for n, x in images.items()}
        done = {n: {m: classical_restore(m, degs[n], x) for m in CLASSICAL[task]}
                for n, x in images.items()}
        stacked, clean = dip.stack_degradations(list(degs.values())), torch.cat(list(images.values()))
        fits = []
        with tqdm(total=len(self.seeds) * steps, disable=not progress, mininterval=5,
                  desc=f"DIP {task}: {len(names)} image(s) × {len(self.seeds)} seed(s), steps") as bar:
            for s in self.seeds:
                fits.append(fit_cached(stacked, clean, self.arch, steps, s, p.dip_lr,
                                       p.dip_reg_noise_std, p.dip_ema, cache, p.device,
                                       callback=lambda *_: bar.update(1)))
                bar.update(steps if fits[-1][0].from_cache else 0)
        return [ImageRestoration(n, x, degs[n], [f[i] for f in fits], done[n])
                for i, (n, x) in enumerate(images.items())]

    def run_main(self, cache: Cache | None = None, progress: bool = True) -> list[ImageRestoration]:
        """The main task on every image."""
        return self.restore(self.images, self.task, self.sigma, self.iterations, cache, progress)

    def run_showcases(self, cache: Cache | None = None,
                      progress: bool = True) -> dict[str, ImageRestoration]:
        """Each showcase task (noiseless) on its one image."""
        return {task: self.restore([name], task, 0.0, self.showcase_iterations, cache, progress)[0]
                for task, name in self.showcases.items()}


def make_plan(profile: str = "quick", seeds=None, images=None, image_size=None,
              sigma=25.0, task: str = "denoise", iterations=None, arch: dict | None = None,
              showcase_iterations=None, inpaint_image: str | None = None,
              sr4_image: str | None = None, lr=None, tuned=None, device=None) -> BaselinePlan:
    """The notebook's parameters, checked before any work (``None``: the profile's). ``tuned``'s
    depth, width and lr replace the profile's; ``arch`` keys and ``lr`` given here win."""
    from ..tuned import tuned_overrides

    given = dict(arch or {}) if isinstance(arch, dict) else {}
    overrides, record = tuned_overrides(profile, tuned, NOTEBOOK, {
        "dip_scales": given.get("scales"), "dip_channels": given.get("channels"), "dip_lr": lr})
    fields = {"device": device, "dip_lr": None if lr is None else check_positive_float("lr", lr)}
    prof = check_device(get_profile(profile, **overrides | {k: v for k, v in fields.items()
                                                           if v is not None}))
    check_choice("task", task, dip.TASKS)
    arch = dict(arch or {})  # the profile's net with these knobs overridden
    unknown = sorted(set(arch) - set(ARCH_KEYS))
    if unknown:
        raise ValueError(f"unknown arch key(s) {unknown}; valid keys: {', '.join(ARCH_KEYS)}")
    cfg = dip.DIPConfig.from_profile(prof, **arch)
    for key in ("scales", "channels", "input_depth"):
        check_positive_int(f"arch {key}", getattr(cfg, key))
    if type(cfg.skip_channels) is not int or cfg.skip_channels < 0:  # bool is no width
        raise ValueError(f"arch skip_channels must be a whole number >= 0, got {cfg.skip_channels!r}")
    check_choice("arch upsample", cfg.upsample, dip.UPSAMPLE_MODES)
    size = check_positive_int("image_size", prof.photo_size if image_size is None else image_size)
    step = max(32, cfg.min_size)  # the photo loader's multiple, and the network's
    if size % step:
        raise ValueError(f"image_size must be a multiple of {step} (photographs load at multiples "
                         f"of 32; a {cfg.scales}-scale DIP halves the image {cfg.scales} times), "
                         f"got {size}")
    names = check_photos(prof.dip_baseline_photos if images is None else images, "images", size)
    chosen = {"inpaint": inpaint_image or names[0], "sr4": sr4_image or names[-1]}
    showcases = {t: check_photos(chosen[t], f"{t}_image", size)[0]
                 for t in SHOWCASE_TASKS if t != task}
    return BaselinePlan(
        profile=prof, seeds=check_seeds(prof.seeds if seeds is None else seeds), images=names,
        image_size=size, sigma=check_sigma(sigma), task=task,
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
    fits = [f for r in (*main, *showcases.values()) for f in r.fits]
    runs = [c for r in (*main, *showcases.values()) for c in r.classical.values()]
    return {**plan.to_dict(), "per_image": per_image,
            "summary": summarise(per_image, list(CLASSICAL[plan.task]), min_gain_db),
            **{task: {"image": r.name, "sigma": 0.0, "iterations": plan.showcase_iterations,
                      "seeds": list(plan.seeds), **r.metrics()} for task, r in showcases.items()},
            "compute": {"dip": {"networks_fitted": len(fits),  # totals: DIP's, the classical wall
                                "iterations": int(sum(len(f.history["psnr_clean"]) for f in fits)),
                                "gflops": float(sum(f.flops for f in fits) / 1e9),
                                "wall_s": float(sum(f.wall_s for f in fits))},
                        "classical": {"runs": len(runs), "wall_s": float(sum(c.wall_s for c in runs)),
                                      "flops": None}}}


def summarise(per_image: dict, methods: list[str], min_gain_db: float = 5.0) -> dict:
    """Means over images, the quality bar (DIP's worst-seed peak gains ``min_gain_db`` over the
    observation on every image) and where each classical method matches DIP."""
    def mean(f):
        return float(np.mean([f(m) for m in per_image.values()]))

    def where(k, m):  # images on which classical method m scores at least DIP's k
        return [n for n, im in per_image.items() if m in im["comparison"][f"classical_at_least_dip_{k}"]]

    gains = {n: m["comparison"]["dip_peak_gain_db_worst_seed"] for n, m in per_image.items()}
    dip_means = {f"dip_{w}_{q}": mean(lambda m, w=w, q=q: m["dip"][f"{w}_{q}"]["mean"])
                 for q in ("psnr", "ssim") for w in ("final", "peak")}
    return {
        "mean_over_images": {"observed_psnr": mean(lambda m: m["observed_psnr"]), **dip_means,
                             **{f"{k}_{q}": mean(lambda m, k=k, q=q: m[k][q])
                                for q in ("psnr", "ssim") for k in methods}},
        "quality_bar": {"threshold_db": min_gain_db, "gain_db": gains,
                        "passed": bool(all(g >= min_gain_db for g in gains.values()))},
        "classical_at_least_dip_final": {m: where("final", m) for m in methods},
        "classical_at_least_dip_peak": {m: where("peak", m) for m in methods},
        "peak_before_last_iteration": {n: m["comparison"]["peak_before_last_iteration"]
                                       for n, m in per_image.items()},
    }


def save_arrays(out_dir, r: ImageRestoration, prefix: str = "") -> list[str]:
    """Save every image of ``r`` (DIP's S×C×H×W, one per seed) as ``<prefix><kind>_<image>.npy``."""
    arrays = {"clean": r.clean, "observed": r.degradation.observation,
              "dip_final": torch.cat([f.output_ema for f in r.fits]),
              "dip_peak": torch.cat([f.best_output for f in r.fits]),
              **{m: c.output for m, c in r.classical.items()},
              **({} if r.degradation.mask is None else {"mask": r.degradation.mask})}
    return [save_array(out_dir, f"{prefix}{kind}_{photo_name(r.name)}", x).name
            for kind, x in arrays.items()]
