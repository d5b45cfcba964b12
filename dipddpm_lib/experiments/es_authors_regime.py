"""ES-WMV and ES-EMV in their authors' regime (chapter 04): one plain DIP run at the
profile's ``es_paper_*`` size, σ and net, with the authors' learning rate, input perturbation,
window W = 100 and patience P = 1000, ending once both rules have fired. Nothing in it depends
on a tuned setting, so the report build runs it as its own job
(``python -m dipddpm_lib.experiments.es_authors_regime``) and chapter 04 finds it in the cache.
"""
from __future__ import annotations

import dataclasses

import torch

from .. import dip
from ..cache import Cache, digest
from ..photo_prior import denoise_x0_each
from .early_stopping import (PAPER_ITERATIONS, SeedRuns, StoppingSetup, _fit_kwargs, make_batch,
                             make_setup, run_reference)


def paper_setup(setup: StoppingSetup, profile) -> StoppingSetup:
    """ES-WMV and ES-EMV as their authors run them: the profile's ``es_paper_*`` photographs,
    size and σ, the first seed, W = 100 and P = 1000 (× ``es_paper_regime_scale``, 1 in
    quick and full) and Ulyanov's 3000 iterations as the budget."""
    from ..data import check_photos

    check_photos(profile.es_paper_photos, f"es_paper_photos of profile {profile.name!r}",
                 min_size=profile.es_paper_photo_size)
    k = profile.es_paper_regime_scale
    if not 0 < k <= 10:
        raise ValueError(f"es_paper_regime_scale must be in (0, 10], got {k}")
    paper = dataclasses.replace(
        setup, photos=tuple(profile.es_paper_photos), photo_size=profile.es_paper_photo_size,
        sigmas=tuple(float(x) for x in profile.es_paper_sigmas), seeds=setup.seeds[:1],
        fixed_iterations=max(1, round(PAPER_ITERATIONS * k)), paper_scale=k,
        wmv_window_factors=(1.0,))
    paper.check()
    return paper


def paper_net(profile) -> dip.DIPConfig:
    """The paper-regime run's network: Ulyanov et al.'s skip net (:class:`~dipddpm_lib.dip.DIPConfig`'s
    defaults) at the profile's ``es_paper_dip_scales`` × ``es_paper_dip_channels`` (the ES
    authors use 5 × 128); nothing in it is tuned."""
    return dip.DIPConfig(scales=profile.es_paper_dip_scales, channels=profile.es_paper_dip_channels)


#: Ulyanov et al.'s (and the ES authors') Adam learning rate and input perturbation.
PAPER_LR, PAPER_REG_NOISE = 0.01, 1.0 / 30.0


def paper_fit_kwargs(profile) -> dict:
    """The paper-regime fit's settings: the authors' learning rate and input perturbation
    (never the tuned ones), the profile's EMA and device."""
    return _fit_kwargs(profile) | {"lr": PAPER_LR, "reg_noise_std": PAPER_REG_NOISE}


def _weights_digest(model) -> str:
    return digest(torch.cat([p.detach().flatten().cpu().float() for p in model.unet.parameters()]))


def run_paper_regime(setup: StoppingSetup, profile, cache: Cache | None = None, prior=None,
                     progress: bool = True) -> SeedRuns:
    """One plain DIP run in the ES authors' regime (:func:`paper_setup`, :func:`paper_net`,
    :func:`paper_fit_kwargs`), read by every plain-run criterion (the learned-prior rule too
    when the photo DDPM ``prior`` is given); it ends when ES-WMV and ES-EMV have both fired on
    every image (the authors' runs end at detection) or at the budget. Nothing in it depends
    on the tuned settings, so the report build runs it as its own job
    (``python -m dipddpm_lib.experiments.es_authors_regime``); the σ lookup is read off its
    history afterwards (:func:`lookup_records`)."""
    paper = paper_setup(setup, profile)
    net = paper_net(profile)
    if paper.photo_size % net.min_size:
        raise ValueError(f"es_paper_photo_size {paper.photo_size} is not a multiple of "
                         f"{net.min_size}, which the paper-regime net needs")
    x0 = key = None
    if prior is not None:
        _, noisy, sig = make_batch(paper, paper.seeds[0])
        x0, key = denoise_x0_each(prior, noisy, sig)[0], _weights_digest(prior)
    return SeedRuns(run_reference(paper, profile, paper.seeds[0], cache, progress, prior_x0=x0,
                                  cfg=net, until_fired=("es_wmv", "es_emv"), kind="paper",
                                  fit_kwargs=paper_fit_kwargs(profile), prior_key=key))


def main(argv=None) -> None:
    """``python -m dipddpm_lib.experiments.es_authors_regime --profile quick``: run chapter 04's
    ES-authors'-regime fit into the cache (a step of the report build, after the photo prior),
    or say that it is there already."""
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
