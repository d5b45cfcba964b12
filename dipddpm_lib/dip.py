"""Deep Image Prior (Ulyanov et al., 2018): the skip encoder-decoder, degradations, ``fit``
(the paper's denoising set-up: noise input ×1/10, reg-noise 1/30, Adam lr 0.01, EMA 0.99)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .compute import Compute, Timer, count_flops
from .errors import check_choice, check_images, check_positive_int, check_sigma
from .metrics import psnr
from .stopping import mc_divergence

TASKS = ("denoise", "inpaint", "sr4")
UPSAMPLE_MODES = ("nearest", "bilinear")
OUTPUTS = ("sigmoid", "linear")


# --------------------------------------------------------------------------- network
@dataclass(frozen=True)
class DIPConfig:
    """The skip network's knobs. Defaults are the paper's: 5 scales × 128 channels."""
    scales: int = 5
    channels: int = 128
    skip_channels: int = 4
    input_depth: int = 32
    upsample: str = "bilinear"
    output: str = "sigmoid"  # "linear" for targets outside [0, 1] (e.g. a noisy x_t)

    @classmethod
    def from_profile(cls, profile, **overrides) -> "DIPConfig":
        return cls(**{"scales": profile.dip_scales, "channels": profile.dip_channels,
                      "skip_channels": profile.dip_skip_channels,
                      "input_depth": profile.dip_input_depth, "upsample": profile.dip_upsample,
                      **overrides})

    @property
    def min_size(self) -> int:
        return 2 ** self.scales


# K independent networks run as one: every layer is grouped (groups = K), so each parameter
# tensor is K per-network blocks along dim 0. With DIP's batch of one image per network,
# BatchNorm's statistics and Adam's updates stay per network: a K-batched fit is K fits.
def _cba(cin: int, cout: int, k: int, stride: int = 1, nets: int = 1) -> nn.Module:
    """(Reflection pad →) Conv → BatchNorm → LeakyReLU(0.2)."""
    pad = [nn.ReflectionPad2d((k - 1) // 2)] if k > 2 else []
    conv = nn.Sequential(*pad, nn.Conv2d(cin * nets, cout * nets, k, stride=stride, groups=nets))
    return nn.Sequential(conv, nn.BatchNorm2d(cout * nets), nn.LeakyReLU(0.2))


class _Level(nn.Module):
    """One scale: a skip branch beside a strided-down, deeper, upsampled branch."""

    def __init__(self, cin: int, cfg: DIPConfig, depth: int, nets: int = 1):
        super().__init__()
        c, s = cfg.channels, cfg.skip_channels
        self.nets = nets
        self.skip = _cba(cin, s, 1, nets=nets) if s > 0 else None
        self.down = nn.Sequential(_cba(cin, c, 3, 2, nets), _cba(c, c, 3, nets=nets))
        self.deeper = _Level(c, cfg, depth - 1, nets) if depth > 1 else None
        self.up = nn.Upsample(scale_factor=2, mode=cfg.upsample,
                              **({"align_corners": False} if cfg.upsample == "bilinear" else {}))
        self.merge = nn.Sequential(nn.BatchNorm2d((s + c) * nets), _cba(s + c, c, 3, nets=nets),
                                   _cba(c, c, 1, nets=nets))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.deeper is not None:
            y = self.deeper(y)
        y = self.up(y)
        if self.skip is not None:  # concatenate per network: [skip_k, deep_k] for each k
            skip = self.skip(x)
            h, w = y.shape[-2:]
            y = torch.cat([skip.view(1, self.nets, -1, h, w), y.view(1, self.nets, -1, h, w)], 2)
            y = y.view(1, -1, h, w)
        return self.merge(y)


class SkipNet(nn.Module):
    """Ulyanov et al.'s skip encoder-decoder; ``nets = K``: K independent networks as one
    grouped network (input 1×(K·input_depth)×H×W, output K×C×H×W)."""

    def __init__(self, cfg: DIPConfig, out_channels: int, nets: int = 1):
        super().__init__()
        check_choice("upsample mode", cfg.upsample, UPSAMPLE_MODES)
        check_choice("output activation", cfg.output, OUTPUTS)
        check_positive_int("scales", cfg.scales)
        check_positive_int("channels", cfg.channels)
        self.cfg, self.nets, self.out_channels = cfg, check_positive_int("nets", nets), out_channels
        self.body = _Level(cfg.input_depth, cfg, cfg.scales, nets)
        head = [nn.Conv2d(cfg.channels * nets, out_channels * nets, 1, groups=nets)]
        self.out = nn.Sequential(*head, *([nn.Sigmoid()] if cfg.output == "sigmoid" else []))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.out(self.body(z))
        return y.view(self.nets, self.out_channels, *y.shape[-2:])


# --------------------------------------------------------------------------- degradations
@dataclass
class Degradation:
    """A forward operator ``A`` (identity, a binary ``mask`` with 1 = kept, or ×4 antialiased
    bilinear downsampling) and its observation ``y = A(x) (+ noise)``."""

    task: str
    observation: torch.Tensor
    mask: torch.Tensor | None = None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``A(x)``, differentiable."""
        if self.task == "inpaint":
            return x * self.mask
        if self.task == "sr4":
            return F.interpolate(x, scale_factor=0.25, mode="bilinear", antialias=True,
                                 align_corners=False)
        return x


def stack_degradations(degradations: list[Degradation]) -> Degradation:
    """N single-image degradations of one task and shape as one (for a grouped :func:`fit`)."""
    tasks = {d.task for d in degradations}
    if len(tasks) != 1:
        raise ValueError(f"cannot stack degradations of different tasks: {sorted(tasks)}")
    shapes = {tuple(d.observation.shape[1:]) for d in degradations}
    if len(shapes) != 1:
        raise ValueError(f"cannot stack observations of different shapes: {sorted(shapes)}")
    mask = None if degradations[0].mask is None else torch.cat([d.mask for d in degradations])
    return Degradation(tasks.pop(), torch.cat([d.observation for d in degradations]), mask)


def degrade(clean: torch.Tensor, task: str = "denoise", sigma: float = 25.0, seed: int = 0,
            keep: float = 0.5) -> Degradation:
    """The observation of ``clean`` for ``task``, with Gaussian noise of std ``sigma`` (0-255).

    Unlike the paper's code it is not clipped: the noise stays exactly Gaussian with std σ,
    which the σ-aware methods here assume (BM3D, the DDPM's step t_σ, SURE)."""
    check_choice("task", task, TASKS)
    sigma = check_sigma(sigma)
    check_images(clean, "clean image")
    gen = torch.Generator().manual_seed(seed)
    mask = ((torch.rand((1, 1, *clean.shape[-2:]), generator=gen) < keep).float()
            if task == "inpaint" else None)
    y = Degradation(task, clean, mask).apply(clean)
    return Degradation(task, y + torch.randn(y.shape, generator=gen) * (sigma / 255.0), mask)


# --------------------------------------------------------------------------- fitting
@dataclass
class DIPResult:
    output: torch.Tensor
    output_ema: torch.Tensor
    history: dict[str, np.ndarray]
    compute: Compute
    stopped_at: int
    best_output: torch.Tensor | None = None
    best_iteration: int | np.ndarray | None = None
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)


def make_input(cfg: DIPConfig, height: int, width: int, seed: int = 0, nets: int = 1) -> torch.Tensor:
    """DIP's fixed input: uniform noise × 1/10, ``input_depth`` channels per network."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((1, nets * cfg.input_depth, height, width), generator=gen) * 0.1


def fit(degradation: Degradation, cfg: DIPConfig = DIPConfig(), iterations: int = 1000,
        clean: torch.Tensor | None = None, lr: float = 0.01, reg_noise_std: float = 1.0 / 30.0,
        ema: float = 0.99, seed: int = 0, callback: Callable | None = None,
        net_input: torch.Tensor | None = None, snapshot_every: int = 0,
        device: str = "cpu", progress: bool = True, desc: str = "DIP",
        target: Callable | None = None, divergence_every: int = 0) -> DIPResult:
    """Fit DIP to ``degradation``'s observation: N images fit N networks at once (one grouped
    network; histories then iterations × N, else iterations).

    ``callback(i, out, out_ema, history) -> bool`` runs after step ``i`` (1-based); True stops
    the fit. ``target(i)`` replaces the observation as step ``i``'s data-fit target (the history
    still scores against the observation). ``divergence_every = k`` (SURE; ``net_input`` must be
    the observation) logs a one-probe Monte-Carlo divergence every k-th step (NaN between)."""
    iterations = check_positive_int("iterations", iterations)
    y = check_images(degradation.observation, "observation")
    n = y.shape[0]
    h, w = (y.shape[-2] * 4, y.shape[-1] * 4) if degradation.task == "sr4" else y.shape[-2:]
    if min(h, w) < cfg.min_size or h % cfg.min_size or w % cfg.min_size:
        raise ValueError(f"image is {h}×{w}; a {cfg.scales}-scale DIP needs sides that are "
                         f"multiples of {cfg.min_size} (at least {cfg.min_size}×{cfg.min_size})")
    if clean is not None:
        check_images(clean, "clean image", channels=y.shape[1])
        if clean.shape[0] != n or clean.shape[-2:] != (h, w):
            raise ValueError(f"clean images {tuple(clean.shape)} do not match the observation "
                             f"({n} image(s) of {h}×{w})")
    if net_input is not None and tuple(net_input.shape) != (n, cfg.input_depth, h, w):
        raise ValueError(f"net_input must be {n}×{cfg.input_depth}×{h}×{w} "
                         f"(images × input_depth × H × W), got {tuple(net_input.shape)}")
    if divergence_every:
        check_positive_int("divergence_every", divergence_every)
        if net_input is None or tuple(net_input.shape) != tuple(y.shape) or degradation.task != "denoise":
            raise ValueError("divergence_every needs a denoising fit whose net_input is the "
                             "observation itself (input_depth = its channels)")
    if not 0.0 <= ema < 1.0:
        raise ValueError(f"ema must be in [0, 1), got {ema}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")

    torch.manual_seed(seed)
    dev = torch.device(device)
    # channels-last: the same arithmetic, 13-22 % faster per iteration on CPU for these nets
    # (scripts/bench_dip.py); only the float order of the convolutions changes
    net = SkipNet(cfg, y.shape[1], nets=n).to(dev, memory_format=torch.channels_last)
    z0 = make_input(cfg, h, w, seed, n) if net_input is None else net_input.reshape(1, -1, h, w)
    z0 = z0.to(dev).contiguous(memory_format=torch.channels_last)
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    y_dev, clean_dev = y.to(dev), None if clean is None else clean.to(dev)
    op = Degradation(degradation.task, y_dev,
                     None if degradation.mask is None else degradation.mask.to(dev))
    probe_gen = torch.Generator().manual_seed(seed + 2)

    def forward(u: torch.Tensor) -> torch.Tensor:  # N×C×H×W input images (the probe)
        return net(u.reshape(1, -1, h, w).to(dev).contiguous(memory_format=torch.channels_last)).cpu()

    keys = ["loss", "psnr_obs", "psnr_obs_ema"]
    keys += ["psnr_clean", "psnr_clean_ema"] if clean is not None else []
    keys += ["divergence"] if divergence_every else []
    hist = {k: np.full((iterations, n), np.nan, dtype=np.float32) for k in keys}
    # FLOPs are counted on one network and multiplied by N: torch's counter over-counts the
    # backward pass of grouped convolutions, and every network here costs the same.
    flops_per_iter = n * dip_flops_per_iteration(cfg, y.shape[1], h, w)
    out_ema, stopped_at = None, iterations
    best_psnr, best_it, snaps = np.full(n, -np.inf), np.zeros(n, dtype=int), {}
    best_out = torch.zeros(n, y.shape[1], h, w) if clean is not None else None
    with Timer() as timer:
        for i in tqdm(range(iterations), desc=desc, disable=not progress, leave=False,
                      mininterval=2):
            z = (z0 + torch.randn(z0.shape, generator=gen, device=dev) * reg_noise_std
                 ).contiguous(memory_format=torch.channels_last) if reg_noise_std > 0 else z0
            if target is not None:
                op.observation = target(i + 1).to(dev)
            if divergence_every and i % divergence_every == 0:  # before the step: its output
                hist["divergence"][i] = mc_divergence(forward, net_input.float(), 1e-3,
                                                      probe_gen).numpy()
            out = net(z)
            per_image = (op.apply(out) - op.observation).pow(2).flatten(1).mean(1)  # data-fit MSE each
            opt.zero_grad(set_to_none=True)
            per_image.sum().backward()
            opt.step()
            out, loss = out.detach(), per_image.detach()
            out_ema = out if out_ema is None else ema * out_ema + (1 - ema) * out
            hist["loss"][i] = loss.cpu().numpy()
            hist["psnr_obs"][i] = psnr(op.apply(out), y_dev).cpu().numpy()
            hist["psnr_obs_ema"][i] = psnr(op.apply(out_ema), y_dev).cpu().numpy()
            if clean_dev is not None:
                p = hist["psnr_clean"][i] = psnr(out, clean_dev).cpu().numpy()
                pe = hist["psnr_clean_ema"][i] = psnr(out_ema, clean_dev).cpu().numpy()
                better = np.maximum(p, pe) > best_psnr
                if better.any():
                    idx = torch.from_numpy(np.flatnonzero(better))
                    pick = torch.where(torch.from_numpy(p >= pe).view(-1, 1, 1, 1), out.cpu(),
                                       out_ema.cpu())
                    best_out[idx] = pick[idx]
                    best_psnr[better], best_it[better] = np.maximum(p, pe)[better], i + 1
            if snapshot_every and (i + 1) % snapshot_every == 0:
                snaps[i + 1] = out_ema.cpu()
            if callback is not None and callback(i + 1, out, out_ema, hist):
                stopped_at = i + 1
                break
    hist = {k: (v[:stopped_at, 0] if n == 1 else v[:stopped_at]) for k, v in hist.items()}
    compute = Compute(flops=flops_per_iter * stopped_at, dip_iters=stopped_at, wall_s=timer.seconds)
    return DIPResult(out.cpu(), out_ema.cpu(), hist, compute, stopped_at, best_out,
                     None if clean is None else (int(best_it[0]) if n == 1 else best_it), snaps)


def dip_flops_per_iteration(cfg: DIPConfig, channels: int, height: int, width: int,
                            backward: bool = True) -> float:
    """FLOPs of one DIP step (``backward=False``: the forward pass alone)."""
    net, z = SkipNet(cfg, channels), make_input(cfg, height, width)

    def step():
        loss = F.mse_loss(net(z), torch.zeros(1, channels, height, width))
        if backward:
            loss.backward()

    return count_flops(step)[0]
