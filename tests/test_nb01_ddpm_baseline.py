"""Chapter 01 (DDPM baseline), as the smoke build ran it, stores what it reports."""
import numpy as np
import papermill as pm
import pytest
from nbrun import run_notebook

from dipddpm_lib import get_profile
from dipddpm_lib.results import load_array

SPREAD_KEYS = {"mean", "std", "median", "min", "max", "n", "ci95", "ci_lo", "ci_hi"}
SCORES = ("fid", "kid", "precision", "recall", "confident_fraction", "class_entropy")


def _method_keys(p) -> list[str]:
    return ([f"ddpm_{p.ddpm_sample_steps}"] + [f"ddim_{k}" for k in p.sampler_steps]
            + [f"dpmpp_{k}" for k in p.dpm_steps])


@pytest.mark.notebook
def test_ddpm_baseline_notebook_smoke(smoke_build):
    metrics = smoke_build.metrics("01_ddpm_baseline")
    out = smoke_build.chapter_dir("01_ddpm_baseline")
    smoke = get_profile("smoke")
    n_seeds, keys = len(smoke.seeds), _method_keys(smoke)
    assert metrics["profile"] == "smoke" and metrics["beta_schedule"] == "linear"
    assert metrics["seeds"] == list(smoke.seeds) and metrics["methods"].keys() == set(keys)
    assert metrics["features"].startswith("in-domain CNN classifier")
    assert 0 <= metrics["classifier_test_accuracy"] <= 1
    train = metrics["train"]
    assert train["steps"] == smoke.train_steps and train["n_params"] > 0
    assert train["seconds"] > 0 and train["gflops"] > 0 and np.isfinite(train["final_loss"])
    for key in keys:
        m = metrics["methods"][key]
        for q in (*SCORES, "wall_s"):
            assert set(m[q]) == SPREAD_KEYS and m[q]["n"] == n_seeds
        for q in ("precision", "recall", "class_entropy"):
            assert all(0 <= r[q] <= 1 for r in m["per_seed"])
        assert m["nfe"] == int(key.split("_")[1]) and m["gflops"] > 0
        assert [r["seed"] for r in m["per_seed"]] == list(smoke.seeds)
        assert m["features"] == metrics["features"]
        arr = load_array(out, f"samples_{key}")
        assert arr.shape == (n_seeds * smoke.num_samples, 1, smoke.image_size, smoke.image_size)
        assert arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
        assert metrics["arrays"][f"samples_{key}"]["shape"] == list(arr.shape)
    ref = metrics["reference_real_test"]
    assert ref["num_samples"] == smoke.num_samples and ref["fid"]["n"] == n_seeds
    assert ref["full_test"]["num_samples"] > smoke.num_samples
    assert set(ref["full_test"]) >= set(SCORES)
    controls = metrics["controls"]
    assert set(controls) == {"noise", "black", "white", "blurred", "repeated"}
    for c in controls.values():
        assert c["num_samples"] == smoke.num_samples and [r["seed"] for r in c["per_seed"]] == \
            list(smoke.seeds)
        assert all(set(c[q]) == SPREAD_KEYS and c[q]["n"] == n_seeds for q in SCORES)
    # training-free facts about the controls: constant images are the same on every seed, and
    # one image repeated covers at most one real image's ball in any feature space
    assert controls["black"]["fid"]["std"] == 0 and controls["white"]["precision"]["std"] == 0
    assert controls["repeated"]["recall"]["max"] <= 1 / metrics["train_images"] + 1e-12
    bar = metrics["quality_bar"]
    assert bar["method"] == keys[0] and isinstance(bar["passed"], bool)
    assert (bar["min_precision"], bar["min_recall"], bar["max_fid_ratio"]) == (0.5, 0.5, 3.0)
    assert bar["precision"] == metrics["methods"][keys[0]]["precision"]["mean"]
    assert bar["worst_control"] in controls and set(bar["controls"]) == set(controls)
    assert bar["control_margin"] == pytest.approx(
        min(ref["precision"]["mean"], ref["recall"]["mean"])
        - max(min(c["precision"]["mean"], c["recall"]["mean"]) for c in controls.values()))
    assert isinstance(bar["controls_fail_reference_passes"], bool)
    assert set(metrics["paired_vs_baseline"]) == set(keys[1:])
    assert all(c["verdict"] in ("better", "worse", "mixed", "not resolved")
               for c in metrics["paired_vs_baseline"].values())
    for fig in ("training_loss", "samples", "quality_vs_compute"):
        assert (out / f"{fig}.png").stat().st_size > 0


@pytest.mark.notebook
def test_ddpm_baseline_notebook_rejects_unknown_schedule(tmp_path, nb_cache):
    out = tmp_path / "out"
    before = sorted(p for p in nb_cache.rglob("*"))
    with pytest.raises(pm.PapermillExecutionError, match="valid choices: linear, cosine"):
        run_notebook("01_ddpm_baseline", tmp_path, output_dir=str(out), beta_schedule="quadratic")
    assert not out.exists()
    assert sorted(p for p in nb_cache.rglob("*")) == before
