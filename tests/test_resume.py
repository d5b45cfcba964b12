"""Killed runs resume: SIGKILL a DDPM training and an ablation sweep part-way, rerun, and check
that the run completes, finished steps are not recomputed and no cache entry is corrupt."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dipddpm_lib.cache import Cache

TESTS = Path(__file__).resolve().parent


def _spawn(code: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=TESTS,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _wait_for(predicate, proc, timeout=240.0):
    start = time.time()
    while time.time() - start < timeout:
        if predicate():
            return True
        if proc.poll() is not None:
            raise AssertionError(f"process ended early:\n{proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the run to reach the kill point")


def _all_entries_valid(root: Path) -> int:
    """Every visible entry reads back with matching checksums; returns how many."""
    cache, n = Cache(root), 0
    for meta in root.glob("*/*/meta.json"):
        config = json.loads(meta.read_text())["config"]
        assert cache.get(meta.parent.parent.name, config) is not None, meta
        n += 1
    return n


TRAIN = """
    import pathlib
    from dipddpm_lib import get_profile
    from dipddpm_lib.data import load_digits
    from dipddpm_lib.ddpm import train_ddpm
    x, _ = load_digits(16, "train")
    pathlib.Path({marker!r}).touch()
    train_ddpm(x, get_profile("smoke", train_steps={steps}), progress=False)
"""


def test_killed_training_leaves_no_entry_and_reruns(tmp_path):
    cache, marker = tmp_path / "cache", tmp_path / "training-started"
    env = {"DIPDDPM_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    proc = _spawn(TRAIN.format(steps=100_000, marker=str(marker)), env)
    _wait_for(marker.exists, proc)
    time.sleep(2.0)  # well inside the (100 000-step) training
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not cache.exists() or _all_entries_valid(cache) == 0  # nothing half-written
    done = _spawn(TRAIN.format(steps=5, marker=str(marker)), env)
    assert done.wait(timeout=300) == 0, done.stdout.read().decode()[-2000:]
    assert _all_entries_valid(cache) == 1


@pytest.mark.notebook
def test_killed_sweep_resumes_without_redoing_finished_points(tmp_path):
    from test_sweep import write_dummy, write_grids

    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    nb = write_dummy(nbdir)
    # make each point slow enough to kill the sweep between points
    import nbformat

    book = nbformat.read(nb, as_version=4)
    book.cells[1].source = "import time; time.sleep(4)\n" + book.cells[1].source
    nbformat.write(book, nb)
    grid_file = write_grids(nbdir, """\
        grids:
          gx:
            notebook: 99_dummy
            parameter: x
            values: [1, 2, 3]
            fixed: {y: 0, x: 2}
            metrics: {score: score.*}
        """)
    root = tmp_path / "results"
    code = f"""
        from dipddpm_lib import sweep
        grids = sweep.load_grids("smoke", path={str(grid_file)!r})
        sweep.run_grids(grids, "smoke", root={str(root)!r})
    """
    proc = _spawn(code, {"OMP_NUM_THREADS": "1"})
    first = root / "gx"  # run_grids(root=...) puts each grid's points under root/<grid>
    _wait_for(lambda: any((p / "metrics.json").exists() for p in first.glob("x=*")), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: (p / "point.json").stat().st_mtime_ns for p in first.glob("x=*")
                   if (p / "point.json").exists()}
    assert 1 <= len(done_before) < 3

    from dipddpm_lib import sweep

    grids = sweep.load_grids("smoke", path=grid_file)
    runs = sweep.run_grids(grids, "smoke", root=root)
    status = {r.point.name: r.status for r in runs}
    assert all(status[name] == "skipped" for name in done_before), status
    assert all(r.status in ("ran", "skipped") for r in runs), status
    for name, mtime in done_before.items():  # finished points were not recomputed
        assert (first / name / "point.json").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in first.iterdir() if not p.name.startswith(".")) == \
        ["x=1", "x=2", "x=3"]
    assert not list(first.glob(".*tmp-*")), "a killed point's temporary folder was left behind"
