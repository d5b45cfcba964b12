"""Sampler sweeps (dipddpm_lib.generation): plans, per-seed rows, summaries, text and figures."""
import matplotlib
import numpy as np
import pytest
import torch

from conftest import cache_files
from dipddpm_lib import generation, get_profile
from dipddpm_lib.data import load_digits
from dipddpm_lib.ddpm import train_ddpm
from dipddpm_lib.generation import Method
from dipddpm_lib.metrics import train_classifier

matplotlib.use("Agg")


def test_method_keys_and_labels():
    assert Method("ddpm", 1000).key == "ddpm_1000" and Method("ddpm", 1000).label == "DDPM-1000"
    assert Method("dpm-solver++", 20).key == "dpmpp_20"
    assert Method("dpm-solver++", 20).label == "DPM-Solver++-20"
    assert [m.key for m in generation.baseline_methods((10, 20), 10)] == \
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
    plan = generation.make_plan("smoke")
    assert plan.seeds == smoke.seeds and plan.beta_schedule == "linear"
    assert [m.key for m in plan.methods] == (
        [f"ddpm_{smoke.ddpm_sample_steps}"] + [f"ddim_{k}" for k in smoke.sampler_steps]
        + [f"dpmpp_{k}" for k in smoke.dpm_steps])
    assert plan.baseline == f"ddpm_{smoke.ddpm_sample_steps}"
    assert get_profile("quick").ddpm_sample_steps == 1000
    plan = generation.make_plan("smoke", seeds=[3], beta_schedule="cosine", num_samples=8,
                                sampler_steps=7, dpm_steps=[4, 6], ddpm_steps=20, image_size=32)
    assert [m.key for m in plan.methods] == ["ddpm_20", "ddim_7", "dpmpp_4", "dpmpp_6"]
    assert (plan.seeds, plan.profile.num_samples, plan.profile.image_size) == ((3,), 8, 32)
    d = plan.to_dict()
    assert d["beta_schedule"] == "cosine" and d["method_keys"][0] == "ddpm_20"
    assert "cosine" in generation.settings_text(plan)


@pytest.mark.parametrize("kwargs,match", [
    (dict(profile="tiny"), "valid choices: smoke, quick, full"),
    (dict(beta_schedule="quadratic"), "valid choices: linear, cosine"),
    (dict(image_size=0), "image_size must be a positive whole number"),
    (dict(image_size=15), "multiple of 2"),
    (dict(train_steps=-5), "train_steps must be a positive whole number"),
    (dict(num_samples=1), "at least 2"),
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
        generation.make_plan(**{"profile": "smoke", **kwargs})
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
    return generation.sweep(model, METHODS, (0, 1), 8, x_train, clf, cache=cache, progress=False)


def test_sweep_rows_and_cached_sample_sets(trained, swept):
    model, clf, x_train, _, p, cache = trained
    assert [(r["method"], r["seed"]) for r in swept.rows] == [
        (m.key, s) for m in METHODS for s in (0, 1)]
    for r in swept.rows:
        assert r["nfe"] == r["num_steps"] and r["flops"] > 0 and r["wall_s"] > 0
        assert np.isfinite([r["fid"], r["kid"], r["confident_fraction"]]).all()
        assert r["features"] == clf.name
    assert swept.images("ddim_2").shape == (16, 1, 16, 16)
    assert not torch.equal(swept.samples["ddim_2"][0], swept.samples["ddim_2"][1])
    entries = len(cache_files(cache))
    again = generation.sweep(model, METHODS[1:2], (0,), 8, x_train, clf, cache=cache,
                             progress=False)
    assert len(cache_files(cache)) == entries  # the sample set came from the cache
    assert again.rows[0]["wall_s"] == swept.rows[2]["wall_s"]
    assert torch.equal(again.samples["ddim_2"][0], swept.samples["ddim_2"][0])


def test_summary_spreads_and_fixed_compute(swept):
    summary = generation.summarize(swept.rows)
    assert list(summary) == [m.key for m in METHODS]
    s = summary["ddpm_3"]
    assert s["fid"]["n"] == 2 and len(s["per_seed"]) == 2 and s["nfe"] == 3
    assert s["gflops_per_image"] == pytest.approx(s["gflops"] / 8)
    assert summary["ddim_2"]["gflops"] == pytest.approx(s["gflops"] * 2 / 3)
    assert s["fid"]["mean"] == pytest.approx(np.mean([r["fid"] for r in s["per_seed"]]))


@pytest.mark.parametrize("kwargs,match", [
    (dict(methods=[]), "non-empty list of Method"),
    (dict(methods=["ddim_10"]), "non-empty list of Method"),
    (dict(methods=[Method("ddim", 2), Method("ddim", 2)]), "repeat"),
    (dict(methods=[Method("ddim", 1001)]), "at most T=1000"),
    (dict(seeds=[]), "non-empty list"),
    (dict(num_samples=0), "positive whole number"),
    (dict(num_samples=1), "at least 2"),
    (dict(batch_size=-1), "positive whole number"),
])
def test_sweep_bad_inputs_write_nothing(trained, tmp_path, kwargs, match):
    from dipddpm_lib.cache import Cache

    model, clf, x_train, *_ = trained
    cache = Cache(tmp_path / "empty")
    args = dict(methods=METHODS, seeds=(0,), num_samples=4, batch_size=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generation.sweep(model, args["methods"], args["seeds"], args["num_samples"], x_train, clf,
                         batch_size=args["batch_size"], cache=cache, progress=False)
    assert cache_files(cache) == []


def test_real_reference_uses_same_size_subsets(trained):
    _, clf, x_train, x_test, *_ = trained
    ref = generation.real_reference(x_test, x_train, clf, (0, 1), 8)
    again = generation.real_reference(x_test, x_train, clf, (0,), 8)
    assert ref["num_samples"] == 8 and [r["num_samples"] for r in ref["per_seed"]] == [8, 8]
    assert ref["per_seed"][0] == again["per_seed"][0]  # same seed, same subset, same KID
    assert ref["per_seed"][0]["fid"] != ref["per_seed"][1]["fid"]
    assert ref["full_test"]["num_samples"] == len(x_test) and ref["fid"]["n"] == 2
    capped = generation.real_reference(x_test[:5], x_train, clf, (0,), 8)
    assert capped["num_samples"] == 5
    with pytest.raises(ValueError, match="positive whole number"):
        generation.real_reference(x_test, x_train, clf, (0,), 0)


def test_training_compute_scales_with_steps(trained):
    model, *_ = trained
    one = generation.training_compute(model, get_profile("smoke", train_steps=10))
    two = generation.training_compute(model, get_profile("smoke", train_steps=20))
    assert one["flops"] > 0 and two["flops"] == pytest.approx(2 * one["flops"])
    assert one["n_params"] == sum(p.numel() for p in model.unet.parameters())
    assert all(p.grad is None for p in model.unet.parameters())


def _spread(mean, std=0.1):
    return {"mean": mean, "std": std, "median": mean, "min": mean, "max": mean, "n": 3}


def _method(label, sampler, steps, fid, conf, wall):
    return {"label": label, "sampler": sampler, "num_steps": steps, "nfe": steps,
            "gflops": steps * 0.5, "fid": _spread(fid), "kid": _spread(fid / 1e3),
            "confident_fraction": _spread(conf, 0.01), "wall_s": _spread(wall)}


@pytest.fixture
def toy_results():
    methods = {"ddpm_1000": _method("DDPM-1000", "ddpm", 1000, 6.0, 0.8, 100.0),
               "ddim_10": _method("DDIM-10", "ddim", 10, 9.0, 0.7, 1.0),
               "ddim_50": _method("DDIM-50", "ddim", 50, 6.5, 0.78, 5.0),
               "dpmpp_10": _method("DPM-Solver++-10", "dpm-solver++", 10, 12.0, 0.6, 1.2)}
    reference = {"label": "real test images (64 per seed)", "fid": _spread(3.0),
                 "kid": _spread(0.001), "confident_fraction": _spread(0.97, 0.01),
                 "full_test": {"num_samples": 359, "fid": 0.5, "kid": 0.0001,
                               "confident_fraction": 0.97}}
    return methods, reference


def test_quality_bar_thresholds(toy_results):
    methods, reference = toy_results
    bar = generation.quality_bar(methods, reference)
    assert bar["fid_ratio"] == pytest.approx(2.0) and bar["passed"]
    assert not generation.quality_bar(methods, reference, min_confident=0.9)["passed"]
    assert not generation.quality_bar(methods, reference, max_fid_ratio=1.5)["passed"]
    assert generation.closest_to(methods) == "ddim_50"


def test_findings_and_table_read_the_numbers(toy_results):
    methods, reference = toy_results
    bar = generation.quality_bar(methods, reference)
    text = generation.findings({"methods": methods, "reference_real_test": reference,
                                "quality_bar": bar})
    assert "**met**" in text and "ratio of 2.00" in text
    assert "DDIM-50, FID 6.50 ± 0.10 (+0.50, outside the seed spread of 0.14)" in text
    assert "at 5.0% of its NFE and FLOPs and 5.0% of its wall time" in text
    assert "Highest FID:** DPM-Solver++-10" in text
    assert ("DDIM at 10, 50 steps:** mean FID from 6.50 (50 steps) to 9.00 (10 steps), a range "
            "of 2.50, larger than the typical seed spread of 0.10.") in text
    table = generation.results_table(methods, reference)
    assert len(table.splitlines()) == 2 + len(methods) + 2
    assert "| DDIM-10 | 10 | 5.0 | 1.0 ± 0.1 | 9.00 ± 0.10 |" in table
    assert "real test images (all 359, for information)" in table


def test_findings_name_failed_samplers(toy_results):
    methods, reference = toy_results
    methods["dpmpp_10"]["fid"] = _spread(40.0)  # > 10 × the reference's 3.0
    bar = generation.quality_bar(methods, reference)
    text = generation.findings({"methods": methods, "reference_real_test": reference,
                                "quality_bar": bar})
    assert "**Failed:** DPM-Solver++-10: mean FID above 10× the real-image reference" in text
    assert "**Failed:**" not in generation.findings(
        {"methods": methods, "reference_real_test": reference, "quality_bar": bar},
        fail_ratio=20)


def test_scheduler_settings_are_json_safe():
    import json

    settings = generation.scheduler_settings("cosine", generation.baseline_methods([10], [10]))
    assert list(settings) == ["ddpm", "ddim", "dpm-solver++"]
    assert settings["ddim"]["class"] == "DDIMScheduler" and settings["ddim"]["clip_sample"] is True
    assert settings["dpm-solver++"]["algorithm_type"] == "dpmsolver++"
    json.dumps(settings, allow_nan=False)
    assert "`DPMSolverMultistepScheduler` (algorithm_type=dpmsolver++" in \
        generation.scheduler_text(settings)


def test_ordered_restores_reading_order_after_json(toy_results):
    import json

    methods, _ = toy_results
    shuffled = json.loads(json.dumps(methods, sort_keys=True))
    assert list(shuffled) != list(methods)
    assert list(generation.ordered(shuffled)) == ["ddpm_1000", "ddim_10", "ddim_50", "dpmpp_10"]


def test_figures(trained, swept, toy_results):
    import matplotlib.pyplot as plt

    model = trained[0]
    fig = generation.plot_quality_vs_compute(*toy_results)
    assert len(fig.axes) == 9
    fig2 = generation.plot_sample_grids(swept, METHODS, seed=0, n=4)
    assert len(fig2.axes) == len(METHODS)
    fig3 = generation.plot_training_loss(model.loss_history, window=4)
    assert len(fig3.axes[0].lines) == 2
    plt.close("all")
