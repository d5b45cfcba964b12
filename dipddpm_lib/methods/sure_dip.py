"""SURE-stopped DIP in Jo, Chun & Choi's DF-STE set-up (ICCV 2021), chapter 04's σ-aware peer:
DIP fed the observation itself (no input perturbation), fitted with MSE, with a Monte-Carlo
divergence every ``probe_every`` steps; its two forward passes per probe are charged."""
from __future__ import annotations

import numpy as np
import torch

from .. import dip
from ..stopping import Stop, keep_at_stops, last_minimum_stop, oracle_stop, sure_mse

SURE_PROBE_EVERY = 5  # a divergence probe every 5 steps: +2 forward passes per probe
KINDS = ("sure", "oracle_raw")


class SureRecorder:
    """``dip.fit`` callback: SURE's MSE estimate per probed step from the logged loss and
    divergence, its stop per image, and the raw output at that stop and at the run's own raw
    peak (``oracle_raw``). The fit ends when every image has stopped."""

    def __init__(self, sigmas, patience: int, budget: int):
        self.sigmas, self.patience = np.asarray(sigmas, dtype=float), patience
        self.sure = np.full((budget, len(self.sigmas)), np.nan)
        self.outputs = self.psnr_raw = None
        self.length = 0

    def stops_for(self, n: int) -> dict[str, Stop]:
        """SURE's stop and the run's own raw peak for image ``n`` on the history so far."""
        return {"sure": last_minimum_stop(self.sure[:self.length, n], self.patience),
                "oracle_raw": oracle_stop(self.psnr_raw[:self.length, n])}

    def __call__(self, i: int, out: torch.Tensor, out_ema: torch.Tensor, hist) -> bool:
        raw = out.detach().cpu()
        if self.outputs is None:
            self.outputs = {c: torch.zeros_like(raw) for c in KINDS}
        loss, div = np.atleast_2d(hist["loss"][i - 1]), np.atleast_2d(hist["divergence"][i - 1])
        for n, s in enumerate(self.sigmas):
            self.sure[i - 1, n] = sure_mse(loss[:, n], div[:, n], s)[0]
        self.length, self.psnr_raw = i, hist["psnr_clean"]
        return keep_at_stops(self, i, raw, None, ("sure",))


def fit_sure_dip(noisy: torch.Tensor, clean: torch.Tensor, sigmas, cfg: dip.DIPConfig,
                 patience: int, budget: int, seed: int, fit_kwargs: dict,
                 probe_every: int = SURE_PROBE_EVERY, progress: bool = True):
    """The SURE run on a batch: ``(recorder, fit result, histories, FLOPs of the probes per
    image-iteration)``; the clean image feeds only the ``psnr_clean_raw`` log."""
    rec = SureRecorder(sigmas, patience, budget)
    res = dip.fit(dip.Degradation("denoise", noisy), cfg, budget, clean=clean, seed=seed,
                  callback=rec, net_input=noisy, divergence_every=probe_every, progress=progress,
                  desc=f"SURE DIP, seed {seed}", **(fit_kwargs | {"reg_noise_std": 0.0}))
    logged = lambda k: np.asarray(res.history[k]).reshape(rec.length, -1)  # noqa: E731
    hist = {"sure": rec.sure[:rec.length], "residual": logged("loss"),
            "divergence": logged("divergence"), "psnr_clean_raw": logged("psnr_clean")}
    forward = dip.dip_flops_per_iteration(cfg, noisy.shape[1], *noisy.shape[-2:], backward=False)
    return rec, res, hist, 2 * forward / probe_every
