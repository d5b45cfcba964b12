"""Chapter 01's figures: the training loss, the sample grids, quality against compute."""
from __future__ import annotations

from itertools import product

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..experiments.ddpm_baseline import KID_SCALE, SAMPLER_NAMES, SCORE_NAMES, Sweep, ordered
from ..plots import image_grid

SAMPLER_COLORS = {"ddpm": "black", "ddim": "tab:blue", "dpm-solver++": "tab:orange"}
BETTER = {"fid": "lower", "kid": "lower", "precision": "higher", "recall": "higher",
          "confident_fraction": "higher"}
COSTS = {"nfe": "denoiser evaluations (NFE)", "gflops": "GFLOPs per sample set",
         "wall_s": "wall seconds per sample set"}


def plot_training_loss(loss_history, window: int = 50, ax=None):
    """Per-step training loss (faint) and its running mean over ``window`` steps (log scale)."""
    loss = np.asarray(loss_history, dtype=np.float64)
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    ax.plot(np.arange(1, len(loss) + 1), loss, color="tab:blue", alpha=0.25, lw=0.6,
            label="per step")
    w = max(1, min(window, len(loss)))
    ax.plot(np.arange(w, len(loss) + 1), np.convolve(loss, np.ones(w) / w, mode="valid"),
            color="tab:blue", label=f"mean of {w} steps")
    ax.set(xlabel="training step", ylabel="ε-prediction MSE (log)", yscale="log")
    ax.legend(fontsize=9)
    return ax.figure


def plot_sample_grids(sweep_result: Sweep, methods, seed: int, n: int = 32):
    """The first ``n`` samples of ``seed`` per method, one grid each (same prior noise for all)."""
    methods, nrow = list(methods), 16
    rows = -(-min(n, len(sweep_result.samples[methods[0].key][seed])) // nrow)
    fig, axes = plt.subplots(len(methods), 1, squeeze=False, figsize=(
        nrow * 0.45, len(methods) * (rows * 0.45 + 0.35)))
    for ax, m in zip(axes[:, 0], methods):
        image_grid(sweep_result.samples[m.key][seed][:n], nrow=nrow, ax=ax,
                   title=f"{m.label} (seed {seed})")
    fig.tight_layout()
    return fig


def _err(s) -> float:  # a spread's 95 % half-width, 0 for a plain number
    return s.get("ci95", s["std"]) if isinstance(s, dict) else 0.0


def plot_quality_vs_compute(methods: dict, reference: dict):
    """Quality (rows) against compute (columns), one line per sampler, the real reference a band.
    FID on a log axis (it spans orders of magnitude), KID on a linear one (it can be negative)."""
    methods, costs = ordered(methods), tuple(COSTS)
    qualities = [q for q in BETTER if q in next(iter(methods.values()))]
    fig, axes = plt.subplots(len(qualities), len(costs), squeeze=False,
                             figsize=(4 * len(costs), 3 * len(qualities)))
    for (i, q), (j, c) in product(enumerate(qualities), enumerate(costs)):
        ax, f = axes[i, j], KID_SCALE if q == "kid" else 1.0
        for sampler in dict.fromkeys(m["sampler"] for m in methods.values()):
            mine = [m for m in methods.values() if m["sampler"] == sampler]
            x = [m[c]["mean"] if isinstance(m[c], dict) else m[c] for m in mine]
            y = [m[q]["mean"] * f for m in mine]
            ax.errorbar(x, y, yerr=[_err(m[q]) * f for m in mine],
                        xerr=[_err(m[c]) for m in mine], marker="o", ms=4, capsize=2,
                        color=SAMPLER_COLORS[sampler], label=SAMPLER_NAMES[sampler])
            for m, xv, yv in zip(mine, x, y):
                ax.annotate(str(m["num_steps"]), (xv, yv), fontsize=8,
                            xytext=(3, 3), textcoords="offset points")
        r = reference[q]
        ax.axhline(r["mean"] * f, color="green", ls="--", lw=1,
                   label="real test images, same size (band: 95 % interval)")
        ax.axhspan((r["mean"] - _err(r)) * f, (r["mean"] + _err(r)) * f, color="green",
                   alpha=0.1)
        ax.set(xscale="log", yscale="log" if q == "fid" else "linear")
        for axis in (ax.xaxis, ax.yaxis) if q == "fid" else (ax.xaxis,):  # ticks 1, 2, 5, 10, …
            axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.tick_params(labelsize=9)
        ax.set_xlabel(COSTS[c] if i == len(qualities) - 1 else None, fontsize=10)
        ax.set_ylabel(f"{SCORE_NAMES[q]}, {BETTER[q]} is better" if j == 0 else None,
                      fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=10, frameon=False,
               title="numbers at the points: step counts; error bars: 95 % t-interval over seeds",
               title_fontsize=10)
    return fig
