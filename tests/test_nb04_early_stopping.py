"""Chapter 04 (early stopping) with a hand-made tuned file and a fallback; bad input fails before
any work (its results, as the smoke build ran it: tests/test_build_smoke.py)."""
import pytest
from nbrun import markdown_outputs, run_checks_cell, run_notebook

from dipddpm_lib.experiments import early_stopping as es


def test_early_stopping_rejects_a_bad_schedule_before_any_work(cache):
    """The checks chapter 04 runs first (experiments.early_stopping.make_setup)."""
    from conftest import cache_files

    with pytest.raises(ValueError, match="linear, cosine, log"):
        es.make_setup("smoke", None, None, stage_schedule="quadratic")
    assert cache_files(cache) == []


@pytest.mark.notebook
def test_early_stopping_notebook_reads_a_tuned_file_with_a_fallback_and_runs_without_peers(tmp_path, nb_cache):
    """A hand-made tuned file (one setting tuned, one fallen back on the profile's), with the
    peers off: the guided rule and its baselines only."""
    from dipddpm_lib import tuned

    doc = {"version": tuned.TUNED_VERSION, "profile": "smoke", "tune_photos": ["rocket", "coins", "china"],
           "settings": {"es_num_stages": {"value": 3, "grid": "es_stages", "metric": "guided_gap_db",
                                          "photos": ["rocket"], "reason": "cheapest"}},
           "untuned": {"es_stage_schedule": {"grid": "es_schedule",
                                             "reason": "point(s) stage_schedule=log of grid es_schedule "
                                                       "have no result (failed or not run)"}}}
    path = tuned.write_tuned(doc, tmp_path / "tuned.json")
    out = tmp_path / "out"
    metrics = run_notebook("04_early_stopping", out, tuned=str(path), photos=["camera"], sigmas=[25],
                           peers=False)
    assert metrics["setup"]["num_stages"] == 3
    src = metrics["settings_source"]
    assert src["tuned_file"] == str(path) and src["fallback"] == ["es_stage_schedule"]
    assert src["settings"]["es_num_stages"]["source"] == "tuned"
    assert src["settings"]["es_stage_schedule"] == {
        "value": "linear", "source": "profile (fallback)", "grid": "es_schedule",
        "note": "not tuned: " + doc["untuned"]["es_stage_schedule"]["reason"]}
    assert metrics["photo_sets"] == {"camera": "eval"}
    shown = markdown_outputs(out / "04_early_stopping.executed.ipynb")
    assert "chosen by the ablation grids on the tune photos (rocket)" in shown
    assert "stage schedule = `linear`: the profile's values, because" in shown
    assert "95 % t-interval" in shown
    assert "guided" in metrics["methods"] and "es_wmv_raw" in metrics["methods"]
    assert not {"sure", "sigma_lookup", "prior_distance"} & set(metrics["methods"])
    assert "paper_regime" not in metrics and "sure" not in metrics["compute"]


def test_early_stopping_notebook_rejects_a_bad_tuned_file_before_any_work(tmp_path, nb_cache):
    import json

    from dipddpm_lib import tuned

    bad = tmp_path / "tuned.json"
    bad.write_text(json.dumps({"version": tuned.TUNED_VERSION, "profile": "smoke", "tune_photos": [],
                               "settings": {"es_num_stages": {"value": 1}}, "untuned": {}}))
    out = tmp_path / "out"
    before = sorted(p for p in nb_cache.rglob("*"))
    with pytest.raises(ValueError, match="whole number in"):
        run_checks_cell("04_early_stopping", out, tuned=str(bad))
    assert not out.exists()
    assert sorted(p for p in nb_cache.rglob("*")) == before
