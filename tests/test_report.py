"""The report build: chapter order, the export (self-contained HTML, local maths, PDF), the
missing-tools path, and the report's text formatted from stored results."""
import base64
import io
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from dipddpm_lib import report, sweep  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def png_bytes() -> bytes:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def executed_notebook(folder: Path, name: str) -> Path:
    """A small 'executed' notebook: maths in markdown, code, a PNG output and a stderr stream."""
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("secret_code_line = 1")
    code.outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(png_bytes()).decode(),
                                                     "text/plain": "<Figure>"}),
        nbformat.v4.new_output("stream", name="stderr", text="a noisy library warning\n"),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell(
        "# Title\n\nInline $x_t = \\sqrt{\\bar\\alpha_t}\\,x_0$ and\n\n$$\\hat\\theta = \\arg\\min_\\theta "
        "\\lVert A f_\\theta(z) - y \\rVert^2$$"), code]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def external_sources(html: str) -> list[str]:
    """Everything the page would load from off the machine: script/link/img sources, CSS
    ``url(…)`` and ``@import``, and JavaScript ``import(…)``."""
    refs = re.findall(r"<(?:script|link|img|iframe)\b[^>]*?(?:src|href)\s*=\s*[\"']([^\"']*)", html, re.I)
    refs += re.findall(r"(?:url|import)\(\s*[\"']?([^\"')\s]+)", html, re.I)
    refs += re.findall(r"@import\s+[\"']([^\"']+)", html, re.I)
    return [r for r in refs if re.match(r"(https?:)?//", r)]


# --------------------------------------------------------------------------- runner
def test_chapters_are_the_numbered_notebooks_in_order():
    names = [p.name for p in report.chapters()]
    assert names == sorted(names) and all(re.match(r"\d\d_", n) for n in names)
    assert {"05_ablations.ipynb", "06_report.ipynb"} <= set(names)


def test_a_bad_profile_or_grid_file_stops_the_build_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setattr(report, "run_chapter", lambda *a, **k: pytest.fail("ran a chapter"))
    with pytest.raises(ValueError, match="valid choices: smoke, quick, full"):
        report.main(["--profile", "fast"])
    bad = tmp_path / "ablations.yaml"
    bad.write_text("grids:\n  g:\n    notebook: 01_nope\n    parameter: x\n"
                   "    values: [1, 2]\n    metrics: {a: b}\n")
    monkeypatch.setattr(sweep, "GRID_FILE", bad)
    with pytest.raises(ValueError, match="unknown notebook in grid 'g'"):
        report.main(["--profile", "smoke"])


def test_build_jobs_make_what_loads_the_ddpm_wait_for_chapter_01():
    nbs = [Path(f"/nb/{n}.ipynb") for n in ("01_ddpm_baseline", "02_dip_baseline", "03_dip_init_ddpm",
                                             "04_early_stopping")]
    grids = sweep.load_grids("quick")
    todo = [sweep.grid_points(g, "quick", Path("/nowhere"))[0] for g in grids]
    pool = report.build_jobs(nbs, "quick", Path("/x"), {}, report.BuildLog(), todo)
    after = {j.name: j.after for j in pool}
    # chapter 01 first, the photo prior's training beside it, chapter 04's authors'-regime run
    # after it (nothing waits for that job: chapter 04 finds its result in the cache), then the
    # other chapters in order
    assert [j.name for j in pool[:6]] == [nbs[0].name, report.PRIOR_JOB, report.PAPER_JOB] + [
        nb.name for nb in nbs[1:]]
    assert after[report.PRIOR_JOB] == () and pool[1].stops_build
    assert after[report.PAPER_JOB] == (report.PRIOR_JOB,)
    assert not any(report.PAPER_JOB in a for a in after.values())
    assert after["03_dip_init_ddpm.ipynb"] == ("01_ddpm_baseline.ipynb", report.PRIOR_JOB)
    assert after["02_dip_baseline.ipynb"] == ()
    # chapter 04's learned-prior rule reads the photo prior; its ablation points (peers: false) do not
    assert after["04_early_stopping.ipynb"] == (report.PRIOR_JOB,)
    points = [j for j in pool[6:]]
    assert len(points) == len(todo) and not any(j.stops_build for j in points)
    for j, waits in ((j, j.after) for j in points):
        grid = next(g for g in grids if j.name.startswith(g.name + "/"))
        if grid.fixed.get("tasks") == ["C"]:  # task C alone needs the photo prior, not the digit DDPM
            assert waits == (report.PRIOR_JOB,)
        else:
            assert waits == (("01_ddpm_baseline.ipynb",) if grid.notebook_name in report.NEEDS_DDPM else ())
    first_free = next(i for i, j in enumerate(points) if not j.after)  # waiting points come first
    assert all(j.after for j in points[:first_free]) and not any(j.after for j in points[first_free:])
    alone = report.build_jobs(nbs[2:3], "quick", Path("/x"), {}, report.BuildLog())
    # without chapter 01 in the build, chapter 03 waits only for the photo prior
    assert [j.name for j in alone] == [report.PRIOR_JOB, "03_dip_init_ddpm.ipynb"]  # no chapter 04: no paper job
    assert alone[1].after == (report.PRIOR_JOB,)


CHAPTERS = [Path(f"/nb/{n}.ipynb") for n in ("01_ddpm_baseline", "02_dip_baseline", "03_dip_init_ddpm",
                                             "04_early_stopping")]


def test_build_order_tunes_then_collates_then_evaluates():
    """Tuning points run beside chapter 01, the collate step waits for all of them (done or
    failed), chapters 02 and 04 wait for it; chapter 03 and the other points keep their order."""
    grids = sweep.load_grids("quick")
    tuning = sweep.tuning_grids(grids)
    todo = sweep.pending_runs(grids, "quick", Path("/nowhere"))
    pool = report.build_jobs(CHAPTERS, "quick", Path("/x"), {}, report.BuildLog(), todo, tuning,
                             Path("/r/tuned.json"))
    names = [j.name for j in pool]
    job = {j.name: j for j in pool}
    needed = {pt.run_key("quick") for g in tuning for pt in sweep.grid_points(g, "quick")}
    tune_jobs = [f"{pt.grid.name}/{pt.name}" for pt in todo if pt.run_key("quick") in needed]
    other_jobs = [j.name for j in pool if not j.stops_build and j.name not in tune_jobs]
    assert tune_jobs and other_jobs and len(tune_jobs) + len(other_jobs) == len(todo)
    assert "sigma/sigma=25" in tune_jobs  # the σ grid's middle point is the tuning grids' default
    assert not any(n.startswith("sigma/") and n != "sigma/sigma=25" for n in tune_jobs)
    collate = names.index(report.COLLATE_JOB)
    # chapter 04's authors'-regime job comes after every tuning point, before the collate step
    assert all(names.index(n) < names.index(report.PAPER_JOB) for n in tune_jobs)
    assert names.index(report.PAPER_JOB) == collate - 1
    assert names[:3] == ["01_ddpm_baseline.ipynb", report.PRIOR_JOB, "03_dip_init_ddpm.ipynb"]
    assert all(names.index(n) < collate for n in tune_jobs)
    assert set(job[report.COLLATE_JOB].after) == set(tune_jobs) and job[report.COLLATE_JOB].after_failure
    assert job[report.COLLATE_JOB].stops_build  # a broken collate step stops the build
    for ch in ("02_dip_baseline.ipynb", "04_early_stopping.ipynb"):
        assert names.index(ch) > collate
    assert job["02_dip_baseline.ipynb"].after == (report.COLLATE_JOB,)
    assert job["04_early_stopping.ipynb"].after == (report.PRIOR_JOB, report.COLLATE_JOB)
    assert job["03_dip_init_ddpm.ipynb"].after == ("01_ddpm_baseline.ipynb", report.PRIOR_JOB,
                                                   report.COLLATE_JOB)
    photo = [n for n in tune_jobs if job[n].after]
    assert {n.split("/")[0] for n in photo} == {"red_lambda", "red_sigma_eff", "photo_dip_iterations"}
    assert all(job[n].after == (report.PRIOR_JOB,) for n in photo)  # the rest start beside chapter 01
    assert all(names.index(n) > names.index("04_early_stopping.ipynb") for n in other_jobs)


def test_the_build_runs_in_that_order_and_only_chapters_02_04_read_the_tuned_file(monkeypatch):
    import threading

    grids = sweep.load_grids("quick")
    tuning = sweep.tuning_grids(grids)
    todo = sweep.pending_runs(grids, "quick", Path("/nowhere"))
    events, lock = [], threading.Lock()

    def note(*e):
        with lock:
            events.append(e)

    def fake_chapter(nb, profile, out_dir, extra=None):
        note("chapter", nb.stem, (extra or {}).get("tuned"))
        return 0.0

    def fake_point(pt, profile, kernel, extra=None, log=print):
        note("point", pt.grid.name, (extra or {}).get("tuned"))
        status = "failed" if pt.grid.name == "es_schedule" else "ran"  # a failed tuning point
        return sweep.PointRun(pt, status, 0.0, "boom" if status == "failed" else "")

    monkeypatch.setattr(report, "run_chapter", fake_chapter)
    monkeypatch.setattr(report, "_prior_job", lambda profile, log=None, device=None: lambda: note("prior", profile, None))
    monkeypatch.setattr(report, "_paper_job", lambda profile, log=None, device=None: lambda: note("paper", profile, None))
    monkeypatch.setattr(sweep, "run_pending", fake_point)
    monkeypatch.setattr(sweep, "complete_grids", lambda grids, profile, **k: note("complete", len(k["ran"])))
    monkeypatch.setattr(sweep, "collate_tuned", lambda profile, path=None, log=print: note("collate", str(path)))
    pool = report.build_jobs(CHAPTERS, "quick", Path("/x"), {"data_dir": None}, report.BuildLog(), todo,
                             tuning, Path("/r/tuned.json"))
    out = report.jobs.run_jobs(pool, 2, log=lambda s: None)
    assert {o.status for o in out.values()} == {"done"}
    order = [e[0] if e[0] in ("complete", "collate", "prior", "paper") else e[1] for e in events]
    collate = order.index("collate")
    assert order.index("prior") < order.index("03_dip_init_ddpm")
    assert order.index("prior") < order.index("paper")  # chapter 04's authors'-regime job reads the prior
    tuned_at = {g.name for g in tuning}
    assert all(i < collate for i, e in enumerate(events) if e[0] == "point" and e[1] in tuned_at)
    assert events[order.index("complete")][1] == len(next(j for j in pool if j.name == report.COLLATE_JOB).after)
    assert order.index("02_dip_baseline") > collate and order.index("04_early_stopping") > collate
    for e in events:
        if e[0] == "chapter":
            assert e[2] == ("/r/tuned.json" if e[1] in report.TUNED_CHAPTERS else None), e
        if e[0] == "point":
            assert e[2] is None  # points never read the tuned file


def test_a_bad_job_count_stops_the_build_before_any_work(monkeypatch):
    monkeypatch.setattr(report, "run_chapter", lambda *a, **k: pytest.fail("ran a chapter"))
    with pytest.raises(ValueError, match="--jobs must be a positive whole number"):
        report.main(["--profile", "smoke", "--jobs", "0"])


# --------------------------------------------------------------------------- HTML
def test_html_is_self_contained_with_local_maths(tmp_path):
    executed = tmp_path / "executed"
    executed_notebook(executed, report.REPORT_CHAPTER)
    executed_notebook(executed, "01_ddpm_baseline")
    executed_notebook(executed, "01_ddpm_baseline_stray_run")  # not a chapter: not exported
    out = tmp_path / "report"
    written = report.export_report("smoke", executed, out, install=False, log=lambda s: None)
    html = written["html"].read_text()
    assert external_sources(html) == []
    assert "cdnjs" not in html and "require.js" not in html and "unpkg.com" not in html
    assert "data:image/png;base64," in html  # the figure is embedded
    assert "secret_code_line" not in html and "a noisy library warning" not in html  # code hidden
    chapter = (out / "chapters" / "01_ddpm_baseline.html").read_text()
    assert [p.name for p in written["chapters"]] == ["01_ddpm_baseline.html"]
    assert "secret_code_line" in chapter and external_sources(chapter) == []
    if written["mathjax"] is None:
        pytest.skip("no local MathJax (Debian package libjs-mathjax) on this machine")
    assert 'src="mathjax/MathJax.js?config=TeX-AMS_CHTML-full"' in html
    assert 'src="../mathjax/MathJax.js' in chapter
    assert (out / "mathjax" / "MathJax.js").exists()
    assert (out / "mathjax" / "jax" / "output" / "CommonHTML" / "jax.js").exists()


def test_without_the_tools_it_says_what_to_install_and_still_writes_html(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "find_chromium", lambda: None)
    monkeypatch.setattr(report, "find_mathjax", lambda: None)
    monkeypatch.setattr(report, "can_apt_install", lambda: False)
    executed = tmp_path / "executed"
    executed_notebook(executed, report.REPORT_CHAPTER)
    said = []
    written = report.export_report("smoke", executed, tmp_path / "report", log=said.append)
    assert len(said) == 1 and "chromium" in said[0] and "libjs-mathjax" in said[0]
    assert written["pdf"] is None and written["html"].exists()
    html = written["html"].read_text()
    assert "<script src=" not in html and external_sources(html) == []
    assert "\\hat\\theta" in html  # the maths stays readable as TeX


# --------------------------------------------------------------------------- PDF (CI proves it)
@pytest.fixture(scope="module")
def export_tools():
    """Chromium and MathJax, installed with apt-get when missing and possible (CI runs as root)."""
    missing = report.ensure_export_tools(install=True, log=print)
    if missing:
        pytest.skip(f"cannot install {' '.join(missing)} here (needs root and apt-get); "
                    f"`make report` prints the same note and still writes the HTML")
    return report.find_chromium()


def test_the_pdf_is_made_and_the_maths_is_typeset_offline(tmp_path, export_tools):
    executed = tmp_path / "executed"
    executed_notebook(executed, report.REPORT_CHAPTER)
    written = report.export_report("smoke", executed, tmp_path / "report", log=print)
    pdf = written["pdf"]
    assert pdf is not None and pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000
    dom = report.render_dom(written["html"])
    assert "mjx-chtml" in dom or "MathJax_CHTML" in dom  # MathJax ran, from the local copy
    assert "Math Processing Error" not in dom


# --------------------------------------------------------------------------- the report's text
def synthetic_results() -> dict:
    return {
        "01_ddpm_baseline": {
            "quality_bar": {"method": "ddpm_1000", "fid": 12.345, "reference_fid": 10.0,
                            "fid_ratio": 1.2345, "max_fid_ratio": 3.0, "precision": 0.81,
                            "recall": 0.66, "min_precision": 0.5, "min_recall": 0.5,
                            "confident_fraction": 0.9, "passed": True, "control_margin": 0.784,
                            "worst_control": "blurred", "controls_fail_reference_passes": True},
            "methods": {"ddpm_1000": {"label": "DDPM-1000",
                                      "fid": {"mean": 12.345, "ci95": 1.2, "n": 3}}},
            "reference_real_test": {"fid": {"mean": 10.0, "ci95": 0.8, "n": 3}}},
        "02_dip_baseline": None,
        "03_dip_init_ddpm": {
            "generation": {"verdict": {
                "ddpm_chain": "DDPM-1000", "ddpm_fid": 10.41, "test_refs_fid": 10.61, "text": "…",
                "new": {"n": 14, "wins_vs_ddim": 0, "loses_vs_ddim": 14, "wins_vs_dpmpp": 1,
                        "loses_vs_dpmpp": 13},
                "copy": {"n": 16, "wins_vs_ddim": 10, "loses_vs_ddim": 6, "wins_vs_dpmpp": 10,
                         "loses_vs_dpmpp": 6}}},
            "denoising": {"verdict": {"best_dip_method": "tdpm_dip", "best_dip_psnr": 11.57,
                                      "ddpm_all_psnr": 11.61, "beats_ddpm_chain": False,
                                      "text": "…"}}},
        "04_early_stopping": {"quality_bar": {"guided_mean_gap_db": 0.812, "es_wmv_mean_gap_db": 1.5,
                                              "max_gap_db": 1.0, "guided_within_max_gap": True,
                                              "guided_no_worse_than_es_wmv": True}},
        "05_ablations": {"grids": {"g": {"chosen": {"value": "3", "metric": "psnr", "mean": 27.0,
                                                    "std": 0.25, "ci95": 2.25},
                                         "choice": {"reason": "default"}, "photos": ["rocket"],
                                         "parameter": "x"}}},
    }


def test_a_missing_or_changed_chapter_gets_a_note_not_a_crash():
    res = synthetic_results()
    assert "Not available" in report.section_markdown("02_dip_baseline", res)
    assert "do not have the layout" in report.section_markdown("04_early_stopping", res)
    table = report.section_markdown("05_ablations", res)
    assert "| g | `x` | `3` | default | psnr | 27.00 ± 2.25 |" in table


def test_copy_figures_copies_what_exists(tmp_path):
    root = tmp_path / "results"
    (root / "01_ddpm_baseline").mkdir(parents=True)
    (root / "01_ddpm_baseline" / "quality_vs_compute.png").write_bytes(png_bytes())
    paths = report.copy_figures("smoke", root, tmp_path / "figures")
    assert paths["ddpm_quality_vs_compute.png"] == tmp_path / "figures" / "ddpm_quality_vs_compute.png"
    assert paths["ddpm_quality_vs_compute.png"].exists()
    assert paths["ablations.png"] is None and len(paths) == len(report.FIGURES)


def test_the_readme_carries_the_figure_map_and_the_single_point_command():
    readme = (REPO / "README.md").read_text()
    for line in report.figure_map_markdown("quick").splitlines()[2:]:
        assert line in readme, f"README figure map is out of date: {line}"
    assert "papermill notebooks/" in readme and "results/quick/ablations/" in readme


def test_the_report_notebook_shows_every_figure_it_copies():
    nb = nbformat.read(REPO / "notebooks" / "06_report.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for fig in report.FIGURES:
        assert f'report.show_figure("{fig.name}"' in source, fig.name
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # saved un-executed


def test_compute_rows_read_what_chapters_declare():
    res = {"01_ddpm_baseline": {"train": {"steps": 10, "seconds": 5.0, "gflops": 2.0},
                                "methods": {"a": {"per_seed": [{"wall_s": 1.0, "gflops": 0.5}] * 2}}},
           "04_early_stopping": {"compute": {"guided": {"dip_iters": 8, "wall_s": 3.0, "gflops": 1.0}}}}
    rows = report.compute_rows(res)
    assert [r["wall_s"] for r in rows] == [5.0, 2.0, 3.0] and rows[1]["gflops"] == 1.0
    assert "| 04 | guided DIP runs (8 image-iterations) | 3 | 1 |" in report.compute_markdown(rows)
    # the photo prior's training and task C's runs are charged too
    res["01_ddpm_baseline"]["photo_prior"] = {"steps": 400, "train_seconds": 7.0}
    res["03_dip_init_ddpm"] = {"photographs": {"rows": [{"wall_s": 0.5, "gflops_per_image": 2.0}] * 4}}
    rows = report.compute_rows(res)
    assert [r["wall_s"] for r in rows] == [5.0, 2.0, 7.0, 2.0, 3.0]
    assert rows[3]["gflops"] == 8.0 and "task C (4 method" in rows[3]["work"]


def test_run_chapter_passes_only_the_parameters_a_notebook_declares(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = 'quick'\noutput_dir = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import json, pathlib\npathlib.Path(output_dir, 'seen.json').write_text(json.dumps(sorted(k for k in "
        "dir() if not k.startswith('_'))))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "01_dummy.ipynb"
    nbformat.write(nb, src)
    seconds = report.run_chapter(src, "smoke", tmp_path / "executed",
                                 {"output_dir": str(tmp_path), "data_dir": "/nowhere"})
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seconds > 0 and "data_dir" not in seen and "profile" in seen
    assert (tmp_path / "executed" / "01_dummy.ipynb").exists()


def test_the_build_stops_before_any_work_on_a_device_this_machine_lacks(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(report, "_run_chapters", lambda *a, **k: pytest.fail("work started"))
    monkeypatch.setattr(report, "ensure_export_tools", lambda *a, **k: pytest.fail("work started"))
    assert report.main(["--profile", "full", "--no-install"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
