"""Killed runs resume: SIGKILL a DDPM training part-way, rerun, and check that the run completes
and no cache entry is corrupt (a killed report build: tests/test_workflow.py)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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
