"""Chapter 04's figures; every number drawn is passed in."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..experiments.early_stopping import Run, StoppingSetup
from ..experiments.early_stopping_results import LABELS
from ..methods.guided_dip import STAGE_SCHEDULES, ProgressiveTargets, stage_noise_levels
from ..plots import to_hwc
from ..stopping import CRITERIA, ORACLES, RAW, SigmaLookup

COLORS = {"guided": "C3", "prior_distance": "C1", "sure": "C4", "sigma_lookup": "C5",
          "es_wmv": "C0", "es_wmv_raw": "C9", "es_emv": "C8", "discrepancy": "C2",
          "fixed": "0.4", "ulyanov": "0.7", "oracle": "k", "oracle_raw": "0.2"}


def plot_stage_levels(setup: StoppingSetup, sigma: float, ax=None):
    """Extra noise std (0-255) per stage for the three stage schedules at σ."""
    ax = ax or plt.subplots(figsize=(4.2, 3))[1]
    for sched in STAGE_SCHEDULES:
        _, std = stage_noise_levels(sigma, setup.num_stages, sched, setup.start_ratio,
                                    setup.beta_schedule)
        ax.plot(np.arange(setup.num_stages) + 1, 255 * std, "o-", ms=3,
                label=sched + (" (used)" if sched == setup.stage_schedule else ""))
    ax.set(xlabel="stage", ylabel="extra noise std (0-255)",
           title=f"stage targets at σ = {sigma:g}")
    ax.legend(fontsize=8)
    return ax


def plot_stage_gallery(guided: Run, n: int, stage_iterations: int):
    """Stage targets (top) and the EMA output at each stage end the run reached (bottom)."""
    k_all = list(range(len(guided.history["residual"]) // stage_iterations))
    ctl = ProgressiveTargets(guided.noisy, guided.sigmas, guided.noise_stds, stage_iterations,
                             guided.seed)
    fig, axes = plt.subplots(2, len(k_all), figsize=(1.3 * len(k_all), 3))
    for j, k in enumerate(k_all):
        axes[0, j].imshow(to_hwc(ctl.stage_target(k)[n]), cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"stage {k + 1}\n+{255 * guided.noise_stds[n, k]:.0f}/255", fontsize=7)
        axes[1, j].imshow(to_hwc(guided.stage_outputs[k, n]), cmap="gray", vmin=0, vmax=1)
        stop = (k + 1) * stage_iterations == guided.stops["guided"][n].iteration
        axes[1, j].set_title(f"it {(k + 1) * stage_iterations}" + (" (stop)" if stop else ""),
                             fontsize=7, color=COLORS["guided"] if stop else "k")
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle("stage targets (top) and DIP outputs at each stage end (bottom)", fontsize=9,
                 y=1.04)
    return fig


def plot_stage_monitor(guided: Run, n: int, stage_iterations: int, axes=None):
    """PSNR and SSIM against the current stage's target, with each stage's noise floor."""
    axes = plt.subplots(1, 2, figsize=(9, 3))[1] if axes is None else axes
    it = np.arange(1, len(guided.history["psnr_target"]) + 1)
    stage = np.minimum((it - 1) // stage_iterations, guided.noise_stds.shape[1] - 1)
    total = (guided.sigmas[n] / 255.0) ** 2 + guided.noise_stds[n, stage] ** 2
    axes[0].plot(it, guided.history["psnr_target"][:, n], label="output vs stage target")
    axes[0].plot(it, -10 * np.log10(total), "k--", lw=1, label="stage noise floor")
    axes[0].set(xlabel="iteration", ylabel="PSNR (dB)")
    axes[1].plot(it, guided.history["ssim_target"][:, n], color="C1")
    axes[1].set(xlabel="iteration", ylabel="SSIM vs stage target")
    for ax in axes:
        for k in range(1, int(np.ceil(len(it) / stage_iterations))):
            ax.axvline(k * stage_iterations, color="0.85", lw=0.6, zorder=0)
        ax.axvline(guided.stops["guided"][n].iteration, color=COLORS["guided"], lw=1.2)
    axes[0].legend(fontsize=7)
    return axes


def plot_rule_evidence(guided: Run, indices, labels, stage_iterations: int):
    """Both sides of the guided rule per stage (÷ σ²), with the clean PSNR at each stage end."""
    fig, axes = plt.subplots(1, len(indices), figsize=(3.3 * len(indices), 3), squeeze=False)
    for ax, n, lab in zip(axes[0], indices, labels):
        s2 = (guided.sigmas[n] / 255.0) ** 2
        k = np.arange(2, guided.stage_residual.shape[0] + 1)
        drop = (guided.stage_residual[:-1, n] - guided.stage_residual[1:, n]) / s2
        ax.semilogy(k, np.clip(drop, 1e-3, None), "o-", ms=3, label="fit-error drop / σ²")
        ax.semilogy(k, np.clip(2 * guided.stage_absorbed[1:, n], 1e-3, None), "s-", ms=3,
                    label="2 × absorbed share")
        ax.axvline(guided.stops["guided"][n].iteration / stage_iterations, color=COLORS["guided"],
                   lw=1.2)
        ax.set(xlabel="stage", title=lab)
        twin = ax.twinx()
        ends = np.arange(1, guided.stage_residual.shape[0] + 1) * stage_iterations
        ends = ends[ends <= len(guided.history["psnr_clean"])]
        twin.plot(ends / stage_iterations, guided.history["psnr_clean"][ends - 1, n], "k:", lw=1)
        twin.set_ylabel("clean PSNR (dB, not used)", fontsize=7)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_stop_curves(reference: Run, guided: Run | None, n: int, title: str,
                     ax=None, sure: Run | None = None):
    """Clean PSNR of the plain run (EMA and raw) with each criterion's stop on the curve it
    returns, the guided (and SURE) runs' own curves and stops, and ES-WMV's variance."""
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    curves = {"EMA": reference.history["psnr_clean"][:, n],
              "raw": reference.history["psnr_clean_raw"][:, n]}
    it = np.arange(1, len(curves["EMA"]) + 1)
    ax.plot(it, curves["raw"], color="0.8", lw=0.6, label="plain DIP, raw")
    ax.plot(it, curves["EMA"], color="C7", lw=1.2, label="plain DIP, EMA")
    runs = [(guided, "psnr_clean", "guided"), (sure, "psnr_clean_raw", "sure")]
    for g, stop, c in [(r.history[h][:, n], r.stops[c][n], c) for r, h, c in runs if r is not None]:
        ax.plot(np.arange(1, len(g) + 1), g, color=COLORS[c], lw=1, alpha=0.7,
                label=f"{LABELS[c].split(' (')[0]} run")
        ax.plot(stop.iteration, g[stop.iteration - 1], "*", color=COLORS[c], ms=11, label=LABELS[c])
    for c, stops in reference.stops.items():
        s = stops[n].iteration
        curve = curves["raw" if c in RAW else "EMA"]
        hollow = c in ORACLES
        ax.plot(s, curve[s - 1], "o", color=COLORS[c], ms=10 if hollow else 5, label=LABELS[c],
                mfc="none" if hollow else None, zorder=3)
    ax.set(xlabel="iteration", ylabel="clean PSNR (dB)", title=title)
    twin = ax.twinx()
    twin.semilogy(it, reference.history["variance"][:, n], color=COLORS["es_wmv"], lw=0.6, alpha=0.5)
    twin.set_ylabel("ES-WMV variance", fontsize=7, color=COLORS["es_wmv"])
    return ax


def plot_lookup(lookup: SigmaLookup, sigmas, ax=None):
    """The σ lookup's calibration points, fitted line and the counts at ``sigmas``."""
    ax = ax or plt.subplots(figsize=(4.2, 3))[1]
    cal = np.asarray(lookup.calibration, dtype=float)
    ax.loglog(cal[:, 0], cal[:, 1], "o", color=COLORS["oracle"], mfc="none",
              label="oracle peaks, tune photos")
    grid = np.geomspace(min(cal[:, 0].min(), min(sigmas)), max(cal[:, 0].max(), max(sigmas)), 50)
    ax.loglog(grid, [lookup.predict(g) for g in grid], color=COLORS["sigma_lookup"], label="fit")
    ax.loglog(sigmas, [lookup.predict(s) for s in sigmas], "s", color=COLORS["sigma_lookup"],
              label="counts used")
    ax.set(xlabel="σ (0-255)", ylabel="iterations", title="σ lookup")
    ax.legend(fontsize=7)
    return ax


def plot_gaps(records: list[dict], ax=None):
    """Gap to the oracle per criterion: every run a dot, the mean a bar."""
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    shown = [c for c in CRITERIA if c != "oracle" and any(r["criterion"] == c for r in records)]
    for j, c in enumerate(shown):
        gaps = np.array([r["gap_db"] for r in records if r["criterion"] == c])
        ax.bar(j, gaps.mean(), color=COLORS[c], alpha=0.35)
        jitter = np.random.default_rng(j).uniform(-0.25, 0.25, len(gaps))
        ax.plot(j + jitter, gaps, ".", color=COLORS[c], ms=4)
    names = [LABELS[c] for c in shown]
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=7, ha="right")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("gap to oracle PSNR (dB)")
    return ax
