"""Collating ablation points: the tidy table, each grid's curves and chosen value, and
``tuned.json`` (:func:`collate_tuned`, the build's step between the tuning points and chapters 02-04)."""
from __future__ import annotations

import csv
import fnmatch
import json
import math
from pathlib import Path

from .cache import atomic_path
from .profiles import PROFILES
from .results import fmt, format_value, half_width, markdown_table, read_json, spread
from .sweep import REPO, Grid, Point, grid_photos, grid_points, is_done, load_grids, tuning_grids, \
    value_slug
from .tuned import TUNABLE, TUNED_VERSION, chapters_using, tuned_values, write_tuned

TABLE_COLUMNS = ("grid", "notebook", "parameter", "value", "point", "metric", "key", "mean",
                 "std", "ci95", "median", "min", "max", "n", "seeds", "wall_s", "copied_from",
                 "profile")
_JSON_COLUMNS = ("value", "seeds")  # stored as JSON text in the CSV


def lookup(metrics: dict, path: str) -> list[tuple[str, object]]:
    """Every ``(key, leaf)`` that a dotted ``path`` reaches in ``metrics``. A ``*`` component
    names a series by the matched keys (``per_image.*.psnr``: one per image); a pattern such as
    ``ddim_*`` matches without naming one (``methods.ddim_*.fid`` is one series)."""
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
    if isinstance(leaf, dict) and isinstance(leaf.get("mean"), (int, float)):
        out = {k: leaf.get(k) for k in ("mean", "std", "median", "min", "max", "n")}
        return {**out, "ci95": leaf["ci95"] if isinstance(leaf.get("ci95"), (int, float))
                else half_width(out["std"], out["n"])}
    if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
        leaf = [leaf]
    if isinstance(leaf, list) and leaf and all(isinstance(v, (int, float)) for v in leaf):
        return spread(leaf)
    return None


def point_rows(point: Point, profile: str) -> list[dict]:
    """The tidy rows of one done point: one per (metric label, matched key)."""
    metrics = read_json(point.folder / "metrics.json") or {}
    saved = read_json(point.folder / "point.json") or {}
    return [{"grid": point.grid.name, "notebook": point.grid.notebook_name,
             "parameter": point.grid.parameter, "value": point.value, "point": point.name,
             "metric": label, "key": key, **s, "seeds": metrics.get("seeds"),
             "wall_s": saved.get("wall_s"), "copied_from": saved.get("copied_from") or "",
             "profile": profile}
            for label, path in point.grid.metrics.items() for key, leaf in lookup(metrics, path)
            if (s := _summary(leaf)) is not None]


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
    """Write the tidy table as CSV, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows({k: json.dumps(r.get(k)) if k in _JSON_COLUMNS else r.get(k)
                          for k in TABLE_COLUMNS} for r in rows)
    return Path(path)


def read_table(path: str | Path) -> list[dict]:
    """Read a table written by :func:`write_table`."""
    numbers = ("mean", "std", "ci95", "median", "min", "max", "n", "wall_s")
    with open(path, newline="") as f:
        return [{**r, **{k: float(r[k]) if r.get(k) not in (None, "") else None for k in numbers},
                 **{k: json.loads(r[k]) for k in _JSON_COLUMNS}} for r in csv.DictReader(f)]


def grid_curve(rows: list[dict], grid: Grid, metric: str) -> list[dict]:
    """Per value of the grid: the metric's mean over seeds averaged over its keys (e.g. images);
    ``std`` the RMS of the keys' stds, ``ci95`` their intervals combined (√Σ ci² / K)."""
    out = []
    for value in grid.values:
        sel = [r for r in rows if r["grid"] == grid.name and r["metric"] == metric
               and value_slug(r["value"]) == value_slug(value)]
        if not sel:
            continue
        stds = [r["std"] or 0.0 for r in sel]
        cis = [r["ci95"] if r.get("ci95") is not None else half_width(r["std"], r["n"])
               for r in sel]
        out.append({"value": value, "mean": sum(r["mean"] for r in sel) / len(sel),
                    "std": math.sqrt(sum(s * s for s in stds) / len(stds)),
                    "ci95": math.sqrt(sum(c * c for c in cis)) / len(cis),
                    "keys": [r["key"] for r in sel], "n": min(int(r["n"] or 0) for r in sel)})
    return out


def _interval(a: dict, b: dict) -> float:
    """Half-width of the 95 % interval of the difference of two means: √(ci_a² + ci_b²)."""
    return math.hypot(a["ci95"], b["ci95"])


def _within(a: dict, b: dict) -> bool:
    """Whether the grid cannot tell two means apart at this number of seeds."""
    return abs(a["mean"] - b["mean"]) <= _interval(a, b)


def choose_value(rows: list[dict], grid: Grid) -> dict | None:
    """The value a setting grid chooses and why (``None`` without results or for a condition):
    the profile's setting unless the best is resolved from it (``"default"``); else, with a
    ``cost`` metric, the cheapest value the grid cannot tell from the best (``"cheapest"``);
    else the best (``"best"``)."""
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
    return {"metric": metric, "higher_is_better": higher, "best": best, "chosen": chosen,
            "reason": reason, "runner_up": second, "cost_metric": cost_metric, "cost": costs,
            "margin": abs(best["mean"] - second["mean"]) if second else None,
            "interval": _interval(best, second) if second else None,
            "separated": bool(second) and not _within(best, second)}


def headline_metric(grid: Grid) -> str:
    """The metric that speaks for a grid: its ``choose`` metric, else its first."""
    return grid.choose.get("metric") or next(iter(grid.metrics))


def grids_markdown(grids: list[Grid]) -> str:
    """A Markdown table of the grids."""
    rows = [{"grid": g.name, "notebook": f"`{g.notebook_name}`", "parameter": f"`{g.parameter}`",
             "values": ", ".join(f"`{format_value(v)}`" for v in g.values),
             "default": f"`{format_value(g.default)}`" if g.default is not None else "–",
             "kind": ("setting: tunes " + ", ".join(f"`{f}`" for f in g.tunes)) if g.choose
             else "condition (nothing chosen)", "photos": ", ".join(grid_photos(g)) or "–",
             "seeds": format_value(g.fixed["seeds"]) if g.fixed.get("seeds") is not None else "profile's",
             "why": g.why} for g in grids]
    return markdown_table(rows, {"grid": "grid", "notebook": "notebook", "parameter": "parameter",
                                 "values": "values", "default": "profile's setting", "kind": "kind",
                                 "photos": "photos", "seeds": "seeds", "why": "question"})


def summary_markdown(rows: list[dict], grids: list[Grid]) -> str:
    """Per grid and value: its deciding metric (mean ± 95 % CI) and the point's wall seconds."""
    out = []
    for g in grids:
        metric = headline_metric(g)
        mine = {value_slug(r["value"]): r for r in rows if r["grid"] == g.name}
        for c in grid_curve(rows, g, metric):
            r = mine[value_slug(c["value"])]
            wall = "–" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
            out.append({"grid": g.name, "value": f"`{format_value(c['value'])}`", "metric": metric,
                        "mean": fmt(c), "n": c["n"], "wall": wall + (
                            f" (same run as {r['copied_from']})" if r.get("copied_from") else "")})
    return markdown_table(out, {"grid": "grid", "value": "value", "metric": "metric",
                                "mean": "mean ± 95 % CI", "n": "n seeds", "wall": "wall s (point)"})


def ablation_metrics(rows: list[dict], grids: list[Grid], profile: str, missing: list[Point]) -> dict:
    """Everything 05_ablations reports, for its ``metrics.json``."""
    n_points = sum(len(g.values) for g in grids)
    out = {"profile": profile, "grids": {}, "missing_points": [f"{p.grid.name}/{p.name}" for p in missing],
           "failed_points": [f"{p.grid.name}/{p.name}" for p in missing if p.failed_folder.exists()],
           "n_points": n_points, "n_done": n_points - len(missing),
           "seeds": sorted({s for r in rows for s in (r.get("seeds") or [])}),
           "tune_photos": list(PROFILES[profile].tune_photos)}
    walls = []  # per grid: its distinct runs' wall seconds (a copied point is not counted twice)
    for g in grids:
        choice = choose_value(rows, g)
        walls.append(sum({r["point"]: r["wall_s"] for r in rows if r["grid"] == g.name
                          and r["wall_s"] is not None and not r.get("copied_from")}.values()))
        out["grids"][g.name] = {
            "parameter": g.parameter, "kind": "setting" if g.choose else "condition",
            "photos": grid_photos(g), "tunes": dict(g.tunes),
            "used_by": chapters_using(g.tunes),
            "curves": {m: grid_curve(rows, g, m) for m in g.metrics},
            "choice": choice,
            "chosen": None if choice is None else {
                "value": format_value(choice["chosen"]["value"]), "metric": choice["metric"],
                "mean": choice["chosen"]["mean"], "std": choice["chosen"]["std"],
                "ci95": choice["chosen"]["ci95"]}}
    out["compute"] = {"total_point_wall_s": sum(walls)}
    return out


def collate_tuned(profile: str, root: str | Path | None = None, path: str | Path | None = None,
                  grid_file: str | Path | None = None, log=print) -> Path:
    """Choose each tuning grid's setting and write ``tuned.json`` (default
    ``results/<profile>/tuned.json``); a grid with a failed or missing point leaves its
    settings at the profile's values, recorded under ``untuned`` with the reason."""
    grids = tuning_grids(load_grids(profile, grid_file))
    rows, missing = collect(grids, profile, root)
    base = PROFILES[profile]
    lacking = {}
    for pt in missing:
        lacking.setdefault(pt.grid.name, []).append(pt.name)
    doc = {"version": TUNED_VERSION, "profile": profile, "tune_photos": list(base.tune_photos),
           "settings": {}, "untuned": {}}
    for g in grids:
        choice = None if g.name in lacking else choose_value(rows, g)
        for f in g.tunes:
            common = {"grid": g.name, "parameter": g.parameter, "photos": grid_photos(g),
                      "profile_value": getattr(base, f), "chapters": list(TUNABLE[f][1])}
            if choice is None:
                why = (f"point(s) {', '.join(lacking[g.name])} of grid {g.name} have no result "
                       f"(failed or not run)" if g.name in lacking else f"grid {g.name} has no results")
                doc["untuned"][f] = {**common, "reason": why}
                continue
            c = choice["chosen"]
            doc["settings"][f] = {
                **common, "value": tuned_values(g, c["value"])[f], "grid_value": c["value"],
                "metric": choice["metric"], "higher_is_better": choice["higher_is_better"],
                "mean": c["mean"], "ci95": c["ci95"], "n_seeds": c["n"],
                "seeds": sorted({s for r in rows if r["grid"] == g.name for s in (r.get("seeds") or [])}),
                "reason": choice["reason"]}
    out = write_tuned(doc, path or REPO / "results" / profile / "tuned.json")
    for f, e in doc["settings"].items():
        log(f"      tuned {f} = {format_value(e['value'])} (grid {e['grid']}, {e['reason']}; "
            f"profile value {format_value(e['profile_value'])})")
    for f, e in doc["untuned"].items():
        log(f"      NOT tuned {f}: {e['reason']}; chapters use the profile value "
            f"{format_value(e['profile_value'])}")
    return out
