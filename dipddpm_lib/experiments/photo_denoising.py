"""Chapter 03, task C: every single prior and every combination on the same noisy photographs.
Per σ, photographs × seeds form one batch; the DIP-based methods share one grouped fit per target.
Tidy rows, one per (method, photo, σ, seed), compute per image."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..cache import Cache
from ..compute import Compute
from ..ddpm import TrainedDDPM
from ..dip import DIPConfig, Degradation, degrade, fit
from ..errors import check_positive_int, check_sigma
from ..metrics import psnr, ssim
from ..physics import sigma_to_t
from ..profiles import check_device
from ..results import paired_difference, spread
from ..methods.classical import bm3d_denoise, nl_means_denoise
from ..methods.ddpm_denoise import ddim, ddpm_chain, ddpm_x0
from ..methods.dip_t0 import dip_t0
from ..methods.hybrid_red import BlendTarget, REDTarget, fuse_avg
from ..methods.tdpm_dip import tdpm_dip
from .dip_init_ddpm import cached_study, method_label as ab_label

#: Method families, in table order. ``ddim_<k>`` and ``dip_t0_<t0>`` expand per setting.
SINGLE = ("noisy", "bm3d", "nl_means", "dip", "dip_oracle", "ddpm_x0", "ddpm_chain", "ddim")
COMBINED = ("dip_t0", "tdpm_dip", "fuse_avg", "hybrid_red", "hybrid_target")
METHODS = SINGLE + COMBINED
#: Which methods are told σ (the others are blind); which read the clean image (oracles).
KNOWS_SIGMA = ("bm3d", "ddpm_x0", "ddpm_chain", "ddim", "dip_t0", "tdpm_dip", "fuse_avg",
               "hybrid_red", "hybrid_target")
ORACLES = ("dip_oracle",)
#: The single priors a combination must beat (non-oracle), and the controls it is not.
SINGLE_PRIORS = ("dip", "ddpm_x0", "ddpm_chain", "bm3d", "nl_means")
CONTROLS = ("fuse_avg",)


@dataclass(frozen=True)
class PhotoConfig:
    sigmas: tuple[float, ...] = (15.0, 25.0, 50.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    dip: DIPConfig = DIPConfig(scales=3, channels=32)
    dip_iterations: int = 400
    dip_lr: float = 0.01
    ddim_steps: tuple[int, ...] = (5,)
    t0_list: tuple[int, ...] = (10, 30)
    chain_sampler: str = "ddim"
    chain_steps: int = 10
    red_lambda: float = 1.0
    red_sigma_eff_ratio: float = 0.4  # σ_eff = this × σ
    red_refresh: int = 10
    red_warm_start: bool = False  # D starts from the DDPM's x̂0 of y (methods/hybrid_red.py)
    target_lambda: float = 1.0
    methods: tuple[str, ...] = METHODS  # a subset for ablation points
    device: str = "cpu"  # where the DIP fits run (the profile's device)

    def __post_init__(self):
        if not self.sigmas:
            raise ValueError("task C needs at least one noise level sigma")
        for s in self.sigmas:
            if check_sigma(s) != round(s):  # arrays are named photo_<method>_<name>_s<σ>
                raise ValueError(f"task C's sigmas must be whole numbers (0-255), got {s}")
        for what, v in [("dip_iterations", self.dip_iterations), ("red_refresh", self.red_refresh),
                        ("chain_steps", self.chain_steps), *(("ddim steps", k) for k in self.ddim_steps)]:
            check_positive_int(what, v)
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown task C method(s) {unknown}; valid: {', '.join(METHODS)}")
        for name in ("red_lambda", "target_lambda", "red_sigma_eff_ratio"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.seeds:
            raise ValueError("task C needs at least one seed")

    def wants(self, family: str) -> bool:
        """Whether ``family`` runs (an input of a method that runs does)."""
        need = set(self.methods)
        if need & {"dip_oracle", "tdpm_dip", "dip_t0", "fuse_avg"}:
            need.add("dip")
        if "fuse_avg" in need or ("hybrid_red" in need and self.red_warm_start):
            need.add("ddpm_x0")
        return family in need


LABELS = {"noisy": "noisy input", "bm3d": "BM3D", "nl_means": "NL-means",
          "dip": "DIP (fixed count)", "dip_oracle": "DIP oracle peak (upper bound)",
          "ddpm_x0": "DDPM one-step x̂0", "ddpm_chain": "DDPM ancestral chain from t_σ",
          "tdpm_dip": "TDPM-DIP", "fuse_avg": "average of DIP and x̂0 (control)",
          "hybrid_red": "RED-guided DIP", "hybrid_target": "DIP on a DDPM-blended target",
          r"ddim_(\d+)": "DDIM from t_σ, {} calls", r"dip_t0_(\d+)": "DIP→t0, t0 = {}"}


def method_label(method: str) -> str:
    """A reader's name for a method identifier (tables, legends, sentences)."""
    return ab_label(method, LABELS)


def family(method: str) -> str:
    """``ddim_5`` → ``ddim``, ``dip_t0_10`` → ``dip_t0``, else the method itself."""
    return ("dip_t0" if method.startswith("dip_t0_") else "ddim" if method.startswith("ddim_")
            else method)


def run_study(model: TrainedDDPM, photos: dict[str, torch.Tensor], config: PhotoConfig,
              cache: Cache | None = None, progress: bool = True):
    """Task C on ``photos`` (name → 1×C×H×W): ``(rows, images)``, images keyed ``method|σ`` as
    photos × seeds × C × H × W, and ``curve.method|σ`` (mean clean PSNR per DIP iteration)."""
    if not photos:
        raise ValueError("task C needs at least one photograph")
    if cache is not None:
        key = {"config": config, "model": model.meta["config"], "photos": photos}
        return cached_study("photo_denoising", key,
                            lambda: run_study(model, photos, config, None, progress), cache)
    rows, images = [], {}
    for sigma in tqdm(config.sigmas, desc="task C: σ", disable=not progress):
        r, im = _one_sigma(model, photos, config, float(sigma), progress)
        rows, images = rows + r, {**images, **im}
    return rows, images


def _one_sigma(model, photos, config: PhotoConfig, sigma: float, progress: bool):
    names, seeds = list(photos), list(config.seeds)
    clean = torch.cat([photos[n] for n in names for _ in seeds])  # (photo, seed) order
    y = torch.cat([degrade(photos[n], "denoise", sigma, seed=s).observation
                   for n in names for s in seeds])
    n_img, t_sigma = len(y), sigma_to_t(sigma, model.beta_schedule, model.num_train_timesteps)
    out: dict[str, tuple[torch.Tensor, Compute]] = {}
    curves = {}  # a fit's mean clean PSNR of the EMA output per iteration

    def add(method, x, c):
        out[method] = (x.clamp(0, 1), c)

    add("noisy", y, Compute())
    singles = {"bm3d": lambda: bm3d_denoise(y, sigma), "nl_means": lambda: nl_means_denoise(y, sigma),
               "ddpm_x0": lambda: ddpm_x0(model, y, sigma),
               "ddpm_chain": lambda: ddpm_chain(model, y, sigma, seed=int(sigma)),
               **{f"ddim_{k}": lambda k=k: ddim(model, y, sigma, k, seed=int(sigma))
                  for k in config.ddim_steps}}
    for m, run in singles.items():  # in table order
        if config.wants(family(m)):
            add(m, *run())
    x0 = out.get("ddpm_x0")  # (x̂0, its compute); x̂0 lies in [0, 1], so add's clamp kept it

    def dip_fit(method, target, desc):
        res = fit(Degradation("denoise", y), config.dip, config.dip_iterations, clean=clean,
                  lr=config.dip_lr, seed=int(sigma), progress=progress, desc=desc,
                  device=config.device,
                  target=target, callback=None if target is None else target.observe)
        curves[method] = res.history["psnr_clean_ema"]
        return res, res.compute.per_image(n_img) + (Compute() if target is None else target.compute)

    if config.wants("dip"):
        res, c = dip_fit("dip", None, f"DIP σ={sigma:g}")
        add("dip", res.output_ema, c)
        add("dip_oracle", res.best_output, c)
        x_dip = res.output_ema
        if config.wants("tdpm_dip"):
            xc, cc = tdpm_dip(model, x_dip, t_sigma, int(sigma), config.chain_sampler,
                              config.chain_steps)
            add("tdpm_dip", xc, c + cc)
        if config.wants("dip_t0"):
            for t0 in config.t0_list:
                if t0 <= t_sigma:
                    xc, cc = dip_t0(model, x_dip, t0, int(sigma), config.chain_sampler,
                                    config.chain_steps)
                    add(f"dip_t0_{t0}", xc, c + cc)
        if config.wants("fuse_avg"):
            add("fuse_avg", fuse_avg(x_dip, x0[0]), c + x0[1])
    if config.wants("hybrid_red"):
        warm = config.red_warm_start and config.red_lambda > 0
        tgt = REDTarget(model, y, config.red_lambda, config.red_sigma_eff_ratio * sigma,
                        config.red_refresh, x_init=x0[0] if warm else None)
        res, c = dip_fit("hybrid_red", tgt, f"RED-DIP σ={sigma:g}")
        add("hybrid_red", res.output_ema, c + (x0[1] if warm else Compute()))  # + warm x̂0
    if config.wants("hybrid_target"):
        res, c = dip_fit("hybrid_target", BlendTarget(model, y, config.target_lambda, sigma, x0),
                         f"blend-DIP σ={sigma:g}")
        add("hybrid_target", res.output_ema, c)

    p_all = {m: psnr(x, clean).numpy() for m, (x, _) in out.items()}
    s_all = {m: ssim(x, clean).numpy() for m, (x, _) in out.items()}
    rows = [{"method": m, "photo": name, "sigma": sigma, "seed": seed, "t_sigma": t_sigma,
             "psnr": float(p_all[m][i]), "ssim": float(s_all[m][i]), "gflops_per_image": c.flops / 1e9,
             "nfe": c.nfe, "dip_iters": c.dip_iters, "wall_s": c.wall_s,
             "knows_sigma": family(m) in KNOWS_SIGMA, "oracle": m in ORACLES}
            for m, (_, c) in out.items()
            for i, (name, seed) in enumerate((n, s) for n in names for s in seeds)]
    images = {f"{m}|{sigma:g}": x.view(len(names), len(seeds), *x.shape[1:]) for m, (x, _) in out.items()}
    for m, curve in curves.items():
        c = np.asarray(curve, np.float32)
        images[f"curve.{m}|{sigma:g}"] = torch.from_numpy(c.reshape(len(c), -1).mean(1))
    return rows, images


# --------------------------------------------------------------------------- summaries
def summarise(rows: list[dict]) -> dict:
    """Per σ (``"25"``) and method: PSNR and SSIM spreads over (photo, seed) problems, mean
    compute, and the per-problem PSNR ``values`` (for paired differences)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(f"{r['sigma']:g}", {}).setdefault(r["method"], []).append(r)
    return {sig: {m: {"psnr": spread([r["psnr"] for r in rs]), "ssim": spread([r["ssim"] for r in rs]),
                      "values": [r["psnr"] for r in rs],
                      **{k: float(np.mean([r[k] for r in rs]))
                         for k in ("gflops_per_image", "nfe", "dip_iters", "wall_s")},
                      "knows_sigma": rs[0]["knows_sigma"], "oracle": rs[0]["oracle"]}
                  for m, rs in by.items()} for sig, by in groups.items()}


def verdict(summary: dict) -> dict:
    """Per σ: the best combined method (no oracle, no control), paired against the best single
    prior, BM3D, ``fuse_avg`` and DIP's oracle peak, with compute ratios."""
    out = {}
    for sig, by in summary.items():
        combined = [m for m in by if family(m) in COMBINED and m not in CONTROLS]
        singles = [m for m in by if family(m) in SINGLE_PRIORS or family(m) == "ddim"]
        if not combined or not singles:
            continue
        best_c, best_s = (max(ms, key=lambda m: by[m]["psnr"]["mean"]) for ms in (combined, singles))
        against = {"best_single": best_s, **{k: k for k in ("bm3d", "fuse_avg", "dip_oracle") if k in by}}
        ratio = lambda k, m: by[best_c][k] / by[m][k] if by[m][k] > 0 else None  # noqa: E731
        out[sig] = {"best_combined": best_c, "best_single": best_s, "against": {}}
        for label, m in against.items():
            d = paired_difference(by[best_c]["values"], by[m]["values"])
            out[sig]["against"][label] = {
                "method": m, "diff": d, "flops_ratio": ratio("gflops_per_image", m),
                "wall_ratio": ratio("wall_s", m), "beats": d["resolved"] and d["mean"] > 0,
                "loses": d["resolved"] and d["mean"] < 0}
    return out


# --------------------------------------------------------------------------- the chapter's plan
NOTEBOOK = "03_dip_init_ddpm"
# notebook parameter -> the profile field it overrides (and a tuning grid sets)
PARAMETER_FIELDS = {"photo_dip_iterations": "photo_dip_iterations",
                    "red_lambda": "photo_red_lambda",
                    "red_sigma_eff_ratio": "photo_red_sigma_eff_ratio",
                    "red_refresh": "photo_red_refresh", "target_lambda": "photo_target_lambda"}
#: Task C's notebook parameters (chapter 03 passes them to :func:`make_config`).
NOTEBOOK_PARAMETERS = ("photos", "photo_sigmas", "photo_methods", "photo_t0_list", "tuned", *PARAMETER_FIELDS)


def make_config(profile, photos=None, sigmas=None, seeds=None, methods=None, t0_list=None,
                tuned=None, **settings) -> tuple[PhotoConfig, tuple[str, ...], dict]:
    """Task C's config from the profile, the tuned file and the parameters (``None``: not given),
    checked before any work: ``(config, photos, record)``, ``record`` saying where each tuned
    setting came from."""
    from ..data import check_photos
    from ..tuned import tuned_overrides

    unknown = sorted(set(settings) - set(PARAMETER_FIELDS))
    if unknown:
        raise ValueError(f"unknown task C setting(s) {unknown}; valid: {sorted(PARAMETER_FIELDS)}")
    explicit = {PARAMETER_FIELDS[k]: v for k, v in settings.items() if v is not None}
    overrides, record = tuned_overrides(profile.name, tuned, NOTEBOOK, explicit)
    p = check_device(dataclasses.replace(profile, **overrides | explicit))  # no CUDA: one clear error
    names = check_photos(profile.photo_task_photos if photos is None else photos, "task C photographs",
                         min_size=p.photo_size)
    config = PhotoConfig(
        sigmas=tuple(float(s) for s in (p.photo_sigmas if sigmas is None else sigmas)),
        seeds=tuple(int(s) for s in (p.seeds if seeds is None else seeds)),
        dip=DIPConfig.from_profile(p, scales=p.photo_dip_scales, channels=p.photo_dip_channels),
        dip_iterations=int(p.photo_dip_iterations),
        dip_lr=p.dip_lr, ddim_steps=tuple(p.photo_ddim_steps),
        t0_list=tuple(int(t) for t in (p.photo_t0_list if t0_list is None else t0_list)),
        chain_sampler=p.int_chain_sampler, chain_steps=p.photo_chain_steps,
        red_lambda=float(p.photo_red_lambda),
        red_sigma_eff_ratio=float(p.photo_red_sigma_eff_ratio),
        red_refresh=int(p.photo_red_refresh), red_warm_start=bool(p.photo_red_warm_start),
        target_lambda=float(p.photo_target_lambda),
        methods=tuple(METHODS if methods is None else methods), device=p.device)
    return config, names, record


def verdict_rows(verdict_by_sigma: dict) -> list[dict]:
    """:func:`verdict` as tidy rows, one per (σ, comparison), with readers' names."""
    return [{"sigma": sig, "combined": method_label(v["best_combined"]),
             "against": method_label(e["method"]) + (" (best single prior)" if key == "best_single" else ""),
             "outcome": "beats" if e["beats"] else ("loses to" if e["loses"] else "not resolved"),
             "diff": e["diff"], "flops_ratio": e["flops_ratio"], "wall_ratio": e["wall_ratio"]}
            for sig, v in verdict_by_sigma.items() for key, e in v["against"].items()
            if not (key == "bm3d" and v["best_single"] == "bm3d")]  # already the best single
