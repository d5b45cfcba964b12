"""The report build is a Snakemake workflow (workflow/Snakefile): its jobs and their order, the
Slurm profile, a failing point under --keep-going, bad input before any work, a killed build,
and (slow) the whole smoke report built and then rebuilt with nothing to do."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from dipddpm_lib import build, collate, sweep
from test_sweep import write_dummy, write_grids

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
SLURM = REPO / "workflow" / "profiles" / "slurm"


def snakemake(*args, root: Path, config=(), cwd: Path | None = None, timeout=900, env_extra=None,
              **popen):
    """Run the workflow with results under ``root`` (``--config root=…``), in ``cwd``."""
    cwd = cwd or root
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), *args, "--config",
           f"root={root}", *config]
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    if popen:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, **popen)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def job_counts(out: str) -> dict:
    """The dry run's ``Job stats`` table: rule → number of jobs."""
    table = out.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def dag_edges(out: str) -> set:
    """``(producer, consumer)`` label pairs of ``snakemake --dag`` (labels: rule, wildcards)."""
    labels = {m[1]: m[2].replace("\\n", " ") for m in re.finditer(r'^\s*(\d+)\[label = "([^"]*)"', out, re.M)}
    return {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", out, re.M)}


# --------------------------------------------------------------------------- the plan
def test_the_plan_runs_each_distinct_point_once_and_says_what_it_waits_on(tmp_path):
    points = build.plan("smoke", tmp_path / "results" / "smoke")
    grids = sweep.load_grids("smoke")
    assert len(points) == sum(len(g.values) for g in grids)
    keys = {}
    for pp in points.values():
        key = pp.point.run_key("smoke")
        if pp.source is None:
            assert key not in keys  # one run per notebook and parameters
            keys[key] = (pp.point.grid.name, pp.point.name)
        else:  # copied from the first identical point, which runs itself
            assert keys[key] == pp.source and points[pp.source].source is None
    tuning = {g.name for g in sweep.tuning_grids(grids)}
    for pp in points.values():
        nb = pp.point.grid.notebook_name
        assert pp.needs == ("prior" if build.photo_only(pp.point) else "ddpm" if nb in build.NEEDS_DDPM else None)
        if pp.point.grid.name in tuning:
            assert pp.tuning
        if pp.tuning and pp.source is None:
            assert pp.priority > build.PRIORITY["regime"] > build.PRIORITY["chapter"]
        if not pp.tuning and pp.source is None:
            assert pp.priority < build.PRIORITY["chapter"]


def test_chapter_parameters_are_only_those_a_notebook_declares(tmp_path):
    params = build.chapter_parameters("01_ddpm_baseline", "smoke", tmp_path,
                                      {"data_dir": "/d", "tuned": "/t.json", "device": None})
    assert params == {"profile": "smoke", "output_dir": str(tmp_path.resolve() / "01_ddpm_baseline"),
                      "data_dir": "/d"}  # chapter 01 reads no tuned file; None is not passed
    assert build.chapter_parameters("02_dip_baseline", "smoke", tmp_path, {"tuned": "/t.json"})["tuned"] == "/t.json"


def test_timings_collate_the_benchmark_files(tmp_path):
    bench = tmp_path / "bench"
    (bench / "chapter").mkdir(parents=True)
    (bench / "chapter" / "01_ddpm_baseline.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t1\n")
    (bench / "photo_prior.tsv").write_text("s\th:m:s\n3.0\t0:00:03\n")
    (bench / "broken.tsv").write_text("nothing\n")
    doc = json.loads(build.write_timings("smoke", bench, tmp_path / "timings.json").read_text())
    assert doc["seconds"] == {"chapter/01_ddpm_baseline": 12.5, "photo_prior": 3.0}
    assert doc["total_job_s"] == 15.5 and doc["profile"] == "smoke"


# --------------------------------------------------------------------------- the DAG
@pytest.fixture(scope="module")
def smoke_dry_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dry")
    done = snakemake("--dry-run", "--cores", "2", root=root, config=["profile=smoke"])
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_dry_run_lists_every_job_once(smoke_dry_run, tmp_path):
    points = build.plan("smoke", tmp_path)
    distinct = sum(p.source is None for p in points.values())
    assert job_counts(smoke_dry_run) == {
        "chapter": 4, "ablation_point": distinct, "copy_point": len(points) - distinct,
        "photo_prior": 1, "es_authors_regime": 1, "collate_tuned": 1, "ablations_chapter": 1,
        "report_chapter": 1, "export": 1, "all": 1}
    inputs = re.findall(r"^\s*input: (.*)$", smoke_dry_run, re.M)
    for chapter in build.CHAPTERS:  # each notebook is an input of the jobs that run it
        nb = str(REPO / "notebooks" / f"{chapter}.ipynb")
        assert any(nb in line for line in inputs), chapter
    assert sum(str(REPO / "notebooks") in line for line in inputs) == \
        len(build.CHAPTERS) + distinct  # every chapter job and every point that runs itself


def test_the_dag_tunes_then_evaluates_and_chapter_03_waits_for_01(tmp_path):
    done = snakemake("--dag", "--cores", "2", root=tmp_path, config=["profile=smoke"])
    assert done.returncode == 0, done.stderr
    edges = dag_edges(done.stdout)
    chapter = "chapter chapter: {}".format
    for ch in build.TUNED_CHAPTERS:
        assert ("collate_tuned", chapter(ch)) in edges, ch
    assert (chapter("01_ddpm_baseline"), chapter("03_dip_init_ddpm")) in edges
    assert ("photo_prior", chapter("03_dip_init_ddpm")) in edges
    assert ("photo_prior", "es_authors_regime") in edges
    assert ("es_authors_regime", chapter("04_early_stopping")) in edges
    assert not any(b == chapter("01_ddpm_baseline") for _, b in edges)  # chapter 01 waits on nothing
    into_collate = {a.split()[0] for a, b in edges if b == "collate_tuned"}
    assert into_collate <= {"ablation_point", "copy_point"} and "ablation_point" in into_collate


def test_the_slurm_profile_parses_and_lists_the_same_jobs(smoke_dry_run, tmp_path):
    done = snakemake("--dry-run", "--profile", str(SLURM), root=tmp_path, config=["profile=smoke"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert job_counts(done.stdout) == job_counts(smoke_dry_run)
    full = snakemake("--dry-run", "--profile", str(SLURM), root=tmp_path, config=["profile=full"])
    assert full.returncode == 0, full.stdout + full.stderr
    assert "gpu=1" in full.stdout  # the GPU jobs ask Slurm for one GPU in `full`


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("config, message", [
    (["profile=fast"], "unknown profile 'fast'; valid choices: smoke, quick, full"),
    (["profile=smoke", "grid_file=BAD"], "unknown notebook in grid 'g'"),
])
def test_bad_input_stops_before_any_work(tmp_path, config, message):
    bad = tmp_path / "ablations.yaml"
    bad.write_text("grids:\n  g:\n    notebook: 01_nope\n    parameter: x\n    values: [1, 2]\n"
                   "    metrics: {a: b}\n")
    root = tmp_path / "root"
    done = snakemake("--cores", "1", root=root, cwd=tmp_path / "run",
                     config=[c.replace("BAD", str(bad)) for c in config])
    assert done.returncode != 0 and message in done.stdout + done.stderr
    assert not root.exists()  # nothing written


def test_the_check_step_names_a_missing_device_before_any_work(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert build.main(["check", "--profile", "full"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert build.main(["check", "--profile", "full", "--device", "cpu"]) == 0
    assert build.main(["check", "--profile", "fast"]) == 2


def test_a_kernel_that_dies_before_it_starts_is_started_again(monkeypatch, tmp_path, capsys):
    import papermill

    calls, deaths = [], [2]

    def fake(nb, out, **kw):  # the first kernels die (a port taken by another kernel)
        calls.append(out)
        if deaths[0]:
            deaths[0] -= 1
            raise RuntimeError(build.KERNEL_DIED)
        Path(out).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", fake)
    out = tmp_path / "02_dip_baseline.ipynb"
    assert build.main(["chapter", str(out), "--profile", "smoke", "--chapter", "02_dip_baseline",
                       "--parameters", '{"profile": "smoke"}']) == 0
    assert len(calls) == 3 and out.exists() and not out.with_suffix(".partial.ipynb").exists()
    assert capsys.readouterr().err.count("the kernel died before it started") == 2

    calls.clear()  # a third death is raised, and any other error (a cell's own) at once
    deaths[0] = 3
    with pytest.raises(RuntimeError, match="kernel_info"):
        build.execute(build.NOTEBOOKS / "02_dip_baseline.ipynb", tmp_path / "a.ipynb", {})
    assert len(calls) == 3

    def cell_error(nb, out, **kw):
        calls.append(out)
        raise RuntimeError("a cell failed")

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", cell_error)
    with pytest.raises(RuntimeError, match="a cell failed"):
        build.execute(build.NOTEBOOKS / "02_dip_baseline.ipynb", tmp_path / "b.ipynb", {})
    assert len(calls) == 1


def test_the_chapter_step_refuses_an_unknown_chapter_or_bad_parameters_before_any_work(tmp_path, capsys):
    out = tmp_path / "executed" / "07_nothing.ipynb"
    assert build.main(["chapter", str(out), "--profile", "smoke", "--chapter", "07_nothing"]) == 2
    assert "07_nothing" in capsys.readouterr().err and not (tmp_path / "executed").exists()
    assert build.main(["chapter", str(out), "--profile", "smoke", "--chapter", "02_dip_baseline",
                       "--parameters", "{profile: smoke"]) == 2  # not JSON
    assert "error:" in capsys.readouterr().err and not (tmp_path / "executed").exists()


# --------------------------------------------------------------------------- running points
# Two small grids over a dummy chapter (fast kernels): a setting with a failing point, and a
# condition whose first point is the setting grid's default (copied, not run again).
FAILING = """\
grids:
  gx:
    notebook: 99_dummy
    parameter: x
    values: [1, 2, 3]
    fixed: {x: 2, y: 0, fail_at: 3}
    metrics: {score: score.*, cost: cost}
    choose: {metric: score, higher_is_better: true, cost: cost}
    tunes: es_stage_iterations
    why: a dummy setting
  gy:
    notebook: 99_dummy
    parameter: y
    values: [0, 4]
    fixed: {x: 2, fail_at: 3, y: 0}
    metrics: {score: score.a}
    why: a dummy condition
"""

def point_targets(grid_file: Path, root: Path) -> list[str]:
    """Every point's ``metrics.json``, relative to ``root`` (the build's working directory)."""
    return [f"results/smoke/ablations/{g}/{p}/metrics.json"
            for g, p in build.plan("smoke", root / "results" / "smoke", grid_file)]


def dummy_grid(tmp_path, text=FAILING) -> Path:
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    write_dummy(nbdir)
    return write_grids(nbdir, text)


@pytest.mark.notebook
def test_a_failing_point_does_not_stop_the_others_and_is_named(failing_points):
    grid_file, root, config, targets, done = failing_points
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "FAILED: ablation point gx/x=3: RuntimeError: x = 3 fails on purpose" in out
    abl = root / "results" / "smoke" / "ablations"
    for name in ("gx/x=1", "gx/x=2", "gy/y=0", "gy/y=4"):
        assert (abl / name / "metrics.json").exists() and (abl / name / "point.json").exists(), name
    assert not (abl / "gx" / "x=3" / "metrics.json").exists()
    assert "x = 3 fails on purpose" in (abl / "gx" / "x=3.failed" / "error.txt").read_text()
    copied = json.loads((abl / "gy" / "y=0" / "point.json").read_text())
    assert copied["copied_from"] == "gx/x=2"  # identical to gx/x=2: copied, not run again
    grids = sweep.load_grids("smoke", grid_file)
    rows, missing = collate.collect(grids, "smoke", abl)
    assert [f"{p.grid.name}/{p.name}" for p in missing] == ["gx/x=3"]

    pending = snakemake("--dry-run", "--cores", "1", *targets, root=root, config=config)
    assert job_counts(pending.stdout) == {"ablation_point": 1}  # only the failed point is pending
    rest = [t for t in targets if "x=3" not in t]
    again = snakemake("--cores", "1", *rest, root=root, config=config)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.notebook
def test_a_killed_build_reruns_only_what_is_missing_or_incomplete(tmp_path):
    grid_file = dummy_grid(tmp_path, FAILING.replace("fail_at: 3", "fail_at: 9"))
    book = nbformat.read(grid_file.parent / "99_dummy.ipynb", as_version=4)
    book.cells[1].source = "import time; time.sleep(2)\n" + book.cells[1].source  # slow points
    nbformat.write(book, grid_file.parent / "99_dummy.ipynb")
    root = tmp_path / "root"
    config = ["profile=smoke", f"grid_file={grid_file}"]
    targets = point_targets(grid_file, root)
    abl = root / "results" / "smoke" / "ablations" / "gx"
    proc = snakemake("--cores", "1", *targets, root=root, config=config, start_new_session=True)
    start = time.time()
    # one point done and the next started (so Snakemake has recorded the first as finished)
    while not (any((p / "point.json").exists() for p in abl.glob("x=*")) and len(list(abl.glob("x=*"))) > 1):
        assert proc.poll() is None, proc.stdout.read()[-2000:]
        assert time.time() - start < 240, "timed out waiting for a first point"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: (p / "point.json").stat().st_mtime_ns for p in abl.glob("x=*")
                   if (p / "point.json").exists()}
    assert 1 <= len(done_before) < 3

    assert snakemake("--unlock", root=root, config=config).returncode == 0  # kill -9 may leave a lock
    pending = snakemake("--dry-run", "--cores", "1", "--rerun-incomplete", *targets, root=root, config=config)
    made = lambda name: (abl.parent / name / "point.json").exists()  # noqa: E731
    runs = sum(made(n) for n in ("gx/x=1", "gx/x=2", "gx/x=3", "gy/y=4"))
    counts = job_counts(pending.stdout)  # only what is missing or incomplete
    assert counts.get("ablation_point", 0) == 4 - runs and counts.get("copy_point", 0) == 1 - made("gy/y=0")
    again = snakemake("--cores", "1", "--rerun-incomplete", *targets, root=root, config=config)
    assert again.returncode == 0, again.stdout + again.stderr
    for name, mtime in done_before.items():  # finished points were not recomputed
        assert (abl / name / "point.json").stat().st_mtime_ns == mtime
    assert all((root / t).exists() for t in targets)

    # a notebook edited after the build reruns every point that runs it, and nothing else
    book.cells.append(nbformat.v4.new_markdown_cell("An edited sentence."))
    nbformat.write(book, grid_file.parent / "99_dummy.ipynb")
    edited = snakemake("--dry-run", "--cores", "1", *targets, root=root, config=config)
    assert job_counts(edited.stdout) == {"ablation_point": 4, "copy_point": 1}, edited.stdout
