"""The report build's plan and its steps; ``workflow/Snakefile`` runs them
(``python -m dipddpm_lib.build {check,chapter,point,copy,stamp}``)."""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from . import sweep
from .cache import atomic_write_json
from .errors import check_choice
from .profiles import check_device, get_profile
from .results import REPO, read_json

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
    """A chapter-03 point that runs task C alone (it needs the photo prior, not the digit DDPM)."""
    return pt.grid.notebook_name == "03_dip_init_ddpm" and list(pt.grid.fixed.get("tasks") or []) == ["C"]


@dataclass(frozen=True)
class PlannedPoint:
    """``source``: the ``(grid, point)`` of an identical earlier run it is copied from, or ``None``."""

    point: sweep.Point
    source: tuple | None
    tuning: bool
    needs: str | None  # "ddpm" (chapter 01), "prior" (the photo prior) or None
    priority: int


def plan(profile: str, root: str | Path, grid_file: str | Path | None = None) -> dict:
    """Every point of the grid file, keyed ``(grid, point name)``; ``root``: ``results/<profile>``."""
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
            tune = "tune_es" if nb == "04_early_stopping" else "tune_photo" if photo_only(pt) else "tune"
            prio = PRIORITY["copy" if source is not None else tune if key in tuning
                            else "ddpm_point" if needs == "ddpm" else "point"]
            out[(g.name, pt.name)] = PlannedPoint(pt, source, key in tuning, needs, prio)
    return out


def chapter_parameters(chapter: str, profile: str, root: str | Path, extra: dict) -> dict:
    """A chapter's papermill parameters: the profile, its output folder under ``root`` and
    those of ``extra`` that it declares."""
    return {"profile": profile, **sweep.declared_only(
        NOTEBOOKS / f"{chapter}.ipynb", {"output_dir": str(Path(root).resolve() / chapter), **extra})}


def check(profile: str, device: str | None = None, grid_file: str | Path | None = None) -> None:
    """``ValueError`` for an unknown profile, a device this machine lacks or a bad grid file."""
    check_device(get_profile(profile, **({"device": device} if device else {})))
    sweep.load_grids(profile, grid_file)


#: What jupyter_client raises when a kernel exits before it answers; no cell has run. Two kernels
#: started at once can be given the same free port, and the second then dies.
KERNEL_DIED = "Kernel died before replying to kernel_info"


def execute(nb: str | Path, out: str | Path, parameters: dict, tries: int = 3) -> None:
    """Run notebook ``nb`` with papermill into ``out`` (its folder the working directory). A
    kernel that dies before it starts is started again, up to ``tries`` times in all."""
    import papermill as pm

    for attempt in range(1, tries + 1):
        try:
            pm.execute_notebook(str(nb), str(out), parameters=parameters, cwd=str(Path(nb).parent),
                                progress_bar=False, kernel_name="python3")
            return
        except RuntimeError as err:
            if KERNEL_DIED not in str(err) or attempt == tries:
                raise
            print(f"{Path(nb).name}: the kernel died before it started; starting it again "
                  f"({attempt + 1}/{tries})", file=sys.stderr, flush=True)


def run_chapter(chapter: str, out: str | Path, parameters: dict) -> None:
    """One chapter's run into ``out``: written as ``<name>.partial.ipynb``, renamed when it has
    finished (a failed run's partial notebook stays for inspection)."""
    check_choice("chapter", chapter, CHAPTERS)
    out = Path(out)
    partial = out.with_suffix(".partial.ipynb")
    execute(NOTEBOOKS / f"{chapter}.ipynb", partial, parameters)
    partial.replace(out)


def run_point(pt: sweep.Point, profile: str, extra: dict | None = None) -> float:
    """Run one point with papermill; ``point.json`` last. A failed run is kept as
    ``<folder>.failed/`` (with ``error.txt``) and raised again. Returns the wall seconds."""
    folder = pt.folder
    shutil.rmtree(pt.failed_folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        nb = pt.grid.notebook
        execute(nb, folder / nb.name, {**pt.parameters(profile), **sweep.declared_only(nb, extra or {})})
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
    shutil.copytree(source.folder, pt.folder, dirs_exist_ok=True,
                    ignore=lambda d, names: ["point.json"] if Path(d) == source.folder else [])
    wall = (read_json(source.folder / "point.json") or {}).get("wall_s", 0.0)
    atomic_write_json(pt.folder / "point.json", {
        **pt.record(profile), "profile": profile, "wall_s": wall,
        "copied_from": f"{source.grid.name}/{source.name}"})


def error_summary(err: Exception) -> str:
    """One line for a failed point: the notebook's own exception where papermill reports one."""
    name = getattr(err, "ename", None) or type(err).__name__
    value = str(getattr(err, "evalue", None) or err)
    first = next((line.strip() for line in value.splitlines() if line.strip()), "")
    return f"{name}: {first}"[:300]


def stamp(path: str | Path, profile: str) -> None:
    """A rule's ``done.json``, written atomically (a killed rule leaves none)."""
    atomic_write_json(Path(path), {"done": time.strftime("%Y-%m-%dT%H:%M:%S"), "profile": profile})


def write_timings(profile: str, benchmarks: str | Path, path: str | Path,
                  build_wall_s: float | None = None) -> Path:
    """``timings.json``: wall seconds per job from Snakemake's benchmark files
    (``<rule>/<name>.tsv``, column ``s``); ``total_job_s`` is their sum (more than the build's
    wall time when jobs ran side by side)."""
    seconds = {}
    for f in sorted(Path(benchmarks).rglob("*.tsv")):
        try:
            with open(f) as fh:
                seconds[str(f.relative_to(benchmarks).with_suffix(""))] = float(
                    next(csv.DictReader(fh, delimiter="\t"))["s"])
        except (OSError, StopIteration, KeyError, ValueError):
            pass
    atomic_write_json(Path(path), {"profile": profile, "seconds": seconds,
                                   "total_job_s": sum(seconds.values()), "build_wall_s": build_wall_s})
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m dipddpm_lib.build {check,chapter,point,copy,stamp} …``: the build's steps."""
    ap = argparse.ArgumentParser(description="The report build's steps (workflow/Snakefile runs them).")
    ap.add_argument("step", choices=("check", "chapter", "point", "copy", "stamp"))
    ap.add_argument("path", nargs="?", help="stamp: the done.json to write; chapter: the executed notebook")
    for arg in ("--profile", "--grid-file", "--device", "--root", "--grid", "--point", "--data-dir",
                "--chapter", "--parameters"):
        ap.add_argument(arg, required=arg == "--profile")
    args = ap.parse_args(argv)
    if (args.step in ("stamp", "chapter")) != (args.path is not None):
        ap.error("stamp and chapter, and only they, take a path (the done.json; the executed notebook)")
    try:
        if args.step == "check":
            return check(args.profile, args.device, args.grid_file) or 0
        if args.step == "stamp":
            return stamp(args.path, args.profile) or 0
        if args.step == "chapter":
            return run_chapter(args.chapter, args.path, json.loads(args.parameters or "{}")) or 0
        points = plan(args.profile, Path(args.root).resolve(), args.grid_file)
        check_choice("ablation point", f"{args.grid}/{args.point}", [f"{g}/{p}" for g, p in points])
        pp = points[(args.grid, args.point)]
        if args.step == "copy":
            return copy_point(pp.point, points[pp.source].point, args.profile) or 0
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
