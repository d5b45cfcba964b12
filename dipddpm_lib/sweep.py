"""Ablation grids as data: the grid file (``notebooks/ablations.yaml``, whose header describes
its keys), each grid's points and their folders, ``results/<profile>/ablations/<grid>/<parameter>=<value>/``.
The file is checked as a whole before any point runs; this module runs none (:mod:`.build` does)."""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import check_choice
from .profiles import PROFILES
from .results import REPO, read_json
from .tuned import TUNABLE, tuned_values

GRID_FILE = REPO / "notebooks" / "ablations.yaml"
GRID_KEYS = ("notebook", "parameter", "values", "fixed", "default", "metrics", "choose", "tunes",
             "why")
REQUIRED_KEYS = ("notebook", "parameter", "values", "metrics")
CHOOSE_KEYS = ("metric", "higher_is_better", "cost")
RESERVED_PARAMETERS = ("profile", "output_dir")  # set by the runner for every point
#: Notebook parameters that name photographs: a grid that chooses must run on tune photos only.
PHOTO_PARAMETERS = ("images", "photos", "inpaint_image", "sr4_image")


@dataclass(frozen=True)
class Grid:
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
        return self.notebook.stem


@dataclass(frozen=True)
class Point:
    grid: Grid
    value: object
    folder: Path

    @property
    def name(self) -> str:  # <parameter>=<value>
        return self.folder.name

    @property
    def failed_folder(self) -> Path:
        return self.folder.with_name(self.folder.name + ".failed")

    def parameters(self, profile: str, output_dir: Path | None = None) -> dict:
        """Its papermill parameters."""
        return {"profile": profile, **self.grid.fixed, self.grid.parameter: self.value,
                "output_dir": str(output_dir or self.folder)}

    def run_key(self, profile: str) -> str:
        """The notebook and every parameter (two grids that share their default share this run)."""
        return json.dumps([self.grid.notebook_name, self.record(profile)["parameters"]],
                          sort_keys=True)

    def record(self, profile: str) -> dict:
        """What ``point.json`` holds; a done point with a different record is run again."""
        params = self.parameters(profile)
        params.pop("output_dir")
        return {"grid": self.grid.name, "notebook": self.grid.notebook_name,
                "parameter": self.grid.parameter, "value": self.value, "parameters": params}


def value_slug(value) -> str:
    """A folder-safe name for a value: ``25``, ``cosine``, ``10-50``, ``channels-16``."""
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
    """The names assigned at the top level of a notebook's ``parameters`` cell, in order (Python's
    own parser: papermill's skips a line whose comment it cannot read, e.g. with backquotes)."""
    import ast

    nb = json.loads(Path(notebook).read_text())
    cells = [c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])]
    src = "".join(cells[0]["source"]) if cells else ""  # a list of lines or one string
    return {t.id: None for node in ast.parse(src).body
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]
                      if isinstance(node, ast.AnnAssign) and node.value is not None else [])
            if isinstance(t, ast.Name)}


def _require(ok, name: str, problem: str) -> None:
    """``ValueError`` naming grid ``name`` and the ``problem`` unless ``ok``."""
    if not ok:
        raise ValueError(f"grid {name!r}{problem}")


def _known_keys(name: str, spec: dict, valid: tuple, what: str = "") -> None:
    unknown = sorted(set(spec) - set(valid))
    _require(not unknown, name, f": unknown {what}key(s) {unknown}; valid keys: {', '.join(valid)}")


def _check_grid_spec(name: str, spec, notebook_dir: Path) -> Path:
    _require(isinstance(spec, dict), name, f": expected a mapping with keys {', '.join(REQUIRED_KEYS)}")
    _known_keys(name, spec, GRID_KEYS)
    missing = [k for k in REQUIRED_KEYS if k not in spec]
    _require(not missing, name, f": missing key(s) {missing}")
    available = sorted(p.stem for p in notebook_dir.glob("*.ipynb"))
    check_choice(f"notebook in grid {name!r}", str(spec["notebook"]), available)
    return notebook_dir / f"{spec['notebook']}.ipynb"


def _check_values(name: str, spec, profile: str) -> tuple:
    values = _per_profile(spec["values"], profile)
    if isinstance(spec["values"], dict):
        missing = [p for p in PROFILES if p not in spec["values"]]
        extra = sorted(set(spec["values"]) - set(PROFILES))
        _require(not (missing or extra), name, f": values must be one list or one list per profile "
                 f"({', '.join(PROFILES)}); missing {missing}, unknown {extra}")
    _require(isinstance(values, list) and (values or isinstance(spec["values"], dict)), name,
             f": values for profile {profile!r} must be a non-empty list (an empty list per "
             f"profile leaves the grid out of it), got {values!r}")
    slugs = [value_slug(v) for v in values]
    _require(len(set(slugs)) == len(slugs), name, f": values {values} repeat (as folder names {slugs})")
    return tuple(values)


def _check_fixed(name: str, spec, profile: str, declared: dict) -> dict:
    """The settings every point shares (the grid's own parameter there is the chapters' setting)."""
    fixed = _per_profile(spec.get("fixed") or {}, profile) or {}
    _require(isinstance(fixed, dict), name, f": fixed must map parameter names to values, got {fixed!r}")
    bad = sorted(set(fixed) & set(RESERVED_PARAMETERS))
    _require(not bad, name, f": fixed may not set {bad} ({', '.join(RESERVED_PARAMETERS)} are set "
             f"per point by the runner)")
    for key in fixed:
        check_choice(f"fixed parameter of grid {name!r}", key, declared)
    return dict(fixed)


def _check_metrics(name: str, spec) -> tuple[dict, dict]:
    metrics = spec["metrics"]
    _require(isinstance(metrics, dict) and metrics and all(isinstance(v, str) and v
                                                           for v in metrics.values()), name,
             ": metrics must map labels to dotted paths into metrics.json, e.g. "
             "{psnr: per_image.*.dip.peak_psnr}")
    choose = spec.get("choose")
    if choose is None:  # a condition (σ, t_noise), not a setting: nothing to choose
        return dict(metrics), {}
    _require(isinstance(choose, dict), name, ": choose must be {metric: <label>, higher_is_better: bool}")
    _known_keys(name, choose, CHOOSE_KEYS, "choose ")
    check_choice(f"choose.metric of grid {name!r}", choose.get("metric"), metrics)
    if "cost" in choose:
        check_choice(f"choose.cost of grid {name!r}", choose["cost"], metrics)
    return dict(metrics), {**choose, "higher_is_better": bool(choose.get("higher_is_better", True))}


def _check_tunes(name: str, spec, choose: dict) -> dict:
    """``tunes`` (a field, or ``{field: key of the dict value}``) only with ``choose``, and
    ``choose`` only with it: a grid chooses only what a chapter uses."""
    tunes = spec.get("tunes")
    if tunes is None:
        _require(not choose, name, f" chooses a value but no chapter uses it: add 'tunes: <profile "
                 f"field>' (one of {', '.join(TUNABLE)}) or drop 'choose' (a condition grid)")
        return {}
    _require(choose, name, ": 'tunes' needs 'choose' (the metric that picks the value)")
    tunes = {tunes: None} if isinstance(tunes, str) else tunes
    _require(isinstance(tunes, dict) and tunes, name,
             f": tunes must be a profile field or {{field: key}}, got {tunes!r}")
    for f in tunes:
        check_choice(f"tunes field of grid {name!r}", f, TUNABLE)
    return {str(f): (None if k is None else str(k)) for f, k in tunes.items()}


def _check_tune_photos(grid: Grid, profile: str, declared) -> None:
    """A grid that chooses runs on the profile's tune photos only (never on eval photos)."""
    if not grid.choose:
        return
    tune = PROFILES[profile].tune_photos
    for key in PHOTO_PARAMETERS:
        outside = [n for n in _names(grid.fixed.get(key)) if n not in tune]
        _require(not outside, grid.name, f" chooses a setting, so it must run on tune photos; its "
                 f"{key} holds {outside}. Valid choices (tune_photos of profile {profile!r}): "
                 f"{', '.join(tune)}")
    _require(grid.parameter not in PHOTO_PARAMETERS, grid.name,
             " chooses a setting and may not vary the photographs")
    keys = ("images", "photos")
    _require(any(k in grid.fixed for k in keys) or not any(k in declared for k in keys), grid.name,
             f" chooses a setting, so 'fixed' must name its tune photos ('images' or 'photos'; "
             f"tune_photos of profile {profile!r}: {', '.join(tune)})")


def load_grids(profile: str, path: str | Path | None = None, only=None) -> list[Grid]:
    """The checked grids of the file for ``profile`` (``only``: the named ones); a grid whose
    values for ``profile`` are an empty list is left out. Any mistake is a ``ValueError``
    naming the valid choices, before anything runs."""
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
        values = _check_values(name, spec, profile)
        if not values:
            _require(only is None, name, f" has no values for profile {profile!r}")
            continue
        declared = notebook_parameters(notebook)
        parameter = str(spec["parameter"])
        _require(parameter not in RESERVED_PARAMETERS, name,
                 f": {parameter!r} is set by the runner, not a grid parameter")
        check_choice(f"parameter of grid {name!r} ({notebook.name})", parameter, declared)
        metrics, choose = _check_metrics(name, spec)
        fixed = _check_fixed(name, spec, profile, declared)
        default = _per_profile(spec.get("default"), profile)
        grid = Grid(name, notebook, parameter, values, fixed,
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


def _names(names) -> list[str]:
    """A photo parameter's value as a list of names (one name, a list, or ``None``)."""
    return [] if names is None else [names] if isinstance(names, str) else list(names)


def grid_photos(grid: Grid) -> list[str]:
    """The photographs a grid's points run on (its ``images`` / ``photos``)."""
    return _names(grid.fixed.get("images") or grid.fixed.get("photos") or None)


def tuning_grids(grids: list[Grid]) -> list[Grid]:
    """The grids whose chosen value a chapter uses."""
    return [g for g in grids if g.tunes]


def with_fixed(grids: list[Grid], **params) -> list[Grid]:
    """The grids with more shared settings (e.g. ``seeds``) where their notebooks declare them."""
    return [dataclasses.replace(g, fixed={**g.fixed, **declared_only(g.notebook, params)})
            for g in grids]


def declared_only(notebook: Path, params: dict) -> dict:
    """Those of ``params`` that are not ``None`` and that ``notebook`` declares."""
    declared = notebook_parameters(notebook)
    return {k: v for k, v in params.items() if k in declared and v is not None}


def grid_points(grid: Grid, profile: str, root: str | Path | None = None) -> list[Point]:
    """The points of a grid, each with its folder under ``root`` (``results/<profile>/ablations``)."""
    base = (REPO / "results" / profile / "ablations" if root is None else Path(root)) / grid.name
    return [Point(grid, v, base / f"{grid.parameter}={value_slug(v)}") for v in grid.values]


def is_done(point: Point, profile: str) -> bool:
    """Its folder holds ``metrics.json`` and a ``point.json`` with the same notebook and parameters."""
    saved = read_json(point.folder / "point.json")
    if saved is None or not (point.folder / "metrics.json").exists():
        return False
    return {k: saved.get(k) for k in point.record(profile)} == json.loads(
        json.dumps(point.record(profile)))
