"""A chapter's stored results (``metrics.json``, ``.npy`` arrays, PNG figures, written
atomically to its ``output_dir``) and the spreads and tables that report them."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .cache import atomic_path, atomic_write_json, is_tensor

REPO = Path(__file__).resolve().parents[1]


def output_dir(notebook: str, profile: str, override: str | None = None) -> Path:
    """The chapter's output folder, created: ``override`` or ``results/<profile>/<notebook>``."""
    path = Path(override) if override else REPO / "results" / profile / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_array(out_dir: str | Path, name: str, images) -> Path:
    """Save images as float32 N×C×H×W in [0,1] to ``<out_dir>/<name>.npy`` (atomically)."""
    arr = (images.detach().cpu().numpy() if is_tensor(images) else np.asarray(images)).astype(np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"{name}: expected N×C×H×W images, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: images hold NaN or Inf")
    arr = np.clip(arr, 0.0, 1.0)
    path = Path(out_dir) / f"{name}.npy"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    return path


def load_array(out_dir: str | Path, name: str) -> np.ndarray:
    """Read back an array saved by :func:`save_array` (no pickle)."""
    return np.load(Path(out_dir) / f"{name}.npy", allow_pickle=False)


def save_metrics(out_dir: str | Path, metrics: dict) -> Path:
    """Write ``metrics.json`` atomically."""
    path = Path(out_dir) / "metrics.json"
    atomic_write_json(path, metrics)
    return path


def read_json(path: str | Path):
    """The JSON in ``path``, or ``None`` if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def save_figure(fig, out_dir: str | Path, name: str, dpi: int = 120) -> Path:
    """Save a matplotlib figure as ``<out_dir>/<name>.png`` (atomically)."""
    path = Path(out_dir) / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return path


#: How every ``±`` in the report's tables and prose reads (a :func:`spread`'s ``ci95``).
CI_NOTE = "mean ± half-width of the 95 % t-interval over seeds"


def half_width(std, n) -> float:
    """Half-width of the 95 % t-interval of a mean of ``n`` values with this std (0 for n < 2)."""
    from scipy.stats import t

    n = int(n or 0)
    return float(float(t.ppf(0.975, n - 1)) * (std or 0.0) / math.sqrt(n)) if n > 1 else 0.0


def spread(values) -> dict:
    """Mean, std, median, min, max, n and the 95 % t-interval of the mean (``ci95``: its
    half-width, 0 for one value; ``ci_lo``/``ci_hi``: its ends)."""
    v = np.asarray(list(values), dtype=np.float64)
    n, mean = int(len(v)), float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    half = half_width(std, n)
    return {"mean": mean, "std": std, "median": float(np.median(v)), "min": float(v.min()),
            "max": float(v.max()), "n": n, "ci95": half, "ci_lo": mean - half, "ci_hi": mean + half}


def paired_difference(a, b) -> dict:
    """Spread of the per-seed differences ``a − b`` (same seeds, same order), ``resolved``
    when its 95 % t-interval excludes 0."""
    a, b = np.asarray(list(a), np.float64), np.asarray(list(b), np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired values must have the same non-zero length, got {a.size}, {b.size}")
    d = spread(a - b)
    # A zero-width interval from two values (the same difference twice, as a discrete metric
    # gives by chance) is no evidence: a resolved difference needs a spread or three values.
    enough = d["n"] > 2 or (d["n"] == 2 and d["std"] > 0)
    return {**d, "resolved": bool(enough and (d["ci_lo"] > 0 or d["ci_hi"] < 0))}


def scaled(s: dict, factor: float) -> dict:
    """A :func:`spread` dict in other units (e.g. KID × 10³): locations and widths × ``factor`` > 0."""
    if not factor > 0:
        raise ValueError(f"factor must be positive, got {factor}")
    keys = ("mean", "std", "median", "min", "max", "ci95", "ci_lo", "ci_hi")
    return {**s, **{k: s[k] * factor for k in keys if k in s}}


def fmt(s: dict, digits: int = 2) -> str:
    """``mean ± ci95`` of a :func:`spread` dict (see :data:`CI_NOTE`), for tables and prose."""
    half = s.get("ci95", s["std"])
    return f"{s['mean']:.{digits}f} ± {half:.{digits}f}"


def markdown_table(rows: list[dict], columns: dict[str, str], digits: int = 2) -> str:
    """A Markdown table of ``rows``; ``columns`` maps each key to its header (spreads by :func:`fmt`)."""
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


def format_value(value) -> str:
    """A parameter value as text: ``25``, ``cosine``, ``[10, 50]``, ``scales=3, channels=32``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)
