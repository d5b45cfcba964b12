"""Chapter 04's study: when to stop DIP without the clean image, every criterion on the same
networks, seeds and images.

The criteria are pure functions in :mod:`dipddpm_lib.stopping`; the guided fit (progressive
targets) is :mod:`dipddpm_lib.methods.guided_dip`; the figures are
:mod:`dipddpm_lib.figures.early_stopping`. This module holds the set-up read from a profile,
the cached runs (the plain DIP run every plain-run criterion reads, with its online recorder;
the guided run; the SURE run; the ES authors' regime; the σ lookup's calibration on the tune
photos), and the evaluation: one record per (photograph, σ, seed, criterion), summaries with
95 % intervals, and tables.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import dip
from ..cache import Cache
from ..compute import Compute
from ..data import load_photo, photo_name, photo_roles
from ..ddpm import BETA_SCHEDULES
from ..errors import check_choice, check_positive_int, check_sigma
from ..metrics import psnr, ssim
from ..profiles import check_device, get_profile
from ..results import paired_difference, save_array, spread

#: Every criterion, in the tables' order. ``es_wmv``, ``discrepancy``, ``fixed``,
#: ``ulyanov``, ``oracle`` (and, when given, ``sigma_lookup`` and ``prior_distance``) read
#: the plain DIP run and return its EMA output; ``es_wmv_raw``, ``es_emv`` and
#: ``oracle_raw`` read the same run in the ES authors' convention (raw outputs);
#: ``guided`` and ``sure`` run their own fits.
CRITERIA = ("guided", "prior_distance", "sure", "sigma_lookup", "discrepancy", "es_wmv_raw",
            "es_emv", "es_wmv", "fixed", "ulyanov", "oracle", "oracle_raw")
#: The criteria that return a raw (not averaged) output, scored against the raw peak.
RAW = ("es_wmv_raw", "es_emv", "oracle_raw", "sure")
#: The criteria that read σ (the oracles read the clean image instead).
NEEDS_SIGMA = ("guided", "prior_distance", "sure", "sigma_lookup", "discrepancy")
ORACLES = ("oracle", "oracle_raw")
#: ES-EMV's smoothing weight (the authors' ``alpha``).
EMV_ALPHA = 0.1
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
from ..stopping import (  # noqa: E402
    ExpMovingVariance, MovingVariance, SigmaLookup, Stop, discrepancy_stop, es_emv_stop,
    es_wmv_stop, fixed_stop, oracle_stop, prior_distance_stop, sure_mse, sure_stop)
from ..methods.guided_dip import ProgressiveTargets, stage_noise_levels  # noqa: E402


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
        from ..data import check_photos

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
    from ..sweep import tuned_overrides

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
    from ..sweep import settings_markdown

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
    """``dip.fit`` callback on a plain DIP run: records what each criterion reads (fit error
    to the observation, ES-WMV's and ES-EMV's variances of the raw outputs, the distance to a
    learned prior's estimate, clean PSNR of the EMA and raw outputs for the two oracles) and
    keeps each criterion's output (EMA, or raw for :data:`RAW`) at its current candidate
    stop, so no full trajectory is stored.

    ``lookup`` (a :class:`~dipddpm_lib.stopping.SigmaLookup` fitted on other photographs)
    adds ``sigma_lookup``; ``prior_x0`` (N×C×H×W, a trained denoiser's estimate of each clean
    image from its observation) adds ``prior_distance``. ``until_fired`` (criterion names)
    ends the fit once each of them has fired on every image (the ES authors' runs end there);
    criteria that have not fired by then report ``fired = False``."""

    def __init__(self, noisy: torch.Tensor, clean: torch.Tensor, sigmas, setup: StoppingSetup,
                 lookup: SigmaLookup | None = None, prior_x0: torch.Tensor | None = None,
                 until_fired: tuple[str, ...] = ()):
        self.noisy, self.clean, self.sigmas, self.setup = noisy, clean, np.asarray(sigmas), setup
        self.lookup, self.prior_x0 = lookup, prior_x0
        if prior_x0 is not None and tuple(prior_x0.shape) != tuple(noisy.shape):
            raise ValueError(f"prior_x0 {tuple(prior_x0.shape)} must match the observations "
                             f"{tuple(noisy.shape)}")
        self.variance_of = {w: MovingVariance(w) for w in setup.wmv_windows}
        self.emv = ExpMovingVariance(EMV_ALPHA)
        keys = ["residual", "variance", "emv", "psnr_clean", "psnr_clean_raw"]
        keys += [f"variance_w{w}" for w in setup.wmv_windows if w != setup.window]
        keys += ["distance"] if prior_x0 is not None else []
        self.rows = {k: np.full((setup.budget, len(self.sigmas)), np.nan) for k in keys}
        self.length = 0
        self.criteria = self.criteria_for(lookup is not None, prior_x0 is not None)
        unknown = sorted(set(until_fired) - set(self.criteria))
        if unknown:
            raise ValueError(f"until_fired names criteria this run does not have: {unknown}")
        self.until_fired = tuple(until_fired)
        self.outputs = {c: torch.zeros_like(clean) for c in self.criteria}

    @staticmethod
    def criteria_for(lookup: bool, prior: bool) -> list[str]:
        """The criteria a plain run reports, in :data:`CRITERIA`'s order."""
        skip = {"guided", "sure"} | ({"sigma_lookup"} if not lookup else set()) | \
            ({"prior_distance"} if not prior else set())
        return [c for c in CRITERIA if c not in skip]

    def stops_for(self, n: int) -> dict[str, Stop]:
        """Each criterion's stop for image ``n`` on the history so far."""
        h = {k: v[:self.length, n] for k, v in self.rows.items()}
        wmv = es_wmv_stop(h["variance"], self.setup.patience)
        out = {"oracle": oracle_stop(h["psnr_clean"]),
               "oracle_raw": oracle_stop(h["psnr_clean_raw"]),
               "fixed": fixed_stop(self.length, self.setup.fixed_iterations),
               "ulyanov": fixed_stop(self.length, self.setup.ulyanov_iterations),
               "discrepancy": discrepancy_stop(h["residual"], self.sigmas[n]),
               "es_wmv": wmv, "es_wmv_raw": wmv,
               "es_emv": es_emv_stop(h["emv"], self.setup.patience)}
        if self.lookup is not None:
            out["sigma_lookup"] = self.lookup.stop(self.sigmas[n], self.length)
        if self.prior_x0 is not None:
            out["prior_distance"] = prior_distance_stop(h["distance"], self.setup.patience)
        return out

    def __call__(self, i: int, out: torch.Tensor, out_ema: torch.Tensor, hist) -> bool:
        ema, raw = out_ema.detach().cpu(), out.detach().cpu()
        self.rows["residual"][i - 1] = (ema - self.noisy).pow(2).flatten(1).mean(1).double().numpy()
        for w, mv in self.variance_of.items():
            key = "variance" if w == self.setup.window else f"variance_w{w}"
            self.rows[key][i - 1] = mv.push(raw)
        self.rows["emv"][i - 1] = self.emv.push(raw)
        if self.prior_x0 is not None:
            self.rows["distance"][i - 1] = (ema - self.prior_x0).pow(2).flatten(1).mean(1).double().numpy()
        self.rows["psnr_clean"][i - 1] = psnr(ema, self.clean).double().numpy()
        self.rows["psnr_clean_raw"][i - 1] = psnr(raw, self.clean).double().numpy()
        self.length = i
        done = True
        for n in range(len(self.sigmas)):
            stops = self.stops_for(n)
            for name, stop in stops.items():
                if stop.iteration == i:
                    self.outputs[name][n] = (raw if name in RAW else ema)[n]
            done &= all(stops[c].fired for c in self.until_fired)
        return bool(self.until_fired) and done


@dataclass
class ReferenceRun:
    """One plain DIP trajectory per (photograph, σ) for one seed, read by every baseline."""

    seed: int
    clean: torch.Tensor
    noisy: torch.Tensor
    sigmas: np.ndarray
    history: dict[str, np.ndarray]  # residual, variance, emv, psnr_clean(_raw), …: iterations × images
    stops: dict[str, list[Stop]]
    outputs: dict[str, torch.Tensor]
    flops_per_iteration: float
    wall_s: float


def _digest(t: torch.Tensor | None) -> str | None:
    import hashlib

    return None if t is None else hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


def run_reference(setup: StoppingSetup, profile, seed: int, cache: Cache | None = None,
                  progress: bool = True, lookup: SigmaLookup | None = None,
                  prior_x0: torch.Tensor | None = None, cfg: dip.DIPConfig | None = None,
                  until_fired: tuple[str, ...] = (), kind: str = "reference",
                  fit_kwargs: dict | None = None, prior_key: str | None = None) -> ReferenceRun:
    """Fit plain DIP to every (photograph, σ) pair for ``setup.budget`` iterations (one
    batched fit; ``cfg``: the profile's net unless given) and apply every criterion to the
    history (:class:`ReferenceRecorder`: ``lookup``, ``prior_x0`` and ``until_fired``).
    ``fit_kwargs`` replace the profile's Adam and EMA settings. Cached; the key holds the
    lookup's counts and ``prior_key`` (default: a digest of ``prior_x0``)."""
    setup.check()
    cfg = cfg or dip.DIPConfig.from_profile(profile)
    fit_kwargs = fit_kwargs or _fit_kwargs(profile)
    clean, noisy, sigmas = make_batch(setup, seed)
    names = ReferenceRecorder.criteria_for(lookup is not None, prior_x0 is not None)

    def compute():
        rec = ReferenceRecorder(noisy, clean, sigmas, setup, lookup, prior_x0, until_fired)
        res = dip.fit(dip.Degradation("denoise", noisy), cfg, setup.budget, seed=seed,
                      callback=rec, progress=progress, desc=f"plain DIP, seed {seed}",
                      **fit_kwargs)
        hist = {k: torch.from_numpy(v[:rec.length]).float() for k, v in rec.rows.items()}
        stops = {c: [dataclasses.astuple(rec.stops_for(n)[c]) for n in range(len(sigmas))]
                 for c in names}
        tensors = {**{f"history_{k}": v for k, v in hist.items()},
                   **{f"output_{c}": rec.outputs[c] for c in names}}
        meta = {"stops": stops, "flops_per_iteration": res.compute.flops / res.compute.dip_iters
                / len(sigmas), "wall_s": res.compute.wall_s}
        return tensors, meta

    key = _cache_config("reference", setup, cfg, profile, seed) | {"fit": fit_kwargs}
    key.update(lookup=None if lookup is None else [lookup.predict(s) for s in setup.sigmas],
               prior_x0=prior_key or _digest(prior_x0), until_fired=list(until_fired))
    tensors, meta = (cache or Cache()).get_or_compute(f"es_{kind}", key, compute)
    return ReferenceRun(seed, clean, noisy, sigmas, _histories(tensors),
                        {c: [Stop(*s) for s in meta["stops"][c]] for c in names},
                        {c: tensors[f"output_{c}"] for c in names},
                        meta["flops_per_iteration"], meta["wall_s"])


# --------------------------------------------------------------------------- the ES authors' regime
def paper_setup(setup: StoppingSetup, profile) -> StoppingSetup:
    """ES-WMV and ES-EMV as their authors run them: the profile's ``es_paper_*`` photographs,
    size and σ, the first seed, W = 100 and P = 1000 (× ``es_paper_regime_scale``, 1 in
    quick and full) and Ulyanov's 3000 iterations as the budget."""
    from ..data import check_photos

    check_photos(profile.es_paper_photos, f"es_paper_photos of profile {profile.name!r}",
                 min_size=profile.es_paper_photo_size)
    k = profile.es_paper_regime_scale
    if not 0 < k <= 10:
        raise ValueError(f"es_paper_regime_scale must be in (0, 10], got {k}")
    paper = dataclasses.replace(
        setup, photos=tuple(profile.es_paper_photos), photo_size=profile.es_paper_photo_size,
        sigmas=tuple(float(x) for x in profile.es_paper_sigmas), seeds=setup.seeds[:1],
        fixed_iterations=max(1, round(PAPER_ITERATIONS * k)), paper_scale=k,
        wmv_window_factors=(1.0,))
    paper.check()
    return paper


def paper_net(profile) -> dip.DIPConfig:
    """The paper-regime run's network: Ulyanov et al.'s skip net (:class:`~dipddpm_lib.dip.DIPConfig`'s
    defaults) at the profile's ``es_paper_dip_scales`` × ``es_paper_dip_channels`` (the ES
    authors use 5 × 128); nothing in it is tuned."""
    return dip.DIPConfig(scales=profile.es_paper_dip_scales, channels=profile.es_paper_dip_channels)


#: Ulyanov et al.'s (and the ES authors') Adam learning rate and input perturbation.
PAPER_LR, PAPER_REG_NOISE = 0.01, 1.0 / 30.0


def paper_fit_kwargs(profile) -> dict:
    """The paper-regime fit's settings: the authors' learning rate and input perturbation
    (never the tuned ones), the profile's EMA and device."""
    return _fit_kwargs(profile) | {"lr": PAPER_LR, "reg_noise_std": PAPER_REG_NOISE}


def _weights_digest(model) -> str:
    return _digest(torch.cat([p.detach().flatten().cpu().float() for p in model.unet.parameters()]))


def run_paper_regime(setup: StoppingSetup, profile, cache: Cache | None = None, prior=None,
                     progress: bool = True) -> SeedRuns:
    """One plain DIP run in the ES authors' regime (:func:`paper_setup`, :func:`paper_net`,
    :func:`paper_fit_kwargs`), read by every plain-run criterion (the learned-prior rule too
    when the photo DDPM ``prior`` is given); it ends when ES-WMV and ES-EMV have both fired on
    every image (the authors' runs end at detection) or at the budget. Nothing in it depends
    on the tuned settings, so the report build runs it as its own job
    (``python -m dipddpm_lib.experiments.early_stopping``); the σ lookup is read off its
    history afterwards (:func:`lookup_records`)."""
    paper = paper_setup(setup, profile)
    net = paper_net(profile)
    if paper.photo_size % net.min_size:
        raise ValueError(f"es_paper_photo_size {paper.photo_size} is not a multiple of "
                         f"{net.min_size}, which the paper-regime net needs")
    x0 = key = None
    if prior is not None:
        _, noisy, sig = make_batch(paper, paper.seeds[0])
        x0, key = prior_estimates(prior, noisy, sig)[0], _weights_digest(prior)
    return SeedRuns(run_reference(paper, profile, paper.seeds[0], cache, progress, prior_x0=x0,
                                  cfg=net, until_fired=("es_wmv", "es_emv"), kind="paper",
                                  fit_kwargs=paper_fit_kwargs(profile), prior_key=key))


def lookup_records(setup: StoppingSetup, run: SeedRuns, lookup: SigmaLookup) -> list[dict]:
    """``sigma_lookup``'s records on a plain run that did not carry the lookup, read off its
    EMA PSNR history (no output image is kept, so SSIM is NaN): how a count calibrated
    elsewhere does here."""
    ref = run.reference
    curve = ref.history["psnr_clean"]
    out = []
    for n, (photo, sigma) in enumerate(setup.pairs):
        stop = lookup.stop(sigma, len(curve))
        p, peak = float(curve[stop.iteration - 1, n]), float(np.nanmax(curve[:, n]))
        out.append({"photo": photo, "sigma": sigma, "seed": ref.seed, "criterion": "sigma_lookup",
                    "iteration": stop.iteration, "iterations_run": stop.iterations_run,
                    "fired": stop.fired, "psnr": p, "ssim": float("nan"), "gap_db": peak - p,
                    "own_gap_db": peak - p,
                    "compute_saved": (setup.fixed_iterations - stop.iterations_run) / setup.fixed_iterations,
                    "gflops": stop.iterations_run * ref.flops_per_iteration / 1e9})
    return out


def main(argv=None) -> None:
    """``python -m dipddpm_lib.experiments.early_stopping --profile quick``: run chapter 04's
    ES-authors'-regime fit into the cache (a step of the report build, after the photo prior),
    or say that it is there already."""
    import argparse
    import time

    from ..photo_prior import train_photo_prior

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the profile's)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    prof, setup, _ = make_setup(args.profile, device=args.device)
    run = run_paper_regime(setup, prof, prior=train_photo_prior(prof, progress=False))
    print(f"ES authors' regime ({args.profile}): {len(run.reference.history['residual'])} "
          f"iterations; ready in {time.perf_counter() - start:.0f} s", flush=True)


# --------------------------------------------------------------------------- σ lookup
def tune_setup(setup: StoppingSetup, profile) -> StoppingSetup:
    """The set-up on the profile's tune photographs (first seed): where ``sigma_lookup`` is
    calibrated, never on the photographs the chapter scores."""
    tuned = dataclasses.replace(setup, photos=tuple(profile.tune_photos), seeds=setup.seeds[:1])
    tuned.check()
    return tuned


def calibrate_lookup(setup: StoppingSetup, profile, cache: Cache | None = None,
                     progress: bool = True) -> tuple[SigmaLookup, ReferenceRun]:
    """Fit ``sigma_lookup`` (iterations as a function of σ, for this image size and net) on
    the oracle peaks of plain DIP runs on the tune photographs (:func:`tune_setup`)."""
    tune = tune_setup(setup, profile)
    ref = run_reference(tune, profile, tune.seeds[0], cache, progress)
    peaks = [s.iteration for s in ref.stops["oracle"]]
    return SigmaLookup.fit([s for _, s in tune.pairs], peaks), ref


# --------------------------------------------------------------------------- the learned prior
def prior_estimates(model, noisy: torch.Tensor, sigmas) -> tuple[torch.Tensor, float]:
    """The photo DDPM's one-step estimate x̂0 of each clean image from its observation, at
    that image's t_σ (:func:`dipddpm_lib.photo_prior.denoise_x0`), and the GFLOPs of those
    calls (one per image); clipped to [0, 1]."""
    from ..photo_prior import denoise_x0

    outs, flops = [], 0.0
    for n, s in enumerate(np.asarray(sigmas, dtype=float)):
        x0, c = denoise_x0(model, noisy[n:n + 1], float(s))
        outs.append(x0.detach().cpu().float().clamp(0, 1))
        flops += c.flops
    return torch.cat(outs), flops / 1e9


# --------------------------------------------------------------------------- SURE run
SURE_PROBE_EVERY = 5  # a divergence probe every 5 steps: +2 forward passes per probe


class SureRecorder:
    """``dip.fit`` callback on the SURE run (DIP fed the observation itself, as in Jo et al.'s
    DF-STE): SURE's MSE estimate at each probed step from the fit's logged loss and
    divergence (:func:`~dipddpm_lib.stopping.sure_mse`), :func:`sure_stop` per image; keeps
    the raw output at the candidate stop and the run's own raw peak (``oracle_raw``). The fit
    ends when every image has stopped."""

    def __init__(self, sigmas, patience: int, budget: int):
        self.sigmas, self.patience = np.asarray(sigmas, dtype=float), patience
        self.sure = np.full((budget, len(self.sigmas)), np.nan)
        self.outputs = self.peak = None
        self.length = 0

    def stops_for(self, n: int, psnr_raw: np.ndarray) -> dict[str, Stop]:
        """SURE's stop and the run's own raw peak for image ``n`` on the history so far."""
        return {"sure": sure_stop(self.sure[:self.length, n], self.patience),
                "oracle_raw": oracle_stop(psnr_raw[:self.length, n])}

    def __call__(self, i: int, out: torch.Tensor, out_ema: torch.Tensor, hist) -> bool:
        raw = out.detach().cpu()
        if self.outputs is None:
            self.outputs = {c: torch.zeros_like(raw) for c in ("sure", "oracle_raw")}
        loss, div = np.atleast_2d(hist["loss"][i - 1]), np.atleast_2d(hist["divergence"][i - 1])
        for n, s in enumerate(self.sigmas):
            self.sure[i - 1, n] = sure_mse(loss[:, n], div[:, n], s)[0]
        self.length = i
        psnr_raw = np.asarray(hist["psnr_clean"]).reshape(len(hist["psnr_clean"]), -1)
        done = True
        for n in range(len(self.sigmas)):
            stops = self.stops_for(n, psnr_raw)
            for name, stop in stops.items():
                if stop.iteration == i:
                    self.outputs[name][n] = raw[n]
            done &= stops["sure"].fired
        return done


@dataclass
class SureRun:
    """The SURE run's fits for every (photograph, σ) pair of one seed."""

    seed: int
    stops: dict[str, list[Stop]]  # sure, oracle_raw (the run's own raw peak)
    outputs: dict[str, torch.Tensor]
    history: dict[str, np.ndarray]  # sure, residual, divergence, psnr_clean_raw
    flops_per_iteration: float  # the network's step plus the probes' forward passes
    wall_s: float


def run_sure(setup: StoppingSetup, profile, seed: int, cache: Cache | None = None,
             progress: bool = True, probe_every: int = SURE_PROBE_EVERY) -> SureRun:
    """DIP fed the observation (the profile's net with ``input_depth`` = the image's
    channels, no input perturbation: Jo et al.'s DF-STE set-up) with an MSE fit, stopped by
    SURE's estimate of the MSE to the clean image (no clean image read): the minimum of
    SURE, once it has not fallen for P (ES-WMV's patience) iterations. Cached."""
    setup.check()
    clean, noisy, sigmas = make_batch(setup, seed)
    cfg = dip.DIPConfig.from_profile(profile, input_depth=noisy.shape[1])

    def compute():
        rec = SureRecorder(sigmas, setup.patience, setup.budget)
        kw = _fit_kwargs(profile) | {"reg_noise_std": 0.0}
        res = dip.fit(dip.Degradation("denoise", noisy), cfg, setup.budget, clean=clean,
                      seed=seed, callback=rec, net_input=noisy, divergence_every=probe_every,
                      progress=progress, desc=f"SURE DIP, seed {seed}", **kw)
        steps = rec.length
        hist = {"sure": rec.sure[:steps],
                "residual": np.asarray(res.history["loss"]).reshape(steps, -1),
                "divergence": np.asarray(res.history["divergence"]).reshape(steps, -1),
                "psnr_clean_raw": np.asarray(res.history["psnr_clean"]).reshape(steps, -1)}
        psnr_raw = hist["psnr_clean_raw"]
        stops = {c: [dataclasses.astuple(rec.stops_for(n, psnr_raw)[c]) for n in range(len(sigmas))]
                 for c in ("sure", "oracle_raw")}
        step_flops = res.compute.flops / res.compute.dip_iters / len(sigmas)
        forward = dip.dip_flops_per_iteration(cfg, noisy.shape[1], *noisy.shape[-2:], backward=False)
        tensors = {**{f"history_{k}": torch.from_numpy(np.asarray(v, dtype=np.float64)).float()
                      for k, v in hist.items()},
                   **{f"output_{c}": rec.outputs[c] for c in ("sure", "oracle_raw")}}
        meta = {"stops": stops, "flops_per_iteration": step_flops + 2 * forward / probe_every,
                "wall_s": res.compute.wall_s}
        return tensors, meta

    key = _cache_config("reference", setup, cfg, profile, seed) | {
        "kind": "sure", "probe_every": probe_every}
    tensors, meta = (cache or Cache()).get_or_compute("es_sure", key, compute)
    return SureRun(seed, {c: [Stop(*s) for s in meta["stops"][c]] for c in ("sure", "oracle_raw")},
                   {c: tensors[f"output_{c}"] for c in ("sure", "oracle_raw")},
                   _histories(tensors), meta["flops_per_iteration"], meta["wall_s"])


# --------------------------------------------------------------------------- guided run
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


@dataclass
class SeedRuns:
    """Every fit of one seed: the plain run (every baseline), the guided run and, when asked
    for, the SURE run."""

    reference: ReferenceRun
    guided: GuidedRun | None = None
    sure: SureRun | None = None

    @property
    def seed(self) -> int:
        """The seed of these runs."""
        return self.reference.seed


def run_all(setup: StoppingSetup, profile, cache: Cache | None = None,
            lookup: SigmaLookup | None = None, prior_x0=None, sure: bool = False
            ) -> list[SeedRuns]:
    """The plain, guided and (``sure``) SURE runs of every seed (cached), with a progress
    bar. ``prior_x0(seed) -> tensor`` gives the learned prior's estimates for that seed's
    observations (they differ per seed: the noise does)."""
    out = []
    for seed in tqdm(setup.seeds, desc="seeds"):
        x0 = prior_x0(seed) if prior_x0 is not None else None
        out.append(SeedRuns(run_reference(setup, profile, seed, cache, lookup=lookup, prior_x0=x0),
                            run_guided(setup, profile, seed, cache),
                            run_sure(setup, profile, seed, cache) if sure else None))
    return out


def criteria_of(runs: list[SeedRuns]) -> list[str]:
    """The criteria these runs report, in :data:`CRITERIA`'s order."""
    have = set(runs[0].reference.stops) | ({"guided"} if runs[0].guided else set()) | \
        ({"sure"} if runs[0].sure else set())
    return [c for c in CRITERIA if c in have]


def _stop_outputs(run: SeedRuns) -> tuple[dict, dict, dict, dict]:
    """Per criterion: stops, outputs, FLOPs per iteration, and the own peak's outputs (the
    best output of the trajectory and convention the criterion reads)."""
    ref = run.reference
    stops, outputs = dict(ref.stops), dict(ref.outputs)
    flops = {c: ref.flops_per_iteration for c in stops}
    peak = {c: ref.outputs["oracle_raw" if c in RAW else "oracle"] for c in stops}
    if run.guided is not None:  # its own peak: the best clean PSNR along its own trajectory
        stops["guided"], outputs["guided"] = run.guided.stops, run.guided.outputs
        flops["guided"] = run.guided.flops_per_iteration
        peak["guided"] = torch.from_numpy(np.nanmax(run.guided.history["psnr_clean"], 0))
    if run.sure is not None:
        stops["sure"], outputs["sure"] = run.sure.stops["sure"], run.sure.outputs["sure"]
        flops["sure"], peak["sure"] = run.sure.flops_per_iteration, run.sure.outputs["oracle_raw"]
    return stops, outputs, flops, peak


def evaluate(setup: StoppingSetup, run: SeedRuns) -> list[dict]:
    """One record per (photograph, σ, criterion) of a seed: the stop, the output's PSNR and
    SSIM against the clean image, ``gap_db`` (to the plain run's EMA peak, the common
    yardstick), ``own_gap_db`` (to the peak of the trajectory and output convention the
    criterion reads: the raw peak for the raw criteria, the guided and SURE runs' own peaks),
    and the compute saved against the fixed count."""
    ref = run.reference
    stops, outputs, flops, peak = _stop_outputs(run)
    fixed = setup.fixed_iterations
    quality = {c: (psnr(outputs[c], ref.clean).double().numpy(),
                   ssim(outputs[c], ref.clean).double().numpy()) for c in stops}
    own = {c: (peak[c].double().numpy() if c == "guided" and peak[c] is not None else
               psnr(peak[c], ref.clean).double().numpy()) for c in stops if peak[c] is not None}
    records = []
    for n, (photo, sigma) in enumerate(setup.pairs):
        for c in [c for c in CRITERIA if c in stops]:
            s = stops[c][n]
            p = float(quality[c][0][n])
            records.append({
                "photo": photo, "sigma": sigma, "seed": ref.seed, "criterion": c,
                "iteration": s.iteration, "iterations_run": s.iterations_run, "fired": s.fired,
                "psnr": p, "ssim": float(quality[c][1][n]),
                "gap_db": float(quality["oracle"][0][n]) - p,
                "own_gap_db": float(max(own[c][n], p)) - p if c in own else float("nan"),
                "compute_saved": (fixed - s.iterations_run) / fixed,
                "gflops": s.iterations_run * flops[c] / 1e9})
    return records


def es_wmv_sensitivity(setup: StoppingSetup, references: list[ReferenceRun]) -> dict:
    """ES-WMV's gap to the oracle for every recorded window × patience (P × 0.5, 1, 2), read
    from the plain runs' histories: is its showing an artefact of the scaled W and P?"""
    references = [getattr(r, "reference", r) for r in references]
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


def _gap_stats(gaps) -> dict:
    g = np.asarray(gaps, dtype=float)
    return {"mean": float(g.mean()), "median": float(np.median(g)), "worst": float(g.max()),
            "std": float(g.std(ddof=1)) if len(g) > 1 else 0.0, "n": int(len(g)),
            "ci95": spread(g)["ci95"]}


def summarize(records: list[dict], setup: StoppingSetup) -> dict:
    """Per criterion: detected iteration, PSNR/SSIM, the gap to the oracle (mean, median,
    worst, 95 % interval, and per σ), the gap to its own trajectory's peak, compute saved
    against the fixed count (iterations and GFLOPs), whether it needs σ."""
    out = {}
    for c in [c for c in CRITERIA if any(r["criterion"] == c for r in records)]:
        rows = [r for r in records if r["criterion"] == c]
        own = [r.get("own_gap_db", float("nan")) for r in rows]
        out[c] = {
            "iteration": spread([r["iteration"] for r in rows]),
            "iterations_run": spread([r["iterations_run"] for r in rows]),
            "psnr": spread([r["psnr"] for r in rows]), "ssim": spread([r["ssim"] for r in rows]),
            "gap_db": _gap_stats([r["gap_db"] for r in rows]),
            "gap_db_by_sigma": {str(s): _gap_stats([r["gap_db"] for r in rows if r["sigma"] == s])
                                for s in setup.sigmas if any(r["sigma"] == s for r in rows)},
            "own_gap_db": _gap_stats(own) if np.isfinite(own).all() else None,
            "compute_saved": spread([r["compute_saved"] for r in rows]),
            "gflops": spread([r["gflops"] for r in rows]),
            "fired_fraction": float(np.mean([r["fired"] for r in rows])),
            "needs_sigma": c in NEEDS_SIGMA, "needs_clean": c in ORACLES,
            "output": "raw" if c in RAW else "EMA",
        }
    return out


def quality_bar(summary: dict, max_gap_db: float = 1.0, sigmas=(25.0, 50.0)) -> dict:
    """The chapter's quality bar: the guided mean gap at σ ∈ ``sigmas`` (those this run has)
    is ≤ ``max_gap_db``; the best criterion without the clean image (lowest mean gap to the
    plain run's peak); the guided rule's difference to every peer."""
    g = summary["guided"]
    have = [str(float(s)) for s in sigmas if str(float(s)) in g["gap_db_by_sigma"]]
    gaps = [r for s in have for r in [g["gap_db_by_sigma"][s]["mean"]]]
    at = float(np.mean(gaps)) if gaps else g["gap_db"]["mean"]
    peers = [c for c in summary if c not in ORACLES]
    best = min(peers, key=lambda c: summary[c]["gap_db"]["mean"])
    return {"guided_mean_gap_db": g["gap_db"]["mean"], "max_gap_db": max_gap_db,
            "bar_sigmas": [float(s) for s in have] or None,
            "guided_mean_gap_at_bar_sigmas_db": at,
            "guided_gap_by_bar_sigma_db": dict(zip(have, gaps)),
            "guided_within_max_gap": bool(max(gaps or [at]) <= max_gap_db),
            "best_criterion": best, "best_gap_db": summary[best]["gap_db"]["mean"],
            "guided_is_best": best == "guided",
            "guided_minus_peer_db": {c: g["gap_db"]["mean"] - summary[c]["gap_db"]["mean"]
                                     for c in peers if c != "guided"},
            "es_wmv_mean_gap_db": summary["es_wmv"]["gap_db"]["mean"],
            "guided_no_worse_than_es_wmv": bool(g["gap_db"]["mean"] <= summary["es_wmv"]["gap_db"]["mean"]),
            "guided_minus_es_wmv_db": g["gap_db"]["mean"] - summary["es_wmv"]["gap_db"]["mean"]}


def run_compute(setup: StoppingSetup, runs: list[SeedRuns]) -> dict:
    """Compute each kind of run took: DIP iterations, GFLOPs and wall seconds, summed over
    seeds and images (a batched fit's wall time covers all its images)."""
    out = {}
    for kind in ("reference", "guided", "sure"):
        total, any_run = Compute(), False
        for r in runs:
            run = getattr(r, kind)
            if run is None:
                continue
            any_run = True
            iters = len(run.history["residual"]) * len(setup.pairs)
            total = total + Compute(flops=iters * run.flops_per_iteration, dip_iters=iters,
                                    wall_s=run.wall_s)
        if any_run:
            out[kind] = total.to_dict()
    return out


def save_stop_arrays(out_dir, setup: StoppingSetup, runs: list[SeedRuns]) -> list[str]:
    """``stop_<criterion>_<image>_<sigma>.npy`` (one image per seed; ``<image>`` is the
    photograph's name or its file's stem), plus ``clean_<image>``
    and ``noisy_<image>_<sigma>`` (one per seed); returns the names written."""
    names = []
    per_seed = [_stop_outputs(r)[1] for r in runs]
    for n, (photo, sigma) in enumerate(setup.pairs):
        photo = photo_name(photo)
        tag = f"{photo}_{sigma:g}"
        for c in criteria_of(runs):
            save_array(out_dir, f"stop_{c}_{tag}", torch.stack([o[c][n] for o in per_seed]))
            names.append(f"stop_{c}_{tag}")
        save_array(out_dir, f"noisy_{tag}", torch.stack([r.reference.noisy[n] for r in runs]))
        names.append(f"noisy_{tag}")
        if f"clean_{photo}" not in names:
            save_array(out_dir, f"clean_{photo}", runs[0].reference.clean[n:n + 1])
            names.append(f"clean_{photo}")
    return names


def build_metrics(profile, setup: StoppingSetup, runs: list[SeedRuns], records, summary,
                  settings: dict | None = None, extra: dict | None = None) -> dict:
    """Everything the chapter reports, for ``metrics.json``; ``settings`` (from
    :func:`make_setup`) records where each tunable setting came from (``settings_source``),
    and ``photo_sets`` the set (eval, tune, prior_train) of each photograph; ``extra`` adds
    sections (the σ lookup, the learned prior, the paper-regime run)."""
    return {"profile": profile.name, "notebook": NOTEBOOK, "seeds": list(setup.seeds),
            "setup": setup.to_dict(), "photo_sets": photo_roles(profile, setup.photos),
            "settings_source": settings or {},
            "interval": interval_note(summary),
            "network": dataclasses.asdict(dip.DIPConfig.from_profile(profile)),
            "fit": _fit_kwargs(profile), "methods": summary, "quality_bar": quality_bar(summary),
            "es_wmv_sensitivity": es_wmv_sensitivity(setup, runs),
            "compute": run_compute(setup, runs),
            "flops_per_iteration": runs[0].reference.flops_per_iteration, "runs": records,
            "output": {c: summary[c]["output"] for c in summary}, **(extra or {})}


def sigma_table(summary: dict, setup: StoppingSetup) -> str:
    """A Markdown table of the mean gap to the oracle ± its 95 % t-interval (and the worst)
    per criterion and σ."""
    sig = [str(s) for s in setup.sigmas]
    head = ("| criterion | " + " | ".join(f"σ = {float(s):g}" for s in sig) + " |\n|---|"
            + "---|" * len(sig) + "\n")
    cell = "{mean:.2f} ± {ci95:.2f} (worst {worst:.2f})"
    rows = [f"| {LABELS[c]} | " + " | ".join(cell.format(**summary[c]["gap_db_by_sigma"][s])
                                            if s in summary[c]["gap_db_by_sigma"] else "–"
                                            for s in sig) + " |"
            for c in summary if c not in ORACLES]
    return head + "\n".join(rows)


LABELS = {"guided": "guided (ours)", "prior_distance": "learned prior (ours)",
          "sure": "SURE (DF-STE set-up)", "sigma_lookup": "σ lookup (tune photos)",
          "es_wmv": "ES-WMV, EMA output", "es_wmv_raw": "ES-WMV (authors: raw)",
          "es_emv": "ES-EMV (authors: raw)", "discrepancy": "discrepancy",
          "fixed": "fixed (profile)", "ulyanov": "fixed (Ulyanov, scaled)",
          "oracle": "oracle (upper bound)", "oracle_raw": "oracle, raw output"}


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
    photographs × σ × seeds, stated under the table with its n): what it reads (σ, the clean
    image), its output, its stop, PSNR, gaps to the plain run's peak and to its own
    trajectory's peak, compute saved."""
    head = ("| criterion | reads | output | stop iteration | iterations run | PSNR (dB) | SSIM | "
            "gap mean | gap median | gap worst | own-peak gap | compute saved |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for c, s in summary.items():
        reads = "clean image" if s.get("needs_clean") else "σ" if s.get("needs_sigma") else "–"
        own = s.get("own_gap_db")
        rows.append(f"| {LABELS[c]} | {reads} | {s.get('output', 'EMA')} | "
                    f"{s['iteration']['mean']:.0f} ± {_ci(s['iteration']):.0f} "
                    f"| {s['iterations_run']['mean']:.0f} | {s['psnr']['mean']:.2f} ± "
                    f"{_ci(s['psnr']):.2f} | {s['ssim']['mean']:.3f} | "
                    f"{s['gap_db']['mean']:.2f} ± {_ci(s['gap_db']):.2f} | "
                    f"{s['gap_db']['median']:.2f} | {s['gap_db']['worst']:.2f} | "
                    + (f"{own['mean']:.2f}" if own else "–") +
                    f" | {100 * s['compute_saved']['mean']:.0f}% |")
    return head + "\n".join(rows) + "\n\n" + interval_note(summary)


def stops_table(records: list[dict]) -> str:
    """A Markdown table with one row per criterion and one column per image of a run: the
    stop iteration, the gap to the plain run's EMA peak and (in brackets) to the peak of the
    criterion's own convention; "not fired" where the rule never triggered."""
    images = list(dict.fromkeys((r["photo"], r["sigma"]) for r in records))
    head = ("| criterion | " + " | ".join(f"{photo_name(p)}, σ = {s:g}" for p, s in images)
            + " |\n|---|" + "---|" * len(images) + "\n")
    rows = []
    for c in [c for c in CRITERIA if any(r["criterion"] == c for r in records)]:
        cells = []
        for p, s in images:
            r = next(r for r in records if r["criterion"] == c and (r["photo"], r["sigma"]) == (p, s))
            cell = f"{r['iteration']}: {r['gap_db']:.2f} ({r['own_gap_db']:.2f})"
            cells.append(cell + ("" if r["fired"] or c in ORACLES else ", not fired"))
        rows.append(f"| {LABELS[c]} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows)


def paired_gap_difference(records: list[dict], a: str, b: str) -> dict:
    """:func:`~dipddpm_lib.results.paired_difference` of two criteria's gaps (``a`` − ``b``,
    dB) over the runs they share (the same photograph, σ and seed): its 95 % t-interval and
    ``resolved`` say whether the two differ."""
    key = lambda r: (r["photo"], r["sigma"], r["seed"])  # noqa: E731
    gb = {key(r): r["gap_db"] for r in records if r["criterion"] == b}
    pairs = [(r["gap_db"], gb[key(r)]) for r in records if r["criterion"] == a and key(r) in gb]
    if not pairs:
        raise ValueError(f"no runs with both {a!r} and {b!r}")
    return paired_difference(*zip(*pairs))


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


if __name__ == "__main__":
    main()
