"""SURE-stopped DIP in Jo, Chun & Choi's DF-STE set-up (ICCV 2021), chapter 04's σ-aware peer.

DIP is fed the observation itself (no input perturbation, ``input_depth`` = the image's
channels) and fitted with MSE; every ``probe_every`` steps a one-probe Monte-Carlo divergence
(:func:`~dipddpm_lib.stopping.mc_divergence`) gives Stein's unbiased estimate of the MSE to the
clean image, ``R − σ² + 2σ² div/N`` (:func:`~dipddpm_lib.stopping.sure_mse`), and the fit
stops at SURE's minimum once it has not fallen for ``patience`` steps
(:func:`~dipddpm_lib.stopping.sure_stop`). The probes' two forward passes are charged.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import dip
from ..stopping import Stop, oracle_stop, sure_mse, sure_stop

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


def fit_sure_dip(noisy: torch.Tensor, clean: torch.Tensor, sigmas, cfg: dip.DIPConfig,
                 patience: int, budget: int, seed: int, fit_kwargs: dict,
                 probe_every: int = SURE_PROBE_EVERY, progress: bool = True):
    """The SURE run on a batch: ``(tensors, meta)`` for the cache: histories (``sure``,
    ``residual``, ``divergence``, ``psnr_clean_raw``; the clean image feeds only that log), the
    raw outputs at SURE's stop and at the run's own raw peak, the stops, and the FLOPs per
    image-iteration including the probes."""
    rec = SureRecorder(sigmas, patience, budget)
    res = dip.fit(dip.Degradation("denoise", noisy), cfg, budget, clean=clean, seed=seed,
                  callback=rec, net_input=noisy, divergence_every=probe_every, progress=progress,
                  desc=f"SURE DIP, seed {seed}", **(fit_kwargs | {"reg_noise_std": 0.0}))
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

