"""SURE-stopped DIP in Jo, Chun & Choi's DF-STE set-up (ICCV 2021), chapter 04's σ-aware peer:
DIP fed the observation itself (no input perturbation), fitted with MSE, with a Monte-Carlo
divergence every ``probe_every`` steps; its two forward passes per probe are charged."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import dip
from ..stopping import Stop, last_minimum_stop, oracle_stop, sure_mse

SURE_PROBE_EVERY = 5  # a divergence probe every 5 steps: +2 forward passes per probe
KINDS = ("sure", "oracle_raw")


class SureRecorder:
    """``dip.fit`` callback: SURE's MSE estimate per probed step from the logged loss and
    divergence, its stop per image, and the raw output at that stop and at the run's own raw
    peak (``oracle_raw``). The fit ends when every image has stopped."""

    def __init__(self, sigmas, patience: int, budget: int):
        self.sigmas, self.patience = np.asarray(sigmas, dtype=float), patience
        self.sure = np.full((budget, len(self.sigmas)), np.nan)
        self.outputs = None
        self.length = 0

    def stops_for(self, n: int, psnr_raw: np.ndarray) -> dict[str, Stop]:
        """SURE's stop and the run's own raw peak for image ``n`` on the history so far."""
        return {"sure": last_minimum_stop(self.sure[:self.length, n], self.patience),
                "oracle_raw": oracle_stop(psnr_raw[:self.length, n])}

    def __call__(self, i: int, out: torch.Tensor, out_ema: torch.Tensor, hist) -> bool:
        raw = out.detach().cpu()
        if self.outputs is None:
            self.outputs = {c: torch.zeros_like(raw) for c in KINDS}
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


def fit_sure_dip(noisy: torch.Tensor, clean: torch.Tensor, sigmas, cfg: dip.DIPConfig,
                 patience: int, budget: int, seed: int, fit_kwargs: dict,
                 probe_every: int = SURE_PROBE_EVERY, progress: bool = True):
    """The SURE run on a batch, as ``(tensors, meta)`` for the cache (the clean image feeds only
    the ``psnr_clean_raw`` log); FLOPs per image-iteration include the probes."""
    rec = SureRecorder(sigmas, patience, budget)
    res = dip.fit(dip.Degradation("denoise", noisy), cfg, budget, clean=clean, seed=seed,
                  callback=rec, net_input=noisy, divergence_every=probe_every, progress=progress,
                  desc=f"SURE DIP, seed {seed}", **(fit_kwargs | {"reg_noise_std": 0.0}))
    steps = rec.length
    logged = lambda k: np.asarray(res.history[k]).reshape(steps, -1)  # noqa: E731
    hist = {"sure": rec.sure[:steps], "residual": logged("loss"),
            "divergence": logged("divergence"), "psnr_clean_raw": logged("psnr_clean")}
    stops = {c: [dataclasses.astuple(rec.stops_for(n, hist["psnr_clean_raw"])[c])
                 for n in range(len(sigmas))] for c in KINDS}
    step_flops = res.compute.flops / res.compute.dip_iters / len(sigmas)
    forward = dip.dip_flops_per_iteration(cfg, noisy.shape[1], *noisy.shape[-2:], backward=False)
    tensors = {**{f"history_{k}": torch.from_numpy(np.asarray(v, dtype=np.float64)).float()
                  for k, v in hist.items()},
               **{f"output_{c}": rec.outputs[c] for c in KINDS}}
    meta = {"stops": stops, "flops_per_iteration": step_flops + 2 * forward / probe_every,
            "wall_s": res.compute.wall_s}
    return tensors, meta
