"""The whole smoke report, built once per test session by Snakemake as `make report PROFILE=smoke`
does (workflow/Snakefile, an empty cache, one thread per job), and read by the chapter tests.

Every chapter's real papermill run is this build's: the chapter tests check what it wrote, and
the determinism tests rerun each chapter against it. Under pytest-xdist the first worker to ask
builds and the others wait for it (a lock file beside the workers' temp folders).
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
THREADS = 1  # per job; the determinism reruns use the same
PROFILE = "smoke"


@dataclass(frozen=True)
class SmokeBuild:
    """Where the build wrote, its exit status and its log."""

    root: Path
    returncode: int
    log: str

    @property
    def results(self) -> Path:
        return self.root / "results" / PROFILE

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def chapter_dir(self, chapter: str) -> Path:
        return self.results / chapter

    def metrics(self, chapter: str) -> dict:
        """A chapter's ``metrics.json``; a failed build fails the asking test with its log."""
        path = self.chapter_dir(chapter) / "metrics.json"
        assert path.exists(), f"the smoke build wrote no {path}:\n{self.log[-6000:]}"
        return json.loads(path.read_text())

    def executed(self, chapter: str) -> Path:
        return self.results / "executed" / f"{chapter}.ipynb"

    def started(self, chapter: str) -> float:
        """When the build's run of a chapter began (papermill's record), in epoch seconds."""
        meta = nbformat.read(self.executed(chapter), as_version=4).metadata.papermill
        return datetime.fromisoformat(meta.start_time).timestamp()

    def parameters(self, chapter: str) -> dict:
        """The parameters the build ran a chapter with (papermill records them)."""
        return dict(nbformat.read(self.executed(chapter), as_version=4).metadata.papermill.parameters)


def thread_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's) with the build's thread count, for a job or a rerun."""
    return {**(os.environ if env is None else env), "OMP_NUM_THREADS": str(THREADS),
            "MKL_NUM_THREADS": str(THREADS)}


def run_build(root: Path, cores: int = 2) -> SmokeBuild:
    root.mkdir(parents=True, exist_ok=True)
    env = thread_env({k: v for k, v in os.environ.items() if k != "DIPDDPM_PROFILE"})
    env.update(PYTHONPATH=str(REPO), DIPDDPM_CACHE=str(root / "cache"))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--cores", str(cores),
           "--keep-going", "--config", f"root={root}", f"profile={PROFILE}", f"threads={THREADS}",
           "install_tools=false"]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=3600)
    return SmokeBuild(root, done.returncode, done.stdout + done.stderr)


def shared_build(shared: Path) -> SmokeBuild:
    """The build in ``shared/smoke_build``: run by the first caller, read by every later one."""
    root = shared / "smoke_build"
    shared.mkdir(parents=True, exist_ok=True)
    with open(shared / "smoke_build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker building: wait for it
        status = shared / "smoke_build.json"
        if status.exists():
            doc = json.loads(status.read_text())
            return SmokeBuild(root, doc["returncode"], doc["log"])
        built = run_build(root)
        status.write_text(json.dumps({"returncode": built.returncode, "log": built.log}))
        return built
