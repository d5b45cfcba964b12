"""ES-WMV and ES-EMV in their authors' regime (chapter 04): one plain DIP run at the profile's
``es_paper_*`` settings, ending once both rules have fired. Nothing in it is tuned, so the build
runs it as its own job (``python -m dipddpm_lib.experiments.es_authors_regime``)."""
from __future__ import annotations

import dataclasses

import torch

from .. import dip
from ..cache import Cache, digest
from ..photo_prior import denoise_x0_each
from .early_stopping import (PAPER_ITERATIONS, SeedRuns, StoppingSetup, _fit_kwargs, make_batch,
                             make_setup, run_reference)


def paper_setup(setup: StoppingSetup, profile) -> StoppingSetup:
    """The profile's ``es_paper_*`` photographs, size and σ, the first seed, and the papers'
    counts × ``es_paper_regime_scale``."""
    from ..data import check_photos

    check_photos(profile.es_paper_photos, f"es_paper_photos of profile {profile.name!r}",
                 min_size=profile.es_paper_photo_size)
    k = profile.es_paper_regime_scale
    if not 0 < k <= 10:
        raise ValueError(f"es_paper_regime_scale must be in (0, 10], got {k}")
    return dataclasses.replace(
        setup, photos=tuple(profile.es_paper_photos), photo_size=profile.es_paper_photo_size,
        sigmas=tuple(float(x) for x in profile.es_paper_sigmas), seeds=setup.seeds[:1],
        fixed_iterations=max(1, round(PAPER_ITERATIONS * k)), paper_scale=k,
        wmv_window_factors=(1.0,)).check()


def paper_net(profile) -> dip.DIPConfig:
    """Ulyanov et al.'s skip net (``DIPConfig``'s defaults) at the profile's ``es_paper_dip_*``."""
    return dip.DIPConfig(scales=profile.es_paper_dip_scales, channels=profile.es_paper_dip_channels)


#: Ulyanov et al.'s (and the ES authors') Adam learning rate and input perturbation.
PAPER_LR, PAPER_REG_NOISE = 0.01, 1.0 / 30.0


def paper_fit_kwargs(profile) -> dict:
    """The authors' learning rate and input perturbation, the profile's EMA and device."""
    return _fit_kwargs(profile) | {"lr": PAPER_LR, "reg_noise_std": PAPER_REG_NOISE}


def run_paper_regime(setup: StoppingSetup, profile, cache: Cache | None = None, prior=None,
                     progress: bool = True) -> SeedRuns:
    """The authors'-regime plain run (the learned-prior rule too when the photo DDPM ``prior``
    is given), ending when ES-WMV and ES-EMV have fired on every image, as the authors' do."""
    paper = paper_setup(setup, profile)
    net = paper_net(profile)
    if paper.photo_size % net.min_size:
        raise ValueError(f"es_paper_photo_size {paper.photo_size} is not a multiple of "
                         f"{net.min_size}, which the paper-regime net needs")
    x0 = key = None
    if prior is not None:
        _, noisy, sig = make_batch(paper, paper.seeds[0])
        x0 = denoise_x0_each(prior, noisy, sig)[0]
        key = digest(torch.cat([p.detach().flatten().cpu().float()
                                for p in prior.unet.parameters()]))
    return SeedRuns(run_reference(paper, profile, paper.seeds[0], cache, progress, prior_x0=x0,
                                  cfg=net, until_fired=("es_wmv", "es_emv"), kind="paper",
                                  fit_kwargs=paper_fit_kwargs(profile), prior_key=key))


def main(argv=None) -> None:
    """Fit chapter 04's ES-authors'-regime run into the cache (a build step, after the photo prior)."""
    import argparse
    import time

    from ..photo_prior import train_photo_prior

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the profile's)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    prof, setup, _ = make_setup(args.profile, device=args.device)
    run = run_paper_regime(setup, prof, prior=train_photo_prior(prof, progress=False))
    print(f"ES authors' regime ({args.profile}): {len(run.reference.history['residual'])} "
          f"iterations; ready in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
