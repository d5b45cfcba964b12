"""Chapter 04's set-up and cached runs: the plain DIP run every plain-run criterion reads, the
guided run, the SURE run and the σ lookup's calibration on the tune photos."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import dip
from ..cache import Cache, cached, digest
from ..data import load_photo
from ..errors import check_choice, check_positive_int, check_seeds
from ..methods.guided_dip import ProgressiveTargets, stage_noise_levels
from ..profiles import check_device, get_profile
from ..methods.sure_dip import SURE_PROBE_EVERY, fit_sure_dip
from ..stopping import ReferenceRecorder, SigmaLookup, Stop

NOTEBOOK = "04_early_stopping"
#: Notebook knob → profile field.
KNOBS = {"photos": "photos", "photo_size": "es_photo_size", "sigmas": "es_sigmas",
         "num_stages": "es_num_stages", "stage_iterations": "es_stage_iterations",
         "stage_schedule": "es_stage_schedule", "start_ratio": "es_start_ratio",
         "paper_scale": "es_paper_scale"}
#: Ulyanov et al.'s denoising iterations and ES-WMV's window and patience.
PAPER_ITERATIONS, PAPER_WINDOW, PAPER_PATIENCE = 3000, 100, 1000
#: ES-WMV sensitivity check: patience × these (windows come from the profile).
WMV_PATIENCE_FACTORS = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class StoppingSetup:
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
        return cls(tuple(profile.photos), profile.es_photo_size,
                   tuple(float(s) for s in profile.es_sigmas),
                   tuple(profile.seeds if seeds is None else seeds), profile.dip_iterations,
                   profile.es_paper_scale, profile.es_num_stages, profile.es_stage_iterations,
                   profile.es_stage_schedule, profile.es_start_ratio, profile.beta_schedule,
                   tuple(float(f) for f in profile.es_wmv_window_factors)).check()

    def check(self) -> "StoppingSetup":
        """The set-up, if every knob is valid; else ``ValueError`` naming the valid choices."""
        from ..data import check_photos

        check_photos(self.photos, "photos", min_size=self.photo_size)
        if not self.photos or not self.sigmas or not self.seeds:
            raise ValueError("photos, sigmas and seeds must each hold at least one value")
        if self.photo_size % 32:
            raise ValueError(f"photo size must be a multiple of 32, got {self.photo_size}")
        check_seeds(self.seeds)
        check_positive_int("fixed_iterations", self.fixed_iterations)
        if not 0 < self.paper_scale <= 10:
            raise ValueError(f"paper_scale must be in (0, 10], got {self.paper_scale}")
        check_positive_int("stage_iterations", self.stage_iterations)
        if not all(f > 0 for f in self.wmv_window_factors):
            raise ValueError(f"ES-WMV window factors must be positive, got {self.wmv_window_factors}")
        for s in self.sigmas:  # checks σ > 0, the beta and stage schedules and the first stage
            stage_noise_levels(s, self.num_stages, self.stage_schedule, self.start_ratio,
                               self.beta_schedule)
        return self

    @property
    def window(self) -> int:  # the papers' counts × paper_scale
        return max(2, round(PAPER_WINDOW * self.paper_scale))

    @property
    def patience(self) -> int:
        return max(1, round(PAPER_PATIENCE * self.paper_scale))

    @property
    def ulyanov_iterations(self) -> int:
        return max(1, round(PAPER_ITERATIONS * self.paper_scale))

    @property
    def wmv_windows(self) -> tuple[int, ...]:
        """W and W × the sensitivity factors: every window the plain run records."""
        return tuple(sorted({self.window} | {max(2, round(self.window * f))
                                             for f in self.wmv_window_factors}))

    @property
    def wmv_patiences(self) -> tuple[int, ...]:
        return tuple(sorted({max(1, round(self.patience * f)) for f in WMV_PATIENCE_FACTORS}))

    @property
    def budget(self) -> int:
        """Length of the plain DIP trajectory."""
        return max(self.fixed_iterations, self.ulyanov_iterations)

    @property
    def pairs(self) -> list[tuple[str, float]]:
        """Every (photograph, σ) pair, in batch order."""
        return [(p, s) for p in self.photos for s in self.sigmas]

    def to_dict(self) -> dict:
        """JSON-able dict, with the derived counts."""
        return dataclasses.asdict(self) | dict(window=self.window, patience=self.patience,
                                               ulyanov_iterations=self.ulyanov_iterations, budget=self.budget)


def make_setup(profile: str, seeds=None, tuned=None, device=None, **knobs):
    """``(profile, setup, settings)``, all checked before any work: knobs left at None take the
    ``tuned`` file's value, else the profile's; ``settings`` records where each came from."""
    from ..tuned import tuned_overrides

    for k in knobs:
        check_choice("knob", k, KNOBS)
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


def make_batch(setup: StoppingSetup, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(clean, noisy, sigmas)`` for every (photograph, σ) pair of the checked ``setup``; pair
    ``j``'s noise seed is ``1000·seed + j``."""
    setup.check()
    photos = {p: load_photo(p, setup.photo_size) for p in setup.photos}
    clean = torch.cat([photos[p] for p, _ in setup.pairs])
    noisy = torch.cat([dip.degrade(photos[p], "denoise", s, seed=1000 * seed + j).observation
                       for j, (p, s) in enumerate(setup.pairs)])
    return clean, noisy, np.array([s for _, s in setup.pairs])


def _fit_kwargs(profile) -> dict:
    return dict(lr=profile.dip_lr, reg_noise_std=profile.dip_reg_noise_std, ema=profile.dip_ema,
                device=profile.device)


def _pack(res, history: dict, outputs: dict, stops: dict | list, extra_flops: float = 0.0
          ) -> tuple[dict, dict]:
    """A fit as the cache's ``(tensors, meta)``: ``history_*`` (float32), then ``outputs``,
    the stops (per criterion; the guided run's stored as one bare list), FLOPs per
    image-iteration (+ ``extra_flops``) and wall seconds."""
    n = len(next(iter(outputs.values())))
    tuples = lambda ss: [dataclasses.astuple(s) for s in ss]  # noqa: E731
    tensors = {**{f"history_{k}": torch.from_numpy(np.asarray(v, dtype=np.float64)).float()
                  for k, v in history.items()}, **outputs}
    flops = res.compute.flops / res.compute.dip_iters / n + extra_flops
    return tensors, {"stops": tuples(stops) if isinstance(stops, list) else
                     {c: tuples(ss) for c, ss in stops.items()},
                     "flops_per_iteration": flops, "wall_s": res.compute.wall_s}


def _recorded(rec) -> tuple[dict, dict]:
    """A recorder's kept outputs (as ``output_*``) and each criterion's stop per image."""
    return ({f"output_{c}": o for c, o in rec.outputs.items()},
            {c: [rec.stops_for(n)[c] for n in range(len(rec.sigmas))] for c in rec.outputs})


def _cache_config(kind: str, setup: StoppingSetup, cfg: dip.DIPConfig, profile, seed: int) -> dict:
    keyed = setup.to_dict() | {"seeds": None}
    if kind == "guided":  # the guided fit does not read ES-WMV's windows
        keyed.pop("wmv_window_factors")
    else:  # nor the plain run the stage settings: points that vary them share one plain run
        for knob in ("num_stages", "stage_iterations", "stage_schedule", "start_ratio"):
            keyed.pop(knob)
    return {"kind": kind, "setup": keyed, "net": dataclasses.asdict(cfg),
            "fit": _fit_kwargs(profile), "seed": seed}


@dataclass
class Run:
    """One cached batched fit of a seed: its batch, each criterion's stops and outputs, the
    histories (iterations × images), FLOPs per image-iteration and wall seconds; the guided run
    adds its stage-end outputs, residuals, absorbed shares (stages × images) and noise stds."""

    seed: int
    clean: torch.Tensor
    noisy: torch.Tensor
    sigmas: np.ndarray
    stops: dict[str, list[Stop]]
    outputs: dict[str, torch.Tensor]
    history: dict[str, np.ndarray]
    flops_per_iteration: float
    wall_s: float
    stage_outputs: torch.Tensor | None = None
    stage_residual: np.ndarray | None = None
    stage_absorbed: np.ndarray | None = None
    noise_stds: np.ndarray | None = None


def _read(seed: int, batch: tuple, tensors: dict, meta: dict, stops: dict, **stages) -> Run:
    """A :class:`Run` from a cache entry; ``stops``: each criterion's stored stop tuples."""
    return Run(seed, *batch, {c: [Stop(*s) for s in ss] for c, ss in stops.items()},
               {c: tensors[f"output_{c}"] for c in stops},
               {k[len("history_"):]: v.double().numpy() for k, v in tensors.items()
                if k.startswith("history_")},
               meta["flops_per_iteration"], meta["wall_s"], **stages)


def run_reference(setup: StoppingSetup, profile, seed: int, cache: Cache | None = None,
                  progress: bool = True, lookup: SigmaLookup | None = None,
                  prior_x0: torch.Tensor | None = None, cfg: dip.DIPConfig | None = None,
                  until_fired: tuple[str, ...] = (), kind: str = "reference",
                  fit_kwargs: dict | None = None, prior_key: str | None = None) -> Run:
    """One batched plain DIP fit of every (photograph, σ) pair for ``setup.budget`` iterations,
    every plain-run criterion applied online (:class:`ReferenceRecorder`). Cached; the key
    holds the lookup's counts and ``prior_key`` (default: a digest of ``prior_x0``)."""
    cfg = cfg or dip.DIPConfig.from_profile(profile)
    fit_kwargs = fit_kwargs or _fit_kwargs(profile)
    clean, noisy, sigmas = make_batch(setup, seed)

    def compute():
        rec = ReferenceRecorder(noisy, clean, sigmas, setup, lookup, prior_x0, until_fired)
        res = dip.fit(dip.Degradation("denoise", noisy), cfg, setup.budget, seed=seed,
                      callback=rec, progress=progress, desc=f"plain DIP, seed {seed}",
                      **fit_kwargs)
        return _pack(res, {k: v[:rec.length] for k, v in rec.rows.items()}, *_recorded(rec))

    key = _cache_config("reference", setup, cfg, profile, seed) | {"fit": fit_kwargs}
    key.update(lookup=None if lookup is None else [lookup.predict(s) for s in setup.sigmas],
               prior_x0=prior_key or digest(prior_x0), until_fired=list(until_fired))
    tensors, meta = cached(f"es_{kind}", key, compute, cache)
    return _read(seed, (clean, noisy, sigmas), tensors, meta, meta["stops"])


def tune_setup(setup: StoppingSetup, profile) -> StoppingSetup:
    """The set-up on the profile's tune photographs (first seed), where ``sigma_lookup`` is fitted."""
    return dataclasses.replace(setup, photos=tuple(profile.tune_photos), seeds=setup.seeds[:1]).check()


def calibrate_lookup(setup: StoppingSetup, profile, cache: Cache | None = None,
                     progress: bool = True) -> tuple[SigmaLookup, Run]:
    """``sigma_lookup`` fitted on the oracle peaks of plain DIP on the tune photographs."""
    tune = tune_setup(setup, profile)
    ref = run_reference(tune, profile, tune.seeds[0], cache, progress)
    peaks = [s.iteration for s in ref.stops["oracle"]]
    return SigmaLookup.fit([s for _, s in tune.pairs], peaks), ref


def run_sure(setup: StoppingSetup, profile, seed: int, cache: Cache | None = None,
             progress: bool = True, probe_every: int = SURE_PROBE_EVERY) -> Run:
    """SURE-stopped DIP (:func:`~dipddpm_lib.methods.sure_dip.fit_sure_dip`) with ES-WMV's
    patience; its stops are ``sure`` and ``oracle_raw`` (the run's own raw peak). Cached."""
    clean, noisy, sigmas = make_batch(setup, seed)
    cfg = dip.DIPConfig.from_profile(profile, input_depth=noisy.shape[1])

    def compute():
        rec, res, hist, probe_flops = fit_sure_dip(noisy, clean, sigmas, cfg, setup.patience,
                                                   setup.budget, seed, _fit_kwargs(profile),
                                                   probe_every, progress)
        return _pack(res, hist, *_recorded(rec), probe_flops)

    key = _cache_config("reference", setup, cfg, profile, seed) | {
        "kind": "sure", "probe_every": probe_every}
    tensors, meta = cached("es_sure", key, compute, cache)
    return _read(seed, (clean, noisy, sigmas), tensors, meta, meta["stops"])


def guided_schedule(setup: StoppingSetup, sigmas) -> np.ndarray:
    """Extra noise stds, images × stages, for a batch with these σ."""
    return np.stack([stage_noise_levels(s, setup.num_stages, setup.stage_schedule,
                                        setup.start_ratio, setup.beta_schedule)[1] for s in sigmas])


def run_guided(setup: StoppingSetup, profile, seed: int, cache: Cache | None = None,
               progress: bool = True) -> Run:
    """One batched DIP fit with progressive targets (same net and seed as the plain run),
    each image stopped by the guided rule; the clean image feeds only the logged PSNR. Cached."""
    cfg = dip.DIPConfig.from_profile(profile)
    clean, noisy, sigmas = make_batch(setup, seed)
    stds = guided_schedule(setup, sigmas)

    def compute():
        ctl = ProgressiveTargets(noisy, sigmas, stds, setup.stage_iterations, seed)
        res = dip.fit(dip.Degradation("denoise", noisy), cfg,
                      setup.num_stages * setup.stage_iterations, clean=clean, seed=seed,
                      callback=ctl, target=ctl.target, progress=progress,
                      desc=f"guided DIP, seed {seed}", **_fit_kwargs(profile))
        hist = {k: np.stack(v) for k, v in ctl.rows.items()}
        steps = len(hist["residual"])
        hist["psnr_clean"] = np.asarray(res.history["psnr_clean_ema"]).reshape(steps, -1)
        return _pack(res, hist, {"outputs": ctl.outputs, "stage_outputs": ctl.stage_outputs,
                                 "stage_residual": torch.from_numpy(ctl.stage_residual),
                                 "stage_absorbed": torch.from_numpy(ctl.stage_absorbed)}, ctl.stops)

    t, meta = cached("es_guided", _cache_config("guided", setup, cfg, profile, seed), compute, cache)
    return _read(seed, (clean, noisy, sigmas), t | {"output_guided": t["outputs"]}, meta,
                 {"guided": meta["stops"]}, stage_outputs=t["stage_outputs"],
                 stage_residual=t["stage_residual"].double().numpy(),
                 stage_absorbed=t["stage_absorbed"].double().numpy(), noise_stds=stds)


@dataclass
class SeedRuns:
    """A seed's plain run, and its guided and SURE runs where they were fitted."""

    reference: Run
    guided: Run | None = None
    sure: Run | None = None


def run_all(setup: StoppingSetup, profile, cache: Cache | None = None,
            lookup: SigmaLookup | None = None, prior_x0=None, sure: bool = False
            ) -> list[SeedRuns]:
    """Every seed's runs (cached); ``prior_x0(seed)`` gives that seed's learned-prior estimates."""
    return [SeedRuns(run_reference(setup, profile, seed, cache, lookup=lookup,
                                   prior_x0=None if prior_x0 is None else prior_x0(seed)),
                     run_guided(setup, profile, seed, cache),
                     run_sure(setup, profile, seed, cache) if sure else None)
            for seed in tqdm(setup.seeds, desc="seeds")]
