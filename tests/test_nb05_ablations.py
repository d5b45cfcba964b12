"""Chapter 05 runs headless under the smoke profile: the build (Snakemake) runs a grid file's
points, then the notebook collates them into one table and says what it chose, reading every
number from the table."""
import csv

import pytest

from nbrun import markdown_outputs, run_notebook


@pytest.mark.notebook
def test_nb05_collates_points_one_of_which_failed(failing_points, nb_cache, tmp_path):
    """The dummy grids of tests/test_workflow.py, one point failed (conftest's failing_points)."""
    grid_file, root, _, _, built = failing_points
    out = tmp_path / "out"
    assert built.returncode != 0 and "gx/x=3" in built.stdout + built.stderr  # the failing point
    points = root / "results" / "smoke" / "ablations"
    m = run_notebook("05_ablations", out, grid_file=str(grid_file), ablations_root=str(points))

    assert m["profile"] == "smoke" and m["seeds"] == [0, 1, 2]
    assert m["n_points"] == 5 and m["n_done"] == 4
    assert m["failed_points"] == ["gx/x=3"] and m["missing_points"] == ["gx/x=3"]
    gx, gy = m["grids"]["gx"], m["grids"]["gy"]
    assert gx["kind"] == "setting" and gy["kind"] == "condition" and gy["chosen"] is None
    assert gx["chosen"]["value"] == "2" and gx["chosen"]["mean"] == pytest.approx(2.0)
    shown = markdown_outputs(out / "05_ablations.executed.ipynb")
    assert "**Chosen: `2`**" in shown and "2.00 ± 0.18" in shown  # 95 % t-interval, two keys
    assert "4 → 6.00 ± 0.25" in shown and "nothing is chosen" in shown
    assert "1 of 5 points have no results: `gx/x=3` (failed: see" in shown
    assert gx["tunes"] == {"es_stage_iterations": None} and gx["used_by"] == ["04_early_stopping"]
    assert gy["tunes"] == {} and gy["used_by"] == []
    assert m["tune_photos"] == ["rocket", "coins", "china"]
    assert [c["value"] for c in gx["curves"]["score"]] == [1, 2]

    with open(out / "ablations.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["grid"], r["point"]) for r in rows} == {("gx", "x=1"), ("gx", "x=2"), ("gy", "y=0"),
                                                        ("gy", "y=4")}
    assert {r["copied_from"] for r in rows if r["point"] == "y=0"} == {"gx/x=2"}
    for name in ("ablations", "grid_gx", "grid_gy"):
        assert (out / f"{name}.png").stat().st_size > 0
    assert (points / "gx" / "x=1" / "99_dummy.ipynb").exists()
    assert (points / "gx" / "x=3.failed" / "error.txt").exists()
