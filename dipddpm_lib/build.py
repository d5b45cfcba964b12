"""The report build's plan and its small steps; ``workflow/Snakefile`` runs them.

Snakemake is the engine (``make report`` calls it): it knows what depends on what, skips what
is done, reruns what a killed build left incomplete and runs jobs side by side. This module
only says *what* the build is, from the chapters and ``notebooks/ablations.yaml``:

* :func:`plan`: every ablation point, whether its run is another grid's (identical notebook
  and parameters: copied, not run again), what it waits on (chapter 01's DDPM, the photo
  prior) and its priority;
* :func:`chapter_parameters` / :func:`point_parameters`: the papermill parameters of a run,
  each only where the notebook declares it;

and the steps the rules call, ``python -m dipddpm_lib.build <step>``:

* ``check``: a bad profile, a device this machine lacks or a bad grid file is one clear error
  before any work;
* ``point``: run one ablation point (papermill) into its folder, ``point.json`` written last;
  a failed run is kept aside as ``<folder>.failed/`` with ``error.txt``;
* ``copy``: an identical point's folder copied as this point's (``copied_from`` recorded);
* ``stamp``: a rule's small ``done.json`` (written atomically, after its command succeeded);
* ``timings``: the per-step wall seconds of Snakemake's benchmark files, as ``timings.json``.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from . import sweep
from .cache import atomic_write_json
from .errors import check_choice
from .profiles import PROFILES, check_device, get_profile
from .results import read_json

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
#: Chapter 01 trains the DDPM and the feature classifier that these notebooks then load from the
#: cache (their runs wait for chapter 01 rather than train their own copies).
NEEDS_DDPM = ("01_ddpm_baseline", "03_dip_init_ddpm")
#: The chapters that read the grids' tuned settings (``tuned`` parameter): after the collate step.
TUNED_CHAPTERS = ("02_dip_baseline", "03_dip_init_ddpm", "04_early_stopping")
STUDY_CHAPTERS = ("01_ddpm_baseline", "02_dip_baseline", "03_dip_init_ddpm", "04_early_stopping")
ABLATIONS_CHAPTER = "05_ablations"
REPORT_CHAPTER = "06_report"
CHAPTERS = (*STUDY_CHAPTERS, ABLATIONS_CHAPTER, REPORT_CHAPTER)
#: Order of the build where several jobs are ready (higher first): chapter 01 and the photo
#: prior; the early-stopping tuning points (the first fits the plain DIP run the others share),
#: then the other tuning points; the ES authors' regime after them (it must not delay them);
#: the collate step and the chapters that read it; the points that load chapter 01's DDPM (the
#: longest); the other points; then the ablations and report chapters and the export.
PRIORITY = {"01_ddpm_baseline": 100, "prior": 90, "tune_es": 80, "tune": 70, "tune_photo": 65,
            "regime": 60, "collate": 55, "chapter": 50, "ddpm_point": 40, "point": 30,
            "copy": 30, ABLATIONS_CHAPTER: 10, REPORT_CHAPTER: 5, "export": 0}


def photo_only(pt: sweep.Point) -> bool:
    """An ablation point of chapter 03 that runs task C alone (it needs the photo prior, not
    chapter 01's digit DDPM)."""
    return pt.grid.notebook_name == "03_dip_init_ddpm" and list(pt.grid.fixed.get("tasks") or []) == ["C"]


@dataclass(frozen=True)
class PlannedPoint:
    """One point of the build: ``source`` is the ``(grid, point)`` it is copied from (an
    identical run of an earlier grid), or ``None`` where it runs itself."""

    point: sweep.Point
    source: tuple | None
    tuning: bool
    needs: str | None  # "ddpm" (chapter 01), "prior" (the photo prior) or None
    priority: int

    @property
    def key(self) -> tuple:
        return (self.point.grid.name, self.point.name)


def plan(profile: str, root: str | Path, grid_file: str | Path | None = None) -> dict:
    """Every point of the grid file for ``profile``, keyed ``(grid, point name)``, in grid
    order; ``root`` is where the profile's results live (``results/<profile>``)."""
    grids = sweep.load_grids(profile, grid_file)
    abl = Path(root) / "ablations"
    tuning = {pt.run_key(profile) for g in sweep.tuning_grids(grids)
              for pt in sweep.grid_points(g, profile, abl)}
    first, out = {}, {}
    for g in grids:
        for pt in sweep.grid_points(g, profile, abl):
            key = pt.run_key(profile)
            source = first.get(key)
            first.setdefault(key, (g.name, pt.name))
            nb = g.notebook_name
            needs = "prior" if photo_only(pt) else "ddpm" if nb in NEEDS_DDPM else None
            if source is not None:
                prio = PRIORITY["copy"]
            elif key in tuning:
                prio = PRIORITY["tune_es" if nb == "04_early_stopping" else
                                "tune_photo" if photo_only(pt) else "tune"]
            else:
                prio = PRIORITY["ddpm_point" if needs == "ddpm" else "point"]
            out[(g.name, pt.name)] = PlannedPoint(pt, source, key in tuning, needs, prio)
    return out


def _declared(nb: Path, params: dict) -> dict:
    declared = sweep.notebook_parameters(nb)
    return {k: v for k, v in params.items() if k in declared and v is not None}


def chapter_parameters(chapter: str, profile: str, root: str | Path, extra: dict) -> dict:
    """A chapter's papermill parameters: the profile, its output folder under ``root``
    (``results/<profile>``) and those of ``extra`` (``data_dir``, ``device``, ``tuned``, the
    05/06 inputs) that it declares."""
    nb = NOTEBOOKS / f"{chapter}.ipynb"
    return {"profile": profile, **_declared(nb, {"output_dir": str(Path(root).resolve() / chapter),
                                                 **extra})}


def point_parameters(pt: sweep.Point, profile: str, extra: dict) -> dict:
    """A point's papermill parameters: its grid's, then ``extra`` where the notebook declares it."""
    return {**pt.parameters(profile), **_declared(pt.grid.notebook, extra)}


# --------------------------------------------------------------------------- the rules' steps
def check(profile: str, device: str | None = None, grid_file: str | Path | None = None) -> None:
    """``ValueError`` for an unknown profile, a device this machine lacks or a bad grid file."""
    check_choice("profile", profile, PROFILES)
    check_device(get_profile(profile, **({"device": device} if device else {})))
    sweep.load_grids(profile, grid_file)


def run_point(pt: sweep.Point, profile: str, extra: dict | None = None) -> float:
    """Run one point with papermill into its folder; ``point.json`` is written last. A failed
    run's folder is kept aside as ``<folder>.failed/`` (with ``error.txt``) and the error
    raised again. Returns the wall seconds."""
    import papermill as pm

    folder = pt.folder
    shutil.rmtree(pt.failed_folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(pt.grid.notebook), str(folder / pt.grid.notebook.name),
                            parameters=point_parameters(pt, profile, extra or {}),
                            cwd=str(pt.grid.notebook.parent), progress_bar=False,
                            kernel_name="python3")
        if not (folder / "metrics.json").exists():
            raise RuntimeError(f"{pt.grid.notebook.name} finished without writing metrics.json")
    except Exception as err:
        (folder / "error.txt").write_text(f"{type(err).__name__}: {err}\n\n{traceback.format_exc()}")
        shutil.rmtree(pt.failed_folder, ignore_errors=True)
        folder.rename(pt.failed_folder)
        raise
    wall = time.perf_counter() - start
    atomic_write_json(folder / "point.json", {**pt.record(profile), "profile": profile,
                                              "wall_s": wall, "copied_from": ""})
    return wall


def copy_point(pt: sweep.Point, source: sweep.Point, profile: str) -> None:
    """Copy the folder of an identical, done run (another grid's point) as this point's."""
    pt.folder.mkdir(parents=True, exist_ok=True)
    for f in source.folder.iterdir():
        if f.name != "point.json":
            (shutil.copytree if f.is_dir() else shutil.copy2)(f, pt.folder / f.name,
                                                              **({"dirs_exist_ok": True} if f.is_dir() else {}))
    wall = (read_json(source.folder / "point.json") or {}).get("wall_s", 0.0)
    atomic_write_json(pt.folder / "point.json", {
        **pt.record(profile), "profile": profile, "wall_s": wall,
        "copied_from": f"{source.grid.name}/{source.name}"})


def error_summary(err: Exception) -> str:
    """One readable line for a failed point: the notebook's own exception where papermill
    reports one (``RuntimeError: …``), else the error itself."""
    name = getattr(err, "ename", None) or type(err).__name__
    value = str(getattr(err, "evalue", None) or err)
    first = next((line.strip() for line in value.splitlines() if line.strip()), "")
    return f"{name}: {first}"[:300]


def stamp(path: str | Path, **fields) -> Path:
    """A rule's ``done.json``, written atomically (a killed rule leaves none)."""
    atomic_write_json(Path(path), {"done": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields})
    return Path(path)


def benchmark_seconds(path: Path) -> float | None:
    """The wall seconds of one Snakemake benchmark file (``s`` column), or ``None``."""
    try:
        with open(path) as f:
            return float(next(csv.DictReader(f, delimiter="\t"))["s"])
    except (OSError, StopIteration, KeyError, ValueError):
        return None


def write_timings(profile: str, benchmarks: str | Path, path: str | Path,
                  build_wall_s: float | None = None) -> Path:
    """``timings.json``: wall seconds per step, from the benchmark files under ``benchmarks``
    (one per job, ``<rule>/<name>.tsv``, the latest run of each); ``total_job_s`` is their sum
    (more than the build's wall time when jobs ran side by side), ``build_wall_s`` the wall
    time of the Snakemake run that ended with this export (``None`` if not given)."""
    seconds = {}
    for f in sorted(Path(benchmarks).rglob("*.tsv")):
        s = benchmark_seconds(f)
        if s is not None:
            seconds[str(f.relative_to(benchmarks).with_suffix(""))] = s
    atomic_write_json(Path(path), {"profile": profile, "seconds": seconds,
                                   "total_job_s": sum(seconds.values()), "build_wall_s": build_wall_s})
    return Path(path)


def _find_point(args) -> tuple[dict, PlannedPoint]:
    points = plan(args.profile, Path(args.root).resolve(), args.grid_file)
    check_choice("ablation point", f"{args.grid}/{args.point}", [f"{g}/{p}" for g, p in points])
    return points, points[(args.grid, args.point)]


def main(argv: list[str] | None = None) -> int:
    """``python -m dipddpm_lib.build {check,point,copy,stamp,timings} …``: the build's steps."""
    ap = argparse.ArgumentParser(description="The report build's steps (workflow/Snakefile runs them).")
    sub = ap.add_subparsers(dest="step", required=True)
    for name in ("check", "point", "copy"):
        p = sub.add_parser(name)
        p.add_argument("--profile", required=True)
        p.add_argument("--grid-file", default=None)
        p.add_argument("--device", default=None)
        if name != "check":
            p.add_argument("--root", required=True, help="results/<profile>")
            p.add_argument("--grid", required=True)
            p.add_argument("--point", required=True)
            p.add_argument("--data-dir", default=None)
    p = sub.add_parser("stamp")
    p.add_argument("path")
    p.add_argument("--profile", required=True)
    p = sub.add_parser("timings")
    p.add_argument("--profile", required=True)
    p.add_argument("--benchmarks", required=True)
    p.add_argument("path")
    args = ap.parse_args(argv)
    try:
        if args.step == "check":
            check(args.profile, args.device, args.grid_file)
        elif args.step == "stamp":
            stamp(args.path, profile=args.profile)
        elif args.step == "timings":
            write_timings(args.profile, args.benchmarks, args.path)
        elif args.step == "copy":
            points, pp = _find_point(args)
            copy_point(pp.point, points[pp.source].point, args.profile)
        else:
            _, pp = _find_point(args)
            try:
                wall = run_point(pp.point, args.profile, {"data_dir": args.data_dir, "device": args.device})
            except Exception as err:  # noqa: BLE001 — name the point, then fail the job
                print(f"FAILED: ablation point {args.grid}/{args.point}: {error_summary(err)} "
                      f"(partial run kept in {pp.point.failed_folder})", file=sys.stderr, flush=True)
                return 1
            print(f"ablation point {args.grid}/{args.point}: done in {wall:.1f} s", flush=True)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
