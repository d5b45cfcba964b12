"""The report build: chapter order, the export (self-contained HTML, local maths, PDF), the
missing-tools path, and the report's text formatted from stored results."""
import base64
import io
import re
import subprocess
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from dipddpm_lib import export, report  # noqa: E402

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


# --------------------------------------------------------------------------- chapters
def test_chapters_are_the_numbered_notebooks_in_order():
    names = [p.name for p in report.chapters()]
    assert names == sorted(names) and all(re.match(r"\d\d_", n) for n in names)
    assert {"05_ablations.ipynb", "06_report.ipynb"} <= set(names)


def test_html_is_self_contained_with_local_maths(tmp_path):
    executed = tmp_path / "executed"
    executed_notebook(executed, report.REPORT_CHAPTER)
    executed_notebook(executed, "01_ddpm_baseline")
    executed_notebook(executed, "01_ddpm_baseline_stray_run")  # not a chapter: not exported
    out = tmp_path / "report"
    written = export.export_report(executed, out, install=False, log=lambda s: None)
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
    monkeypatch.setattr(export, "find_chromium", lambda: None)
    monkeypatch.setattr(export, "find_mathjax", lambda: None)
    monkeypatch.setattr(export, "can_apt_install", lambda: False)
    executed = tmp_path / "executed"
    executed_notebook(executed, report.REPORT_CHAPTER)
    said = []
    written = export.export_report(executed, tmp_path / "report", log=said.append)
    assert len(said) == 1 and "chromium" in said[0] and "libjs-mathjax" in said[0]
    assert written["pdf"] is None and written["html"].exists()
    html = written["html"].read_text()
    assert "<script src=" not in html and external_sources(html) == []
    assert "\\hat\\theta" in html  # the maths stays readable as TeX


# --------------------------------------------------------------------------- PDF (CI proves it)
@pytest.fixture(scope="module")
def export_tools():
    """Chromium and MathJax, installed with apt-get when missing and possible (CI runs as root)."""
    missing = export.ensure_export_tools(install=True, log=print)
    if missing:
        pytest.skip(f"cannot install {' '.join(missing)} here (needs root and apt-get); "
                    f"`make report` prints the same note and still writes the HTML")
    return export.find_chromium()


def test_the_pdf_is_made_and_the_maths_is_typeset_offline(tmp_path, export_tools):
    executed = tmp_path / "executed"
    executed_notebook(executed, report.REPORT_CHAPTER)
    written = export.export_report(executed, tmp_path / "report", log=print)
    pdf = written["pdf"]
    assert pdf is not None and pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000
    dom = render_dom(written["html"])
    assert "mjx-chtml" in dom or "MathJax_CHTML" in dom  # MathJax ran, from the local copy
    assert "Math Processing Error" not in dom


def render_dom(html_path: Path) -> str:
    """The page's DOM after headless Chromium has run its scripts (the maths typeset, offline)."""
    chromium = export.find_chromium()
    with tempfile.TemporaryDirectory(prefix="dipddpm-chromium-") as profile_dir:
        cmd = export.chromium_command(chromium, html_path, Path(profile_dir) / "x.pdf",
                                      Path(profile_dir), 30000)
        cmd = [c for c in cmd if not c.startswith("--print-to-pdf")]
        cmd.insert(-1, "--dump-dom")
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout


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


def test_a_missing_or_changed_chapter_is_named_not_a_crash():
    res = synthetic_results()
    assert report.section_tables("02_dip_baseline", res) == (None, "missing")
    tables, problem = report.section_tables("04_early_stopping", res)  # not the layout it reads
    assert tables is None and problem.startswith("KeyError")
    table, problem = report.section_tables("05_ablations", res)
    assert problem is None and "| g | `x` | `3` | default | psnr | 27.00 ± 2.25 |" in table


def test_figure_finds_a_report_figure_by_name():
    assert report.figure("ablations.png").chapter == "05_ablations"
    with pytest.raises(ValueError, match="valid choices: ddpm_quality_vs_compute.png"):
        report.figure("nope.png")


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
    for f in report.FIGURES:  # the README's figure map: each figure, its notebook, its command
        line = (f"| `figures/quick/{f.name}` | {f.caption} | `notebooks/{f.chapter}.ipynb` (its "
                f"`{f.source}`) | `papermill notebooks/{f.chapter}.ipynb out.ipynb -p profile quick`, "
                f"then `06_report` copies it |")
        assert line in readme, f"README figure map is out of date: {line}"
    assert "snakemake -s workflow/Snakefile" in readme and "results/quick/ablations/" in readme


def test_the_report_notebook_shows_every_figure_it_copies():
    nb = nbformat.read(REPO / "notebooks" / "06_report.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for fig in report.FIGURES:
        assert f'show_figure("{fig.name}")' in source, fig.name
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
