"""Chapter 03's figures (every number drawn is passed in)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from ..experiments import photo_denoising as task_c
from ..experiments.dip_init_ddpm import method_label
from ..experiments.dip_init_ddpm_results import ddpm_chain_key
from ..metrics import psnr
from ..plots import image_grid, metric_vs_compute

FROM_NOISE = ("DDIM from noise", "DPM-Solver++ from noise")
PHOTO_FAMILIES = {"classical": ("bm3d", "nl_means"), "DIP alone": ("dip",),
                  "DDPM alone": ("ddpm_x0", "ddpm_chain", "ddim"), "DIP→t0 / TDPM-DIP": ("dip_t0", "tdpm_dip"),
                  "average (control)": ("fuse_avg",), "hybrids (DDPM guides DIP)": ("hybrid_red", "hybrid_target")}


def generation_groups(summary: dict) -> dict[str, list[str]]:
    """Task A's legend."""
    key = ddpm_chain_key(summary)
    return {FROM_NOISE[0]: [m for m in summary if m.startswith("ddim_")],
            FROM_NOISE[1]: [m for m in summary if m.startswith("dpmpp_")],
            f"{method_label(key)} from noise": [key],
            "DIP→t0": [m for m in summary if m.startswith("dip_t0_")],
            "TDPM-DIP": [m for m in summary if m.startswith("tdpm_")]}


def _plain_log_ticks(*axes):
    """Log axes labelled 0.2, 1, 60 (no minor labels on x: they overlap)."""
    for ax in axes:
        for axis, minor in ((ax.xaxis, NullFormatter()), (ax.yaxis, FormatStrFormatter("%g"))):
            if axis.get_scale() == "log":
                axis.set_major_formatter(FormatStrFormatter("%g"))
                axis.set_minor_formatter(minor)


def _ring(ax, summary, copies, metric, x="gflops_per_image"):
    ms = [m for m in copies if m in summary]
    if ms:
        ax.scatter([max(summary[m][x]["mean"], 1e-3) for m in ms], [summary[m][metric]["mean"] for m in ms],
                   s=90, facecolors="none", edgecolors="k", lw=0.8, label="near-copy of its reference")
        ax.legend(fontsize=7)


def plot_generation_quality(summary: dict, copies=(), threshold: float | None = None):
    """FID, confident fraction (or novelty) and distance to the own reference against GFLOPs."""
    groups = generation_groups(summary)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    labelled = "confident_fraction" in summary["test_refs"]  # without labels: novelty instead
    for ax, metric, label in zip(axes, ["fid", "confident_fraction" if labelled else "nn_train_dist",
                                        "dist_to_ref"],
                                 ["FID (lower is better, log)", "confident fraction" if labelled
                                  else "RMS distance to nearest train image",
                                  "RMS distance to own reference"]):
        metric_vs_compute(summary, metric, groups, ax, ylabel=label, connect=FROM_NOISE, logy=metric == "fid")
        _ring(ax, summary, copies, metric)
    axes[0].axhline(summary["test_refs"]["fid"]["mean"], color="k", ls=":", lw=1, label="test images (same size)")
    axes[0].legend(fontsize=7)
    if threshold is not None:
        axes[2].axhline(threshold, color="k", ls="--", lw=1, label="near-copy threshold")
        axes[2].legend(fontsize=7)
    _plain_log_ticks(*axes)
    fig.tight_layout()
    return fig


def plot_generation_wall_and_novelty(summary: dict, copies=()):
    """FID against wall seconds; distance to the own reference against novelty."""
    groups = generation_groups(summary)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    metric_vs_compute(summary, "fid", groups, ax[0], x="wall_s", xlabel="wall seconds (whole set, log)",
                      ylabel="in-domain FID (log)", connect=FROM_NOISE, logy=True)
    _ring(ax[0], summary, copies, "fid", x="wall_s")
    for name, ms in groups.items():
        ms = [m for m in ms if m in summary]
        ax[1].scatter([summary[m]["dist_to_ref"]["mean"] for m in ms],
                      [summary[m]["nn_train_dist"]["mean"] for m in ms], label=name, s=14)
    ref = summary["test_refs"]
    ax[1].scatter([ref["dist_to_ref"]["mean"]], [ref["nn_train_dist"]["mean"]], marker="*", s=80, c="k",
                  label="the references")
    ax[1].set(xlabel="distance to own reference", ylabel="distance to nearest train image")
    ax[1].legend(fontsize=7); ax[1].grid(alpha=0.3)
    _plain_log_ticks(ax[0])
    fig.tight_layout()
    return fig


def plot_image_rows(images: dict, show, n: int = 16, label=method_label):
    """One row of ``n`` images per method of ``show``, titled by its reader's name."""
    fig, axes = plt.subplots(len(show), 1, figsize=(8, 1.0 * len(show)), squeeze=False)
    for ax, m in zip(axes[:, 0], show):
        image_grid(images[m][:n], nrow=n, ax=ax)
        ax.set_title(label(m), fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def plot_denoising_quality(summary: dict):
    """Task B."""
    groups = {"DDIM from y": [m for m in summary if m.startswith("ddim_") and not m.startswith("ddim_eq")],
              "DDIM from y (equal FLOPs)": [m for m in summary if m.startswith("ddim_eq")],
              "DDPM chain from y": ["ddpm_all"], "DIP alone": ["dip_fixed"],
              "DIP oracle peak (upper bound)": ["dip_oracle_peak"],
              "DIP→t0": [m for m in summary if m.startswith("dip_t0_")], "TDPM-DIP": ["tdpm_dip"]}
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for a, metric, label in ((ax[0], "psnr", "PSNR (dB)"), (ax[1], "ssim", "SSIM")):
        metric_vs_compute(summary, metric, groups, a, ylabel=label, connect=("DDIM from y",))
    _plain_log_ticks(*ax)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- task C
def plot_photo_psnr_vs_wall(summary_c: dict):
    """Per σ: PSNR (mean ± 95 % interval) against wall seconds per image, by family."""
    fig, axes = plt.subplots(1, len(summary_c), figsize=(5 * len(summary_c), 3.8), squeeze=False)
    for ax, (sig, by) in zip(axes[0], summary_c.items()):
        for name, fams in PHOTO_FAMILIES.items():
            ms = [m for m in by if task_c.family(m) in fams]
            ax.errorbar([by[m]["wall_s"] for m in ms], [by[m]["psnr"]["mean"] for m in ms],
                        yerr=[by[m]["psnr"]["ci95"] for m in ms], fmt="o", ms=5, capsize=2, label=name)
        if "dip_oracle" in by:
            ax.axhline(by["dip_oracle"]["psnr"]["mean"], color="k", ls=":", lw=1, label="DIP oracle peak (upper bound)")
        ax.axhline(by["noisy"]["psnr"]["mean"], color="grey", ls="--", lw=1, label="noisy input")
        ax.set(xscale="log", xlabel="wall seconds per image (log)", ylabel="PSNR (dB)", title=f"σ = {sig}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    _plain_log_ticks(*axes[0])
    fig.tight_layout()
    return fig


def plot_photo_curves(images_c: dict, summary_c: dict):
    """Per σ: clean PSNR along each DIP fit (None without curves)."""
    curves = [(*k[len("curve."):].split("|"), v) for k, v in images_c.items() if k.startswith("curve.")]
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(summary_c), figsize=(5 * len(summary_c), 3.4), squeeze=False)
    for ax, sig in zip(axes[0], summary_c):
        for m, s, c in curves:
            if s == sig:
                ax.plot(np.arange(1, len(c) + 1), np.asarray(c), label=task_c.method_label(m))
        if "ddpm_x0" in summary_c[sig]:
            ax.axhline(summary_c[sig]["ddpm_x0"]["psnr"]["mean"], color="k", ls="--", lw=1,
                       label=task_c.method_label("ddpm_x0"))
        ax.set(xlabel="DIP iteration", ylabel="clean PSNR of the EMA output (dB)",
               title=f"σ = {sig} (mean over photographs × seeds)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_photo_examples(photo_clean: dict, images_c: dict, sig: str, seed: int, size: int):
    """Every photograph at ``σ = sig`` with each method, and a zoomed crop of a third of the side."""
    show = [m for m in task_c.METHODS if m != "dip_oracle" and f"{m}|{sig}" in images_c]  # not ddim_k, dip_t0_k
    names = list(photo_clean)
    fig, axes = plt.subplots(2 * len(names), len(show) + 1, figsize=(1.6 * (len(show) + 1), 3.4 * len(names)),
                             squeeze=False)
    crop = slice(size // 4, size // 4 + size // 3)
    for i, name in enumerate(names):
        clean = photo_clean[name][0]
        panels = [("clean", clean)] + [(m, images_c[f"{m}|{sig}"][i, 0]) for m in show]
        for j, (m, img) in enumerate(panels):
            a = img.permute(1, 2, 0).clamp(0, 1).numpy()
            ps = "" if m == "clean" else f"\n{float(psnr(img[None], clean[None])):.2f} dB"
            axes[2 * i, j].imshow(a)
            axes[2 * i, j].set_title(task_c.method_label(m)[:22] + ps, fontsize=6)
            axes[2 * i + 1, j].imshow(a[crop, crop], interpolation="nearest")
            for ax in (axes[2 * i, j], axes[2 * i + 1, j]):
                ax.set_xticks([]); ax.set_yticks([])
        axes[2 * i, 0].set_ylabel(name, fontsize=8); axes[2 * i + 1, 0].set_ylabel("zoom", fontsize=8)
    fig.suptitle(f"σ = {sig}, seed {seed}: every photograph with each method, and a zoomed crop", fontsize=9)
    fig.tight_layout()
    return fig
