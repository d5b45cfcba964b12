"""Chapter 04 (early stopping), as the smoke build ran it (with the build's tuned.json), stores what
it reports; a hand-made tuned file with a fallback; bad input fails before any work."""
import numpy as np
import pytest
from nbrun import markdown_outputs, run_notebook

from dipddpm_lib.experiments import early_stopping as es
from dipddpm_lib import stopping
from dipddpm_lib.results import load_array

METHOD_KEYS = {"iteration", "iterations_run", "psnr", "ssim", "gap_db", "gap_db_by_sigma",
               "compute_saved", "gflops", "fired_fraction"}


@pytest.mark.notebook
def test_early_stopping_notebook_smoke(smoke_build):
    metrics = smoke_build.metrics("04_early_stopping")
    tmp_path = smoke_build.chapter_dir("04_early_stopping")
    smoke, setup, _ = es.make_setup("smoke", None, smoke_build.parameters("04_early_stopping")["tuned"])
    assert metrics["settings_source"]["tuned_file"] == smoke_build.parameters("04_early_stopping")["tuned"]
    assert metrics["profile"] == "smoke" and metrics["seeds"] == list(smoke.seeds)
    assert set(metrics["methods"]) == set(stopping.CRITERIA)  # the peers run by default
    for name, m in metrics["methods"].items():
        assert METHOD_KEYS <= set(m), name
        assert m["gap_db"]["n"] == len(setup.pairs) * len(smoke.seeds)
        assert m["gap_db"]["mean"] <= m["gap_db"]["worst"]
    assert metrics["methods"]["oracle"]["gap_db"]["worst"] == 0.0
    assert metrics["methods"]["fixed"]["iteration"]["mean"] == smoke.dip_iterations
    assert metrics["methods"]["ulyanov"]["iteration"]["mean"] == setup.ulyanov_iterations
    assert metrics["setup"]["window"] == setup.window
    assert metrics["setup"]["patience"] == setup.patience
    bar = metrics["quality_bar"]
    assert bar["guided_mean_gap_db"] == metrics["methods"]["guided"]["gap_db"]["mean"]
    for kind in ("reference", "guided", "sure"):
        assert metrics["compute"][kind]["gflops"] > 0 and metrics["compute"][kind]["wall_s"] > 0
    assert len(metrics["es_wmv_sensitivity"]) == len(setup.wmv_windows) * len(setup.wmv_patiences)
    assert len(metrics["runs"]) == len(setup.pairs) * len(smoke.seeds) * len(stopping.CRITERIA)
    size = smoke.es_photo_size
    for photo, sigma in setup.pairs:
        for c in stopping.CRITERIA:
            arr = load_array(tmp_path, f"stop_{c}_{photo}_{sigma:g}")
            assert arr.shape == (len(smoke.seeds), 3, size, size)
            assert arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
        assert load_array(tmp_path, f"noisy_{photo}_{sigma:g}").shape[0] == len(smoke.seeds)
        assert load_array(tmp_path, f"clean_{photo}").shape == (1, 3, size, size)
    look = metrics["sigma_lookup"]
    assert look["tune_photos"] == list(smoke.tune_photos)[:len(look["tune_photos"])]
    assert not set(look["tune_photos"]) & set(smoke.photos)
    paper = metrics["paper_regime"]
    assert paper["setup"]["photo_size"] == smoke.es_paper_photo_size
    assert paper["network"]["scales"] == smoke.es_paper_dip_scales
    assert {"es_wmv_raw", "es_emv", "sigma_lookup", "prior_distance"} <= set(paper["methods"])
    assert "guided" not in paper["methods"] and paper["iterations"] >= 1
    assert bar["best_criterion"] in metrics["methods"] and bar["best_criterion"] not in stopping.ORACLES
    # an outside check: every gap recomputed from the stored arrays alone
    import torch

    from dipddpm_lib.metrics import psnr
    for photo, sigma in setup.pairs:
        clean = torch.from_numpy(load_array(tmp_path, f"clean_{photo}")).expand(len(smoke.seeds), -1, -1, -1)
        peak = psnr(torch.from_numpy(load_array(tmp_path, f"stop_oracle_{photo}_{sigma:g}")), clean)
        for c in stopping.CRITERIA:
            got = peak - psnr(torch.from_numpy(load_array(tmp_path, f"stop_{c}_{photo}_{sigma:g}")), clean)
            runs = sorted((r for r in metrics["runs"] if r["criterion"] == c and r["photo"] == photo
                           and r["sigma"] == sigma), key=lambda r: r["seed"])
            np.testing.assert_allclose(got.numpy(), [r["gap_db"] for r in runs], atol=1e-3)
    for fig in ("stage_levels", "stage_gallery", "stage_monitor", "rule_evidence", "stop_curves",
                "gaps", "sigma_lookup", "paper_regime_curves"):
        assert (tmp_path / f"{fig}.png").stat().st_size > 0


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


@pytest.mark.notebook
def test_early_stopping_notebook_rejects_a_bad_tuned_file_before_any_work(tmp_path, nb_cache):
    import json

    import papermill as pm

    from dipddpm_lib import tuned

    bad = tmp_path / "tuned.json"
    bad.write_text(json.dumps({"version": tuned.TUNED_VERSION, "profile": "smoke", "tune_photos": [],
                               "settings": {"es_num_stages": {"value": 1}}, "untuned": {}}))
    out = tmp_path / "out"
    with pytest.raises(pm.PapermillExecutionError, match="whole number in"):
        run_notebook("04_early_stopping", out, tuned=str(bad))
    assert not (out / "metrics.json").exists()
    assert not any(p.suffix in (".npy", ".png") for p in out.iterdir())
