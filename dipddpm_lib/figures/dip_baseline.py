"""Chapter 02's figures and Markdown tables."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..experiments.dip_baseline import ImageRestoration, peak
from ..methods import classical
from ..metrics import psnr
from ..plots import to_hwc
from ..results import fmt, markdown_table

METHOD_NAMES = {**classical.NAMES, "observed": "observed", "dip_final": "DIP (final)",
                "dip_peak": "DIP (peak, oracle)"}
TASK_NAMES = {"denoise": "denoising", "inpaint": "inpainting", "sr4": "×4 super-resolution"}

CURVES = {"psnr_obs": ("vs observation, raw", "tab:blue", "--"),
          "psnr_obs_ema": ("vs observation, EMA", "tab:blue", "-"),
          "psnr_clean": ("vs clean, raw", "tab:red", "--"),
          "psnr_clean_ema": ("vs clean, EMA", "tab:red", "-")}


def plot_psnr_curve(r: ImageRestoration, ax) -> None:
    """PSNR against iteration (mean over seeds, min–max band); stars mark the clean peaks."""
    curves = r.curves()
    it = np.arange(1, curves["psnr_clean"].shape[1] + 1)
    for key, (label, color, ls) in CURVES.items():
        c = curves[key]
        ax.plot(it, c.mean(0), color=color, ls=ls, lw=1.2, label=label)
        if len(c) > 1:
            ax.fill_between(it, c.min(0), c.max(0), color=color, alpha=0.12, lw=0)
    for key, name, color in (("psnr_clean", "raw", "dimgray"), ("psnr_clean_ema", "EMA", "k")):
        value, at = peak(curves[key].mean(0))
        ax.plot(at, value, marker="*", ms=11, color=color, ls="none", label=f"peak ({name})")
        right = at > 0.75 * len(it)
        ax.annotate(f"{value:.1f} dB @ {at}", (at, value), textcoords="offset points",
                    xytext=(-6 if right else 6, 6 if name == "EMA" else -12),
                    ha="right" if right else "left", fontsize=7, color=color,
                    bbox=dict(fc="white", ec="none", alpha=0.75, pad=0.3))
    ax.axhline(r.observed_psnr(), color="gray", ls="-.", lw=1, label="observed input")
    if r.classical:
        best = max(r.classical.values(), key=lambda c: c.psnr)
        ax.axhline(best.psnr, color="tab:green", ls="-.", lw=1, label="best classical method")
        ax.annotate(METHOD_NAMES[best.method], (0, best.psnr), xycoords=("axes fraction", "data"),
                    xytext=(3, 3), textcoords="offset points", ha="left", fontsize=7,
                    color="tab:green")
    low = min(r.observed_psnr(), float(np.nanmin(curves["psnr_clean"][:, len(it) // 10:])))
    ax.set_ylim(bottom=low - 2)
    ax.set(xlabel="DIP iteration", ylabel="PSNR (dB)", title=f"{r.name}: {TASK_NAMES[r.degradation.task]}")


def plot_psnr_curves(restorations: list[ImageRestoration], ncols: int = 3):
    """:func:`plot_psnr_curve` for each image, in a grid with one shared legend."""
    n = len(restorations)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    height = 3.4 * nrows + 0.5
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, height), squeeze=False)
    for ax, r in zip(axes.flat, restorations):
        plot_psnr_curve(r, ax)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.5 / height, 1, 1))
    return fig


def panels(r: ImageRestoration) -> list[tuple[str, torch.Tensor]]:
    """(title, image) pairs."""
    f = r.fits[0]
    out = [("clean", r.clean), (f"observed\n{r.observed_psnr():.2f} dB", r.observed)]
    out += [(f"{METHOD_NAMES[m]}\n{c.psnr:.2f} dB", c.output) for m, c in r.classical.items()]
    out += [(f"DIP final (seed {f.seed})\n{float(psnr(f.output_ema, r.clean)):.2f} dB", f.output_ema),
            (f"DIP peak @ {f.best_iteration}\n{float(psnr(f.best_output, r.clean)):.2f} dB",
             f.best_output)]
    return out


def plot_restorations(restorations: list[ImageRestoration]):
    """One row per image."""
    rows = [panels(r) for r in restorations]
    ncols = max(len(p) for p in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.9 * ncols, 2.2 * len(rows)),
                             squeeze=False)
    for ax_row, r, row in zip(axes, restorations, rows):
        for ax, (title, img) in zip(ax_row, row):
            ax.imshow(to_hwc(img[0]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=7.5)
        ax_row[0].set_ylabel(f"{r.name} ({TASK_NAMES[r.degradation.task]})", fontsize=8)
        for ax in ax_row:
            ax.set(xticks=[], yticks=[])
            if not ax.images:
                ax.set_axis_off()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- tables
def _table(per_image: dict, cells: dict) -> str:
    """One row per image; ``cells``: column title → function of the image's metrics."""
    rows = [{"image": name, **{title: cell(m) for title, cell in cells.items()}}
            for name, m in per_image.items()]
    return markdown_table(rows, {"image": "image", **{t: t for t in cells}})


def _classical_in(per_image: dict) -> list[str]:
    first = next(iter(per_image.values()))
    return [k for k in classical.NAMES if k in first]


def quality_table(per_image: dict) -> str:
    """PSNR in dB (SSIM) per method; DIP's cells are mean ± the 95 % half-width over seeds."""
    def both(p, s):
        return f"{p} ({s:.3f})"

    n = METHOD_NAMES
    return _table(per_image, {
        n["observed"]: lambda m: both(f"{m['observed_psnr']:.2f}", m["observed_ssim"]),
        n["dip_final"]: lambda m: both(fmt(m["dip"]["final_psnr"]), m["dip"]["final_ssim"]["mean"]),
        n["dip_peak"]: lambda m: both(fmt(m["dip"]["peak_psnr"]), m["dip"]["peak_ssim"]["mean"]),
        "peak iteration": lambda m: fmt(m["dip"]["peak_iteration"], 0),
        **{n[k]: lambda m, k=k: both(f"{m[k]['psnr']:.2f}", m[k]["ssim"])
           for k in _classical_in(per_image)}})


def compute_table(per_image: dict) -> str:
    """DIP's iterations, wall seconds and GFLOPs per network."""
    return _table(per_image, {
        "DIP iterations": lambda m: m["dip"]["iterations"],
        "DIP wall s (per network)": lambda m: fmt(m["dip"]["wall_s"], 1),
        "DIP GFLOPs": lambda m: f"{m['dip']['gflops']['mean']:.4g}",
        **{f"{METHOD_NAMES[k]} wall s": lambda m, k=k: f"{m[k]['wall_s']:.3f}"
           for k in _classical_in(per_image)}})
