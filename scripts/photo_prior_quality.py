"""Quality check for the photo DDPM prior: train (or load) it on the profile's prior-train
photographs, then print its training time and final loss, and its one-step x̂0 PSNR against
σ on the eval photographs, beside the noisy input and NL-means (chapter 02's classical
baseline), with the step t_σ each σ maps to.

    python scripts/photo_prior_quality.py --profile quick --size 64 --sigmas 15 25 50
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from dipddpm_lib import get_profile, photo_prior


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[15.0, 25.0, 50.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    p = get_profile(args.profile)
    start = time.perf_counter()
    model = photo_prior.train_photo_prior(p)
    print(json.dumps({"profile": p.name, "prior_train_photos": list(p.prior_train_photos),
                      "load_or_train_s": round(time.perf_counter() - start, 1),
                      "train_seconds": round(model.meta["train_seconds"], 1),
                      "n_params": model.meta["n_params"], "final_loss": model.meta["final_loss"],
                      "steps": p.prior_train_steps}, indent=1))
    rows = photo_prior.one_step_curve(model, p.eval_photos, args.size, args.sigmas, args.seeds)
    for sigma in args.sigmas:
        sel = [r for r in rows if r["sigma"] == sigma]
        print(json.dumps({"sigma": sigma, "t_sigma": sel[0]["t_sigma"],
                          **{k: round(float(np.mean([r[k] for r in sel])), 2)
                             for k in ("noisy", "nl_means", "ddpm_x0")}}))


if __name__ == "__main__":
    main()
