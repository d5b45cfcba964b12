"""Early stopping for DIP without the clean image: a DDPM-guided rule and the baselines.

Every criterion is a small function over a history (numpy arrays, iteration 1 first) that
returns a :class:`Stop`. The same functions run online, on the history so far, inside the
fit callbacks, so one implementation serves the offline tests and the live runs.

* ``oracle``: the iteration of peak PSNR against the clean image (the upper bound; it
  needs the clean image and is reported as such).
* ``fixed``: a fixed iteration count (the profile's default, or Ulyanov's 3000 scaled).
* ``discrepancy``: the first iteration whose fit error to the observation falls to σ².
* ``es_wmv`` (Wang et al., 2021): the windowed moving variance of the raw outputs; stop
  when it has not reached a new minimum for ``patience`` iterations and return the
  iteration of that minimum.
* ``guided``: progressive targets. DIP fits stage targets ``y + s_k ε_k`` whose extra noise
  ``s_k`` follows the DDPM schedule down to 0 (the observation itself). The injected noise
  is known, so the share of it that the output absorbs measures how fast the network fits
  white noise. With ``R`` the output's MSE to the observation and ``C`` its MSE to the
  clean image, ``C = R − σ² + 2⟨out − x, n⟩/N``: over a stage ``ΔC ≈ ΔR + 2σ²a`` when
  the observation noise ``n`` is absorbed at the rate ``a`` measured on the stage's own noise.
  The rule stops at the end of the first stage where the fit stops improving faster than
  the noise it absorbs: ``R_{k−1} − R_k ≤ 2σ² a_k``.

Every output is the exponential moving average (EMA) of the DIP outputs, as in ``dip.fit``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from . import dip
from .cache import Cache
from .compute import Compute
from .data import load_photo, photo_name, photo_roles
from .ddpm import BETA_SCHEDULES, alphas_cumprod
from .errors import check_choice, check_positive_int, check_sigma
from .metrics import psnr, ssim
from .plots import to_hwc
from .profiles import check_device, get_profile
from .results import save_array, spread

STAGE_SCHEDULES = ("linear", "cosine", "log")
CRITERIA = ("guided", "es_wmv", "discrepancy", "fixed", "ulyanov", "oracle")
NOTEBOOK = "04_early_stopping"
#: Notebook knob → profile field.
KNOBS = {"photos": "photos", "photo_size": "es_photo_size", "sigmas": "es_sigmas",
         "num_stages": "es_num_stages", "stage_iterations": "es_stage_iterations",
         "stage_schedule": "es_stage_schedule", "start_ratio": "es_start_ratio",
         "paper_scale": "es_paper_scale"}
#: The reference setting's iteration counts: Ulyanov et al.'s denoising run (3000 Adam steps,
#: lr 0.01, the 5-scale × 128-channel net) and ES-WMV's window and patience (W=100, P=1000).
PAPER_ITERATIONS, PAPER_WINDOW, PAPER_PATIENCE = 3000, 100, 1000
#: ES-WMV sensitivity check: patience × these (windows come from the profile).
WMV_PATIENCE_FACTORS = (0.5, 1.0, 2.0)
_CACHE_VERSION = 1


# the criteria (pure functions over histories) live in `stopping`
from .stopping import (  # noqa: E402
    MovingVariance, Stop, absorbed_fraction, discrepancy_stop, es_wmv_stop, fixed_stop,
    guided_stop, oracle_stop)


# --------------------------------------------------------------------------- progressive targets
def extra_noise_std(timesteps, beta_schedule: str = "linear") -> np.ndarray:
    """Std (on [0, 1] images) of the noise a DDPM adds by time ``t``, in the rescaled form
    ``x_t / √ᾱ_t = x_0 + √((1 − ᾱ_t)/ᾱ_t) ε`` (model space [−1, 1]: halved here)."""
    abar = alphas_cumprod(beta_schedule).double().numpy()
    t = np.asarray(timesteps, dtype=int)
    return 0.5 * np.sqrt((1.0 - abar[t]) / abar[t])


def start_timestep(sigma: float, start_ratio: float, beta_schedule: str = "linear") -> int:
    """The first diffusion time whose extra noise std reaches ``start_ratio`` × σ."""
    if not check_sigma(sigma) > 0:
        raise ValueError(f"sigma must be > 0 for progressive targets, got {sigma}")
    if not start_ratio > 0:
        raise ValueError(f"start_ratio must be positive, got {start_ratio}")
    levels = extra_noise_std(np.arange(len(alphas_cumprod(beta_schedule))), beta_schedule)
    reach = np.flatnonzero(levels >= start_ratio * sigma / 255.0)
    if not reach.size:
        raise ValueError(f"start_ratio {start_ratio} × sigma {sigma} is beyond the schedule's "
                         f"largest noise ({levels[-1] * 255:.0f}/255)")
    return max(1, int(reach[0]))


def stage_timesteps(num_stages: int, t_start: int, stage_schedule: str = "linear") -> np.ndarray:
    """Diffusion times of the ``num_stages`` stage targets, from ``t_start`` down to 0 (the
    observation): evenly spaced (``linear``), slow at first (``cosine``) or geometric
    (``log``, dense near 0)."""
    check_choice("stage schedule", stage_schedule, STAGE_SCHEDULES)
    num_stages = check_positive_int("num_stages", num_stages)
    if num_stages < 2:
        raise ValueError(f"num_stages must be at least 2 (noisy stages, then the observation), "
                         f"got {num_stages}")
    t_start = check_positive_int("t_start", t_start)
    u = np.arange(num_stages) / (num_stages - 1)
    if stage_schedule == "linear":
        t = t_start * (1.0 - u)
    elif stage_schedule == "cosine":
        t = t_start * np.cos(0.5 * np.pi * u)
    else:
        v = np.arange(num_stages - 1) / max(num_stages - 2, 1)
        t = np.r_[float(t_start) ** (1.0 - v), 0.0]
    t = np.round(t).astype(int)
    t[-1] = 0
    return t


def stage_noise_levels(sigma: float, num_stages: int, stage_schedule: str = "linear",
                       start_ratio: float = 1.0, beta_schedule: str = "linear"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(timesteps, extra noise std per stage)`` for an observation with noise σ (0-255)."""
    check_choice("beta schedule", beta_schedule, BETA_SCHEDULES)
    t = stage_timesteps(num_stages, start_timestep(sigma, start_ratio, beta_schedule),
                        stage_schedule)
    return t, extra_noise_std(t, beta_schedule)


# --------------------------------------------------------------------------- set-up
@dataclass(frozen=True)
class StoppingSetup:
    """Every knob of the chapter-04 experiment, read from a profile."""

    photos: tuple[str, ...]
    photo_size: int
    sigmas: tuple[float, ...]
    seeds: tuple[int, ...]
    fixed_iterations: int
    paper_scale: float
    num_stages: int
    stage_iterations: int
    stage_schedule: str
    start_ratio: float
    beta_schedule: str
    wmv_window_factors: tuple[float, ...] = (1.0,)

    @classmethod
    def from_profile(cls, profile, seeds=None) -> "StoppingSetup":
        """The profile's chapter-04 set-up (``seeds=None``: the profile's seeds), checked."""
        setup = cls(tuple(profile.photos), profile.es_photo_size,
                    tuple(float(s) for s in profile.es_sigmas),
                    tuple(profile.seeds if seeds is None else seeds), profile.dip_iterations,
                    profile.es_paper_scale, profile.es_num_stages, profile.es_stage_iterations,
                    profile.es_stage_schedule, profile.es_start_ratio, profile.beta_schedule,
                    tuple(float(f) for f in profile.es_wmv_window_factors))
        setup.check()
        return setup

    def check(self) -> None:
        """Raise ``ValueError`` (naming the valid choices) for any bad knob; no work done."""
        from .data import check_photos

        check_photos(self.photos, "photos", min_size=self.photo_size)
        if not self.photos or not self.sigmas or not self.seeds:
            raise ValueError("photos, sigmas and seeds must each hold at least one value")
        if self.photo_size % 32:
            raise ValueError(f"photo size must be a multiple of 32, got {self.photo_size}")
        for s in self.sigmas:
            if not 0 < check_sigma(s):
                raise ValueError(f"sigma must be > 0 for denoising, got {s}")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise ValueError(f"seeds must be non-negative integers, got {s!r}")
        check_positive_int("fixed_iterations", self.fixed_iterations)
        if not 0 < self.paper_scale <= 10:
            raise ValueError(f"paper_scale must be in (0, 10], got {self.paper_scale}")
        check_positive_int("stage_iterations", self.stage_iterations)
        if not all(f > 0 for f in self.wmv_window_factors):
            raise ValueError(f"ES-WMV window factors must be positive, got {self.wmv_window_factors}")
        check_choice("beta schedule", self.beta_schedule, BETA_SCHEDULES)
        for s in self.sigmas:
            stage_noise_levels(s, self.num_stages, self.stage_schedule, self.start_ratio,
                               self.beta_schedule)

    @property
    def window(self) -> int:
        """ES-WMV window: the paper's W = 100 scaled (at least 2)."""
        return max(2, round(PAPER_WINDOW * self.paper_scale))

    @property
    def patience(self) -> int:
        """ES-WMV patience: the paper's P = 1000 scaled (at least 1)."""
        return max(1, round(PAPER_PATIENCE * self.paper_scale))

    @property
    def wmv_windows(self) -> tuple[int, ...]:
        """Every ES-WMV window the plain run records: W and W × the sensitivity factors."""
        return tuple(sorted({self.window} | {max(2, round(self.window * f))
                                             for f in self.wmv_window_factors}))

    @property
    def wmv_patiences(self) -> tuple[int, ...]:
        """The patiences of the ES-WMV sensitivity check: P × 0.5, 1, 2."""
        return tuple(sorted({max(1, round(self.patience * f)) for f in WMV_PATIENCE_FACTORS}))

    @property
    def ulyanov_iterations(self) -> int:
        """Ulyanov et al.'s 3000 denoising iterations, scaled."""
        return max(1, round(PAPER_ITERATIONS * self.paper_scale))

    @property
    def budget(self) -> int:
        """Length of the plain DIP trajectory that every baseline reads."""
        return max(self.fixed_iterations, self.ulyanov_iterations)

    @property
    def pairs(self) -> list[tuple[str, float]]:
        """Every (photograph, σ) pair, the order of the images in a batch."""
        return [(p, s) for p in self.photos for s in self.sigmas]

    def to_dict(self) -> dict:
        """JSON-able dict, with the derived counts."""
        d = dataclasses.asdict(self)
        d.update(window=self.window, patience=self.patience,
                 ulyanov_iterations=self.ulyanov_iterations, budget=self.budget)
        return d


def make_setup(profile: str, seeds=None, tuned=None, device=None, **knobs):
    """``(profile, setup, settings)`` for the notebook: knobs left at None take the value in
    the ``tuned`` file (``tuned.json`` of the ablation grids' collate step: DIP depth, width,
    learning rate and the stage settings), else the profile's. ``settings`` records where each
    tunable setting came from (:func:`dipddpm_lib.sweep.tuned_overrides`). Every knob and
    tuned value is checked here, before any work, and the ``device`` (default: the
    profile's; :func:`~dipddpm_lib.profiles.check_device`)."""
    from .sweep import tuned_overrides

    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise ValueError(f"unknown knob(s) {unknown}; valid knobs: {sorted(KNOBS)}")
    given = {KNOBS[k]: v for k, v in knobs.items() if v is not None}
    overrides, settings = tuned_overrides(profile, tuned, NOTEBOOK, given)
    prof = check_device(get_profile(profile, **{**overrides, **given},
                                    **({} if device is None else {"device": device})))
    setup = StoppingSetup.from_profile(prof, seeds)
    if setup.photo_size % 2 ** prof.dip_scales:
        raise ValueError(f"photo size {setup.photo_size} is not a multiple of "
                         f"{2 ** prof.dip_scales}, which a {prof.dip_scales}-scale DIP needs; "
                         f"use fewer scales or a larger photo_size")
    return prof, setup, settings


def stage_settings_note(settings: dict | None, setup: StoppingSetup) -> str:
    """The "where the stage settings come from" bullet of the chapter's notes: tuned on the
    tune photos (named from the tuned file), or the profile's values where not tuned."""
    labels = {"es_num_stages": ("number of stages", setup.num_stages),
              "es_stage_iterations": ("iterations per stage", setup.stage_iterations),
              "es_stage_schedule": ("stage schedule", setup.stage_schedule),
              "es_start_ratio": ("first extra noise (× σ)", setup.start_ratio)}
    s = (settings or {}).get("settings", {})
    tuned = [f for f in labels if s.get(f, {}).get("source") == "tuned"]
    fell = [f for f in labels if s.get(f, {}).get("source") == "profile (fallback)"]
    other = [f for f in labels if f not in tuned and f not in fell]
    what = lambda fs: ", ".join(f"{labels[f][0]} = {labels[f][1]:g}" if not isinstance(labels[f][1], str)  # noqa: E731
                                 else f"{labels[f][0]} = `{labels[f][1]}`" for f in fs)
    parts = []
    if tuned:
        photos = sorted({p for f in tuned for p in s[f].get("photos") or []})
        parts.append(f"{what(tuned)}: chosen by the ablation grids on the tune photos "
                     f"({', '.join(photos)}), never on the photographs scored here")
    if fell:
        parts.append(f"{what(fell)}: the profile's values, because their tuning grids have no "
                     f"complete result ({'; '.join(s[f]['note'] for f in fell)})")
    if other:
        why = ("no tuned-settings file was given" if not settings or settings.get("tuned_file") is None
               else "set by this run's parameters or not tuned by any grid")
        parts.append(f"{what(other)}: the profile's or this run's values, not tuned here ({why})")
    return "* Stage settings: " + "; ".join(parts) + ". Per-run gaps are in `metrics.json` (`runs`)."


def setup_markdown(setup: StoppingSetup, profile, settings: dict | None = None) -> str:
    """The run's set-up in words, every number read from the set-up; with ``settings``
    (from :func:`make_setup`), the photo set of the photographs and where each tunable
    setting came from."""
    from .sweep import settings_markdown

    roles = photo_roles(profile, setup.photos)
    kinds = sorted(set(roles.values()))
    role = (f" The photographs are **{kinds[0]}** photos"
            + (" (the report's numbers; settings are chosen on the tune photos "
               f"{', '.join(profile.tune_photos)})." if kinds == ["eval"] else
               " (a tuning run: its numbers choose settings, they are not the report's)."
               if kinds == ["tune"] else ".")) if len(kinds) == 1 else \
        " Photo sets: " + ", ".join(f"{n}: {r}" for n, r in roles.items()) + "."
    extra = role + (f" {settings_markdown(settings)}" if settings else "")
    return (f"**Profile `{profile.name}`**: {len(setup.photos)} photographs "
            f"({', '.join(setup.photos)}) at {setup.photo_size} px × σ ∈ "
            f"{{{', '.join(f'{s:g}' for s in setup.sigmas)}}} × {len(setup.seeds)} seeds "
            f"({', '.join(map(str, setup.seeds))}) = "
            f"{len(setup.pairs) * len(setup.seeds)} trajectories. DIP: {profile.dip_scales} "
            f"scales × {profile.dip_channels} channels, Adam lr {profile.dip_lr}, reg-noise "
            f"{profile.dip_reg_noise_std:.3f}, EMA {profile.dip_ema}. Plain DIP runs "
            f"{setup.budget} iterations; fixed counts {setup.fixed_iterations} (profile) and "
            f"{setup.ulyanov_iterations} (Ulyanov's {PAPER_ITERATIONS} × {setup.paper_scale:g}); "
            f"ES-WMV W = {setup.window}, P = {setup.patience} (the paper's {PAPER_WINDOW}, "
            f"{PAPER_PATIENCE} × {setup.paper_scale:g}); guided: {setup.num_stages} stages × "
            f"{setup.stage_iterations} iterations, `{setup.stage_schedule}` stage schedule on "
            f"the `{setup.beta_schedule}` DDPM noise schedule, first extra noise "
            f"{setup.start_ratio:g} σ." + extra)


def baselines_markdown(setup: StoppingSetup) -> str:
    """The baselines, one bullet each, with this run's counts (every number read from the
    set-up and the papers' constants)."""
    k = setup.paper_scale
    return "\n".join([
        f"* **fixed (profile)**: the profile's default iteration count, `dip_iterations` = "
        f"{setup.fixed_iterations};",
        f"* **fixed (Ulyanov, scaled)**: Ulyanov et al.'s denoising run ({PAPER_ITERATIONS} "
        f"iterations of the 5-scale × 128-channel network) × `paper_scale` = {k:g}: "
        f"{setup.ulyanov_iterations} iterations;",
        f"* **ES-WMV** (Wang et al., 2021): the variance of the last W raw outputs (mean squared "
        f"deviation from their mean, per pixel, averaged); stop when it has not reached a new "
        f"minimum for P iterations and return the iteration of that minimum. The paper's "
        f"W = {PAPER_WINDOW}, P = {PAPER_PATIENCE}, × `paper_scale`: W = {setup.window}, "
        f"P = {setup.patience} — the same factor as Ulyanov's count, so both keep their "
        f"proportion to the run;",
        "* **discrepancy principle**: the first iteration whose MSE to the observation falls to σ²;",
        "* **oracle**: the iteration of peak PSNR against the clean image — the upper bound every "
        "gap is measured from; it is not a method, and nothing on these photographs is chosen "
        "with it.",
        "",
        f"`paper_scale` = {k:g} is a stated choice of the profile, not a measurement; the "
        f"oracle's stop iterations in the results table show where this profile's peaks actually "
        f"fall, to set against the scaled counts. Compute saved is (fixed − iterations run) / "
        f"fixed against the profile's fixed count ({setup.fixed_iterations}), counting every "
        f"stage of the guided scheme and, for ES-WMV, the patience it must wait after its minimum."])


def make_batch(setup: StoppingSetup, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(clean, noisy, sigmas)`` for every (photograph, σ) pair; the noise of pair ``j``
    under ``seed`` is drawn with seed ``1000·seed + j``."""
    photos = {p: load_photo(p, setup.photo_size) for p in setup.photos}
    clean = torch.cat([photos[p] for p, _ in setup.pairs])
    noisy = torch.cat([dip.degrade(photos[p], "denoise", s, seed=1000 * seed + j).observation
                       for j, (p, s) in enumerate(setup.pairs)])
    return clean, noisy, np.array([s for _, s in setup.pairs])


def _fit_kwargs(profile) -> dict:
    return dict(lr=profile.dip_lr, reg_noise_std=profile.dip_reg_noise_std, ema=profile.dip_ema,
                device=profile.device)


def _histories(tensors: dict) -> dict[str, np.ndarray]:
    return {k[len("history_"):]: v.double().numpy() for k, v in tensors.items()
            if k.startswith("history_")}


def _cache_config(kind: str, setup: StoppingSetup, cfg: dip.DIPConfig, profile, seed: int) -> dict:
    keyed = setup.to_dict() | {"seeds": None}
    if kind == "guided":  # the guided fit does not read ES-WMV's windows
        keyed.pop("wmv_window_factors")
    else:  # nor the plain run the stage settings: points that vary them share one plain run
        for knob in ("num_stages", "stage_iterations", "stage_schedule", "start_ratio"):
            keyed.pop(knob)
    return {"kind": kind, "version": _CACHE_VERSION, "setup": keyed,
            "net": dataclasses.asdict(cfg), "fit": _fit_kwargs(profile),
            "seed": seed}


# --------------------------------------------------------------------------- plain DIP run
class ReferenceRecorder:
    """``dip.fit`` callback on a plain DIP run: records what each baseline reads (fit error
    to the observation, ES-WMV variance, clean PSNR for the oracle) and keeps the EMA output
    at each baseline's current candidate stop, so no full trajectory is stored."""

    def __init__(self, noisy: torch.Tensor, clean: torch.Tensor, sigmas, setup: StoppingSetup):
        self.noisy, self.clean, self.sigmas, self.setup = noisy, clean, np.asarray(sigmas), setup
        self.variance_of = {w: MovingVariance(w) for w in setup.wmv_windows}
        keys = ["residual", "variance", "psnr_clean"]
        keys += [f"variance_w{w}" for w in setup.wmv_windows if w != setup.window]
        self.rows = {k: np.full((setup.budget, len(self.sigmas)), np.nan) for k in keys}
        self.length = 0
        self.outputs = {c: torch.zeros_like(clean) for c in CRITERIA if c != "guided"}

    def stops_for(self, n: int) -> dict[str, Stop]:
        """Each baseline's stop for image ``n`` on the history so far."""
        h = {k: v[:self.length, n] for k, v in self.rows.items()}
        return {"oracle": oracle_stop(h["psnr_clean"]),
                "fixed": fixed_stop(self.length, self.setup.fixed_iterations),
                "ulyanov": fixed_stop(self.length, self.setup.ulyanov_iterations),
                "discrepancy": discrepancy_stop(h["residual"], self.sigmas[n]),
                "es_wmv": es_wmv_stop(h["variance"], self.setup.patience)}

    def __call__(self, i: int, out: torch.Tensor, out_ema: torch.Tensor, hist) -> bool:
        ema = out_ema.detach().cpu()
        self.rows["residual"][i - 1] = (ema - self.noisy).pow(2).flatten(1).mean(1).double().numpy()
        for w, mv in self.variance_of.items():
            key = "variance" if w == self.setup.window else f"variance_w{w}"
            self.rows[key][i - 1] = mv.push(out)
        self.rows["psnr_clean"][i - 1] = psnr(ema, self.clean).double().numpy()
        self.length = i
        for n in range(len(self.sigmas)):
            for name, stop in self.stops_for(n).items():
                if stop.iteration == i:
                    self.outputs[name][n] = ema[n]
        return False


@dataclass
class ReferenceRun:
    """One plain DIP trajectory per (photograph, σ) for one seed, read by every baseline."""

    seed: int
    clean: torch.Tensor
    noisy: torch.Tensor
    sigmas: np.ndarray
    history: dict[str, np.ndarray]  # residual, variance, psnr_clean: iterations × images
    stops: dict[str, list[Stop]]
    outputs: dict[str, torch.Tensor]
    flops_per_iteration: float
    wall_s: float


def run_reference(setup: StoppingSetup, profile, seed: int, cache: Cache | None = None,
                  progress: bool = True) -> ReferenceRun:
    """Fit plain DIP to every (photograph, σ) pair for ``setup.budget`` iterations (one
    batched fit) and apply every baseline to the history. Cached."""
    setup.check()
    cfg = dip.DIPConfig.from_profile(profile)
    clean, noisy, sigmas = make_batch(setup, seed)
    names = [c for c in CRITERIA if c != "guided"]

    def compute():
        rec = ReferenceRecorder(noisy, clean, sigmas, setup)
        res = dip.fit(dip.Degradation("denoise", noisy), cfg, setup.budget, seed=seed,
                      callback=rec, progress=progress, desc=f"plain DIP, seed {seed}",
                      **_fit_kwargs(profile))
        hist = {k: torch.from_numpy(v[:rec.length]).float() for k, v in rec.rows.items()}
        stops = {c: [dataclasses.astuple(rec.stops_for(n)[c]) for n in range(len(sigmas))]
                 for c in names}
        tensors = {**{f"history_{k}": v for k, v in hist.items()},
                   **{f"output_{c}": rec.outputs[c] for c in names}}
        meta = {"stops": stops, "flops_per_iteration": res.compute.flops / res.compute.dip_iters
                / len(sigmas), "wall_s": res.compute.wall_s}
        return tensors, meta

    tensors, meta = (cache or Cache()).get_or_compute(
        "es_reference", _cache_config("reference", setup, cfg, profile, seed), compute)
    return ReferenceRun(seed, clean, noisy, sigmas, _histories(tensors),
                        {c: [Stop(*s) for s in meta["stops"][c]] for c in names},
                        {c: tensors[f"output_{c}"] for c in names},
                        meta["flops_per_iteration"], meta["wall_s"])


# --------------------------------------------------------------------------- guided run
class ProgressiveTargets:
    """``dip.fit``'s ``target`` and ``callback`` for the guided scheme.

    Stage ``k`` lasts ``stage_iterations`` steps and fits ``y + s_k ε_k`` (fresh, known
    ``ε_k``; ``s_k`` per image from :func:`stage_noise_levels`; the last stage is ``y``).
    At every step it records PSNR and SSIM of the EMA output against the stage's target;
    at every stage end the fit error to the observation and the absorbed share of the
    stage's noise, and applies :func:`guided_stop` per image. The fit ends when every
    image has stopped. It never sees the clean image.
    """

    def __init__(self, noisy: torch.Tensor, sigmas, noise_stds: np.ndarray,
                 stage_iterations: int, seed: int = 0):
        self.noisy, self.sigmas = noisy, np.asarray(sigmas, dtype=float)
        self.noise_stds = torch.as_tensor(np.asarray(noise_stds), dtype=torch.float32)
        self.num_stages = self.noise_stds.shape[1]
        self.stage_iterations = stage_iterations
        gen = torch.Generator().manual_seed(10_000 + seed)
        self.noise = torch.randn((self.num_stages, *noisy.shape), generator=gen)
        n = len(self.sigmas)
        self.rows: dict[str, list] = {"psnr_target": [], "ssim_target": [], "residual": []}
        self.stage_residual = np.full((self.num_stages, n), np.nan)
        self.stage_absorbed = np.full((self.num_stages, n), np.nan)
        self.stage_outputs = torch.zeros((self.num_stages, *noisy.shape))
        self.stops: list[Stop | None] = [None] * n
        self.outputs = torch.zeros_like(noisy)
        self._before = None

    def stage_of(self, i: int) -> int:
        """The stage of step ``i`` (1-based)."""
        return min((i - 1) // self.stage_iterations, self.num_stages - 1)

    def stage_target(self, k: int) -> torch.Tensor:
        """Every image's stage-``k`` target ``y + s_k ε_k``."""
        return self.noisy + self.noise_stds[:, k].view(-1, 1, 1, 1) * self.noise[k]

    def target(self, i: int) -> torch.Tensor:
        """The target of step ``i`` (passed to ``dip.fit`` as ``target``)."""
        return self.stage_target(self.stage_of(i))

    def __call__(self, i: int, out: torch.Tensor, out_ema: torch.Tensor, hist) -> bool:
        k, ema = self.stage_of(i), out_ema.detach().cpu()
        if self._before is None:
            self._before = ema.clone()
        tgt = self.stage_target(k)
        self.rows["psnr_target"].append(psnr(ema, tgt).double().numpy())
        self.rows["ssim_target"].append(ssim(ema, tgt).double().numpy())
        self.rows["residual"].append((ema - self.noisy).pow(2).flatten(1).mean(1).double().numpy())
        if i % self.stage_iterations == 0:
            self._end_stage(k, i, ema)
        return all(s is not None for s in self.stops)

    def _end_stage(self, k: int, i: int, ema: torch.Tensor) -> None:
        self.stage_residual[k] = self.rows["residual"][-1]
        if k < self.num_stages - 1:
            self.stage_absorbed[k] = absorbed_fraction(ema, self._before, self.noise[k],
                                                       self.noise_stds[:, k]).double().numpy()
        self.stage_outputs[k] = ema
        self._before = ema.clone()
        for n, sigma in enumerate(self.sigmas):
            if self.stops[n] is not None:
                continue
            stop = guided_stop(self.stage_residual[:k + 1, n], self.stage_absorbed[:k + 1, n],
                               sigma, self.stage_iterations)
            if stop.fired or k == self.num_stages - 1:
                self.stops[n] = Stop(i, i, stop.fired)
                self.outputs[n] = ema[n]


@dataclass
class GuidedRun:
    """The guided scheme's fits for every (photograph, σ) pair of one seed."""

    seed: int
    stops: list[Stop]
    outputs: torch.Tensor
    stage_outputs: torch.Tensor  # stages × images × C×H×W (EMA output at each stage end)
    stage_residual: np.ndarray  # stages × images
    stage_absorbed: np.ndarray  # stages × images (NaN for the final stage)
    noise_stds: np.ndarray  # images × stages, on [0, 1] images
    timesteps: np.ndarray  # images × stages
    history: dict[str, np.ndarray]  # psnr_target, ssim_target, residual, psnr_clean
    flops_per_iteration: float
    wall_s: float


def guided_schedule(setup: StoppingSetup, sigmas) -> tuple[np.ndarray, np.ndarray]:
    """``(timesteps, noise stds)``, images × stages, for a batch with these σ."""
    levels = [stage_noise_levels(s, setup.num_stages, setup.stage_schedule, setup.start_ratio,
                                 setup.beta_schedule) for s in sigmas]
    return np.stack([t for t, _ in levels]), np.stack([s for _, s in levels])


def run_guided(setup: StoppingSetup, profile, seed: int, cache: Cache | None = None,
               progress: bool = True) -> GuidedRun:
    """Fit DIP with progressive targets to every (photograph, σ) pair (one batched fit,
    same network and seed as :func:`run_reference`) and stop each by the guided rule.
    The clean image only feeds the logged PSNR, never the rule. Cached."""
    setup.check()
    cfg = dip.DIPConfig.from_profile(profile)
    clean, noisy, sigmas = make_batch(setup, seed)
    timesteps, stds = guided_schedule(setup, sigmas)

    def compute():
        ctl = ProgressiveTargets(noisy, sigmas, stds, setup.stage_iterations, seed)
        res = dip.fit(dip.Degradation("denoise", noisy), cfg,
                      setup.num_stages * setup.stage_iterations, clean=clean, seed=seed,
                      callback=ctl, target=ctl.target, progress=progress,
                      desc=f"guided DIP, seed {seed}", **_fit_kwargs(profile))
        hist = {k: np.stack(v) for k, v in ctl.rows.items()}
        steps = len(hist["residual"])
        hist["psnr_clean"] = np.asarray(res.history["psnr_clean_ema"]).reshape(steps, -1)
        tensors = {"outputs": ctl.outputs, "stage_outputs": ctl.stage_outputs,
                   "stage_residual": torch.from_numpy(ctl.stage_residual),
                   "stage_absorbed": torch.from_numpy(ctl.stage_absorbed),
                   **{f"history_{k}": torch.from_numpy(v).float() for k, v in hist.items()}}
        meta = {"stops": [dataclasses.astuple(s) for s in ctl.stops],
                "flops_per_iteration": res.compute.flops / res.compute.dip_iters / len(sigmas),
                "wall_s": res.compute.wall_s}
        return tensors, meta

    tensors, meta = (cache or Cache()).get_or_compute(
        "es_guided", _cache_config("guided", setup, cfg, profile, seed), compute)
    return GuidedRun(seed, [Stop(*s) for s in meta["stops"]], tensors["outputs"],
                     tensors["stage_outputs"], tensors["stage_residual"].double().numpy(),
                     tensors["stage_absorbed"].double().numpy(), stds, timesteps,
                     _histories(tensors),
                     meta["flops_per_iteration"], meta["wall_s"])


def run_all(setup: StoppingSetup, profile, cache: Cache | None = None
            ) -> list[tuple[ReferenceRun, GuidedRun]]:
    """The plain and the guided run of every seed (cached), with a progress bar."""
    return [(run_reference(setup, profile, seed, cache), run_guided(setup, profile, seed, cache))
            for seed in tqdm(setup.seeds, desc="seeds")]


# --------------------------------------------------------------------------- evaluation
def evaluate(setup: StoppingSetup, reference: ReferenceRun, guided: GuidedRun) -> list[dict]:
    """One record per (photograph, σ, criterion) of a seed: the stop, the output's PSNR and
    SSIM against the clean image, the gap to the oracle and the compute saved against the
    fixed count."""
    stops = dict(reference.stops, guided=guided.stops)
    outputs = dict(reference.outputs, guided=guided.outputs)
    flops = {c: reference.flops_per_iteration for c in CRITERIA}
    flops["guided"] = guided.flops_per_iteration
    fixed = setup.fixed_iterations
    quality = {c: (psnr(outputs[c], reference.clean).double().numpy(),
                   ssim(outputs[c], reference.clean).double().numpy()) for c in CRITERIA}
    records = []
    for n, (photo, sigma) in enumerate(setup.pairs):
        for c in CRITERIA:
            s = stops[c][n]
            records.append({
                "photo": photo, "sigma": sigma, "seed": reference.seed, "criterion": c,
                "iteration": s.iteration, "iterations_run": s.iterations_run, "fired": s.fired,
                "psnr": float(quality[c][0][n]), "ssim": float(quality[c][1][n]),
                "gap_db": float(quality["oracle"][0][n] - quality[c][0][n]),
                "compute_saved": (fixed - s.iterations_run) / fixed,
                "gflops": s.iterations_run * flops[c] / 1e9})
    return records


def es_wmv_sensitivity(setup: StoppingSetup, references: list[ReferenceRun]) -> dict:
    """ES-WMV's gap to the oracle for every recorded window × patience (P × 0.5, 1, 2), read
    from the plain runs' histories: is its showing an artefact of the scaled W and P?"""
    out = {}
    for w in setup.wmv_windows:
        key = "variance" if w == setup.window else f"variance_w{w}"
        for p in setup.wmv_patiences:
            gaps, runs = [], []
            for ref in references:
                curve = ref.history["psnr_clean"]
                for n in range(curve.shape[1]):
                    stop = es_wmv_stop(ref.history[key][:, n], p)
                    gaps.append(curve[:, n].max() - curve[stop.iteration - 1, n])
                    runs.append(stop.iterations_run)
            out[f"W={w},P={p}"] = {"window": w, "patience": p, "gap_db": _gap_stats(gaps),
                                   "iterations_run": spread(runs)}
    return out


def sensitivity_table(sensitivity: dict) -> str:
    """A Markdown table of ES-WMV's mean (worst) gap per window (rows) and patience (columns)."""
    windows = sorted({v["window"] for v in sensitivity.values()})
    patiences = sorted({v["patience"] for v in sensitivity.values()})
    lines = ["| window W | " + " | ".join(f"P = {p}" for p in patiences) + " |",
             "|---|" + "---|" * len(patiences)]
    for w in windows:
        cells = [sensitivity[f"W={w},P={p}"]["gap_db"] for p in patiences]
        lines.append(f"| {w} | " + " | ".join(f"{c['mean']:.2f} (worst {c['worst']:.2f})"
                                             for c in cells) + " |")
    return "\n".join(lines)


def sensitivity_markdown(sensitivity: dict, summary: dict, setup: StoppingSetup) -> str:
    """ES-WMV's best grid setting (picked with the clean image: hindsight) against the guided
    rule, and how its gap moves with the window at the scaled patience, every number read
    from the results."""
    best = min(sensitivity.values(), key=lambda v: v["gap_db"]["mean"])
    g = summary["guided"]["gap_db"]
    p = setup.patience
    by_window = sorted((v["window"], v["gap_db"]["mean"]) for v in sensitivity.values()
                       if v["patience"] == p)
    verdict = ("still above" if g["mean"] < best["gap_db"]["mean"] else "below or equal to")
    return (f"**ES-WMV sensitivity.** Its best setting in the grid (W = {best['window']}, "
            f"P = {best['patience']}, picked with the clean image, i.e. with hindsight) has a mean "
            f"gap of {best['gap_db']['mean']:.2f} dB (worst {best['gap_db']['worst']:.2f}), "
            f"{verdict} the guided rule's {g['mean']:.2f} dB (worst {g['worst']:.2f}). At "
            f"P = {p} its mean gap is " + ", ".join(f"{m:.2f} dB at W = {w}" for w, m in by_window)
            + ".")


def _gap_stats(gaps) -> dict:
    g = np.asarray(gaps, dtype=float)
    return {"mean": float(g.mean()), "median": float(np.median(g)), "worst": float(g.max()),
            "std": float(g.std(ddof=1)) if len(g) > 1 else 0.0, "n": int(len(g)),
            "ci95": spread(g)["ci95"]}


def summarize(records: list[dict], setup: StoppingSetup) -> dict:
    """Per criterion: detected iteration, PSNR/SSIM, the gap to the oracle (mean, median,
    worst, and per σ), compute saved against the fixed count (iterations and GFLOPs)."""
    out = {}
    for c in CRITERIA:
        rows = [r for r in records if r["criterion"] == c]
        out[c] = {
            "iteration": spread([r["iteration"] for r in rows]),
            "iterations_run": spread([r["iterations_run"] for r in rows]),
            "psnr": spread([r["psnr"] for r in rows]), "ssim": spread([r["ssim"] for r in rows]),
            "gap_db": _gap_stats([r["gap_db"] for r in rows]),
            "gap_db_by_sigma": {str(s): _gap_stats([r["gap_db"] for r in rows if r["sigma"] == s])
                                for s in setup.sigmas},
            "compute_saved": spread([r["compute_saved"] for r in rows]),
            "gflops": spread([r["gflops"] for r in rows]),
            "fired_fraction": float(np.mean([r["fired"] for r in rows])),
        }
    return out


def quality_bar(summary: dict, max_gap_db: float = 1.0) -> dict:
    """The chapter's quality bar: the guided mean gap is ≤ ``max_gap_db`` and no worse than
    ES-WMV's."""
    g, e = summary["guided"]["gap_db"]["mean"], summary["es_wmv"]["gap_db"]["mean"]
    return {"guided_mean_gap_db": g, "es_wmv_mean_gap_db": e, "max_gap_db": max_gap_db,
            "guided_within_max_gap": bool(g <= max_gap_db),
            "guided_no_worse_than_es_wmv": bool(g <= e), "guided_minus_es_wmv_db": g - e}


def run_compute(setup: StoppingSetup, runs) -> dict:
    """Compute each kind of run took: DIP iterations, GFLOPs and wall seconds, summed over
    seeds and images (a batched fit's wall time covers all its images)."""
    out = {}
    for kind in ("reference", "guided"):
        total = Compute()
        for ref, guided in runs:
            run = ref if kind == "reference" else guided
            iters = (setup.budget if kind == "reference" else len(guided.history["residual"]))
            iters *= len(setup.pairs)
            total = total + Compute(flops=iters * run.flops_per_iteration, dip_iters=iters,
                                    wall_s=run.wall_s)
        out[kind] = total.to_dict()
    return out


def save_stop_arrays(out_dir, setup: StoppingSetup, runs) -> list[str]:
    """``stop_<criterion>_<image>_<sigma>.npy`` (one image per seed; ``<image>`` is the
    photograph's name or its file's stem), plus ``clean_<image>``
    and ``noisy_<image>_<sigma>`` (one per seed); returns the names written."""
    names = []
    for n, (photo, sigma) in enumerate(setup.pairs):
        photo = photo_name(photo)
        tag = f"{photo}_{sigma:g}"
        for c in CRITERIA:
            outs = [(g.outputs if c == "guided" else r.outputs[c])[n] for r, g in runs]
            save_array(out_dir, f"stop_{c}_{tag}", torch.stack(outs))
            names.append(f"stop_{c}_{tag}")
        save_array(out_dir, f"noisy_{tag}", torch.stack([r.noisy[n] for r, _ in runs]))
        names.append(f"noisy_{tag}")
        if f"clean_{photo}" not in names:
            save_array(out_dir, f"clean_{photo}", runs[0][0].clean[n:n + 1])
            names.append(f"clean_{photo}")
    return names


def build_metrics(profile, setup: StoppingSetup, runs, records, summary,
                  settings: dict | None = None) -> dict:
    """Everything the chapter reports, for ``metrics.json``; ``settings`` (from
    :func:`make_setup`) records where each tunable setting came from (``settings_source``),
    and ``photo_sets`` the set (eval, tune, prior_train) of each photograph."""
    return {"profile": profile.name, "notebook": NOTEBOOK, "seeds": list(setup.seeds),
            "setup": setup.to_dict(), "photo_sets": photo_roles(profile, setup.photos),
            "settings_source": settings or {},
            "interval": interval_note(summary),
            "network": dataclasses.asdict(dip.DIPConfig.from_profile(profile)),
            "fit": _fit_kwargs(profile), "methods": summary, "quality_bar": quality_bar(summary),
            "es_wmv_sensitivity": es_wmv_sensitivity(setup, [r for r, _ in runs]),
            "compute": run_compute(setup, runs),
            "flops_per_iteration": runs[0][0].flops_per_iteration, "runs": records,
            "output": "EMA of the DIP outputs at each criterion's stop"}


def sigma_table(summary: dict, setup: StoppingSetup) -> str:
    """A Markdown table of the mean (and worst) gap to the oracle per criterion and σ."""
    sig = [str(s) for s in setup.sigmas]
    head = ("| criterion | " + " | ".join(f"σ = {float(s):g}" for s in sig) + " |\n|---|"
            + "---|" * len(sig) + "\n")
    cell = "{mean:.2f} (worst {worst:.2f})"
    rows = [f"| {LABELS[c]} | " + " | ".join(cell.format(**summary[c]["gap_db_by_sigma"][s])
                                            for s in sig) + " |"
            for c in CRITERIA if c != "oracle"]
    return head + "\n".join(rows)


LABELS = {"guided": "guided (ours)", "es_wmv": "ES-WMV", "discrepancy": "discrepancy",
          "fixed": "fixed (profile)", "ulyanov": "fixed (Ulyanov, scaled)",
          "oracle": "oracle (upper bound)"}


def _ci(s: dict) -> float:
    """The 95 % t-interval's half-width of a :func:`spread` dict (its std for an old one)."""
    return s.get("ci95", s["std"])


def interval_note(summary: dict) -> str:
    """What ± means in the chapter's tables, with n read from the results."""
    n = summary["guided"]["psnr"]["n"]
    return (f"± is the half-width of the 95 % t-interval of the mean over the n = {n} runs "
            f"(photographs × σ × seeds, pooled: it mixes the spread between photographs and "
            f"noise levels with that between seeds).")


def results_table(summary: dict) -> str:
    """A Markdown table of the summary, one row per criterion (± the 95 % t-interval over
    photographs × σ × seeds, stated under the table with its n)."""
    head = ("| criterion | stop iteration | iterations run | PSNR (dB) | SSIM | gap mean | "
            "gap median | gap worst | compute saved |\n|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for c in CRITERIA:
        s = summary[c]
        rows.append(f"| {LABELS[c]} | {s['iteration']['mean']:.0f} ± {_ci(s['iteration']):.0f} "
                    f"| {s['iterations_run']['mean']:.0f} | {s['psnr']['mean']:.2f} ± "
                    f"{_ci(s['psnr']):.2f} | {s['ssim']['mean']:.3f} | "
                    f"{s['gap_db']['mean']:.2f} | {s['gap_db']['median']:.2f} | "
                    f"{s['gap_db']['worst']:.2f} | {100 * s['compute_saved']['mean']:.0f}% |")
    return head + "\n".join(rows) + "\n\n" + interval_note(summary)


def verdict_markdown(summary: dict, bar: dict) -> str:
    """The chapter's verdict, every number read from the results."""
    g, e = summary["guided"], summary["es_wmv"]
    lines = [f"**Guided rule:** mean gap to the oracle {g['gap_db']['mean']:.2f} dB (median "
             f"{g['gap_db']['median']:.2f}, worst {g['gap_db']['worst']:.2f}) with "
             f"{100 * g['compute_saved']['mean']:.0f}% of the fixed count's iterations saved; "
             f"ES-WMV: {e['gap_db']['mean']:.2f} dB (median {e['gap_db']['median']:.2f}, worst "
             f"{e['gap_db']['worst']:.2f}); discrepancy: "
             f"{summary['discrepancy']['gap_db']['mean']:.2f} dB."]
    if bar["guided_within_max_gap"]:
        lines.append(f"The guided mean gap is within the {bar['max_gap_db']:.1f} dB bar.")
    else:
        lines.append(f"The guided mean gap **misses** the {bar['max_gap_db']:.1f} dB bar by "
                     f"{g['gap_db']['mean'] - bar['max_gap_db']:.2f} dB.")
    if bar["guided_no_worse_than_es_wmv"]:
        lines.append(f"It is {-bar['guided_minus_es_wmv_db']:.2f} dB closer to the oracle than "
                     f"ES-WMV on average.")
    else:
        lines.append(f"It is **worse than ES-WMV** by {bar['guided_minus_es_wmv_db']:.2f} dB on "
                     f"average.")
    return " ".join(lines)


# --------------------------------------------------------------------------- figures
COLORS = {"guided": "C3", "es_wmv": "C0", "discrepancy": "C2", "fixed": "0.4", "ulyanov": "0.7",
          "oracle": "k"}


def plot_stage_levels(setup: StoppingSetup, sigma: float, ax=None):
    """Extra noise std (0-255) per stage for the three stage schedules at σ."""
    ax = ax or plt.subplots(figsize=(4.2, 3))[1]
    for sched in STAGE_SCHEDULES:
        _, std = stage_noise_levels(sigma, setup.num_stages, sched, setup.start_ratio,
                                    setup.beta_schedule)
        ax.plot(np.arange(setup.num_stages) + 1, 255 * std, "o-", ms=3,
                label=sched + (" (used)" if sched == setup.stage_schedule else ""))
    ax.set(xlabel="stage", ylabel="extra noise std (0-255)",
           title=f"stage targets at σ = {sigma:g}")
    ax.legend(fontsize=8)
    return ax


def plot_stage_gallery(guided: GuidedRun, noisy: torch.Tensor, n: int, stage_iterations: int,
                       stages=None):
    """Stage targets (top) and the EMA output at each stage end (bottom) for image ``n``, for
    the stages the batched run reached; the guided stop is marked."""
    reached = len(guided.history["residual"]) // stage_iterations
    k_all = list(range(reached)) if stages is None else list(stages)
    ctl = ProgressiveTargets(noisy, np.ones(len(noisy)), guided.noise_stds,
                             stage_iterations, guided.seed)
    fig, axes = plt.subplots(2, len(k_all), figsize=(1.3 * len(k_all), 3))
    for j, k in enumerate(k_all):
        axes[0, j].imshow(to_hwc(ctl.stage_target(k)[n]), cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"stage {k + 1}\n+{255 * guided.noise_stds[n, k]:.0f}/255", fontsize=7)
        axes[1, j].imshow(to_hwc(guided.stage_outputs[k, n]), cmap="gray", vmin=0, vmax=1)
        stop = (k + 1) * stage_iterations == guided.stops[n].iteration
        axes[1, j].set_title(f"it {(k + 1) * stage_iterations}" + (" (stop)" if stop else ""),
                             fontsize=7, color=COLORS["guided"] if stop else "k")
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle("stage targets (top) and DIP outputs at each stage end (bottom)", fontsize=9,
                 y=1.04)
    return fig


def plot_stage_monitor(guided: GuidedRun, sigma: float, n: int, stage_iterations: int, axes=None):
    """PSNR and SSIM of the output against the current stage's target, with each stage's
    noise floor (the PSNR of the clean image against that target)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3))
    it = np.arange(1, len(guided.history["psnr_target"]) + 1)
    stage = np.minimum((it - 1) // stage_iterations, guided.noise_stds.shape[1] - 1)
    total = (sigma / 255.0) ** 2 + guided.noise_stds[n, stage] ** 2
    axes[0].plot(it, guided.history["psnr_target"][:, n], label="output vs stage target")
    axes[0].plot(it, -10 * np.log10(total), "k--", lw=1, label="stage noise floor")
    axes[0].set(xlabel="iteration", ylabel="PSNR (dB)")
    axes[1].plot(it, guided.history["ssim_target"][:, n], color="C1")
    axes[1].set(xlabel="iteration", ylabel="SSIM vs stage target")
    for ax in axes:
        for k in range(1, int(np.ceil(len(it) / stage_iterations))):
            ax.axvline(k * stage_iterations, color="0.85", lw=0.6, zorder=0)
        ax.axvline(guided.stops[n].iteration, color=COLORS["guided"], lw=1.2)
    axes[0].legend(fontsize=7)
    return axes


def plot_rule_evidence(guided: GuidedRun, sigmas, indices, labels, stage_iterations: int):
    """Both sides of the guided rule per stage — the drop of the fit error to the
    observation and 2σ² × the absorbed noise share (both ÷ σ²) — with the clean PSNR at each
    stage end (evaluation only) and the stop marked."""
    fig, axes = plt.subplots(1, len(indices), figsize=(3.3 * len(indices), 3), squeeze=False)
    for ax, n, lab in zip(axes[0], indices, labels):
        s2 = (sigmas[n] / 255.0) ** 2
        k = np.arange(2, guided.stage_residual.shape[0] + 1)
        drop = (guided.stage_residual[:-1, n] - guided.stage_residual[1:, n]) / s2
        ax.semilogy(k, np.clip(drop, 1e-3, None), "o-", ms=3, label="fit-error drop / σ²")
        ax.semilogy(k, np.clip(2 * guided.stage_absorbed[1:, n], 1e-3, None), "s-", ms=3,
                    label="2 × absorbed share")
        ax.axvline(guided.stops[n].iteration / stage_iterations, color=COLORS["guided"], lw=1.2)
        ax.set(xlabel="stage", title=lab)
        twin = ax.twinx()
        ends = np.arange(1, guided.stage_residual.shape[0] + 1) * stage_iterations
        ends = ends[ends <= len(guided.history["psnr_clean"])]
        twin.plot(ends / stage_iterations, guided.history["psnr_clean"][ends - 1, n], "k:", lw=1)
        twin.set_ylabel("clean PSNR (dB, not used)", fontsize=7)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_stop_curves(reference: ReferenceRun, guided: GuidedRun, n: int, title: str, ax=None):
    """Clean PSNR of the plain DIP (EMA) output per iteration with each baseline's stop
    marked, the guided run's own curve and stop, and the ES-WMV variance (right axis)."""
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    curve = reference.history["psnr_clean"][:, n]
    ax.plot(np.arange(1, len(curve) + 1), curve, color="C7", lw=1.2, label="plain DIP")
    g = guided.history["psnr_clean"][:, n]
    ax.plot(np.arange(1, len(g) + 1), g, color=COLORS["guided"], lw=1, alpha=0.7,
            label="guided run")
    for c, stops in reference.stops.items():
        s = stops[n].iteration
        hollow = c == "oracle"
        ax.plot(s, curve[s - 1], "o", color=COLORS[c], ms=10 if hollow else 6, label=LABELS[c],
                mfc="none" if hollow else None, zorder=3)
    s = guided.stops[n].iteration
    ax.plot(s, g[s - 1], "*", color=COLORS["guided"], ms=11, label=LABELS["guided"])
    ax.set(xlabel="iteration", ylabel="clean PSNR (dB)", title=title)
    twin = ax.twinx()
    twin.semilogy(np.arange(1, len(curve) + 1), reference.history["variance"][:, n],
                  color=COLORS["es_wmv"], lw=0.6, alpha=0.5)
    twin.set_ylabel("ES-WMV variance", fontsize=7, color=COLORS["es_wmv"])
    return ax


def plot_gaps(records: list[dict], ax=None):
    """Gap to the oracle per criterion: every run as a dot, the mean as a bar."""
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    for j, c in enumerate([c for c in CRITERIA if c != "oracle"]):
        gaps = np.array([r["gap_db"] for r in records if r["criterion"] == c])
        ax.bar(j, gaps.mean(), color=COLORS[c], alpha=0.35)
        jitter = np.random.default_rng(j).uniform(-0.25, 0.25, len(gaps))
        ax.plot(j + jitter, gaps, ".", color=COLORS[c], ms=4)
    names = [LABELS[c] for c in CRITERIA if c != "oracle"]
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("gap to oracle PSNR (dB)")
    return ax


def compute_markdown(summary: dict, metrics: dict) -> str:
    """Compute used and saved, in words, every number read from the results."""
    g, e, f = summary["guided"], summary["es_wmv"], summary["fixed"]
    c = metrics["compute"]
    return (f"**Compute.** The guided scheme ran {g['iterations_run']['mean']:.0f} ± "
            f"{_ci(g['iterations_run']):.0f} (95 % t-interval) DIP iterations per image "
            f"({100 * g['compute_saved']['mean']:.0f}% fewer than the fixed count of "
            f"{f['iterations_run']['mean']:.0f}; {g['gflops']['mean']:.2f} vs "
            f"{f['gflops']['mean']:.2f} GFLOPs); ES-WMV ran {e['iterations_run']['mean']:.0f} "
            f"({100 * e['compute_saved']['mean']:.0f}% saved), the discrepancy principle "
            f"{summary['discrepancy']['iterations_run']['mean']:.0f}. Wall time of the batched "
            f"fits on this machine: plain DIP {c['reference']['wall_s']:.0f} s for "
            f"{c['reference']['dip_iters']} image-iterations, guided {c['guided']['wall_s']:.0f} s "
            f"for {c['guided']['dip_iters']} (a batch runs until its last image stops).")
