"""A failing chapter: the build stops, names the chapter and the cell, keeps the partial
notebook, and `make report`'s entry point exits non-zero."""
import nbformat
import pytest

from dipddpm_lib import report


def _failing_notebook(folder):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('import os\nprofile = os.environ.get("DIPDDPM_PROFILE", "quick")')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("ok = 1"),
                nbformat.v4.new_code_cell("raise ValueError('sigma must be in [0, 255], got 300')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "98_boom.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.notebook
def test_failing_chapter_is_named_with_its_cell_and_kept(tmp_path, capsys):
    nb = _failing_notebook(tmp_path)
    executed = tmp_path / "executed"
    ok = report._run_chapters([nb], "smoke", executed, {}, report.BuildLog())
    err = capsys.readouterr().err
    assert ok is False
    assert "FAILED: chapter 98_boom.ipynb" in err
    assert 'Exception encountered at "In [' in err, err  # the failing cell is named
    assert "sigma must be in [0, 255]" in err
    kept = nbformat.read(executed / "98_boom.ipynb", as_version=4)  # partial notebook kept
    assert any(o.get("output_type") == "error" for c in kept.cells for o in c.get("outputs", []))


@pytest.mark.notebook
def test_report_main_exits_non_zero_on_a_failing_chapter(tmp_path, monkeypatch, capsys):
    nb = _failing_notebook(tmp_path)
    monkeypatch.setattr(report, "chapters", lambda *a, **k: [nb])
    monkeypatch.setattr(report, "REPO", tmp_path)
    monkeypatch.setattr(report, "ensure_export_tools", lambda **k: [])
    monkeypatch.setattr(report.sweep, "GRID_FILE", tmp_path / "none.yaml")
    assert report.main(["--profile", "smoke", "--no-install"]) == 1
    assert "98_boom.ipynb" in capsys.readouterr().err
