"""Time the whole report build (every notebook, the ablation sweep, the export) for a profile,
with a cold cache and then a warm one.

    .venv/bin/python scripts/bench_report.py --profile quick [--workdir DIR] [--keep] [--cache DIR]

The cold build runs in a fresh copy of the project's sources (no `.cache`, no `results/`), so
nothing is reused; the warm build runs every job again in that copy (``--forceall``), its models
and fits then in the cache. Each build is the Snakemake workflow (``workflow/Snakefile``, as
``make report`` runs it, 2 jobs at once); the script reads the per-step wall seconds it records in
``report/<profile>/timings.json`` and prints them side by side. The copy is imported through
``PYTHONPATH``, so the checkout's own cache and results are never touched. ``--cache DIR``
uses an existing cache instead (e.g. ``.cache``, to time builds whose models and fits are
already made without retraining them): the first build is then not a cold one, and is labelled
so. Timings depend on the machine and its load (and on ``OMP_NUM_THREADS``, printed with them).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("dipddpm_lib", "notebooks", "scripts", "workflow", "pyproject.toml", "README.md")


def copy_project(dest: Path) -> Path:
    """Copy the project's sources (no cache, no results, no outputs) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def build(project: Path, profile: str, extra: list[str], cache: Path | None = None,
          force: bool = False) -> tuple[dict, float, int]:
    """Run one report build in ``project``; returns its per-step seconds, its wall seconds
    and its exit status. Without ``cache`` the copy's own ``.cache`` is used."""
    env = {**os.environ, "PYTHONPATH": str(project)}
    env.pop("DIPDDPM_CACHE", None)
    if cache is not None:
        env["DIPDDPM_CACHE"] = str(cache)
    start = time.perf_counter()
    cores = os.cpu_count() or 2
    cmd = [sys.executable, "-m", "snakemake", "-s", str(project / "workflow" / "Snakefile"),
           "--cores", str(cores), "--keep-going", "--rerun-incomplete", *(["--forceall"] if force else []),
           "--config", f"profile={profile}", f"threads={max(1, cores // 2)}", *extra]
    done = subprocess.run(cmd, cwd=project, env=env)
    wall = time.perf_counter() - start
    timings = project / "report" / profile / "timings.json"
    steps = json.loads(timings.read_text())["seconds"] if timings.exists() else {}
    return steps, wall, done.returncode


def table(cold: dict, warm: dict, first: str = "cold") -> str:
    """Per-step seconds, cold (or first) and warm, as an aligned text table."""
    names = list(dict.fromkeys([*cold, *warm]))
    lines = [f"{'step':42s} {first + ' s':>9s} {'warm s':>9s}"]
    for n in names:
        c, w = cold.get(n), warm.get(n)
        lines.append(f"{n:42s} {'–' if c is None else f'{c:9.1f}':>9s} {'–' if w is None else f'{w:9.1f}':>9s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--workdir", default=None, help="where to put the copy (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the copy (its results and report)")
    ap.add_argument("--data", default=None, help="image folder for the `full` profile")
    ap.add_argument("--cache", default=None,
                    help="use this cache (e.g. .cache) instead of an empty one: the first build is not cold")
    args = ap.parse_args(argv)
    cache = Path(args.cache).resolve() if args.cache else None
    first = "first" if cache else "cold"
    extra = [f"data_dir={Path(args.data).resolve()}"] if args.data else []
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="dipddpm-bench-"))
    project = copy_project(root / "project")
    print(f"bench: fresh copy in {project}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{os.cpu_count()} CPUs", flush=True)
    try:
        print(f"\n=== {first} build ({cache or 'empty cache'}) ===", flush=True)
        cold, cold_wall, rc_cold = build(project, args.profile, extra, cache)
        print("\n=== warm build ===", flush=True)
        warm, warm_wall, rc_warm = build(project, args.profile, extra, cache, force=True)
        print(f"\n=== {args.profile}: per-step wall seconds ===\n" + table(cold, warm, first))
        print(f"{'whole command (incl. start-up)':42s} {cold_wall:9.1f} {warm_wall:9.1f}")
        pdf = project / "report" / args.profile / "report.pdf"
        print(f"PDF made: {pdf.exists()}; exit status {first} {rc_cold}, warm {rc_warm}")
        return rc_cold or rc_warm
    finally:
        if args.keep:
            print(f"kept: {project}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
