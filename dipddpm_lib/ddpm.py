"""DDPM on diffusers: ``UNet2DModel`` training with EMA, and one sampler. Images are in [0, 1],
the model works in [-1, 1]; time ``t`` = 0 is clean, T pure noise (diffusers' timestep ``t - 1``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .cache import Cache, cached
from .compute import Compute, Timer, count_flops
from .errors import check_choice, check_images, check_positive_int, check_timestep
from .profiles import run_device

if TYPE_CHECKING:  # diffusers loads where a scheduler or UNet is made (a 2-3 s import)
    from diffusers import UNet2DModel

BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
SAMPLERS = ("ddpm", "ddim", "dpm-solver++")
TRAIN_PRECISIONS = ("fp32", "bf16")  # bf16: forward under bfloat16 autocast


def to_model(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [-1, 1]."""
    return x * 2.0 - 1.0


def from_model(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] → [0, 1], clipped."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def make_scheduler(beta_schedule: str = "linear", sampler: str = "ddpm",
                   num_train_timesteps: int = 1000):
    """A diffusers scheduler for ``sampler`` with ``beta_schedule`` in {linear, cosine}."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    check_choice("beta schedule", beta_schedule, BETA_SCHEDULES)
    check_choice("sampler", sampler, SAMPLERS)
    common = dict(num_train_timesteps=num_train_timesteps,
                  beta_schedule=BETA_SCHEDULES[beta_schedule])
    if sampler == "ddpm":
        return DDPMScheduler(**common, clip_sample=True)
    if sampler == "ddim":
        return DDIMScheduler(**common, clip_sample=True, set_alpha_to_one=True)
    # thresholding: DPM-Solver++'s clip_sample; lambda_min_clipped: a stable cosine end (diffusers)
    extra = {"lambda_min_clipped": -5.1} if beta_schedule == "cosine" else {}
    return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                       final_sigmas_type="zero", thresholding=True,
                                       sample_max_value=1.0, **extra)


def make_unet(profile, channels: int | None = None) -> UNet2DModel:
    """The profile's ``UNet2DModel`` (block widths and attention placement from the profile)."""
    from diffusers import UNet2DModel

    channels = (1 if profile.dataset == "digits" else 3) if channels is None else channels
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in profile.unet_attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(profile.unet_attention))
    groups = min(32, min(profile.unet_channels) // 2)
    return UNet2DModel(sample_size=profile.image_size, in_channels=channels,
                       out_channels=channels, block_out_channels=tuple(profile.unet_channels),
                       down_block_types=down, up_block_types=up,
                       layers_per_block=profile.unet_layers_per_block, norm_num_groups=groups)


def alphas_cumprod(beta_schedule: str = "linear", num_train_timesteps: int = 1000) -> torch.Tensor:
    """``abar_t`` for t = 0..T (index 0 is 1.0, the clean image)."""
    sched = make_scheduler(beta_schedule, "ddpm", num_train_timesteps)
    return torch.cat([torch.ones(1), sched.alphas_cumprod.float()])


def q_sample(x0: torch.Tensor, t: int, noise: torch.Tensor, beta_schedule: str = "linear",
             num_train_timesteps: int = 1000) -> torch.Tensor:
    """Clean ``x0`` in [0,1] forward-noised to time ``t``, in model space."""
    check_timestep("t", t, num_train_timesteps)
    if t == 0:
        return to_model(x0)
    return make_scheduler(beta_schedule, "ddpm", num_train_timesteps).add_noise(
        to_model(x0), noise, torch.full((x0.shape[0],), t - 1, dtype=torch.long))


@dataclass
class TrainedDDPM:
    """A trained denoiser (EMA weights) and what its training recorded."""
    unet: UNet2DModel
    beta_schedule: str
    loss_history: np.ndarray
    meta: dict

    @property
    def num_train_timesteps(self) -> int:  # T as trained: every chain and check uses it
        return int(self.meta.get("config", {}).get("num_train_timesteps", 1000))


def _train_config(profile, beta_schedule: str, seed: int, n_train: int,
                  data_key: dict | None = None) -> dict:
    keys = ("dataset", "data_dir", "image_size", "test_fraction", "num_train_timesteps",
            "unet_channels", "unet_attention", "unet_layers_per_block", "train_steps",
            "batch_size", "lr", "warmup_steps", "grad_clip", "ema_decay")
    cfg = {k: getattr(profile, k) for k in keys}
    if profile.low_t_fraction:  # absent at 0, so the keys of plain training stay as they were
        cfg.update(low_t_fraction=profile.low_t_fraction, low_t_max=profile.low_t_max)
    if getattr(profile, "train_precision", "fp32") != "fp32":  # absent for fp32: old keys hold
        cfg["train_precision"] = profile.train_precision
    if data_key:
        cfg["data"] = data_key
    return {**cfg, "beta_schedule": beta_schedule, "seed": seed, "n_train": n_train}


def train_ddpm(images, profile, beta_schedule: str | None = None, seed: int = 0,
               cache: Cache | None = None, progress: bool = True,
               data_key: dict | None = None, shape: tuple | None = None) -> TrainedDDPM:
    """Train (or load from the cache) a DDPM on ``images`` (N×C×H×W in [0,1], or a function called
    on a miss, named by ``data_key``, of that ``shape``), returning EMA weights."""
    beta_schedule = beta_schedule or profile.beta_schedule
    check_choice("beta schedule", beta_schedule, BETA_SCHEDULES)
    if callable(images):
        if data_key is None or shape is None or len(shape) != 4:
            raise ValueError("images given as a function need a data_key and their N×C×H×W shape")
        make_images, (n, channels) = images, shape[:2]
    else:
        check_images(images, "training images")
        make_images, (n, channels) = (lambda: images), images.shape[:2]
    check_positive_int("train_steps", profile.train_steps)
    check_positive_int("batch_size", profile.batch_size)
    check_choice("train precision", profile.train_precision, TRAIN_PRECISIONS)
    bf16, device = profile.train_precision == "bf16", torch.device(run_device(profile))

    def _train():
        from diffusers.training_utils import EMAModel

        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        images = check_images(make_images(), "training images")
        if tuple(images.shape) != tuple(shape or images.shape):
            raise ValueError(f"the images made have shape {tuple(images.shape)}, not {tuple(shape)}")
        unet = make_unet(profile, channels).to(device)
        sched = make_scheduler(beta_schedule, "ddpm", profile.num_train_timesteps)
        opt = torch.optim.AdamW(unet.parameters(), lr=profile.lr, weight_decay=0.0)
        warm = max(1, profile.warmup_steps)
        lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        ema = EMAModel(unet.parameters(), decay=profile.ema_decay, use_ema_warmup=True, power=0.75)
        data = to_model(images).to(device)
        losses = np.zeros(profile.train_steps, dtype=np.float32)
        with Timer() as timer:
            bar = tqdm(range(profile.train_steps), desc=f"DDPM train ({beta_schedule})",
                       disable=not progress, mininterval=2)
            for step in bar:
                idx = torch.randint(0, len(data), (profile.batch_size,), generator=gen)
                x0 = data[idx.to(device)]
                noise = torch.randn(x0.shape, generator=gen).to(device)
                t = torch.randint(0, profile.num_train_timesteps, (len(x0),), generator=gen)
                if profile.low_t_fraction:  # a share of the steps on [0, low_t_max) instead
                    low = torch.rand(len(x0), generator=gen) < profile.low_t_fraction
                    t = torch.where(low, torch.randint(0, profile.low_t_max, (len(x0),), generator=gen), t)
                t = t.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    eps = unet(sched.add_noise(x0, noise, t), t).sample
                loss = F.mse_loss(eps.float(), noise)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(unet.parameters(), profile.grad_clip)
                opt.step()
                lr_sched.step()
                ema.step(unet.parameters())
                losses[step] = loss.item()
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{losses[max(0, step - 49):step + 1].mean():.4f}")
        ema.copy_to(unet.parameters())
        tensors = {f"unet.{k}": v for k, v in unet.state_dict().items()}
        tensors["loss_history"] = torch.from_numpy(losses)
        return tensors, {"train_seconds": timer.seconds,
                         "n_params": sum(p.numel() for p in unet.parameters()),
                         "final_loss": float(losses[-100:].mean())}

    tensors, meta = cached("ddpm", _train_config(profile, beta_schedule, seed, n, data_key), _train, cache)
    unet = make_unet(profile, channels)
    unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})
    unet.to(device).eval()
    return TrainedDDPM(unet, beta_schedule, tensors["loss_history"].numpy(), meta)


@dataclass
class SampleResult:
    """Generated or restored images in [0,1] and what producing them cost."""
    images: torch.Tensor
    compute: Compute
    timesteps: list[int]


def _timesteps(sched, sampler: str, num_steps: int, t_start: int | None, T: int) -> list[int]:
    """diffusers timesteps for a chain of at most ``num_steps`` steps from ``t_start`` (or T)."""
    if t_start is None:  # from pure noise: the schedulers' own spacing
        sched.set_timesteps(num_steps)
        return [int(t) for t in sched.timesteps]
    top = t_start - 1  # diffusers index of x_{t_start}
    if sampler == "ddim":
        # the smallest fixed stride T // n whose chain from `top` fits in `num_steps`
        n_inf = next(n for n in range(T, 0, -1) if top // (T // n) + 1 <= num_steps)
        sched.set_timesteps(n_inf)
        stride = T // n_inf
        ts = list(range(top, -1, -stride))
        sched.timesteps = torch.tensor(ts, dtype=torch.long)
        return ts
    sched.set_timesteps(timesteps=[int(t) for t in np.unique(np.round(np.linspace(
        top, 0, num_steps)).astype(int))[::-1]])
    return [int(t) for t in sched.timesteps]


@torch.no_grad()
def sample(unet: UNet2DModel, beta_schedule: str, sampler: str = "ddpm", num_steps: int = 1000,
           num_samples: int | None = None, seed: int = 0, x_start: torch.Tensor | None = None,
           t_start: int | None = None, batch_size: int = 256, progress: bool = True,
           num_train_timesteps: int = 1000) -> SampleResult:
    """The reverse chain from pure noise (``num_samples`` images) or from ``x_start`` (model
    space) at ``t_start``, in at most ``num_steps`` denoiser calls."""
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("beta schedule", beta_schedule, BETA_SCHEDULES)
    num_steps, T = check_positive_int("num_steps", num_steps), num_train_timesteps
    check_positive_int("batch_size", batch_size)
    if (x_start is None) != (t_start is None):
        raise ValueError("x_start and t_start go together (an image and its diffusion time)")
    if x_start is None and num_steps > T:
        raise ValueError(f"num_steps must be at most T={T}, got {num_steps}")
    if x_start is not None:
        check_images(x_start, "x_start", channels=unet.config.in_channels)
        check_timestep("t_start", t_start, T)
    num_samples = check_positive_int("num_samples", num_samples) if x_start is None else len(x_start)
    device = next(unet.parameters()).device
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    gen = torch.Generator().manual_seed(seed)
    # The prior draw comes first even when x_start is given, so that a chain started at
    # t = T from this very noise is the plain chain for the same seed, step noise included.
    prior = torch.randn((num_samples, *shape), generator=gen)
    x_all = prior if x_start is None else x_start.detach().float().cpu()
    if t_start == 0:
        return SampleResult(from_model(x_all), Compute(), [])

    flops_per_image, outs = None, []
    with Timer() as timer:
        for b0 in range(0, num_samples, batch_size):
            sched = make_scheduler(beta_schedule, sampler, T)  # fresh multistep state per batch
            timesteps = _timesteps(sched, sampler, num_steps, t_start, T)
            x = x_all[b0:b0 + batch_size].to(device) * sched.init_noise_sigma
            if flops_per_image is None:
                flops_per_image = count_flops(unet, x[:1], torch.full((1,), timesteps[0],
                                                                      device=device))[0]
            desc = f"{sampler} {len(timesteps)} steps" + (f" from t={t_start}" if t_start else "")
            for t in tqdm(sched.timesteps, desc=desc, disable=not progress, leave=False,
                          mininterval=2):
                tt = torch.full((len(x),), int(t), device=device, dtype=torch.long)
                eps = unet(sched.scale_model_input(x, t), tt).sample
                kwargs = {"generator": gen} if sampler == "ddpm" else {}
                x = sched.step(eps, t, x, **kwargs).prev_sample
            outs.append(from_model(x).cpu())
    nfe = len(timesteps)
    return SampleResult(torch.cat(outs), Compute(flops=flops_per_image * nfe * num_samples,
                                                 nfe=nfe, wall_s=timer.seconds), timesteps)


@torch.no_grad()
def predict_x0(unet: UNet2DModel, x_t: torch.Tensor, t: int, beta_schedule: str,
               num_train_timesteps: int = 1000, batch_size: int = 64) -> torch.Tensor:
    """One-step x̂0 = (x_t − sqrt(1 − abar_t) ε_θ) / sqrt(abar_t) (the posterior mean)."""
    check_timestep("t", t, num_train_timesteps)
    if t == 0:
        return from_model(x_t)
    abar = float(alphas_cumprod(beta_schedule, num_train_timesteps)[t])
    device = next(unet.parameters()).device
    outs = []
    for b in range(0, len(x_t), batch_size):
        x = x_t[b:b + batch_size].to(device).float()
        tt = torch.full((len(x),), t - 1, device=device, dtype=torch.long)  # diffusers index
        eps = unet(x, tt).sample
        outs.append(from_model((x - (1 - abar) ** 0.5 * eps) / abar ** 0.5).cpu())
    return torch.cat(outs)


def prior_noise(num_samples: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """The prior draw x_T that :func:`sample` makes first for ``seed`` (same generator order)."""
    return torch.randn((num_samples, *shape), generator=torch.Generator().manual_seed(seed))


def scheduler_key(scheduler) -> dict:
    """A scheduler's public config as a cache key (``_use_default_values`` varies by process)."""
    return {k: v for k, v in sorted(scheduler.config.items()) if not k.startswith("_")}


SCHEDULER_KNOBS = ("clip_sample", "set_alpha_to_one", "algorithm_type", "solver_order",
                   "thresholding", "sample_max_value", "lambda_min_clipped", "final_sigmas_type",
                   "timestep_spacing", "prediction_type")


def scheduler_settings(beta_schedule: str, samplers, num_train_timesteps: int = 1000) -> dict:
    """Each sampler's diffusers scheduler class and ``SCHEDULER_KNOBS`` settings, JSON-safe."""
    def plain(v):  # floats finite or as text
        ok = isinstance(v, (str, bool, int)) or v is None
        return v if ok else float(v) if np.isfinite(v) else str(float(v))
    made = {s: make_scheduler(beta_schedule, s, num_train_timesteps) for s in dict.fromkeys(samplers)}
    return {s: {"class": type(sc).__name__, **{k: plain(sc.config[k]) for k in SCHEDULER_KNOBS
                                               if k in sc.config}} for s, sc in made.items()}


def sample_cached(model: TrainedDDPM, sampler: str = "ddpm", num_steps: int = 1000,
                  num_samples: int = 64, seed: int = 0, batch_size: int = 256,
                  cache: Cache | None = None, progress: bool = True) -> SampleResult:
    """:func:`sample` from pure noise, cached; a hit returns the compute recorded when drawn."""
    cfg = {"model": model.meta["config"], "sampler": sampler, "num_steps": num_steps,
           "num_samples": num_samples, "seed": seed,
           "scheduler": scheduler_key(make_scheduler(model.beta_schedule, sampler,
                                                     model.num_train_timesteps))}

    def _run():
        res = sample(model.unet, model.beta_schedule, sampler, num_steps, num_samples, seed,
                     batch_size=batch_size, progress=progress,
                     num_train_timesteps=model.num_train_timesteps)
        return {"images": res.images}, {"compute": res.compute.to_dict(),
                                        "timesteps": res.timesteps}

    tensors, meta = cached("samples", cfg, _run, cache)
    c = meta["compute"]
    return SampleResult(tensors["images"], Compute(c["flops"], c["nfe"], c["dip_iters"], c["wall_s"]),
                        meta["timesteps"])
