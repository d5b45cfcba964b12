"""DIP-initialised DDPM (chapter 03): start the reverse chain from a DIP prior.

Two variants, both on top of :func:`dipddpm_lib.ddpm.sample` and :func:`dipddpm_lib.dip.fit`:

* **DIP→t0** (SDEdit-style): fit DIP to a reference for ``k`` iterations, forward-noise its
  output to ``t0`` with the scheduler's ``add_noise``, and run the reverse chain from ``t0``.
* **TDPM-DIP** (truncated diffusion): fit DIP, fed the noise ``z`` itself as its input, to the
  truncated noisy image ``x_T' = sqrt(abar) x_ref + sqrt(1 - abar) z``; take its output as
  ``x_T'`` and run the reverse chain from ``T'``. With 0 DIP iterations the start is
  ``x_T'`` itself, and at ``T' = T`` it is ``z``, the sampler's own prior draw, so the chain
  is then exactly the plain DDPM chain for the same seed.

Compute is always the sum of the DIP fit (forward + backward, every iteration) and the chain.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from dataclasses import dataclass

import torch

from .cache import Cache
from .compute import Compute, count_flops
from .ddpm import TrainedDDPM, alphas_cumprod, from_model, prior_noise, q_sample, sample
from .dip import Degradation, DIPConfig, fit
from .errors import check_images, check_positive_int, check_timestep


@dataclass
class Result:
    """Images in [0,1] from one method, and what they cost *per image* (FLOPs, NFE, DIP
    iterations) with the wall seconds of the whole batch."""

    images: torch.Tensor
    compute: Compute

    def per_image(self) -> dict:
        """The compute as a JSON-able dict (FLOPs, NFE and DIP iterations per image)."""
        return self.compute.to_dict()


def unet_flops_per_image(model: TrainedDDPM) -> float:
    """FLOPs of one denoiser evaluation on one image."""
    cfg = model.unet.config
    x = torch.zeros(1, cfg.in_channels, cfg.sample_size, cfg.sample_size,
                    device=next(model.unet.parameters()).device)
    with torch.no_grad():
        flops, _ = count_flops(model.unet, x, torch.zeros(1, dtype=torch.long, device=x.device))
    return flops


def equal_flops_steps(flops_per_image: float, unet_flops: float, max_steps: int = 1000) -> int:
    """The number of denoiser evaluations that costs the same FLOPs (at least 1)."""
    return int(min(max_steps, max(1, round(flops_per_image / unet_flops))))


def _check_iterations(iterations) -> list[int]:
    its = sorted({int(i) for i in iterations})
    if not its or its[0] < 0:
        raise ValueError(f"dip_iterations must be whole numbers >= 0, got {list(iterations)}")
    return its


def fit_dip_snapshots(target: torch.Tensor, cfg: DIPConfig, iterations, seed: int = 0,
                      lr: float = 0.01, reg_noise_std: float = 1.0 / 30.0, ema: float = 0.99,
                      net_input: torch.Tensor | None = None, progress: bool = True,
                      desc: str = "DIP prior", device: str = "cpu") -> dict[int, Result]:
    """One batched DIP fit to ``target`` (N images), with the EMA output kept at each
    iteration count in ``iterations``. Each snapshot carries the compute used up to it."""
    its = _check_iterations(iterations)
    out: dict[int, Result] = {}
    if its[-1] == 0:
        return out
    start, n = time.perf_counter(), target.shape[0]
    stamps: dict[int, torch.Tensor] = {}
    wall: dict[int, float] = {}

    def grab(i, _out, out_ema, _hist):
        if i in its:
            stamps[i], wall[i] = out_ema.detach().cpu().clone(), time.perf_counter() - start
        return False

    res = fit(Degradation("denoise", target), cfg, its[-1], lr=lr, reg_noise_std=reg_noise_std,
              ema=ema, seed=seed, callback=grab, net_input=net_input, progress=progress,
              desc=desc, device=device)
    flops_per_it = res.compute.flops / res.stopped_at / n
    for i in its:
        if i > 0:
            out[i] = Result(stamps[i], Compute(flops=flops_per_it * i, dip_iters=i, wall_s=wall[i]))
    return out


def dip_to_t0(model: TrainedDDPM, prior: Result, t0: int, seed: int = 0, sampler: str = "ddim",
              num_steps: int = 20, progress: bool = False) -> Result:
    """Forward-noise a DIP output (``prior``, [0,1]) to ``t0`` and run the reverse chain from
    there with at most ``min(num_steps, t0)`` denoiser evaluations. ``t0 = 0`` returns the
    DIP output unchanged. The compute includes the DIP fit's."""
    check_timestep("t0", t0, model.num_train_timesteps)
    check_images(prior.images, "DIP output")
    if t0 == 0:
        return Result(prior.images, prior.compute)
    noise = prior_noise(len(prior.images), tuple(prior.images.shape[1:]), seed + 10_000)
    x_t0 = q_sample(prior.images, t0, noise, model.beta_schedule, model.num_train_timesteps)
    return reverse_from(model, Result(x_t0, prior.compute), t0, seed, sampler, num_steps, progress)


def reverse_from(model: TrainedDDPM, start: Result, t: int, seed: int = 0, sampler: str = "ddim",
                 num_steps: int = 20, progress: bool = False) -> Result:
    """Run the reverse chain from ``start`` (model-space images at time ``t``) with at most
    ``min(num_steps, t)`` denoiser evaluations; the compute adds to the start's."""
    if t == 0:
        return Result(from_model(start.images), start.compute)
    chain = sample(model.unet, model.beta_schedule, sampler, min(num_steps, t),
                   x_start=start.images, t_start=t, seed=seed, progress=progress,
                   num_train_timesteps=model.num_train_timesteps)
    per_image = Compute(flops=chain.compute.flops / len(start.images), nfe=chain.compute.nfe,
                        wall_s=chain.compute.wall_s)
    return Result(chain.images, start.compute + per_image)


def truncated_start(x_ref: torch.Tensor, t_trunc: int, z: torch.Tensor, beta_schedule: str,
                    num_train_timesteps: int = 1000) -> torch.Tensor:
    """``x_T' = sqrt(abar_T') x_ref + sqrt(1 - abar_T') z`` in model space; at ``T' = T`` the
    start is ``z`` itself (the prior the sampler draws; abar_T ≈ 0 is taken as 0)."""
    check_timestep("T_trunc", t_trunc, num_train_timesteps)
    if t_trunc == num_train_timesteps:
        return z.clone()
    return q_sample(x_ref, t_trunc, z, beta_schedule, num_train_timesteps)


def tdpm_dip(model: TrainedDDPM, x_ref: torch.Tensor, t_trunc: int, cfg: DIPConfig,
             iterations, seed: int = 0, sampler: str = "ddim", num_steps: int = 20,
             lr: float = 0.01, progress: bool = True, device: str = "cpu") -> dict[int, Result]:
    """TDPM-DIP for each DIP iteration count in ``iterations`` (0 allowed: no DIP).

    ``z`` is the sampler's prior draw for ``seed``; DIP's input is ``z`` itself (so its
    ``input_depth`` is set to the image channels, with a linear output, since ``x_T'`` is not
    confined to [0, 1]). The chain runs from ``T'`` with at most ``min(num_steps, T')``
    denoiser evaluations.
    """
    check_images(x_ref, "reference images")
    check_timestep("T_trunc", t_trunc, model.num_train_timesteps)
    its = _check_iterations(iterations)
    shape = tuple(x_ref.shape[1:])
    z = prior_noise(len(x_ref), shape, seed)
    target = truncated_start(x_ref, t_trunc, z, model.beta_schedule, model.num_train_timesteps)
    cfg = DIPConfig(**{**cfg.__dict__, "input_depth": shape[0], "output": "linear"})
    starts = {0: Result(target, Compute())} if 0 in its else {}
    if its[-1] > 0:
        fits = fit_dip_snapshots(target, cfg, [i for i in its if i > 0], seed, lr=lr,
                                 reg_noise_std=0.0, net_input=z, progress=progress,
                                 desc=f"TDPM-DIP T'={t_trunc}", device=device)
        starts.update(fits)
    return {i: reverse_from(model, st, t_trunc, seed, sampler, num_steps) for i, st in starts.items()}


def tdpm_denoise(model: TrainedDDPM, y: torch.Tensor, t_noise: int, cfg: DIPConfig, iterations,
                 seed: int = 0, sampler: str = "ddpm", num_steps: int = 1000, lr: float = 0.01,
                 progress: bool = True, device: str = "cpu") -> dict[int, Result]:
    """TDPM-DIP on the denoising task: the observation ``y`` *is* ``x_{t_noise}``, whose noise
    is unknown, so DIP (standard noise input, linear output) fits ``y`` itself; its output
    replaces ``y`` as the start of the chain from ``t_noise``."""
    check_images(y, "observation")
    its = [i for i in _check_iterations(iterations) if i > 0]
    cfg = DIPConfig(**{**cfg.__dict__, "output": "linear"})
    fits = fit_dip_snapshots(y, cfg, its, seed, lr=lr, progress=progress,
                             desc=f"TDPM-DIP on y (t={t_noise})", device=device)
    return {i: reverse_from(model, st, t_noise, seed, sampler, num_steps) for i, st in fits.items()}


# --------------------------------------------------------------------------- denoising task
def diffusion_noisy(x0: torch.Tensor, t_noise: int, seed: int, beta_schedule: str,
                    num_train_timesteps: int = 1000) -> torch.Tensor:
    """``y = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (model space) for clean ``x0`` in [0,1]."""
    check_images(x0, "clean images")
    check_timestep("t_noise", t_noise, num_train_timesteps)
    eps = prior_noise(len(x0), tuple(x0.shape[1:]), seed + 20_000)
    return q_sample(x0, t_noise, eps, beta_schedule, num_train_timesteps)


def rescale_to_x0(y: torch.Tensor, t_noise: int, beta_schedule: str,
                  num_train_timesteps: int = 1000) -> tuple[torch.Tensor, float]:
    """Rescale a diffusion observation to the x0 range: ``(y / sqrt(abar_t) + 1) / 2`` is an
    unbiased, unclipped estimate of x0 in [0,1] with noise std ``sqrt((1-abar)/abar) / 2``.
    Returns the rescaled image and that noise std."""
    abar = float(alphas_cumprod(beta_schedule, num_train_timesteps)[t_noise])
    return (y / abar ** 0.5 + 1.0) / 2.0, ((1 - abar) / abar) ** 0.5 / 2.0


def dip_denoise(y: torch.Tensor, t_noise: int, beta_schedule: str, cfg: DIPConfig,
                iterations: int, clean: torch.Tensor | None = None, seed: int = 0,
                lr: float = 0.01, progress: bool = True, device: str = "cpu",
                num_train_timesteps: int = 1000):
    """DIP alone on a diffusion observation, rescaled to the x0 range (see
    :func:`rescale_to_x0`). Returns the :class:`~dipddpm_lib.dip.DIPResult` (with the oracle
    peak when ``clean`` is given)."""
    check_positive_int("iterations", iterations)
    target, _ = rescale_to_x0(y, t_noise, beta_schedule, num_train_timesteps)
    return fit(Degradation("denoise", target), cfg, iterations, clean=clean, lr=lr, seed=seed,
               progress=progress, desc="DIP on y", device=device)


# --------------------------------------------------------------------------- studies
SAMPLER_TAG = {"ddpm": "ddpm", "ddim": "ddim", "dpm-solver++": "dpmpp"}


#: Bump when a study's code changes what it computes: cached studies are then redone.
STUDY_CACHE_VERSION = 2
#: Arguments that are not settings (the data and models enter the key by their identity).
_NOT_SETTINGS = ("model", "classifier", "x_train", "x_test", "x_clean", "progress", "cache")


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _cached_study(kind: str, args: dict, run, cache: Cache) -> tuple[list[dict], dict]:
    """``run()`` → ``(rows, images)``, cached under every setting in ``args`` plus the model's
    training config, the feature network and a digest of the data. A hit returns the stored
    rows (their ``wall_s`` are the original run's) and images in their original order."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return dataclasses.asdict(v)
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v

    key = {k: plain(v) for k, v in args.items() if k not in _NOT_SETTINGS}
    key["model"] = args["model"].meta["config"]
    if args.get("classifier") is not None:
        key["features"] = args["classifier"].name
    key["data"] = {k: _digest(args[k]) for k in ("x_train", "x_test", "x_clean") if k in args}
    key["v"] = STUDY_CACHE_VERSION

    def compute():
        rows, images = run()
        return {f"img.{m}": x for m, x in images.items()}, {"rows": rows, "order": list(images)}

    tensors, meta = cache.get_or_compute(kind, key, compute)
    return meta["rows"], {m: tensors[f"img.{m}"] for m in meta["order"]}


def _row(method: str, seed: int, res: Result, **extra) -> dict:
    c = res.compute
    return {"method": method, "seed": seed, "gflops_per_image": c.flops / 1e9, "nfe": c.nfe,
            "dip_iters": c.dip_iters, "wall_s": c.wall_s, **extra}


def _sample_quality(images, refs, x_train, scorer) -> dict:
    from .metrics import nearest_distance

    q = scorer(images)
    q["dist_to_ref"] = float(((images - refs).flatten(1).pow(2).mean(1).sqrt()).mean())
    q["nn_train_dist"] = float(nearest_distance(images, x_train).mean())
    return q


def generation_study(model: TrainedDDPM, classifier, x_train: torch.Tensor, x_test: torch.Tensor,
                     seeds, num_refs: int, dip_cfg: DIPConfig, dip_iterations, t0_list,
                     t_trunc_list, chain_sampler: str = "ddim", chain_steps: int = 20,
                     baselines=("ddim", "dpm-solver++"), sample_batch: int = 256,
                     ddpm_steps: int = 1000, progress: bool = True, keep_images: bool = True,
                     ddpm_pool: int | None = None, device: str = "cpu", cache: Cache | None = None):
    """Task A (generation). For each seed: ``num_refs`` reference images from the test split;
    DIP→t0 over ``dip_iterations`` × ``t0_list``; TDPM-DIP over ``dip_iterations`` ×
    ``t_trunc_list``; the DDPM chain of ``ddpm_steps`` steps (``ddpm_<steps>``; T = 1000 in
    quick and full) from noise; and, for every variant, DDIM and DPM-Solver++
    from noise at the same FLOPs per image. Every row carries FID/KID/confident fraction,
    distance to its own reference, nearest-train distance and the compute used.

    Returns ``(rows, images)``: a list of dicts and, for the first seed, the images of every
    method (when ``keep_images``). With a ``cache`` the whole study is stored and a rerun
    with the same settings, model and data loads it.

    ``ddpm_pool`` (chapter 01's ``num_samples``): the DDPM chain's samples are the first
    ``num_refs`` of chapter 01's cached set of that size (drawn once, shared), when
    ``num_refs`` ≤ ``ddpm_pool``; their compute is charged per image as if drawn alone."""
    if cache is not None:
        args = dict(locals())
        return _cached_study("int_generation", args, lambda: generation_study(
            **{k: v for k, v in args.items() if k != "cache"}), cache)
    from .ddpm import sample_cached

    num_refs = check_positive_int("num_refs", num_refs)
    for t in list(t0_list) + list(t_trunc_list):
        check_timestep("t0 / T_trunc", t, model.num_train_timesteps)
    its = _check_iterations(dip_iterations)
    from .metrics import GenerationScorer

    unet_flops = unet_flops_per_image(model)
    scorer = GenerationScorer(x_train, classifier, kid_subset=min(50, num_refs))
    rows, images = [], {}

    def add(method, seed, res, refs, **extra):
        rows.append(_row(method, seed, res, **_sample_quality(res.images, refs, x_train, scorer),
                         **extra))
        if keep_images and seed == seeds[0]:
            images[method] = res.images

    for seed in seeds:
        perm = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(seed))
        refs = x_test[perm[:num_refs]]
        pool = ddpm_pool if ddpm_pool is not None and ddpm_pool >= num_refs else num_refs
        plain = sample_cached(model, "ddpm", ddpm_steps, pool, seed, sample_batch,
                              progress=progress)
        add(f"ddpm_{ddpm_steps}", seed, Result(plain.images[:num_refs],
                                      Compute(plain.compute.flops / pool, plain.compute.nfe,
                                              wall_s=plain.compute.wall_s * num_refs / pool)),
            refs)
        add("test_refs", seed, Result(refs, Compute()), refs)
        variants = {}
        priors = fit_dip_snapshots(refs, dip_cfg, [i for i in its if i > 0], seed,
                                   progress=progress)
        for k, prior in priors.items():
            for t0 in t0_list:
                variants[f"dip_t0_k{k}_t{t0}"] = (dict(variant="dip_t0", dip_iterations=k, t=t0),
                                                  dip_to_t0(model, prior, t0, seed, chain_sampler,
                                                            chain_steps))
        for tt in t_trunc_list:
            for k, res in tdpm_dip(model, refs, tt, dip_cfg, its, seed, chain_sampler,
                                   chain_steps, progress=progress).items():
                variants[f"tdpm_k{k}_t{tt}"] = (dict(variant="tdpm_dip", dip_iterations=k, t=tt), res)
        for name, (params, res) in variants.items():
            k_eq = equal_flops_steps(res.compute.flops, unet_flops)
            add(name, seed, res, refs, **params, equal_flops_steps=k_eq)
            for sampler in baselines:
                base = sample_cached(model, sampler, k_eq, num_refs, seed, sample_batch,
                                     progress=False)
                name_b = f"{SAMPLER_TAG[sampler]}_{k_eq}"
                if not any(r["method"] == name_b and r["seed"] == seed for r in rows):
                    add(name_b, seed, Result(base.images, Compute(base.compute.flops / num_refs,
                                                                  base.compute.nfe,
                                                                  wall_s=base.compute.wall_s)),
                        refs, variant=sampler, steps=k_eq)
    return rows, images


def denoising_study(model: TrainedDDPM, x_clean: torch.Tensor, seeds, t_noise: int,
                    dip_cfg: DIPConfig, dip_iterations: int, t0_list, ddim_steps,
                    tdpm_iterations: int | None = None, chain_sampler: str = "ddim",
                    chain_steps: int = 20, progress: bool = True, device: str = "cpu",
                    cache: Cache | None = None):
    """Task B (denoising at a diffusion noise level). For each seed, ``y`` is ``x_clean``
    noised to ``t_noise``; the methods are the DDPM chain from ``t_noise`` (all steps), DDIM
    from ``t_noise`` at each of ``ddim_steps`` (1 step = the one-shot x0 prediction), DIP
    alone on the rescaled ``y`` (fixed iterations, and its oracle peak), DIP→t0 for each
    ``t0``, and TDPM-DIP (the DIP-based chains use ``chain_sampler`` with at most
    ``chain_steps`` denoiser calls); plus DDIM at the FLOPs of each DIP-based method.

    Returns ``(rows, images)``: per-seed rows with PSNR/SSIM against the clean images and
    the compute per image, and the first seed's images per method (plus clean and noisy).
    With a ``cache`` the whole study is stored and a rerun with the same settings, model and
    images loads it."""
    if cache is not None:
        args = dict(locals())
        return _cached_study("int_denoising", args, lambda: denoising_study(
            **{k: v for k, v in args.items() if k != "cache"}), cache)
    from .metrics import psnr, ssim

    check_images(x_clean, "clean images")
    T = model.num_train_timesteps
    check_timestep("t_noise", t_noise, T)
    for t in t0_list:
        check_timestep("t0", t, T)
    n, rows, images = len(x_clean), [], {}
    unet_flops = unet_flops_per_image(model)
    tdpm_iterations = dip_iterations if tdpm_iterations is None else tdpm_iterations

    def add(method, seed, res, **extra):
        img = res.images
        rows.append(_row(method, seed, res, psnr=float(psnr(img, x_clean).mean()),
                         ssim=float(ssim(img, x_clean).mean()), **extra))
        if seed == seeds[0]:
            images[method] = img

    for seed in seeds:
        y = diffusion_noisy(x_clean, t_noise, seed, model.beta_schedule, T)
        y01, _ = rescale_to_x0(y, t_noise, model.beta_schedule, T)
        if seed == seeds[0]:
            images["clean"], images["noisy"] = x_clean, y01.clamp(0, 1)
        add("noisy_rescaled", seed, Result(y01.clamp(0, 1), Compute()))
        start = Result(y, Compute())
        add("ddpm_all", seed, reverse_from(model, start, t_noise, seed, "ddpm", t_noise))
        for k in ddim_steps:
            add(f"ddim_{k}", seed, reverse_from(model, start, t_noise, seed, "ddim", k))
        dip = dip_denoise(y, t_noise, model.beta_schedule, dip_cfg, dip_iterations,
                          clean=x_clean, seed=seed, progress=progress, device=device,
                          num_train_timesteps=T)
        per_img = Compute(dip.compute.flops / n, dip_iters=dip.compute.dip_iters,
                          wall_s=dip.compute.wall_s)
        fixed = Result(dip.output_ema, per_img)
        dip_based = {"dip_fixed": fixed}
        add("dip_fixed", seed, fixed)
        best_it = torch.as_tensor(dip.best_iteration).float().mean().item()
        add("dip_oracle_peak", seed, Result(dip.best_output, per_img), oracle=True,
            peak_iteration=best_it)
        for t0 in t0_list:
            dip_based[f"dip_t0_{t0}"] = dip_to_t0(model, fixed, t0, seed, chain_sampler,
                                                  chain_steps)
        tdpm = tdpm_denoise(model, y, t_noise, dip_cfg, [tdpm_iterations], seed, chain_sampler,
                            chain_steps, progress=progress, device=device)[tdpm_iterations]
        dip_based["tdpm_dip"] = tdpm
        for name, res in dip_based.items():
            if name != "dip_fixed":
                add(name, seed, res, chain=f"{chain_sampler}, <= {chain_steps} calls")
            k_eq = equal_flops_steps(res.compute.flops, unet_flops, t_noise)
            add(f"ddim_eq_{name}", seed, reverse_from(model, start, t_noise, seed, "ddim", k_eq),
                steps=k_eq, matches=name)
    return rows, images


def summarise(rows: list[dict], keys=("fid", "kid", "confident_fraction", "psnr", "ssim",
                                      "dist_to_ref", "nn_train_dist", "gflops_per_image",
                                      "nfe", "dip_iters", "wall_s")) -> dict:
    """Group per-seed rows by method: the :func:`~dipddpm_lib.results.spread` (mean, 95 %
    t-interval over seeds, …) of each numeric key, the per-seed values themselves (``values``,
    in seed order, for paired comparisons), plus the method's non-numeric parameters."""
    from .results import spread

    out: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        entry = {k: spread([r[k] for r in group]) for k in keys if k in group[0]}
        entry["values"] = {k: [r[k] for r in group] for k in keys if k in group[0]}
        entry.update({k: v for k, v in group[0].items()
                      if k not in keys and k not in ("seed", "method") and not isinstance(v, float)})
        entry["seeds"] = [r["seed"] for r in group]
        out[method] = entry
    return out


def equal_compute_comparison(summary: dict, metric: str, higher_is_better: bool,
                             baselines: dict[str, str]) -> list[dict]:
    """For every DIP-based method in ``summary``: its ``metric`` beside each baseline's at the
    same FLOPs per image, and whether it wins or loses: the per-seed paired difference (same
    seeds, so the same references and prior noise) has a 95 % t-interval that excludes 0.
    Neither is a tie at this number of seeds.

    ``baselines`` maps a baseline label to a key template filled with the method's
    ``equal_flops_steps`` (e.g. ``{"DDIM": "ddim_{k}"}``) or its name (``"ddim_eq_{name}"``).
    """
    out = []
    sign = 1 if higher_is_better else -1
    for name, entry in summary.items():
        k = entry.get("equal_flops_steps")
        if k is None and f"ddim_eq_{name}" not in summary:
            continue
        row = {"method": name, metric: entry[metric], "gflops_per_image": entry["gflops_per_image"]}
        for label, template in baselines.items():
            key = template.format(k=k, name=name)
            if key not in summary:
                continue
            base = summary[key][metric]
            d = _paired(entry, summary[key], metric)
            diff = sign * d["mean"]
            row[f"{label} ({key})"] = base
            row[f"wins vs {label}"] = bool(d["resolved"] and diff > 0)
            row[f"loses vs {label}"] = bool(d["resolved"] and diff < 0)
        out.append(row)
    return out


def _paired(a: dict, b: dict, metric: str) -> dict:
    """Paired per-seed difference ``a − b`` of ``metric`` between two summary entries (their
    shared seeds, in order); see :func:`~dipddpm_lib.results.paired_difference`."""
    from .results import paired_difference

    va = dict(zip(a["seeds"], a["values"][metric]))
    vb = dict(zip(b["seeds"], b["values"][metric]))
    seeds = [s for s in a["seeds"] if s in vb]
    return paired_difference([va[s] for s in seeds], [vb[s] for s in seeds])


def _count(cmp: list[dict], key: str) -> int:
    return sum(bool(r.get(key)) for r in cmp)


def ddpm_chain_key(summary: dict) -> str:
    """Task A's plain DDPM chain from noise in ``summary``: ``ddpm_<steps>``."""
    keys = [m for m in summary if re.fullmatch(r"ddpm_\d+", m)]
    if len(keys) != 1:
        raise ValueError(f"expected one DDPM chain (ddpm_<steps>) in the summary, got {keys}")
    return keys[0]


def verdict_generation(summary: dict, cmp: list[dict]) -> dict:
    """Task A's conclusions, computed from the summary.

    A variant whose samples end closer than half of the DDPM chain's distance to their own
    reference is counted as a *near-copy* of its test image: its FID then inherits the test
    images' FID and says nothing about generation. Equal-FLOPs wins/losses are reported
    separately for the variants that produce new samples and for the near-copies; a speed-up
    over the DDPM chain at matched-or-better FID is given in FLOPs *and* in wall time (a DIP
    iteration costs far more wall time per FLOP than a denoiser call), and only for variants
    that produce new samples: a near-copy's "speed-up" is not one. Returns numbers and Markdown."""
    key = ddpm_chain_key(summary)
    label = "DDPM-" + key.split("_")[1]
    ddpm, refs = summary[key], summary["test_refs"]
    fid = {m: summary[m]["fid"]["mean"] for m in summary}
    gfl = {m: summary[m]["gflops_per_image"]["mean"] for m in summary}
    wall = {m: summary[m]["wall_s"]["mean"] for m in summary}
    limit = 0.5 * ddpm["dist_to_ref"]["mean"]
    copies = {r["method"] for r in cmp if summary[r["method"]]["dist_to_ref"]["mean"] < limit}
    groups = {"new": [r for r in cmp if r["method"] not in copies],
              "copy": [r for r in cmp if r["method"] in copies]}

    def speedup(methods):
        """The largest FLOPs speed-up at matched-or-better FID, and the same method's wall
        speed-up (both over the DDPM chain, per sample set of the same size)."""
        good = [m for m in methods if fid[m] <= ddpm["fid"]["mean"]]
        if not good:
            return None, None
        m = max(good, key=lambda k: gfl[key] / gfl[k])
        return gfl[key] / gfl[m], wall[key] / wall[m] if wall[m] > 0 else None

    base = [m for m in summary if m.startswith(("ddim_", "dpmpp_"))]
    b_flops, b_wall = speedup(base)
    out = {"ddpm_chain": label, "ddpm_fid": ddpm["fid"]["mean"], "test_refs_fid": refs["fid"]["mean"],
           "near_copy_threshold": limit, "baseline_speedup_vs_ddpm_at_matched_fid": b_flops,
           "baseline_wall_speedup_vs_ddpm_at_matched_fid": b_wall}
    for g, rows in groups.items():
        names = [r["method"] for r in rows]
        out[g] = {"n": len(rows),
                  "wins_vs_ddim": _count(rows, "wins vs DDIM"), "loses_vs_ddim": _count(rows, "loses vs DDIM"),
                  "wins_vs_dpmpp": _count(rows, "wins vs DPM-Solver++"),
                  "loses_vs_dpmpp": _count(rows, "loses vs DPM-Solver++"),
                  "best": min(names, key=fid.get) if names else None}
        if g == "new":  # a near-copy's lower cost is not a generation speed-up: none is given
            sp, sp_wall = speedup(names)
            out[g]["speedup_vs_ddpm_at_matched_fid"] = sp
            out[g]["wall_speedup_vs_ddpm_at_matched_fid"] = sp_wall

    def sentence(g, label):
        o = out[g]
        if not o["n"]:
            return f"No variant configuration is {label}.\n\n"
        best = o["best"]
        text = (f"**{o['n']} variant configurations {label}.** At equal FLOPs per image "
                f"{o['wins_vs_ddim']} beat DDIM and {o['loses_vs_ddim']} lose to it; "
                f"{o['wins_vs_dpmpp']} beat DPM-Solver++ and {o['loses_vs_dpmpp']} lose to it. "
                f"The best, `{best}`, reaches FID {fid[best]:.2f} at {gfl[best]:.2f} GFLOPs per image. ")
        if g == "copy":
            return text + ("Their lower cost is **not a speed-up**: a near-copy of its "
                           "reference is not a new sample.\n\n")
        sp, sp_wall = o["speedup_vs_ddpm_at_matched_fid"], o["wall_speedup_vs_ddpm_at_matched_fid"]
        text += (f"Speed-up over {label} at matched-or-better FID: ×{sp:.1f} in FLOPs, "
                 f"{_times(sp_wall)} in wall time.\n\n" if sp
                 else f"None matches {label}'s FID.\n\n")
        return text

    b = b_flops
    s = (f"{label} reaches FID {ddpm['fid']['mean']:.2f} at {gfl[key]:.1f} GFLOPs per image; "
         f"the test images themselves score {refs['fid']['mean']:.2f} (what a perfect generator would score, in expectation, at this sample size). "
         + (f"Plain DDIM / DPM-Solver++ from noise match it at up to ×{b:.1f} fewer FLOPs "
            f"({_times(b_wall)} in wall time). "
            if b else "No plain DDIM / DPM-Solver++ run from noise here matches it. ")
         + "A win or loss needs the paired per-seed FID difference to have a 95 % interval "
           "that excludes zero; the rest are not resolved at this number of seeds.\n\n"
         + sentence("new", "produce new samples (farther from their reference than "
                           f"{limit:.3f} RMS, half of {label}'s distance to a random test image)")
         + sentence("copy", f"are near-copies of their test reference (closer than {limit:.3f} RMS)")
         + "**Generation or variation?** The near-copies are variations of a given test image, "
           "not new samples: their FID inherits the test images' FID, so a low FID there is no "
           "evidence of a better generator, and their speed-up is not a generation speed-up.")
    out["text"] = s
    return out


def _times(ratio) -> str:
    """A speed-up factor for prose: ``×6.2``, or ``not measured``."""
    return f"×{ratio:.1f}" if ratio else "not measured"


def verdict_denoising(summary: dict, cmp: list[dict]) -> dict:
    """Task B's conclusions, computed from the summary: the best DIP-based method against the
    DDPM chain from ``t_noise`` and against DDIM at equal FLOPs. Returns numbers and Markdown."""
    psnr = {m: summary[m]["psnr"]["mean"] for m in summary}
    dip_based = [m for m in psnr if m.startswith(("dip_", "tdpm")) and m != "dip_oracle_peak"]
    best = max(dip_based, key=psnr.get)
    others = [m for m in psnr if m not in dip_based and m not in ("dip_oracle_peak",
                                                                   "noisy_rescaled")]
    best_other = max(others, key=psnr.get)
    d = _paired(summary[best], summary["ddpm_all"], "psnr")
    margin = d["mean"]
    out = {"best_dip_method": best, "best_dip_psnr": psnr[best], "ddpm_all_psnr": psnr["ddpm_all"],
           "margin_db": margin, "margin_ci95_db": d["ci95"], "margin_n_seeds": d["n"],
           "beats_ddpm_chain": bool(d["resolved"] and margin > 0),
           "best_non_dip_method": best_other, "best_non_dip_psnr": psnr[best_other],
           "oracle_peak_psnr": psnr["dip_oracle_peak"],
           "wins_vs_ddim_equal_flops": _count(cmp, "wins vs DDIM"),
           "loses_vs_ddim_equal_flops": _count(cmp, "loses vs DDIM"), "n_dip_methods": len(cmp)}
    s = (f"The best DIP-based method, `{best}`, reaches {psnr[best]:.2f} dB against "
         f"{psnr['ddpm_all']:.2f} dB for the full DDPM chain from t_noise: it "
         f"**{'beats' if out['beats_ddpm_chain'] else 'does not beat'}** it "
         f"({margin:+.2f} ± {d['ci95']:.2f} dB, paired over {d['n']} seeds, 95 % interval). "
         f"The best method without DIP is `{best_other}` "
         f"at {psnr[best_other]:.2f} dB; DIP's oracle peak (needs the clean image) is "
         f"{psnr['dip_oracle_peak']:.2f} dB.\n\n"
         f"**At equal FLOPs** against DDIM from y: {out['wins_vs_ddim_equal_flops']} of "
         f"{len(cmp)} DIP-based methods win and {out['loses_vs_ddim_equal_flops']} lose "
         f"(PSNR, paired over seeds; the rest are not resolved at the 95 % level).")
    twin = f"ddim_eq_{best}"
    if twin in psnr:  # what the DIP start adds over the same sampler's budget from y itself
        dt = _paired(summary[best], summary[twin], "psnr")
        gap, same = dt["mean"], not dt["resolved"]
        out["gain_over_ddim_at_equal_flops_db"] = gap
        chain = summary[best].get("chain")
        s += (f" `{best}` reverses its DIP start with a short chain"
              f"{f' ({chain})' if chain else ''}; DDIM started from y itself at the same FLOPs "
              f"(`{twin}`) reaches {psnr[twin]:.2f} dB ({gap:+.2f} ± {dt['ci95']:.2f} dB), so "
              + ("the DIP start adds nothing measurable: the gain over the full chain comes from "
                 "the shorter deterministic chain, not from DIP." if same else
                 f"the DIP start {'adds' if gap > 0 else 'costs'} {abs(gap):.2f} dB at equal FLOPs."))
    if psnr["ddpm_all"] < psnr[best_other]:
        s += (" A single ancestral sample from the chain scores lower PSNR than a posterior-mean "
              "estimate by construction (it adds back detail that may be wrong), so PSNR favours "
              "smooth estimates such as DIP's and the one-step x0 prediction.")
    out["text"] = s
    return out


def check_study_params(t0_list, t_trunc_list, dip_iterations, chain_sampler: str,
                       chain_steps: int, t_noise: int, num_refs: int, denoise_images: int,
                       beta_schedule: str, num_train_timesteps: int = 1000) -> None:
    """Validate chapter 03's parameters at once, before anything is trained or written."""
    from .ddpm import BETA_SCHEDULES, SAMPLERS
    from .errors import check_choice

    check_choice("beta schedule", beta_schedule, BETA_SCHEDULES)
    check_choice("chain sampler", chain_sampler, SAMPLERS)
    check_positive_int("chain_steps", chain_steps)
    check_positive_int("num_refs", num_refs)
    check_positive_int("denoise_images", denoise_images)
    for t in t0_list:
        check_timestep("t0", t, num_train_timesteps)
    for t in t_trunc_list:
        check_timestep("T_trunc", t, num_train_timesteps)
    check_timestep("t_noise", t_noise, num_train_timesteps)
    _check_iterations(dip_iterations)
