"""A chapter's stored results: ``metrics.json``, raw ``.npy`` arrays and PNG figures.

Every chapter notebook writes to its ``output_dir`` (default ``results/<profile>/<notebook>``)
through these helpers, so the report can re-read every number from data. Writes are atomic.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .cache import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def output_dir(notebook: str, profile: str, override: str | None = None) -> Path:
    """The chapter's output folder, created: ``override`` or ``results/<profile>/<notebook>``."""
    path = Path(override) if override else REPO / "results" / profile / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_array(out_dir: str | Path, name: str, images) -> Path:
    """Save images as float32 N×C×H×W in [0,1] to ``<out_dir>/<name>.npy`` (atomically)."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    arr = arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"{name}: expected N×C×H×W images, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: images hold NaN or Inf")
    arr = np.clip(arr, 0.0, 1.0)
    path = Path(out_dir) / f"{name}.npy"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_array(out_dir: str | Path, name: str) -> np.ndarray:
    """Read back an array saved by :func:`save_array` (no pickle)."""
    return np.load(Path(out_dir) / f"{name}.npy", allow_pickle=False)


def save_metrics(out_dir: str | Path, metrics: dict) -> Path:
    """Write ``metrics.json`` atomically."""
    path = Path(out_dir) / "metrics.json"
    atomic_write_json(path, metrics)
    return path


def load_metrics(out_dir: str | Path) -> dict:
    """Read a chapter's ``metrics.json``."""
    return json.loads((Path(out_dir) / "metrics.json").read_text())


def save_figure(fig, out_dir: str | Path, name: str, dpi: int = 120) -> Path:
    """Save a matplotlib figure as ``<out_dir>/<name>.png`` (atomically)."""
    path = Path(out_dir) / f"{name}.png"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def spread(values) -> dict:
    """Mean, std, median, min, max and n of a list of per-seed numbers."""
    v = np.asarray(list(values), dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "n": int(len(v))}


def fmt(s: dict, digits: int = 2) -> str:
    """``mean ± std`` of a :func:`spread` dict, for tables and prose."""
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def markdown_table(rows: list[dict], columns: dict[str, str], digits: int = 2) -> str:
    """A Markdown table of ``rows``; ``columns`` maps each key to its header. Spread dicts
    render as ``mean ± std``; floats with ``digits`` decimals."""
    def cell(v):
        if isinstance(v, dict) and "mean" in v:
            return fmt(v, digits)
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return "" if v is None else str(v)

    head = "| " + " | ".join(columns.values()) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(cell(r.get(k)) for k in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])
