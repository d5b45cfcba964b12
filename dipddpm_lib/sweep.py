"""Ablation sweeps as data: grids of papermill runs, each point one executed chapter notebook.

A grid file (``notebooks/ablations.yaml``) names, per grid, the chapter notebook, the parameter
it varies and its values per profile, the settings the points share, and the numbers to collect
from each point's ``metrics.json``::

    grids:
      sigma:
        notebook: 02_dip_baseline      # notebooks/02_dip_baseline.ipynb, next to the file
        parameter: sigma
        values: {smoke: [15, 50], quick: [15, 25, 50], full: [10, 15, 25, 50, 75]}
        fixed: {quick: {images: [camera], sigma: 25}}  # per profile; sigma here = the default
        metrics: {peak_psnr: per_image.*.dip.peak_psnr}   # label: path (``*``: one series per key)
        choose: {metric: peak_psnr, higher_is_better: true, cost: gflops}  # settings only
        tunes: dip_lr                  # the profile field the chosen value sets (with choose)
        why: one sentence on what the grid asks

Every point runs into its own folder, ``results/<profile>/ablations/<grid>/<parameter>=<value>/``,
which holds the executed notebook next to its ``metrics.json`` and a ``point.json`` with the
parameters it ran with (written last). The report build (Snakemake, ``workflow/Snakefile``, with
:mod:`dipddpm_lib.build`) runs each distinct point once and copies a point identical to another
grid's (the shared default setting); a failed point's partial folder is kept as
``<parameter>=<value>.failed/`` (with ``error.txt``) for inspection, and is retried next time.
This module reads the file and collates the points; it runs none. The file is checked as a
whole (notebooks, parameters, values) before any point runs.

**Tune, then evaluate.** Only a grid whose chosen value a chapter then uses may ``choose``, and
it names the profile field it sets (``tunes``, one of :data:`TUNABLE`); its points run on the
profile's ``tune_photos`` only (checked). :func:`collate_tuned` (the report build's collate
step, after the tuning points and before chapters 02 and 04) writes the chosen values to
``results/<profile>/tuned.json``; chapters 02 and 04 read it through their ``tuned`` parameter
(:func:`tuned_overrides`), and fall back to the profile's value, saying so, for a setting whose
grid has no complete result. Points never read it.
"""
from __future__ import annotations

import csv
import dataclasses
import fnmatch
import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .cache import atomic_write_json
from .errors import check_choice
from .profiles import PROFILES

REPO = Path(__file__).resolve().parents[1]
GRID_FILE = REPO / "notebooks" / "ablations.yaml"
GRID_KEYS = ("notebook", "parameter", "values", "fixed", "default", "metrics", "choose", "tunes",
             "why")
REQUIRED_KEYS = ("notebook", "parameter", "values", "metrics")
CHOOSE_KEYS = ("metric", "higher_is_better", "cost")
RESERVED_PARAMETERS = ("profile", "output_dir")  # set by the runner for every point
TABLE_COLUMNS = ("grid", "notebook", "parameter", "value", "point", "metric", "key", "mean",
                 "std", "ci95", "median", "min", "max", "n", "seeds", "wall_s", "copied_from",
                 "profile")
#: Notebook parameters that name photographs: a grid that chooses must run on tune photos only.
PHOTO_PARAMETERS = ("images", "photos", "inpaint_image", "sr4_image")
_JSON_COLUMNS = ("value", "seeds")  # stored as JSON text in the CSV


# --------------------------------------------------------------------------- the grid file
@dataclass(frozen=True)
class Grid:
    """One ablation grid for one profile: a notebook, the parameter it varies and its values."""

    name: str
    notebook: Path
    parameter: str
    values: tuple
    fixed: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # label -> dotted path into metrics.json
    choose: dict = field(default_factory=dict)  # {"metric": label, "higher_is_better": bool}
    default: object = None
    why: str = ""
    tunes: dict = field(default_factory=dict)  # profile field -> key of a dict value (or None)

    @property
    def notebook_name(self) -> str:
        """The notebook's stem, e.g. ``02_dip_baseline``."""
        return self.notebook.stem


@dataclass(frozen=True)
class Point:
    """One papermill run of a grid: the parameter at one value, into its own folder."""

    grid: Grid
    value: object
    folder: Path

    @property
    def name(self) -> str:
        """``<parameter>=<value>``: the folder's name."""
        return self.folder.name

    @property
    def failed_folder(self) -> Path:
        """Where a failed run's partial folder is kept for inspection."""
        return self.folder.with_name(self.folder.name + ".failed")

    def parameters(self, profile: str, output_dir: Path | None = None) -> dict:
        """The papermill parameters of this point (``output_dir`` defaults to its folder)."""
        return {"profile": profile, **self.grid.fixed, self.grid.parameter: self.value,
                "output_dir": str(output_dir or self.folder)}

    def run_key(self, profile: str) -> str:
        """Identifies the run itself: the notebook and every parameter (two grids that share
        their default setting share this run)."""
        return json.dumps([self.grid.notebook_name, self.record(profile)["parameters"]],
                          sort_keys=True)

    def record(self, profile: str) -> dict:
        """What ``point.json`` holds; a done point with a different record is run again."""
        params = self.parameters(profile)
        params.pop("output_dir")
        return {"grid": self.grid.name, "notebook": self.grid.notebook_name,
                "parameter": self.grid.parameter, "value": self.value, "parameters": params}


def value_slug(value) -> str:
    """A folder-safe, readable name for a parameter value: ``25``, ``cosine``, ``10-50``,
    ``channels-16``."""
    if isinstance(value, dict):
        text = "_".join(f"{k}-{value_slug(v)}" for k, v in sorted(value.items()))
    elif isinstance(value, (list, tuple)):
        text = "-".join(value_slug(v) for v in value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "none"


def _per_profile(spec, profile: str):
    """``spec`` may be one value for every profile or a dict keyed by profile name."""
    if isinstance(spec, dict) and spec and set(spec) <= set(PROFILES):
        return spec.get(profile)
    return spec


def notebook_parameters(notebook: Path) -> dict:
    """The parameters a notebook declares in its ``parameters`` cell: each name assigned at the
    cell's top level, with the source of its default value, in order. (Python's own parser:
    papermill's skips a line whose comment it cannot read, e.g. one with backquotes.)"""
    import ast

    nb = json.loads(Path(notebook).read_text())
    cells = [c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    src = "".join(cells[0]["source"]) if isinstance(cells[0]["source"], list) else cells[0]["source"]
    out = {}
    for node in ast.parse(src).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
        for t in targets:
            if isinstance(t, ast.Name):
                out[t.id] = {"name": t.id, "default": ast.get_source_segment(src, node.value)}
    return out


def _check_grid_spec(name: str, spec, notebook_dir: Path) -> Path:
    """Check one grid's keys and notebook; return the notebook's path."""
    if not isinstance(spec, dict):
        raise ValueError(f"grid {name!r}: expected a mapping with keys {', '.join(REQUIRED_KEYS)}")
    unknown = sorted(set(spec) - set(GRID_KEYS))
    if unknown:
        raise ValueError(f"grid {name!r}: unknown key(s) {unknown}; valid keys: {', '.join(GRID_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in spec]
    if missing:
        raise ValueError(f"grid {name!r}: missing key(s) {missing}")
    available = sorted(p.stem for p in notebook_dir.glob("*.ipynb"))
    check_choice(f"notebook in grid {name!r}", str(spec["notebook"]), available)
    return notebook_dir / f"{spec['notebook']}.ipynb"


def _check_values(name: str, spec, profile: str) -> tuple:
    values = _per_profile(spec["values"], profile)
    if isinstance(spec["values"], dict):
        missing = [p for p in PROFILES if p not in spec["values"]]
        extra = sorted(set(spec["values"]) - set(PROFILES))
        if missing or extra:
            raise ValueError(f"grid {name!r}: values must be one list or one list per profile "
                             f"({', '.join(PROFILES)}); missing {missing}, unknown {extra}")
    if not isinstance(values, list) or (not values and not isinstance(spec["values"], dict)):
        raise ValueError(f"grid {name!r}: values for profile {profile!r} must be a non-empty list "
                         f"(an empty list per profile leaves the grid out of it), got {values!r}")
    slugs = [value_slug(v) for v in values]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"grid {name!r}: values {values} repeat (as folder names {slugs})")
    return tuple(values)


def _check_fixed(name: str, spec, profile: str, declared: dict) -> dict:
    """The settings every point of the grid shares (the grid's own parameter, if present, is
    the chapters' setting, overridden per point)."""
    fixed = _per_profile(spec.get("fixed") or {}, profile) or {}
    if not isinstance(fixed, dict):
        raise ValueError(f"grid {name!r}: fixed must map parameter names to values, got {fixed!r}")
    bad = sorted(set(fixed) & set(RESERVED_PARAMETERS))
    if bad:
        raise ValueError(f"grid {name!r}: fixed may not set {bad} ("
                         f"{', '.join(RESERVED_PARAMETERS)} are set per point by the runner)")
    for key in fixed:
        check_choice(f"fixed parameter of grid {name!r}", key, declared)
    return dict(fixed)


def _check_metrics(name: str, spec) -> tuple[dict, dict]:
    metrics = spec["metrics"]
    if not isinstance(metrics, dict) or not metrics or \
            not all(isinstance(v, str) and v for v in metrics.values()):
        raise ValueError(f"grid {name!r}: metrics must map labels to dotted paths into "
                         f"metrics.json, e.g. {{psnr: per_image.*.dip.peak_psnr}}")
    choose = spec.get("choose")
    if choose is None:  # a condition (σ, t_noise), not a setting: nothing to choose
        return dict(metrics), {}
    if not isinstance(choose, dict):
        raise ValueError(f"grid {name!r}: choose must be {{metric: <label>, higher_is_better: bool}}")
    unknown = sorted(set(choose) - set(CHOOSE_KEYS))
    if unknown:
        raise ValueError(f"grid {name!r}: unknown choose key(s) {unknown}; valid keys: "
                         f"{', '.join(CHOOSE_KEYS)}")
    check_choice(f"choose.metric of grid {name!r}", choose.get("metric"), metrics)
    if "cost" in choose:
        check_choice(f"choose.cost of grid {name!r}", choose["cost"], metrics)
    return dict(metrics), {"metric": choose["metric"],
                           "higher_is_better": bool(choose.get("higher_is_better", True)),
                           **({"cost": choose["cost"]} if "cost" in choose else {})}


def _check_tunes(name: str, spec, choose: dict) -> dict:
    """``tunes`` (a profile field, or ``{field: key of the dict value}``, one per field): only
    with ``choose``, and ``choose`` only with it: a grid chooses only what a chapter uses."""
    tunes = spec.get("tunes")
    if tunes is None:
        if choose:
            raise ValueError(f"grid {name!r} chooses a value but no chapter uses it: add "
                             f"'tunes: <profile field>' (one of {', '.join(TUNABLE)}) or drop "
                             f"'choose' (a condition grid)")
        return {}
    if not choose:
        raise ValueError(f"grid {name!r}: 'tunes' needs 'choose' (the metric that picks the value)")
    tunes = {tunes: None} if isinstance(tunes, str) else tunes
    if not isinstance(tunes, dict) or not tunes:
        raise ValueError(f"grid {name!r}: tunes must be a profile field or {{field: key}}, got {tunes!r}")
    for f in tunes:
        check_choice(f"tunes field of grid {name!r}", f, TUNABLE)
    return {str(f): (None if k is None else str(k)) for f, k in tunes.items()}


def _check_tune_photos(grid: Grid, profile: str, declared=()) -> None:
    """A grid that chooses runs on the profile's tune photos only (never on eval photos)."""
    if not grid.choose:
        return
    tune = PROFILES[profile].tune_photos
    for key in PHOTO_PARAMETERS:
        if key not in grid.fixed or grid.fixed[key] is None:
            continue
        names = [grid.fixed[key]] if isinstance(grid.fixed[key], str) else list(grid.fixed[key])
        outside = [n for n in names if n not in tune]
        if outside:
            raise ValueError(f"grid {grid.name!r} chooses a setting, so it must run on tune photos; "
                             f"its {key} holds {outside}. Valid choices (tune_photos of profile "
                             f"{profile!r}): {', '.join(tune)}")
    if grid.parameter in PHOTO_PARAMETERS:
        raise ValueError(f"grid {grid.name!r} chooses a setting and may not vary the photographs")
    photo_keys = [k for k in ("images", "photos") if k in grid.fixed]
    if not photo_keys and any(k in declared for k in ("images", "photos")):
        raise ValueError(f"grid {grid.name!r} chooses a setting, so 'fixed' must name its tune "
                         f"photos ('images' or 'photos'; tune_photos of profile {profile!r}: "
                         f"{', '.join(tune)})")


def load_grids(profile: str, path: str | Path | None = None, only=None) -> list[Grid]:
    """Read and check the grid file (default ``notebooks/ablations.yaml``) for ``profile``;
    ``only`` keeps the named grids. A grid whose values for ``profile`` are an empty list is
    left out of that profile (asked for by name in ``only``, it is an error).

    Raises ``ValueError`` naming the valid choices (profiles, grids, notebooks, parameters)
    for any mistake in the file, before anything runs."""
    check_choice("profile", profile, PROFILES)
    path = Path(path or GRID_FILE)
    doc = yaml.safe_load(path.read_text()) or {}
    specs = doc.get("grids") if isinstance(doc, dict) else None
    if not isinstance(specs, dict) or not specs:
        raise ValueError(f"{path}: expected a top-level 'grids:' mapping of grid names to grids")
    stray = sorted(k for k in doc if k != "grids" and not str(k).startswith("x-"))
    if stray:
        raise ValueError(f"{path}: unknown top-level key(s) {stray}; valid: 'grids', and "
                         f"'x-…' keys for YAML anchors")
    for name in only or ():
        check_choice("grid", name, specs)
    grids = []
    for name, spec in specs.items():
        if only is not None and name not in only:
            continue
        notebook = _check_grid_spec(name, spec, path.parent)
        if not _check_values(name, spec, profile):
            if only is not None:
                raise ValueError(f"grid {name!r} has no values for profile {profile!r}")
            continue
        declared = notebook_parameters(notebook)
        parameter = str(spec["parameter"])
        if parameter in RESERVED_PARAMETERS:
            raise ValueError(f"grid {name!r}: {parameter!r} is set by the runner, not a grid parameter")
        check_choice(f"parameter of grid {name!r} ({notebook.name})", parameter, declared)
        metrics, choose = _check_metrics(name, spec)
        fixed = _check_fixed(name, spec, profile, declared)
        default = _per_profile(spec.get("default"), profile)
        grid = Grid(name, notebook, parameter, _check_values(name, spec, profile), fixed,
                    metrics, choose, fixed.get(parameter) if default is None else default,
                    str(spec.get("why", "")).strip(), _check_tunes(name, spec, choose))
        _check_tune_photos(grid, profile, declared)
        for value in grid.values:
            tuned_values(grid, value)  # each value gives a valid setting (ValueError if not)
        grids.append(grid)
    owners = {}
    for g in grids:
        for f in g.tunes:
            if f in owners:
                raise ValueError(f"{path}: grids {owners[f]!r} and {g.name!r} both tune {f}; "
                                 f"one setting, one grid")
            owners[f] = g.name
    return grids


# --------------------------------------------------------------------------- points
def ablations_dir(profile: str, root: str | Path | None = None) -> Path:
    """Where a profile's points live: ``results/<profile>/ablations`` unless ``root`` is given."""
    return Path(root) if root is not None else REPO / "results" / profile / "ablations"


def grid_points(grid: Grid, profile: str, root: str | Path | None = None) -> list[Point]:
    """The points of a grid, each with its final folder."""
    base = ablations_dir(profile, root) / grid.name
    return [Point(grid, v, base / f"{grid.parameter}={value_slug(v)}") for v in grid.values]


def read_json(path: Path):
    """The JSON in ``path``, or ``None`` if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_done(point: Point, profile: str) -> bool:
    """A point is done when its folder holds ``metrics.json`` and a ``point.json`` recording
    the same notebook and parameters."""
    saved = read_json(point.folder / "point.json")
    if saved is None or not (point.folder / "metrics.json").exists():
        return False
    return {k: saved.get(k) for k in point.record(profile)} == json.loads(
        json.dumps(point.record(profile)))


def error_summary(err: Exception) -> str:
    """One readable line for a failed point: the notebook's own exception where papermill
    reports one (``RuntimeError: …``), else the error itself."""
    name = getattr(err, "ename", None) or type(err).__name__
    value = str(getattr(err, "evalue", None) or err)
    first = next((line.strip() for line in value.splitlines() if line.strip()), "")
    return f"{name}: {first}"[:300]


# --------------------------------------------------------------------------- collation
def lookup(metrics: dict, path: str) -> list[tuple[str, object]]:
    """Every ``(key, leaf)`` that a dotted ``path`` reaches in ``metrics``.

    A ``*`` component matches any key and the matched keys make up ``key`` (joined by ``/``):
    ``per_image.*.dip.peak_psnr`` gives one series per image. A pattern such as ``ddim_*``
    matches keys without naming a series: ``methods.ddim_*.fid`` is one series even though
    the key (``ddim_10``, ``ddim_50``) changes from point to point."""
    found = [("", metrics)]
    for part in path.split("."):
        nxt = []
        for key, node in found:
            if not isinstance(node, dict):
                continue
            if part == "*":
                nxt += [(f"{key}/{k}" if key else str(k), v) for k, v in node.items()]
            elif any(ch in part for ch in "*?["):
                nxt += [(key, v) for k, v in node.items() if fnmatch.fnmatchcase(str(k), part)]
            elif part in node:
                nxt.append((key, node[part]))
        found = nxt
    return found


def _summary(leaf) -> dict | None:
    """A spread dict (``mean``, ``std``, …) from a leaf: a spread, a number or a list of numbers."""
    from .results import spread

    if isinstance(leaf, dict) and isinstance(leaf.get("mean"), (int, float)):
        out = {k: leaf.get(k) for k in ("mean", "std", "median", "min", "max", "n")}
        return {**out, "ci95": leaf["ci95"] if isinstance(leaf.get("ci95"), (int, float))
                else _half_width(out["std"], out["n"])}
    if isinstance(leaf, bool) or leaf is None:
        return None
    if isinstance(leaf, (int, float)):
        return spread([leaf])
    if isinstance(leaf, list) and leaf and all(isinstance(v, (int, float)) for v in leaf):
        return spread(leaf)
    return None


def point_rows(point: Point, profile: str) -> list[dict]:
    """The tidy rows of one done point: one per (metric label, matched key)."""
    metrics = read_json(point.folder / "metrics.json") or {}
    saved = read_json(point.folder / "point.json") or {}
    rows = []
    for label, path in point.grid.metrics.items():
        for key, leaf in lookup(metrics, path):
            s = _summary(leaf)
            if s is None:
                continue
            rows.append({"grid": point.grid.name, "notebook": point.grid.notebook_name,
                         "parameter": point.grid.parameter, "value": point.value,
                         "point": point.name, "metric": label, "key": key, **s,
                         "seeds": metrics.get("seeds"), "wall_s": saved.get("wall_s"),
                         "copied_from": saved.get("copied_from") or "", "profile": profile})
    return rows


def collect(grids: list[Grid], profile: str, root: str | Path | None = None
            ) -> tuple[list[dict], list[Point]]:
    """The tidy table of every done point, and the points that are not done (missing/failed)."""
    rows, missing = [], []
    for grid in grids:
        for pt in grid_points(grid, profile, root):
            if is_done(pt, profile):
                rows += point_rows(pt, profile)
            else:
                missing.append(pt)
    return rows, missing


def write_table(rows: list[dict], path: str | Path) -> Path:
    """Write the tidy table as CSV (atomically), one row per point × metric × key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
            writer.writeheader()
            writer.writerows({k: json.dumps(r.get(k)) if k in _JSON_COLUMNS else r.get(k)
                              for k in TABLE_COLUMNS} for r in rows)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_table(path: str | Path) -> list[dict]:
    """Read a table written by :func:`write_table` (numbers back as floats, values and seeds
    decoded)."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for k in ("mean", "std", "ci95", "median", "min", "max", "n", "wall_s"):
                r[k] = float(r[k]) if r.get(k) not in (None, "") else None
            if r["ci95"] is None:  # a table written before the interval was recorded
                r["ci95"] = _half_width(r["std"], r["n"])
            for k in _JSON_COLUMNS:
                r[k] = json.loads(r[k])
            out.append(r)
    return out


# --------------------------------------------------------------------------- reading a grid
def _half_width(std, n) -> float:
    """Half-width of the 95 % t-interval of a mean of ``n`` values with this std (0 for n < 2)."""
    from .results import t_quantile

    n = int(n or 0)
    return float(t_quantile(n) * (std or 0.0) / math.sqrt(n)) if n > 1 else 0.0


def grid_curve(rows: list[dict], grid: Grid, metric: str) -> list[dict]:
    """Per value of the grid (in the grid's order): the metric's mean over seeds, averaged
    over its matched keys (e.g. over images), with the keys kept. ``std`` is the root mean
    square of the keys' seed stds; ``ci95`` the half-width of the 95 % t-interval of that
    average over seeds (the keys' intervals combined: √Σ ci² / K, the images held fixed)."""
    out = []
    for value in grid.values:
        sel = [r for r in rows if r["grid"] == grid.name and r["metric"] == metric
               and value_slug(r["value"]) == value_slug(value)]
        if not sel:
            continue
        means = [r["mean"] for r in sel]
        stds = [r["std"] or 0.0 for r in sel]
        cis = [r["ci95"] if r.get("ci95") is not None else _half_width(r["std"], r["n"])
               for r in sel]
        out.append({"value": value, "mean": sum(means) / len(means),
                    "std": math.sqrt(sum(s * s for s in stds) / len(stds)),
                    "ci95": math.sqrt(sum(c * c for c in cis)) / len(cis),
                    "keys": [r["key"] for r in sel], "n": min(int(r["n"] or 0) for r in sel)})
    return out


#: How a setting grid chooses, in words (also written to ``tuned.json``).
CHOICE_RULE = ("the profile's value, unless the best mean of the grid's metric over seeds on the "
               "tune photos beats it by more than the 95 % t-interval of their difference; then, "
               "with a cost metric, the cheapest value whose difference from the best lies inside "
               "that interval, and otherwise the best")


def _interval(a: dict, b: dict) -> float:
    """Half-width of the 95 % interval of the difference of two means: √(ci_a² + ci_b²)."""
    return math.hypot(a.get("ci95", a["std"]), b.get("ci95", b["std"]))


def _within(a: dict, b: dict) -> bool:
    """Whether two means differ by no more than the 95 % interval of their difference (the
    grid cannot tell them apart at this number of seeds)."""
    return abs(a["mean"] - b["mean"]) <= _interval(a, b)


def choose_value(rows: list[dict], grid: Grid) -> dict | None:
    """The value a setting grid chooses, and why; ``None`` without results (or for a
    condition grid, which has nothing to choose).

    The rule, in order: the chapters' own setting if its difference from the best lies inside
    the 95 % t-interval of that difference (``reason="default"``: no evidence to change it);
    else, with a ``cost`` metric, the cheapest value inside that interval of the best
    (``"cheapest"``: the grid cannot tell them apart, and it costs less); otherwise the best
    mean (``"best"``). See :data:`CHOICE_RULE`."""
    if not grid.choose:
        return None
    metric, higher = grid.choose["metric"], grid.choose["higher_is_better"]
    curve = grid_curve(rows, grid, metric)
    if not curve:
        return None
    ranked = sorted(curve, key=lambda c: c["mean"], reverse=higher)
    best = ranked[0]
    chosen, reason = best, "best"
    cost_metric = grid.choose.get("cost")
    costs = {value_slug(c["value"]): c["mean"] for c in grid_curve(rows, grid, cost_metric)} \
        if cost_metric else {}
    default = next((c for c in curve if grid.default is not None
                    and value_slug(c["value"]) == value_slug(grid.default)), None)
    if default is not None and default is not best and _within(default, best):
        chosen, reason = default, "default"
    elif costs:
        tied = [c for c in curve if _within(c, best) and value_slug(c["value"]) in costs]
        cheapest = min(tied, key=lambda c: costs[value_slug(c["value"])], default=best)
        if value_slug(cheapest["value"]) != value_slug(best["value"]):
            chosen, reason = cheapest, "cheapest"
    second = ranked[1] if len(ranked) > 1 else None
    return {"grid": grid.name, "metric": metric, "higher_is_better": higher, "best": best,
            "chosen": chosen, "reason": reason, "runner_up": second, "cost_metric": cost_metric,
            "cost": costs,
            "margin": abs(best["mean"] - second["mean"]) if second else None,
            "interval": _interval(best, second) if second else None,
            "separated": bool(second) and not _within(best, second), "n_values": len(curve)}


def format_value(value) -> str:
    """A parameter value as text: ``25``, ``cosine``, ``[10, 50]``, ``scales=3, channels=32``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def _pm(c: dict, digits: int) -> str:
    """``mean ± ci95`` (the 95 % t-interval's half-width; the std where none is recorded)."""
    half = c.get("ci95")
    return f"{c['mean']:.{digits}f} ± {(c['std'] if half is None else half):.{digits}f}"


def headline_metric(grid: Grid) -> str:
    """The metric that speaks for a grid: its ``choose`` metric, else its first."""
    return grid.choose.get("metric") or next(iter(grid.metrics))


def with_fixed(grids: list[Grid], **params) -> list[Grid]:
    """The grids with more shared settings (e.g. ``seeds``), for the notebooks that declare
    them; ``None`` values are ignored."""
    out = []
    for g in grids:
        declared = notebook_parameters(g.notebook)
        extra = {k: v for k, v in params.items() if v is not None and k in declared}
        out.append(dataclasses.replace(g, fixed={**g.fixed, **extra}))
    return out


def grids_markdown(grids: list[Grid]) -> str:
    """A Markdown table of the grids: notebook, parameter, values, what is held fixed."""
    lines = ["| grid | notebook | parameter | values | profile's setting | kind | photos | seeds "
             "| question |", "|---|---|---|---|---|---|---|---|---|"]
    for g in grids:
        values = ", ".join(f"`{format_value(v)}`" for v in g.values)
        kind = ("setting: tunes " + ", ".join(f"`{f}`" for f in g.tunes)) if g.choose else \
            "condition (nothing chosen)"
        default = f"`{format_value(g.default)}`" if g.default is not None else "–"
        photos = ", ".join(grid_photos(g)) or "–"
        seeds = format_value(g.fixed["seeds"]) if g.fixed.get("seeds") is not None else "profile's"
        lines.append(f"| {g.name} | `{g.notebook_name}` | `{g.parameter}` | {values} | {default} "
                     f"| {kind} | {photos} | {seeds} | {g.why} |")
    return "\n".join(lines)


def summary_markdown(rows: list[dict], grids: list[Grid], digits: int = 2) -> str:
    """A condensed Markdown table: per grid and value, its deciding metric (mean ± half-width
    of the 95 % t-interval over seeds, averaged over images) and the point's wall seconds."""
    lines = ["| grid | value | metric | mean ± 95 % CI | n seeds | wall s (point) |",
             "|---|---|---|---|---|---|"]
    for g in grids:
        metric = headline_metric(g)
        mine = {value_slug(r["value"]): r for r in rows if r["grid"] == g.name}
        for c in grid_curve(rows, g, metric):
            r = mine[value_slug(c["value"])]
            wall = "–" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
            if r.get("copied_from"):
                wall += f" (same run as {r['copied_from']})"
            lines.append(f"| {g.name} | `{format_value(c['value'])}` | {metric} | {_pm(c, digits)} "
                         f"| {c['n']} | {wall} |")
    return "\n".join(lines)


def ablation_metrics(rows: list[dict], grids: list[Grid], profile: str, missing: list[Point]) -> dict:
    """Everything 05_ablations reports, for its ``metrics.json``: per grid its values, the
    chosen value with its numbers and the sentence that says why; the points missing; the
    compute (the points' wall seconds)."""
    out = {"profile": profile, "grids": {}, "missing_points": [f"{p.grid.name}/{p.name}" for p in missing],
           "failed_points": [f"{p.grid.name}/{p.name}" for p in missing if p.failed_folder.exists()],
           "n_rows": len(rows), "n_points": sum(len(g.values) for g in grids)}
    out["n_done"] = out["n_points"] - len(missing)
    seeds = sorted({s for r in rows for s in (r.get("seeds") or [])})
    out["seeds"] = seeds
    out["tune_photos"] = list(PROFILES[profile].tune_photos)
    for g in grids:
        choice = choose_value(rows, g)
        walls = {r["point"]: r["wall_s"] for r in rows if r["grid"] == g.name
                 and r["wall_s"] is not None and not r.get("copied_from")}
        out["grids"][g.name] = {
            "notebook": g.notebook_name, "parameter": g.parameter,
            "values": list(g.values), "default": g.default, "fixed": g.fixed,
            "kind": "setting" if g.choose else "condition", "why": g.why,
            "photos": grid_photos(g), "tunes": dict(g.tunes),
            "used_by": sorted({ch for f in g.tunes for ch in TUNABLE[f][1]}),
            "curves": {m: grid_curve(rows, g, m) for m in g.metrics},
            "choice": choice,
            "chosen": None if choice is None else {
                "value": format_value(choice["chosen"]["value"]), "metric": choice["metric"],
                "mean": choice["chosen"]["mean"], "std": choice["chosen"]["std"],
                "ci95": choice["chosen"]["ci95"]},
            "compute": {"point_wall_s": walls, "total_wall_s": sum(walls.values())},
        }
    out["compute"] = {"total_point_wall_s": sum(g["compute"]["total_wall_s"] for g in out["grids"].values()),
                      "note": "wall seconds of each point's papermill run when it was made; "
                              "points copied from an identical run are not counted twice"}
    return out


# --------------------------------------------------------------------------- tuned settings
def _whole(lo: int, hi: int):
    def check(what: str, v) -> int:
        if isinstance(v, bool) or not (isinstance(v, int) or isinstance(v, float) and v.is_integer()) \
                or not lo <= v <= hi:
            raise ValueError(f"{what} must be a whole number in [{lo}, {hi}], got {v!r}")
        return int(v)
    return check


def _positive(hi: float):
    def check(what: str, v) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= hi:
            raise ValueError(f"{what} must be a number in (0, {hi:g}], got {v!r}")
        return float(v)
    return check


def _one_of(*choices):
    def check(what: str, v) -> str:
        check_choice(what, v, choices)
        return str(v)
    return check


DIP_CHAPTERS = ("02_dip_baseline", "04_early_stopping")  # both fit the profile's DIP net
ES_CHAPTERS = ("04_early_stopping",)
PHOTO_CHAPTERS = ("03_dip_init_ddpm",)  # task C: DDPM × DIP on photographs
#: The settings a grid may choose: profile field -> (its check, the chapters that use it).
#: ``es_stage_schedule``'s choices are ``methods.guided_dip.STAGE_SCHEDULES`` (a test keeps them equal).
TUNABLE = {
    "dip_scales": (_whole(1, 8), DIP_CHAPTERS),
    "dip_channels": (_whole(1, 1024), DIP_CHAPTERS),
    "dip_lr": (_positive(1.0), DIP_CHAPTERS),
    "es_num_stages": (_whole(2, 10_000), ES_CHAPTERS),
    "es_stage_iterations": (_whole(1, 1_000_000), ES_CHAPTERS),
    "es_stage_schedule": (_one_of("linear", "cosine", "log"), ES_CHAPTERS),
    "es_start_ratio": (_positive(100.0), ES_CHAPTERS),
    "photo_dip_iterations": (_whole(1, 1_000_000), PHOTO_CHAPTERS),
    "photo_red_lambda": (_positive(100.0), PHOTO_CHAPTERS),
    "photo_red_sigma_eff_ratio": (_positive(10.0), PHOTO_CHAPTERS),
    "photo_red_refresh": (_whole(1, 1_000_000), PHOTO_CHAPTERS),
    "photo_target_lambda": (_positive(100.0), PHOTO_CHAPTERS),
}
TUNED_VERSION = 1


def tuned_path(profile: str, root: str | Path | None = None) -> Path:
    """Where the collate step writes a profile's tuned settings: ``results/<profile>/tuned.json``."""
    return Path(root) / "tuned.json" if root is not None else REPO / "results" / profile / "tuned.json"


def check_tuned_value(field_name: str, value, where: str = "") -> object:
    """``value`` checked for the profile field it tunes (``ValueError`` naming the valid range
    or choices, and the unknown field's valid names)."""
    check_choice("tuned setting", field_name, TUNABLE)
    return TUNABLE[field_name][0](f"tuned {field_name}{where}", value)


def tuned_values(grid: Grid, value) -> dict:
    """The profile fields a grid's ``value`` sets (``{}`` for a grid that tunes nothing);
    ``ValueError`` if the value does not give a valid setting."""
    out = {}
    for f, key in grid.tunes.items():
        if key is None:
            v = value
        elif isinstance(value, dict) and key in value:
            v = value[key]
        else:
            raise ValueError(f"grid {grid.name!r} tunes {f} from the key {key!r} of its values, "
                             f"but {value!r} has no such key")
        out[f] = check_tuned_value(f, v, f" (grid {grid.name!r}, value {format_value(value)})")
    return out


def grid_photos(grid: Grid) -> list[str]:
    """The photographs a grid's points run on (its ``images`` / ``photos``), or ``[]``."""
    for key in ("images", "photos"):
        names = grid.fixed.get(key)
        if names:
            return [names] if isinstance(names, str) else list(names)
    return []


def tuned_settings(rows: list[dict], grids: list[Grid], missing: list[Point], profile: str) -> dict:
    """What ``tuned.json`` holds: per tuned profile field, the chosen value with the grid,
    metric, tune photos, seeds and the reason; per field whose grid is incomplete (a point
    failed or did not run), the profile's value as a fallback with the reason."""
    base = PROFILES[profile]
    lacking = {}
    for pt in missing:
        lacking.setdefault(pt.grid.name, []).append(pt.name)
    out = {"version": TUNED_VERSION, "profile": profile, "tune_photos": list(base.tune_photos),
           "rule": CHOICE_RULE, "settings": {}, "untuned": {}}
    for g in grids:
        if not g.tunes:
            continue
        choice = None if g.name in lacking else choose_value(rows, g)
        for f in g.tunes:
            common = {"grid": g.name, "parameter": g.parameter, "photos": grid_photos(g),
                      "profile_value": getattr(base, f), "chapters": list(TUNABLE[f][1])}
            if choice is None:
                why = (f"point(s) {', '.join(lacking[g.name])} of grid {g.name} have no result "
                       f"(failed or not run)" if g.name in lacking else f"grid {g.name} has no results")
                out["untuned"][f] = {**common, "reason": why}
                continue
            c = choice["chosen"]
            out["settings"][f] = {
                **common, "value": tuned_values(g, c["value"])[f], "grid_value": c["value"],
                "metric": choice["metric"], "higher_is_better": choice["higher_is_better"],
                "mean": c["mean"], "ci95": c["ci95"], "n_seeds": c["n"],
                "seeds": sorted({s for r in rows if r["grid"] == g.name for s in (r.get("seeds") or [])}),
                "reason": choice["reason"]}
    return out


def write_tuned(doc: dict, path: str | Path) -> Path:
    """Write the tuned settings (atomically: a temporary file renamed into place), after
    checking every value."""
    path = Path(path)
    _check_tuned_doc(doc, path, doc.get("profile"))
    atomic_write_json(path, doc)
    return path


def _check_tuned_doc(doc, path: Path, profile: str | None) -> dict:
    if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict):
        raise ValueError(f"{path}: not a tuned-settings file (expected a JSON object with "
                         f"'settings'; write it with dipddpm_lib.sweep.collate_tuned)")
    if doc.get("version") != TUNED_VERSION:
        raise ValueError(f"{path}: tuned-settings version {doc.get('version')!r}, expected "
                         f"{TUNED_VERSION}; rerun the collate step")
    if profile is not None and doc.get("profile") != profile:
        raise ValueError(f"{path}: tuned for profile {doc.get('profile')!r}, not {profile!r}")
    for f, entry in doc["settings"].items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise ValueError(f"{path}: setting {f!r} has no 'value'")
        check_tuned_value(f, entry["value"], f" in {path}")
    for f in doc.get("untuned") or {}:
        check_choice(f"untuned setting in {path}", f, TUNABLE)
    return doc


def read_tuned(path: str | Path, profile: str | None = None) -> dict:
    """The tuned settings in ``path``, every value checked (before any work). A missing file
    is a ``FileNotFoundError`` saying how to make it; an unreadable one, a wrong version or
    profile, an unknown setting or a value out of range is a ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"tuned-settings file {path} does not exist: run the tuning points and the collate "
            f"step (`python -m dipddpm_lib.sweep --profile {profile or '<profile>'} --tune`; "
            f"`make report` does both), or pass tuned=None to use the profile's values")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable tuned-settings file ({type(err).__name__}: {err})") from err
    return _check_tuned_doc(doc, path, profile)


def tuned_overrides(profile: str, tuned, chapter: str, explicit: dict | None = None
                    ) -> tuple[dict, dict]:
    """``(overrides, record)`` for a chapter: the profile fields to override with tuned
    values, and for ``metrics.json`` where each setting the chapter uses came from.

    ``tuned``: a path to ``tuned.json`` or ``None`` (the profile's values). Precedence: a
    value the notebook was given explicitly (``explicit``: field -> value, ``None`` = not
    given), then the tuned file, then the profile. A setting the file lists as untuned (its
    grid failed) falls back to the profile's value and the record says so."""
    check_choice("profile", profile, PROFILES)
    base = PROFILES[profile]
    doc = None if tuned is None else read_tuned(tuned, profile)
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    overrides, settings, fallback = {}, {}, []
    for f, (_, chapters) in TUNABLE.items():
        if chapter not in chapters:
            continue
        if f in explicit:
            settings[f] = {"value": explicit[f], "source": "parameter",
                           "note": "set by this notebook's parameters"}
        elif doc is not None and f in doc["settings"]:
            e = doc["settings"][f]
            overrides[f] = e["value"]
            settings[f] = {"value": e["value"], "source": "tuned", "grid": e.get("grid"),
                           "metric": e.get("metric"), "photos": e.get("photos"),
                           "reason": e.get("reason"), "profile_value": getattr(base, f)}
        elif doc is not None and f in (doc.get("untuned") or {}):
            fallback.append(f)
            settings[f] = {"value": getattr(base, f), "source": "profile (fallback)",
                           "note": "not tuned: " + str(doc["untuned"][f].get("reason", "grid incomplete")),
                           "grid": doc["untuned"][f].get("grid")}
        else:
            settings[f] = {"value": getattr(base, f), "source": "profile",
                           "note": "no tuned-settings file given" if doc is None
                           else "no grid tunes it"}
    record = {"tuned_file": None if tuned is None else str(tuned),
              "tune_photos": list(doc["tune_photos"]) if doc else list(base.tune_photos),
              "settings": settings, "fallback": fallback}
    return overrides, record


def settings_table(record: dict) -> str:
    """Where a chapter's tunable settings came from (:func:`tuned_overrides`' record), as a
    Markdown table: each setting, its value, its source (tuned on which photos by which grid
    and metric, the profile's, a parameter, or the profile's as a fallback, and why)."""
    rows = []
    for f, e in record["settings"].items():
        if e["source"] == "tuned":
            how = (f"grid {e['grid']} by {e['metric']} on {', '.join(e.get('photos') or []) or '–'}"
                   f" (profile value {format_value(e['profile_value'])})")
        else:
            how = e.get("note", "")
        rows.append({"setting": f"`{f}`", "value": format_value(e["value"]), "source": e["source"],
                     "how": how})
    from .results import markdown_table

    return markdown_table(rows, {"setting": "setting", "value": "value", "source": "source",
                                 "how": "how"})


def collate_tuned(profile: str, root: str | Path | None = None, path: str | Path | None = None,
                  grid_file: str | Path | None = None, log=print) -> Path:
    """The report build's collate step: read the tuning grids' points (the grids that
    choose), choose each setting, and write ``tuned.json`` (default
    ``results/<profile>/tuned.json``). A grid with a failed or missing point leaves its
    settings at the profile's values, recorded as ``untuned`` with the reason."""
    grids = tuning_grids(load_grids(profile, grid_file))
    rows, missing = collect(grids, profile, root)
    doc = tuned_settings(rows, grids, missing, profile)
    out = write_tuned(doc, path or tuned_path(profile))
    for f, e in doc["settings"].items():
        log(f"      tuned {f} = {format_value(e['value'])} (grid {e['grid']}, {e['reason']}; "
            f"profile value {format_value(e['profile_value'])})")
    for f, e in doc["untuned"].items():
        log(f"      NOT tuned {f}: {e['reason']}; chapters use the profile value "
            f"{format_value(e['profile_value'])}")
    return out


def tuning_grids(grids: list[Grid]) -> list[Grid]:
    """The grids whose chosen value a chapter uses (they ``choose`` and ``tune`` a field)."""
    return [g for g in grids if g.tunes]
