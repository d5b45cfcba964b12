"""Chapter 01's study (experiments.ddpm_baseline) and figures: plans, per-seed rows, summaries,
tables and figures."""
import matplotlib
import numpy as np
import pytest
import torch

from conftest import cache_files
from dipddpm_lib import get_profile, metrics
from dipddpm_lib.data import load_digits
from dipddpm_lib.ddpm import scheduler_settings, train_ddpm
from dipddpm_lib.experiments import ddpm_baseline as study
from dipddpm_lib.experiments.ddpm_baseline import Method
from dipddpm_lib.figures import ddpm_baseline as figures
from dipddpm_lib.metrics import train_classifier
from dipddpm_lib.results import spread

matplotlib.use("Agg")


def test_method_keys_and_labels():
    assert Method("ddpm", 1000).key == "ddpm_1000"
    assert Method("ddpm", 1000).label == "DDPM, 1000 steps"
    assert Method("dpm-solver++", 20).key == "dpmpp_20"
    assert Method("dpm-solver++", 20).label == "DPM-Solver++, 20 steps"
    assert [m.key for m in study.baseline_methods((10, 20), 10)] == \
        ["ddpm_1000", "ddim_10", "ddim_20", "dpmpp_10"]


@pytest.mark.parametrize("sampler,steps,match", [
    ("euler", 10, "valid choices: ddpm, ddim, dpm-solver\\+\\+"),
    ("ddim", 0, "positive whole number"),
    ("ddim", 2.5, "positive whole number"),
])
def test_method_bad_inputs(sampler, steps, match):
    with pytest.raises(ValueError, match=match):
        Method(sampler, steps)


def test_plan_fills_from_the_profile_and_takes_overrides():
    smoke = get_profile("smoke")
    plan = study.make_plan("smoke")
    assert plan.seeds == smoke.seeds and plan.beta_schedule == "linear"
    assert [m.key for m in plan.methods] == (
        [f"ddpm_{smoke.ddpm_sample_steps}"] + [f"ddim_{k}" for k in smoke.sampler_steps]
        + [f"dpmpp_{k}" for k in smoke.dpm_steps])
    assert plan.baseline == f"ddpm_{smoke.ddpm_sample_steps}"
    assert get_profile("quick").ddpm_sample_steps == 1000
    plan = study.make_plan("smoke", seeds=[3], beta_schedule="cosine", num_samples=8,
                                sampler_steps=7, dpm_steps=[4, 6], ddpm_steps=20, image_size=32)
    assert [m.key for m in plan.methods] == ["ddpm_20", "ddim_7", "dpmpp_4", "dpmpp_6"]
    assert (plan.seeds, plan.profile.num_samples, plan.profile.image_size) == ((3,), 8, 32)
    d = plan.to_dict()
    assert d["beta_schedule"] == "cosine" and d["method_keys"][0] == "ddpm_20"


@pytest.mark.parametrize("kwargs,match", [
    (dict(profile="tiny"), "valid choices: smoke, quick, full"),
    (dict(beta_schedule="quadratic"), "valid choices: linear, cosine"),
    (dict(image_size=0), "image_size must be a positive whole number"),
    (dict(image_size=15), "multiple of 2"),
    (dict(train_steps=-5), "train_steps must be a positive whole number"),
    (dict(num_samples=1), "at least 4"),
    (dict(num_samples=3), "at least 4 \\(precision and recall"),
    (dict(sampler_steps=[]), "non-empty list"),
    (dict(sampler_steps=[10, 10]), "distinct"),
    (dict(sampler_steps=[0]), "positive whole number"),
    (dict(dpm_steps="ten"), "dpm_steps must be a list of positive whole numbers"),
    (dict(ddpm_steps=1001), "at most T=1000"),
    (dict(seeds=[]), "non-empty list of distinct non-negative integers"),
    (dict(seeds=[-1]), "non-negative integers"),
    (dict(seeds=[1, 1]), "distinct"),
])
def test_plan_bad_inputs(kwargs, match, cache):
    with pytest.raises(ValueError, match=match):
        study.make_plan(**{"profile": "smoke", **kwargs})
    assert cache_files(cache) == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from dipddpm_lib.cache import Cache

    cache = Cache(tmp_path_factory.mktemp("cache"))
    x_train, y_train = load_digits(16, "train")
    x_test, y_test = load_digits(16, "test")
    p = get_profile("smoke", train_steps=10)
    model = train_ddpm(x_train, p, cache=cache, progress=False)
    clf = train_classifier(x_train, y_train, x_test, y_test, steps=10, cache=cache,
                           progress=False)
    # score against a slice of the train split and test split: the checks need no more
    return model, clf, x_train[:200], x_test[:100], p, cache


METHODS = [Method("ddpm", 3), Method("ddim", 2), Method("dpm-solver++", 2)]


@pytest.fixture(scope="module")
def swept(trained):
    model, clf, x_train, _, p, cache = trained
    return study.sweep(model, METHODS, (0, 1), 8, x_train, clf, cache=cache, progress=False)


def test_sweep_rows_and_cached_sample_sets(trained, swept):
    model, clf, x_train, _, p, cache = trained
    assert [(r["method"], r["seed"]) for r in swept.rows] == [
        (m.key, s) for m in METHODS for s in (0, 1)]
    for r in swept.rows:
        assert r["nfe"] == r["num_steps"] and r["flops"] > 0 and r["wall_s"] > 0
        assert np.isfinite([r[k] for k in study.SCORES]).all()
        assert all(0 <= r[k] <= 1 for k in ("precision", "recall", "confident_fraction",
                                             "class_entropy"))
        assert r["features"] == clf.name
    assert swept.images("ddim_2").shape == (16, 1, 16, 16)
    assert not torch.equal(swept.samples["ddim_2"][0], swept.samples["ddim_2"][1])
    entries = len(cache_files(cache))
    again = study.sweep(model, METHODS[1:2], (0,), 8, x_train, clf, cache=cache,
                             progress=False)
    assert len(cache_files(cache)) == entries  # the sample set came from the cache
    assert again.rows[0]["wall_s"] == swept.rows[2]["wall_s"]
    assert torch.equal(again.samples["ddim_2"][0], swept.samples["ddim_2"][0])


def test_summary_spreads_and_fixed_compute(swept):
    summary = study.summarize(swept.rows)
    assert list(summary) == [m.key for m in METHODS]
    s = summary["ddpm_3"]
    assert s["fid"]["n"] == 2 and len(s["per_seed"]) == 2 and s["nfe"] == 3
    assert s["gflops_per_image"] == pytest.approx(s["gflops"] / 8)
    assert summary["ddim_2"]["gflops"] == pytest.approx(s["gflops"] * 2 / 3)
    assert s["fid"]["mean"] == pytest.approx(np.mean([r["fid"] for r in s["per_seed"]]))
    assert all(s[k]["n"] == 2 and "ci95" in s[k] for k in study.SCORES)


@pytest.mark.parametrize("kwargs,match", [
    (dict(methods=[]), "non-empty list of Method"),
    (dict(methods=["ddim_10"]), "non-empty list of Method"),
    (dict(methods=[Method("ddim", 2), Method("ddim", 2)]), "repeat"),
    (dict(methods=[Method("ddim", 1001)]), "at most T=1000"),
    (dict(seeds=[]), "non-empty list"),
    (dict(num_samples=0), "positive whole number"),
    (dict(num_samples=1), "at least 4"),
    (dict(batch_size=-1), "positive whole number"),
])
def test_sweep_bad_inputs_write_nothing(trained, tmp_path, kwargs, match):
    from dipddpm_lib.cache import Cache

    model, clf, x_train, *_ = trained
    cache = Cache(tmp_path / "empty")
    args = dict(methods=METHODS, seeds=(0,), num_samples=4, batch_size=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        study.sweep(model, args["methods"], args["seeds"], args["num_samples"], x_train, clf,
                         batch_size=args["batch_size"], cache=cache, progress=False)
    assert cache_files(cache) == []


def test_real_reference_uses_same_size_subsets(trained):
    _, clf, x_train, x_test, *_ = trained
    ref = study.real_reference(x_test, x_train, clf, (0, 1), 8)
    again = study.real_reference(x_test, x_train, clf, (0,), 8)
    assert ref["num_samples"] == 8 and [r["num_samples"] for r in ref["per_seed"]] == [8, 8]
    assert ref["per_seed"][0] == again["per_seed"][0]  # same seed, same subset, same KID
    assert ref["per_seed"][0]["fid"] != ref["per_seed"][1]["fid"]
    assert ref["full_test"]["num_samples"] == len(x_test) and ref["fid"]["n"] == 2
    capped = study.real_reference(x_test[:5], x_train, clf, (0,), 8)
    assert capped["num_samples"] == 5
    with pytest.raises(ValueError, match="positive whole number"):
        study.real_reference(x_test, x_train, clf, (0,), 0)


def test_training_compute_scales_with_steps(trained):
    model, *_ = trained
    one = study.training_compute(model, get_profile("smoke", train_steps=10))
    two = study.training_compute(model, get_profile("smoke", train_steps=20))
    assert one["flops"] > 0 and two["flops"] == pytest.approx(2 * one["flops"])
    assert one["n_params"] == sum(p.numel() for p in model.unet.parameters())
    assert all(p.grad is None for p in model.unet.parameters())


def test_control_sets_are_the_seeds_subset_spoilt():
    x_test, _ = load_digits(16, "test")
    sets = metrics.control_sets(x_test, 32, seed=1)
    assert list(sets) == list(metrics.CONTROLS)
    assert all(x.shape == (32, 1, 16, 16) for x in sets.values())
    assert (sets["black"] == 0).all() and (sets["white"] == 1).all()
    assert 0 <= sets["noise"].min() and sets["noise"].max() <= 1 and sets["noise"].std() > 0.2
    idx = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(1))[:32]
    real = x_test[idx]  # the same subset real_reference scores for this seed
    assert torch.equal(sets["repeated"], real[:1].expand(32, -1, -1, -1))
    assert torch.allclose(sets["blurred"], torch.nn.functional.avg_pool2d(real, 5, 1, 2))
    again = metrics.control_sets(x_test, 32, seed=1)
    assert all(torch.equal(again[k], sets[k]) for k in sets)
    assert not torch.equal(metrics.control_sets(x_test, 32, seed=2)["noise"], sets["noise"])
    assert len(metrics.control_sets(x_test[:10], 32, seed=0)["black"]) == 10
    assert [metrics.blur_kernel(s) for s in (8, 12, 16, 32, 64)] == [3, 5, 5, 9, 17]
    assert study.control_labels(16)["blurred"] == "blurred test images (5×5 box)"
    with pytest.raises(ValueError, match="positive whole number"):
        metrics.control_sets(x_test, 0, seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        metrics.control_sets(x_test, 8, seed=-1)


def test_controls_are_scored_like_a_sample_set(trained):
    _, clf, x_train, x_test, *_ = trained
    ctl = study.controls(x_test, x_train, clf, (0, 1), 8)
    assert list(ctl) == list(metrics.CONTROLS)
    for c in ctl.values():
        assert c["num_samples"] == 8 and [r["seed"] for r in c["per_seed"]] == [0, 1]
        assert all(c[k]["n"] == 2 and np.isfinite(c[k]["mean"]) for k in study.SCORES)
    assert ctl["black"]["per_seed"][0]["fid"] == ctl["black"]["per_seed"][1]["fid"]
    assert ctl["repeated"]["recall"]["max"] <= 1 / len(x_train) + 1e-12


def _values(per_seed, key):
    return [r[key] for r in per_seed]


def _entry(fid, precision, recall, conf=0.9, entropy=0.95, **extra):
    """A summary entry over seeds 0, 1, 2 built from per-seed values, as summarize makes it."""
    per_seed = [{"seed": s, "fid": f, "kid": f / 1e3, "precision": p, "recall": r,
                 "confident_fraction": conf, "class_entropy": entropy}
                for s, (f, p, r) in enumerate(zip(fid, precision, recall))]
    return {"per_seed": per_seed, "num_samples": 128,
            **{k: spread(_values(per_seed, k)) for k in study.SCORES}, **extra}


def _method(label, sampler, steps, fid, precision, recall, wall):
    return _entry(fid, precision, recall, label=label, sampler=sampler, num_steps=steps,
                  nfe=steps, gflops=steps * 0.5, wall_s=spread([wall] * 3))


@pytest.fixture
def toy_results():
    methods = {
        "ddpm_1000": _method("DDPM, 1000 steps", "ddpm", 1000, [6.0, 6.2, 5.8], [0.80, 0.82, 0.78],
                             [0.70, 0.72, 0.68], 100.0),
        # FID higher by 3.0, 3.1, 3.0 on every seed: resolved, worse
        "ddim_10": _method("DDIM, 10 steps", "ddim", 10, [9.0, 9.3, 8.8], [0.80, 0.82, 0.78],
                           [0.70, 0.72, 0.68], 1.0),
        # FID +0.5, −0.3, +0.5: not resolved
        "ddim_50": _method("DDIM, 50 steps", "ddim", 50, [6.5, 5.9, 6.3], [0.80, 0.82, 0.78],
                           [0.70, 0.72, 0.68], 5.0),
        # FID lower by 1.0, 1.0, 0.9 and recall lower by 0.1 on every seed: mixed
        "dpmpp_10": _method("DPM-Solver++, 10 steps", "dpm-solver++", 10, [5.0, 5.2, 4.9],
                            [0.80, 0.82, 0.78], [0.60, 0.62, 0.58], 1.2),
    }
    reference = _entry([3.0, 3.2, 2.8], [0.9, 0.92, 0.88], [0.88, 0.9, 0.86], conf=0.97,
                       label="real test images (128 per seed)", num_samples=128,
                       full_test={"num_samples": 359, "fid": 0.5, "kid": 0.0001,
                                  "precision": 0.95, "recall": 0.9,
                                  "confident_fraction": 0.97, "class_entropy": 0.99})
    controls = {
        "black": _entry([260.0] * 3, [0.0] * 3, [0.0] * 3, conf=1.0, entropy=0.0,
                        label="constant black", num_samples=128),
        "repeated": _entry([250.0] * 3, [1.0] * 3, [0.0] * 3, conf=1.0, entropy=0.0,
                           label="one test image repeated", num_samples=128),
        "blurred": _entry([60.0, 61.0, 59.0], [0.1, 0.12, 0.08], [0.05, 0.04, 0.06], conf=0.35,
                          label="blurred test images (5×5 box)", num_samples=128),
    }
    return methods, reference, controls


def test_quality_bar_thresholds_and_controls(toy_results):
    methods, reference, controls = toy_results
    bar = study.quality_bar(methods, reference, controls)
    assert bar["fid_ratio"] == pytest.approx(2.0) and bar["passed"]
    assert (bar["precision"], bar["recall"]) == pytest.approx((0.80, 0.70))
    assert (bar["min_precision"], bar["min_recall"], bar["max_fid_ratio"]) == (0.5, 0.5, 3.0)
    assert "confident_ok" not in bar and bar["confident_fraction"] == pytest.approx(0.9)
    assert bar["reference_min_pr"] == pytest.approx(0.88)
    assert bar["worst_control"] == "blurred" and bar["worst_control_min_pr"] == pytest.approx(0.05)
    assert bar["control_margin"] == pytest.approx(0.83)
    assert bar["controls_fail_reference_passes"] and bar["reference"]["passes"]
    assert not any(c["passes"] for c in bar["controls"].values())
    assert not study.quality_bar(methods, reference, min_precision=0.9)["passed"]
    assert not study.quality_bar(methods, reference, min_recall=0.75)["passed"]
    assert not study.quality_bar(methods, reference, max_fid_ratio=1.5)["passed"]
    assert "control_margin" not in study.quality_bar(methods, reference)
    # a control that meets the bar, or a reference that does not, is flagged
    controls["blurred"] = reference
    assert not study.quality_bar(methods, reference, controls)["controls_fail_reference_passes"]
    assert study.closest_to(methods) == "ddim_50"


def test_paired_comparisons_call_only_resolved_differences(toy_results):
    methods, *_ = toy_results
    comps = study.paired_comparisons(methods)
    assert list(comps) == ["ddim_10", "ddim_50", "dpmpp_10"]
    assert comps["ddim_10"]["verdict"] == "worse" and comps["ddim_10"]["worse_on"] == ["fid"]
    assert comps["ddim_10"]["fid"]["mean"] == pytest.approx(3.0 + 0.1 / 3)
    assert comps["ddim_50"]["verdict"] == "not resolved" and not comps["ddim_50"]["fid"]["resolved"]
    assert comps["dpmpp_10"]["verdict"] == "mixed"
    assert (comps["dpmpp_10"]["better_on"], comps["dpmpp_10"]["worse_on"]) == (["fid"], ["recall"])


def test_results_and_comparison_tables_read_the_numbers(toy_results):
    methods, reference, controls = toy_results
    table = study.results_table(methods, reference, controls)
    lines = table.splitlines()
    assert len(lines) == 2 + len(methods) + 2 + len(controls)
    assert "| set | kind | NFE | GFLOPs / set | wall s / set | FID | KID ×10³ (feature units²) |" \
        in lines[0]
    assert ("| DDIM, 10 steps | sampler | 10 | 5.0 | 1.0 ± 0.0 | 9.03 ± 0.63 | 9.03 ± 0.63 | "
            "0.800 ± 0.050 | 0.700 ± 0.050 | 0.900 ± 0.000 | 0.950 ± 0.000 |") in table
    assert ("| real test images (all 359, for information) | real images | – | – | – | 0.50 | "
            "0.10 | 0.950 |") in table
    assert "| control: constant black | control | – | – | – | 260.00 ± 0.00 |" in table
    assert "| control: one test image repeated | near-copy of test images |" in table
    assert len(study.results_table(methods, reference).splitlines()) == 2 + len(methods) + 2
    comps = study.paired_comparisons(methods)
    table = study.comparison_table(comps, methods["ddpm_1000"]["label"])
    assert "| method | ΔFID vs DDPM, 1000 steps | Δprecision | Δrecall | verdict |" in table
    assert "| DDIM, 10 steps | +3.03 ± 0.14 | +0.000 ± 0.000 | +0.000 ± 0.000 | worse | – | FID |" \
        in table
    assert "| DDIM, 50 steps | +0.23 ± 1.15 | +0.000 ± 0.000 | +0.000 ± 0.000 | not resolved |" \
        in table
    assert "| mixed | FID | recall |" in table


def test_failed_closest_and_steps_effect(toy_results):
    methods, reference, _ = toy_results
    assert study.failed(methods, reference) == []
    methods["dpmpp_10"] = _method("DPM-Solver++, 10 steps", "dpm-solver++", 10,
                                  [40.0, 41.0, 39.0], [0.8] * 3, [0.7] * 3, 1.2)  # > 10 × 3.0
    assert study.failed(methods, reference) == ["dpmpp_10"]
    assert study.failed(methods, reference, fail_ratio=20) == []
    e = study.steps_effect(methods, "ddim")
    assert (e["fewest"], e["most"], e["steps"]) == ("ddim_10", "ddim_50", [10, 50])
    assert e["fid"]["mean"] == pytest.approx(-2.8) and e["fid"]["resolved"]
    assert e["fid"]["ci95"] == pytest.approx(1.29, abs=0.005)
    with pytest.raises(ValueError, match="fewer than two step counts"):
        study.steps_effect(methods, "dpm-solver++")


def test_paired_with_one_seed_resolves_nothing(toy_results):
    methods, reference, _ = toy_results
    for m in methods.values():
        m["per_seed"] = m["per_seed"][:1]
    comps = study.paired_comparisons(methods)
    assert all(c["verdict"] == "not resolved" for c in comps.values())


def test_scheduler_settings_are_json_safe():
    import json

    settings = scheduler_settings("cosine", [m.sampler for m in study.baseline_methods([10], [10])])
    assert list(settings) == ["ddpm", "ddim", "dpm-solver++"]
    assert settings["ddim"]["class"] == "DDIMScheduler" and settings["ddim"]["clip_sample"] is True
    assert settings["dpm-solver++"]["algorithm_type"] == "dpmsolver++"
    json.dumps(settings, allow_nan=False)


def test_ordered_restores_reading_order_after_json(toy_results):
    import json

    methods, *_ = toy_results
    shuffled = json.loads(json.dumps(methods, sort_keys=True))
    assert list(shuffled) != list(methods)
    assert list(study.ordered(shuffled)) == ["ddpm_1000", "ddim_10", "ddim_50", "dpmpp_10"]
    _, reference, controls = toy_results
    controls["white"] = {**controls["black"], "label": "constant white"}
    table = study.results_table(shuffled, reference,
                                      json.loads(json.dumps(controls, sort_keys=True)))
    rows = [line.split(" | ")[0] for line in table.splitlines() if "control:" in line]
    assert rows == ["| control: constant black", "| control: constant white",
                    "| control: blurred test images (5×5 box)",
                    "| control: one test image repeated"]  # CONTROLS order, not alphabetical


def test_figures(trained, swept, toy_results):
    import matplotlib.pyplot as plt

    model = trained[0]
    methods, reference, _ = toy_results
    fig = figures.plot_quality_vs_compute(methods, reference)
    assert len(fig.axes) == 15
    kid = fig.axes[3]  # KID row, first column: drawn × 10³, with the 95 % interval as error bar
    assert kid.get_ylabel().startswith("KID ×10³")
    assert kid.lines[0].get_ydata()[0] == pytest.approx(methods["ddpm_1000"]["kid"]["mean"] * 1e3)
    # FID spans orders of magnitude (a poor sampler against the real images): log axis; KID,
    # which can be negative, stays linear
    assert fig.axes[0].get_yscale() == "log" and kid.get_yscale() == "linear"
    fig2 = figures.plot_sample_grids(swept, METHODS, seed=0, n=4)
    assert len(fig2.axes) == len(METHODS)
    fig3 = figures.plot_training_loss(model.loss_history, window=4)
    assert len(fig3.axes[0].lines) == 2
    plt.close("all")


def test_test_subset_and_one_scorer_per_reference(trained):
    _, clf, x_train, x_test, *_ = trained
    sub = metrics.test_subset(x_test, 8, seed=3)
    idx = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(3))[:8]
    assert torch.equal(sub, x_test[idx]) and len(metrics.test_subset(x_test[:5], 8, 0)) == 5
    with pytest.raises(ValueError, match="non-negative"):
        metrics.test_subset(x_test, 8, seed=-1)
    one = metrics.scorer_for(x_train, clf)
    assert metrics.scorer_for(x_train.clone(), clf) is one  # same values: the same scorer
    assert metrics.scorer_for(x_train[:100], clf) is not one
