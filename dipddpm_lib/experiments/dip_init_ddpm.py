"""Chapter 03, tasks A (generation) and B (denoising at a diffusion noise level): a DIP start for
the digit DDPM's chain, each DIP-based method matched by plain samplers at its FLOPs. Tidy rows,
one per (method, seed): quality, compute per image, wall seconds of the whole set."""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..cache import Cache, cached
from ..compute import Compute
from ..ddpm import BETA_SCHEDULES, SAMPLERS, TrainedDDPM, alphas_cumprod, prior_noise, q_sample
from ..dip import Degradation, DIPConfig, fit
from ..errors import check_choice, check_images, check_positive_int, check_timestep
from ..methods.ddpm_denoise import chain_from
from ..methods.dip_t0 import check_iterations, dip_t0, fit_dip_snapshots
from ..methods.tdpm_dip import tdpm_fit, tdpm_generate
from ..photo_prior import unet_flops

SAMPLER_TAG = {"ddpm": "ddpm", "ddim": "ddim", "dpm-solver++": "dpmpp"}
LABELS = {"test_refs": "test images (the references)", "noisy_rescaled": "noisy input",
          "clean": "clean images", "noisy": "noisy input (rescaled, clipped)",
          "ddpm_all": "DDPM chain from y (all steps)", "dip_fixed": "DIP (fixed count)",
          "dip_oracle_peak": "DIP oracle peak (upper bound)", "tdpm_dip": "TDPM-DIP",
          r"dip_t0_k(\d+)_t(\d+)": "DIP→t0, {} DIP iterations, t0 = {}",
          r"tdpm_k(\d+)_t(\d+)": "TDPM-DIP, {} DIP iterations, T′ = {}", r"dip_t0_(\d+)": "DIP→t0, t0 = {}",
          r"ddpm_(\d+)": "DDPM-{}", r"ddim_(\d+)": "DDIM-{}", r"dpmpp_(\d+)": "DPM-Solver++-{}"}


def method_label(method: str, labels: dict = LABELS) -> str:
    """A reader's name for a task A / B method identifier (tables, legends, sentences)."""
    if method.startswith("ddim_eq_"):
        return f"DDIM at the FLOPs of {method_label(method[len('ddim_eq_'):])}"
    for pattern, label in labels.items():
        if m := re.fullmatch(pattern, method):
            return label.format(*m.groups())
    return method


# --------------------------------------------------------------------------- set-up
def unet_flops_per_image(model: TrainedDDPM) -> float:
    """FLOPs of one denoiser evaluation on one image of the model's own size."""
    cfg = model.unet.config
    return unet_flops(model, (cfg.in_channels, cfg.sample_size, cfg.sample_size))


def equal_flops_steps(flops_per_image: float, unet_flops: float, max_steps: int = 1000) -> int:
    """Denoiser calls that cost the same FLOPs (at least 1)."""
    return int(min(max_steps, max(1, round(flops_per_image / unet_flops))))


def diffusion_noisy(x0: torch.Tensor, t_noise: int, seed: int, beta_schedule: str,
                    num_train_timesteps: int = 1000) -> torch.Tensor:
    """``y = sqrt(abar_t) x0 + sqrt(1 − abar_t) ε`` (model space) for clean ``x0`` in [0, 1]."""
    check_images(x0, "clean images")
    check_timestep("t_noise", t_noise, num_train_timesteps)
    eps = prior_noise(len(x0), tuple(x0.shape[1:]), seed + 20_000)
    return q_sample(x0, t_noise, eps, beta_schedule, num_train_timesteps)


def rescale_to_x0(y: torch.Tensor, t_noise: int, beta_schedule: str,
                  num_train_timesteps: int = 1000) -> tuple[torch.Tensor, float]:
    """``(y / sqrt(abar_t) + 1) / 2``, an unbiased estimate of x0 in [0, 1], and its noise std."""
    abar = float(alphas_cumprod(beta_schedule, num_train_timesteps)[t_noise])
    return (y / abar ** 0.5 + 1.0) / 2.0, ((1 - abar) / abar) ** 0.5 / 2.0


def check_study_params(t0_list, t_trunc_list, dip_iterations, chain_sampler: str,
                       chain_steps: int, t_noise: int, num_refs: int, denoise_images: int,
                       beta_schedule: str, num_train_timesteps: int = 1000) -> None:
    """Validate tasks A and B's parameters at once, before anything is trained or written."""
    check_choice("beta schedule", beta_schedule, BETA_SCHEDULES)
    check_choice("chain sampler", chain_sampler, SAMPLERS)
    for name, v in (("chain_steps", chain_steps), ("num_refs", num_refs),
                    ("denoise_images", denoise_images)):
        check_positive_int(name, v)
    for name, ts in (("t0", t0_list), ("T_trunc", t_trunc_list), ("t_noise", [t_noise])):
        for t in ts:
            check_timestep(name, t, num_train_timesteps)
    check_iterations(dip_iterations)


TASKS = ("A", "B", "C")


@dataclass(frozen=True)
class Plan:
    profile: object
    tasks: list
    seeds: list
    num_refs: int
    dip_iterations: list
    t0_list: list
    t_trunc_list: list
    chain_sampler: str
    chain_steps: int
    t_noise: int
    denoise_images: int
    photo_cfg: object
    photo_names: tuple
    photo_record: dict


def make_plan(profile: str, tasks=None, seeds=None, beta_schedule: str = "linear", num_refs=None,
              dip_iterations=None, t0_list=None, t_trunc_list=None, chain_sampler=None,
              chain_steps=None, t_noise=None, denoise_images=None, data_dir=None,
              prior_train_steps=None, prior_unet_channels=None, device=None, **photo) -> Plan:
    """Chapter 03's parameters (``None``: the profile's) checked before any work; ``photo``: task
    C's (:data:`photo_denoising.NOTEBOOK_PARAMETERS`)."""
    from ..features import check_scoring
    from ..profiles import check_device, get_profile
    from . import photo_denoising

    p = check_device(get_profile(profile, **{k: v for k, v in {
        "data_dir": data_dir, "prior_train_steps": prior_train_steps,
        "prior_unet_channels": prior_unet_channels, "device": device}.items() if v is not None}))
    given = lambda value, default: default if value is None else value  # noqa: E731
    tasks = list(given(tasks, TASKS))
    if not tasks or set(tasks) - set(TASKS):
        raise ValueError(f"tasks must be a non-empty subset of {list(TASKS)}, got {tasks}")
    t0_list = given(t0_list, p.int_t0_list)
    ab = dict(num_refs=given(num_refs, p.int_num_refs),
              dip_iterations=given(dip_iterations, p.int_dip_iterations), t0_list=t0_list,
              t_trunc_list=given(t_trunc_list, t0_list),
              chain_sampler=given(chain_sampler, p.int_chain_sampler),
              chain_steps=given(chain_steps, p.int_chain_steps), t_noise=given(t_noise, p.int_t_noise),
              denoise_images=given(denoise_images, p.int_denoise_images))
    check_study_params(**ab, beta_schedule=beta_schedule, num_train_timesteps=p.num_train_timesteps)
    unknown = sorted(set(photo) - set(photo_denoising.NOTEBOOK_PARAMETERS))
    if unknown:
        raise TypeError(f"unknown chapter 03 parameter(s) {unknown}")
    seeds = list(given(seeds, p.seeds))
    photo = {k: v for k, v in photo.items() if v is not None}
    cfg, names, record = photo_denoising.make_config(
        p, photo.pop("photos", None), photo.pop("photo_sigmas", None), seeds,
        photo.pop("photo_methods", None), photo.pop("photo_t0_list", None), photo.pop("tuned", None), **photo)
    if {"A", "B"} & set(tasks):
        check_scoring(p)  # the data folder and fid_features, before anything is written
    return Plan(p, tasks, seeds, **ab, photo_cfg=cfg, photo_names=names,
                photo_record=record)


# --------------------------------------------------------------------------- studies
def cached_study(kind: str, key: dict, run, cache: Cache | None):
    """``run()`` → ``(rows, images)``, cached whole under ``key`` (a hit keeps the first run's
    ``wall_s``)."""
    if cache is None:
        return run()

    def compute():
        rows, images = run()
        return {f"img.{m}": x for m, x in images.items()}, {"rows": rows, "order": list(images)}

    tensors, meta = cached(kind, key, compute, cache)
    return meta["rows"], {m: tensors[f"img.{m}"] for m in meta["order"]}


def _cached_call(kind: str, study, args: dict, data: tuple[str, ...]):
    """``study(**args)`` through :func:`cached_study`, keyed by its settings, the model's config,
    the feature network's name and the ``data`` tensors."""
    skip = ("model", "classifier", "progress", "cache") + data
    key = {**{k: v for k, v in args.items() if k not in skip}, "model": args["model"].meta["config"],
           "features": getattr(args.get("classifier"), "name", None), "data": {k: args[k] for k in data}}
    return cached_study(kind, key, lambda: study(**{**args, "cache": None}), args["cache"])


def _row(method: str, seed: int, c: Compute, n: int, **extra) -> dict:
    return {"method": method, "seed": seed, "gflops_per_image": c.flops / 1e9, "nfe": c.nfe,
            "dip_iters": c.dip_iters, "wall_s": c.wall_s * n, **extra}


def generation_study(model: TrainedDDPM, classifier, x_train: torch.Tensor, x_test: torch.Tensor,
                     seeds, num_refs: int, dip_cfg: DIPConfig, dip_iterations, t0_list,
                     t_trunc_list, chain_sampler: str = "ddim", chain_steps: int = 20,
                     baselines=("ddim", "dpm-solver++"), sample_batch: int = 256,
                     ddpm_steps: int = 1000, progress: bool = True, keep_images: bool = True,
                     ddpm_pool: int | None = None, device: str = "cpu", cache: Cache | None = None):
    """Task A per seed from ``num_refs`` test references: DIP→t0 and TDPM-DIP variants, the DDPM
    chain from noise (the first ``num_refs`` of chapter 01's cached ``ddpm_pool``) and each
    baseline at each variant's FLOPs. ``(rows, images)``, images of the first seed."""
    if cache is not None:
        return _cached_call("int_generation", generation_study, dict(locals()), ("x_train", "x_test"))
    from .. import ddpm
    from ..metrics import GenerationScorer, nearest_distance

    its = check_iterations(dip_iterations)  # the other settings: check_study_params
    unet_flops = unet_flops_per_image(model)
    scorer = GenerationScorer(x_train, classifier, kid_subset=min(50, num_refs))
    rows, images = [], {}

    def add(method, seed, x, c, refs, **extra):
        rows.append(_row(method, seed, c, num_refs, **scorer(x),
                         dist_to_ref=float(((x - refs).flatten(1).pow(2).mean(1).sqrt()).mean()),
                         nn_train_dist=float(nearest_distance(x, x_train).mean()), **extra))
        if keep_images and seed == seeds[0]:
            images[method] = x

    for seed in seeds:
        perm = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(seed))
        refs = x_test[perm[:num_refs]]
        pool = ddpm_pool if ddpm_pool is not None and ddpm_pool >= num_refs else num_refs
        plain = ddpm.sample_cached(model, "ddpm", ddpm_steps, pool, seed, sample_batch, progress=progress)
        add(f"ddpm_{ddpm_steps}", seed, plain.images[:num_refs], plain.compute.per_image(pool), refs)
        add("test_refs", seed, refs, Compute(), refs)
        variants = {}
        for k, (x_dip, c_dip) in fit_dip_snapshots(refs, dip_cfg, its, seed, progress=progress,
                                                   device=device).items():
            for t0 in t0_list:
                x, c = dip_t0(model, x_dip, t0, seed, chain_sampler, chain_steps)
                variants[f"dip_t0_k{k}_t{t0}"] = (dict(variant="dip_t0", dip_iterations=k, t=t0), x, c_dip + c)
        for tt in t_trunc_list:
            for k, (x, c) in tdpm_generate(model, refs, tt, dip_cfg, its, seed, sampler=chain_sampler,
                                           steps=chain_steps, progress=progress,
                                           device=device).items():
                variants[f"tdpm_k{k}_t{tt}"] = (dict(variant="tdpm_dip", dip_iterations=k, t=tt), x, c)
        for name, (params, x, c) in variants.items():
            k_eq = equal_flops_steps(c.flops, unet_flops)
            add(name, seed, x, c, refs, **params, equal_flops_steps=k_eq)
            for sampler in baselines:
                name_b = f"{SAMPLER_TAG[sampler]}_{k_eq}"
                base = ddpm.sample_cached(model, sampler, k_eq, num_refs, seed, sample_batch, progress=False)
                if not any(r["method"] == name_b and r["seed"] == seed for r in rows):
                    add(name_b, seed, base.images, base.compute.per_image(num_refs), refs,
                        variant=sampler, steps=k_eq)
    return rows, images


def denoising_study(model: TrainedDDPM, x_clean: torch.Tensor, seeds, t_noise: int,
                    dip_cfg: DIPConfig, dip_iterations: int, t0_list, ddim_steps,
                    tdpm_iterations: int | None = None, chain_sampler: str = "ddim",
                    chain_steps: int = 20, progress: bool = True, device: str = "cpu",
                    cache: Cache | None = None):
    """Task B per seed on ``x_clean`` noised to ``t_noise``: chains from ``y``, DIP (and its oracle
    peak), DIP→t0, TDPM-DIP, and DDIM at each DIP-based method's FLOPs (``ddim_eq_<method>``)."""
    if cache is not None:
        return _cached_call("int_denoising", denoising_study, dict(locals()), ("x_clean",))
    from ..metrics import psnr, ssim

    T = model.num_train_timesteps
    n, rows, images = len(x_clean), [], {}
    unet_flops = unet_flops_per_image(model)
    tdpm_iterations = dip_iterations if tdpm_iterations is None else tdpm_iterations

    def add(method, seed, x, c, **extra):
        rows.append(_row(method, seed, c, n, psnr=float(psnr(x, x_clean).mean()),
                         ssim=float(ssim(x, x_clean).mean()), **extra))
        if seed == seeds[0]:
            images[method] = x

    def from_y(sampler, steps):  # a chain from the observation itself
        return chain_from(model, y, t_noise, sampler, steps, seed, y.shape[1])

    for seed in seeds:
        y = diffusion_noisy(x_clean, t_noise, seed, model.beta_schedule, T)
        y01, _ = rescale_to_x0(y, t_noise, model.beta_schedule, T)
        if seed == seeds[0]:
            images["clean"], images["noisy"] = x_clean, y01.clamp(0, 1)
        add("noisy_rescaled", seed, y01.clamp(0, 1), Compute())
        add("ddpm_all", seed, *from_y("ddpm", t_noise))
        for k in ddim_steps:
            add(f"ddim_{k}", seed, *from_y("ddim", k))
        dip = fit(Degradation("denoise", y01), dip_cfg, check_positive_int("iterations", dip_iterations),
                  clean=x_clean, seed=seed, progress=progress, desc="DIP on y", device=device)
        c_dip = dip.compute.per_image(n)
        add("dip_fixed", seed, dip.output_ema, c_dip)
        add("dip_oracle_peak", seed, dip.best_output, c_dip)
        dip_based = {"dip_fixed": (dip.output_ema, c_dip), **{  # each DIP→t0 with DIP's compute
            f"dip_t0_{t0}": (x, c_dip + c) for t0 in t0_list
            for x, c in [dip_t0(model, dip.output_ema, t0, seed, chain_sampler, chain_steps)]},
            "tdpm_dip": tdpm_fit(model, y, t_noise, dip_cfg, [tdpm_iterations], seed, chain_sampler,
                                 chain_steps, progress=progress, device=device)[tdpm_iterations]}
        for name, (x, c) in dip_based.items():
            if name != "dip_fixed":
                add(name, seed, x, c, chain=f"{chain_sampler}, <= {chain_steps} calls")
            k_eq = equal_flops_steps(c.flops, unet_flops, t_noise)
            add(f"ddim_eq_{name}", seed, *from_y("ddim", k_eq), steps=k_eq, matches=name)
    return rows, images
