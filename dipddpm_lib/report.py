"""Build the report: run every numbered notebook with papermill for a profile, then export.

    python -m dipddpm_lib.report --profile quick [--data /path/to/images]

Executed notebooks go to ``results/<profile>/executed/``; each chapter's own outputs go to
``results/<profile>/<notebook name>/`` (its ``output_dir``). The run prints progress per
notebook and the wall time of each at the end, and exits non-zero naming the chapter that
failed (its partial executed notebook is kept for inspection).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import check_choice
from .profiles import PROFILES

REPO = Path(__file__).resolve().parents[1]


def chapters(notebook_dir: Path = REPO / "notebooks") -> list[Path]:
    """The report's notebooks, in order: ``notebooks/NN_*.ipynb``."""
    return sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def run_chapter(nb: Path, profile: str, out_dir: Path, extra: dict | None = None) -> float:
    """Execute one notebook with papermill; return its wall seconds."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, **(extra or {})}
    start = time.perf_counter()
    pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=params, cwd=str(nb.parent),
                        progress_bar=False, kernel_name="python3")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(description="Run every chapter notebook and export the report.")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--data", default=None, help="image folder for the `full` profile")
    args = ap.parse_args(argv)
    check_choice("profile", args.profile, PROFILES)
    nbs = chapters()
    if not nbs:
        print("no chapter notebooks yet (notebooks/NN_*.ipynb); nothing to build")
        return 0
    out_dir = REPO / "results" / args.profile / "executed"
    extra = {"data_dir": args.data} if args.data else {}
    times = {}
    for i, nb in enumerate(nbs, 1):
        print(f"[{i}/{len(nbs)}] {nb.name} (profile={args.profile}) …", flush=True)
        try:
            times[nb.name] = run_chapter(nb, args.profile, out_dir, extra)
        except Exception as err:  # papermill names the failing cell; add the chapter
            print(f"\nFAILED: chapter {nb.name}: {err}\npartial notebook kept at "
                  f"{out_dir / nb.name}", file=sys.stderr)
            return 1
        print(f"    done in {times[nb.name]:.1f} s", flush=True)
    print("\nwall time per chapter:")
    for name, s in times.items():
        print(f"  {name:40s} {s:8.1f} s")
    print(f"  {'total':40s} {sum(times.values()):8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
