"""Chapter 05's figures: a grid's metric against its parameter, mean ± 95 % t-interval over seeds."""
from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt

from ..collate import headline_metric
from ..results import format_value
from ..sweep import Grid, value_slug


def plot_grid(rows: list[dict], grid: Grid, metric: str, ax):
    """One metric of one grid, one line per series (e.g. per image); a dashed line marks the
    chapters' own setting."""
    sel = [r for r in rows if r["grid"] == grid.name and r["metric"] == metric]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in grid.values)
    xs_of = {value_slug(v): (v if numeric else i) for i, v in enumerate(grid.values)}
    for key in dict.fromkeys(r["key"] for r in sel):
        pts = sorted(((xs_of[value_slug(r["value"])], r) for r in sel if r["key"] == key
                      and value_slug(r["value"]) in xs_of), key=lambda p: p[0])
        ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts],
                    yerr=[(p[1]["ci95"] if p[1].get("ci95") is not None else p[1]["std"]) or 0.0
                          for p in pts], fmt="-o", ms=4, capsize=2, label=key or metric, alpha=0.85)
    if numeric:  # positive values spanning more than a factor of 20 read on a log axis
        if all(v > 0 for v in grid.values) and max(grid.values) / min(grid.values) > 20:
            ax.set_xscale("log")
        ax.set_xticks(list(grid.values), [format_value(v) for v in grid.values])
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(grid.values)),
                      [textwrap.fill(format_value(v), 12) for v in grid.values])
    if grid.default is not None and value_slug(grid.default) in xs_of:
        ax.axvline(xs_of[value_slug(grid.default)], color="0.5", ls="--", lw=1,
                   label="chapters' setting")
    ax.tick_params(labelsize=8)
    ax.set_xlabel(grid.parameter, fontsize=9)
    ax.set_ylabel(metric, fontsize=9)
    ax.set_title(f"{grid.name} ({grid.notebook_name})", fontsize=9)
    ax.grid(alpha=0.3)
    if len({r["key"] for r in sel}) > 1 or grid.default is not None:
        ax.legend(fontsize=7)
    return ax


def plot_grids(rows: list[dict], grids: list[Grid], ncols: int = 3):
    """One panel per grid: its deciding metric."""
    nrows = max(1, math.ceil(len(grids) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.4 * nrows), squeeze=False)
    for ax, grid in zip(axes.flat, grids):
        plot_grid(rows, grid, headline_metric(grid), ax)
    for ax in list(axes.flat)[len(grids):]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_grid_metrics(rows: list[dict], grid: Grid):
    """Every metric of one grid, one panel each."""
    n = len(grid.metrics)
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.2), squeeze=False)
    for ax, metric in zip(axes[0], grid.metrics):
        plot_grid(rows, grid, metric, ax)
        ax.set_title(metric, fontsize=9)
    fig.suptitle(textwrap.fill(f"{grid.name}: {grid.why}", 110), fontsize=9)
    fig.tight_layout()
    return fig
