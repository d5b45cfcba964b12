"""Chapter 04's library: every stopping criterion over a synthetic history, the progressive
targets, the online recorders against the offline rules, caching and bad inputs."""
import dataclasses

import numpy as np
import pytest
import torch

from conftest import cache_files
from dipddpm_lib import dip
from dipddpm_lib.experiments import early_stopping as es
from dipddpm_lib.experiments import early_stopping_results as esr
from dipddpm_lib.experiments import es_authors_regime as authors
from dipddpm_lib.methods import guided_dip as gd
from dipddpm_lib import stopping
from dipddpm_lib.data import load_photo
from test_stopping import online_statistic


@pytest.fixture
def setup(smoke):
    return es.StoppingSetup.from_profile(smoke, seeds=(0,))


# --------------------------------------------------------------------------- criteria
def test_oracle_stops_at_the_known_peak():
    it = np.arange(1, 801)
    psnr = 30 - ((it - 317) / 100.0) ** 2
    assert stopping.oracle_stop(psnr) == stopping.Stop(317, 317, True)


def test_fixed_stop_is_the_count_or_the_history_end():
    assert stopping.fixed_stop(800, 600) == stopping.Stop(600, 600, True)
    assert stopping.fixed_stop(400, 600) == stopping.Stop(400, 400, False)


def test_discrepancy_stops_at_the_first_fit_error_below_sigma_squared():
    sigma = 25.0
    residual = (sigma / 255) ** 2 * np.linspace(3.0, 0.5, 501)  # crosses 1.0 at index 400
    s = stopping.discrepancy_stop(residual, sigma)
    assert s == stopping.Stop(401, 401, True)
    assert residual[s.iteration - 1] <= (sigma / 255) ** 2 < residual[s.iteration - 2]
    never = stopping.discrepancy_stop(residual[:100], sigma)
    assert never == stopping.Stop(100, 100, False)


def test_es_wmv_on_a_constant_sequence_stops_after_its_patience():
    window, patience = 20, 200
    variance = np.r_[np.full(window - 1, np.nan), np.full(600, 0.3)]
    s = stopping.last_minimum_stop(variance, patience)
    assert s == stopping.Stop(window, window + patience, True)  # minimum at the first full window


def test_es_wmv_returns_the_minimum_once_patience_runs_out():
    it = np.arange(1, 1001)
    variance = 1.0 + ((it - 250) / 100.0) ** 2  # U shape, minimum at iteration 250
    assert stopping.last_minimum_stop(variance, 100) == stopping.Stop(250, 350, True)
    assert stopping.last_minimum_stop(variance[:300], 100) == stopping.Stop(250, 300, False)  # not yet decided
    falling = np.linspace(2, 1, 300)
    assert stopping.last_minimum_stop(falling, 50) == stopping.Stop(300, 300, False)


def test_moving_variance_matches_the_definition():
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(30, 3, 8, 8, generator=gen)
    window = 5
    online = online_statistic(stopping.MovingVariance(window), frames)
    assert np.isnan(online[:window - 1]).all()
    for t in range(window - 1, 30):
        direct = frames[t - window + 1:t + 1].double()
        expect = ((direct - direct.mean(0)) ** 2).mean().item()
        assert online[t] == pytest.approx(expect, rel=1e-9)
    assert np.allclose(online_statistic(stopping.MovingVariance(3), torch.ones(10, 1, 4, 4))[2:], 0.0)


def _stage_history(stop_stage: int, stages: int = 10, sigma: float = 25.0):
    """Fit errors whose drop halves every stage and absorbed shares that jump past it at
    ``stop_stage`` (0-based); the last stage has no injected noise."""
    s2 = (sigma / 255) ** 2
    drops = s2 * 2.0 ** -np.arange(1, stages)  # drop into stage k = 1..stages-1
    residual = s2 * 4 - np.r_[0, np.cumsum(drops)]
    absorbed = np.full(stages, np.nan)
    absorbed[:-1] = 0.5 * drops[0] / s2 * 0.01  # far below the drops ...
    absorbed[stop_stage] = drops[stop_stage - 1] / s2  # ... until here: twice the drop
    absorbed[stop_stage + 1:-1] = 1.0
    return residual, absorbed, sigma


def test_guided_rule_stops_at_the_stage_where_the_fit_stops_beating_its_noise():
    residual, absorbed, sigma = _stage_history(stop_stage=6)
    assert stopping.guided_stop(residual, absorbed, sigma, 50) == stopping.Stop(7 * 50, 350, True)
    assert stopping.guided_stop(residual[:6], absorbed[:6], sigma, 50) == stopping.Stop(300, 300, False)
    quiet = np.where(np.isfinite(absorbed), 0.0, np.nan)  # no noise absorbed: never stops
    assert stopping.guided_stop(residual, quiet, sigma, 50) == stopping.Stop(500, 500, False)


def test_absorbed_fraction_reads_back_the_injected_share():
    gen = torch.Generator().manual_seed(1)
    before = torch.rand(2, 3, 16, 16, generator=gen)
    noise = torch.randn(2, 3, 16, 16, generator=gen)
    std = torch.tensor([0.1, 0.2])
    after = before + torch.tensor([0.3, 0.7]).view(-1, 1, 1, 1) * std.view(-1, 1, 1, 1) * noise
    got = stopping.absorbed_fraction(after, before, noise, std)
    assert got[0] == pytest.approx(0.3 * noise[0].pow(2).mean().item(), rel=1e-5)
    assert got[1] == pytest.approx(0.7 * noise[1].pow(2).mean().item(), rel=1e-5)


# --------------------------------------------------------------------------- progressive targets
@pytest.mark.parametrize("schedule", gd.STAGE_SCHEDULES)
def test_stage_timesteps_run_from_the_start_down_to_the_observation(schedule):
    t = gd.stage_timesteps(8, 120, schedule)
    assert t[0] == 120 and t[-1] == 0 and len(t) == 8
    assert (np.diff(t) <= 0).all()


def test_schedules_differ_where_they_spend_their_stages():
    lin, cos, log = (gd.stage_timesteps(8, 200, s) for s in gd.STAGE_SCHEDULES)
    assert cos[1] > lin[1]  # cosine lingers at high noise
    assert log[-2] < lin[-2]  # log is dense near the observation


def test_stage_noise_follows_the_ddpm_schedule():
    assert gd.extra_noise_std([0])[0] == 0.0
    levels = gd.extra_noise_std(np.arange(1001))
    assert (np.diff(levels) > 0).all()
    t0 = gd.start_timestep(25, 1.0)
    assert levels[t0] >= 25 / 255 > levels[t0 - 1]
    t, std = gd.stage_noise_levels(25, 6, "linear", 1.0)
    assert t[0] == t0 and std[-1] == 0.0 and std[0] == pytest.approx(levels[t0])
    assert gd.start_timestep(25, 1.0, "cosine") != t0  # the beta schedule matters


def test_progressive_targets_end_at_the_observation(photo_pair):
    clean, noisy = photo_pair
    stds = es.guided_schedule(dataclasses.replace(_quick_like(), num_stages=5), [25.0])
    ctl = gd.ProgressiveTargets(noisy, [25.0], stds, stage_iterations=10, seed=0)
    assert torch.equal(ctl.target(41), noisy) and torch.equal(ctl.target(50), noisy)
    first = ctl.target(1) - noisy
    assert first.std().item() == pytest.approx(stds[0, 0], rel=0.1)
    assert ctl.stage_of(10) == 0 and ctl.stage_of(11) == 1 and ctl.stage_of(999) == 4


# --------------------------------------------------------------------------- dip.fit's target hook
def test_fit_target_hook_changes_the_fit_but_not_the_logged_observation(photo_pair):
    noisy = photo_pair[1][..., :16, :16]
    cfg = dip.DIPConfig(scales=2, channels=8, input_depth=8)
    d = dip.Degradation("denoise", noisy)
    dark = dip.fit(d, cfg, 40, progress=False, target=lambda i: torch.zeros_like(noisy))
    plain = dip.fit(d, cfg, 40, progress=False)
    assert dark.output.mean() < 0.5 * plain.output.mean()  # it fitted the zero target
    assert dark.history["psnr_obs"][-1] < plain.history["psnr_obs"][-1] - 5  # logged vs y


# --------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def photo_pair():
    clean = load_photo("astronaut", 32)
    return clean, dip.degrade(clean, "denoise", 25, seed=0).observation


def _quick_like():
    return es.StoppingSetup(("astronaut",), 32, (25.0,), (0,), 20, 0.01, 4, 5, "linear", 1.0,
                            "linear")


def test_online_captures_equal_the_outputs_at_the_offline_stops(smoke, setup):
    clean, noisy, sigmas = es.make_batch(setup, 0)
    cfg = dip.DIPConfig.from_profile(smoke)
    rec = stopping.ReferenceRecorder(noisy, clean, sigmas, setup)
    res = dip.fit(dip.Degradation("denoise", noisy), cfg, setup.budget, callback=rec,
                  snapshot_every=1, progress=False)
    for n in range(len(sigmas)):
        stops = rec.stops_for(n)
        assert stops["fixed"].iteration == setup.fixed_iterations
        for name, stop in stops.items():
            if name not in stopping.RAW:  # EMA snapshots; the raw criteria are checked below
                assert torch.equal(rec.outputs[name][n], res.snapshots[stop.iteration][n]), name
        hist = rec.rows["variance"][:, n]
        full = setup.window - 1
        assert np.isnan(hist[:full]).all() and np.isfinite(hist[full:]).all()


def test_runs_stop_every_image_cache_and_are_not_refit(smoke, setup, cache, monkeypatch):
    ref = es.run_reference(setup, smoke, 0, cache, progress=False)
    guided = es.run_guided(setup, smoke, 0, cache, progress=False)
    n = len(setup.pairs)
    assert ref.history["psnr_clean"].shape == (setup.budget, n)
    plain = stopping.ReferenceRecorder.criteria_for(False, False)
    assert set(ref.stops) == set(plain) and all(len(ref.stops[c]) == n for c in plain)
    cap = setup.num_stages * setup.stage_iterations
    assert all(1 <= s.iteration <= cap and s.iteration % setup.stage_iterations == 0
               for s in guided.stops["guided"])
    assert guided.outputs["guided"].shape == ref.clean.shape and guided.outputs["guided"].abs().sum() > 0
    assert guided.stage_outputs.shape[0] == setup.num_stages
    assert np.isnan(guided.stage_absorbed[-1]).all()
    assert guided.history["ssim_target"].shape == guided.history["psnr_target"].shape
    records = esr.evaluate(setup, es.SeedRuns(ref, guided))
    assert len(records) == n * (len(plain) + 1)
    assert all(r["gap_db"] == 0 for r in records if r["criterion"] == "oracle")
    assert all(r["own_gap_db"] == 0 for r in records if r["criterion"] in stopping.ORACLES)
    assert all(r["own_gap_db"] >= 0 for r in records)
    sens = esr.es_wmv_sensitivity(setup, [ref])
    assert len(sens) == len(setup.wmv_windows) * len(setup.wmv_patiences)
    main = sens[f"W={setup.window},P={setup.patience}"]["gap_db"]
    wmv = [r["gap_db"] for r in records if r["criterion"] == "es_wmv"]
    assert main["mean"] == pytest.approx(np.mean(wmv), abs=1e-3)  # same rule, read from history
    assert all(f"variance_w{w}" in ref.history for w in setup.wmv_windows if w != setup.window)
    best = min(sens.values(), key=lambda v: v["gap_db"]["mean"])
    assert f"{best['gap_db']['mean']:.2f} (worst {best['gap_db']['worst']:.2f})" in esr.sensitivity_table(sens)
    written = cache_files(cache)

    def no_fit(*a, **k):
        raise AssertionError("fit called on a cached run")

    monkeypatch.setattr(dip, "fit", no_fit)
    again = es.run_guided(setup, smoke, 0, cache, progress=False)
    assert again.stops == guided.stops and torch.equal(again.outputs["guided"], guided.outputs["guided"])
    assert es.run_reference(setup, smoke, 0, cache, progress=False).stops == ref.stops
    assert cache_files(cache) == written


def test_summary_and_bar_read_their_numbers_from_the_records(setup):
    records = []
    for j, c in enumerate(stopping.CRITERIA):
        for seed, g in enumerate((0.5, 1.5)):
            gap = 0.0 if c in stopping.ORACLES else g + (0.4 if c == "guided" else 0.1 * j)
            records.append({"photo": "astronaut", "sigma": 25.0, "seed": seed, "criterion": c,
                            "iteration": 100, "iterations_run": 120, "fired": True,
                            "psnr": 30 - gap, "ssim": 0.9, "gap_db": gap, "own_gap_db": gap / 2,
                            "compute_saved": 0.85, "gflops": 1.0})
    summary = esr.summarize(records, dataclasses.replace(setup, sigmas=(25.0,)))
    assert summary["guided"]["gap_db"]["mean"] == pytest.approx(1.4)
    assert summary["guided"]["gap_db"]["worst"] == pytest.approx(1.9)
    assert summary["guided"]["own_gap_db"]["mean"] == pytest.approx(0.7)
    assert summary["sure"]["needs_sigma"] and not summary["es_emv"]["needs_sigma"]
    assert summary["es_emv"]["output"] == "raw" and summary["es_wmv"]["output"] == "EMA"
    bar = esr.quality_bar(summary)
    # guided 1.4; ES-WMV (j = 7) 1.0 + 0.7 = 1.7
    assert not bar["guided_within_max_gap"] and bar["guided_no_worse_than_es_wmv"]
    assert bar["guided_minus_es_wmv_db"] == pytest.approx(-0.3)
    assert bar["bar_sigmas"] == [25.0] and bar["guided_gap_by_bar_sigma_db"] == {"25.0": pytest.approx(1.4)}
    # lowest mean gap of the criteria that do not read the clean image: prior_distance (j = 1)
    assert bar["best_criterion"] == "prior_distance" and not bar["guided_is_best"]
    assert bar["guided_minus_peer_db"]["prior_distance"] == pytest.approx(0.3)
    d = esr.paired_gap_difference(records, "guided", "prior_distance")
    assert d["mean"] == pytest.approx(0.3) and d["n"] == 2
    with pytest.raises(ValueError, match="no runs with both"):
        esr.paired_gap_difference(records, "guided", "nothing")
    table = esr.results_table(summary)
    assert "| guided (ours) | σ | EMA |" in table and "| ES-EMV (authors: raw) | – | raw |" in table
    assert "| oracle (upper bound) | clean image |" in table
    assert "oracle" not in esr.sigma_table(summary, dataclasses.replace(setup, sigmas=(25.0,)))


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("change,match", [
    (dict(stage_schedule="quadratic"), "valid choices: linear, cosine, log"),
    (dict(num_stages=1), "at least 2"),
    (dict(photos=("lena",)), "valid choices: astronaut"),
    (dict(photo_size=48), "multiple of 32"),
    (dict(sigmas=(300.0,)), r"\[0, 255\]"),
    (dict(sigmas=(0.0,)), "> 0"),
    (dict(seeds=(-1,)), "non-negative"),
    (dict(start_ratio=0.0), "positive"),
    (dict(start_ratio=1e6), "beyond the schedule"),
    (dict(paper_scale=0.0), "paper_scale"),
    (dict(stage_iterations=0), "positive whole number"),
    (dict(beta_schedule="sigmoid"), "valid choices: linear, cosine"),
    (dict(wmv_window_factors=(1.0, -2.0)), "window factors must be positive"),
])
def test_bad_setups_fail_before_any_work(smoke, setup, cache, change, match):
    bad = dataclasses.replace(setup, **change)
    for run in (es.run_reference, es.run_guided, es.run_sure):
        with pytest.raises(ValueError, match=match):
            run(bad, smoke, 0, cache, progress=False)
    assert cache_files(cache) == []


def test_bad_profile_values_fail_when_the_setup_is_read(smoke):
    with pytest.raises(ValueError, match="linear, cosine, log"):
        es.StoppingSetup.from_profile(dataclasses.replace(smoke, es_stage_schedule="cubic"))


@pytest.mark.parametrize("call,match", [
    (lambda: stopping.last_minimum_stop([1.0, 2.0], 0), "positive whole number"),
    (lambda: stopping.MovingVariance(1), "at least 2"),
    (lambda: stopping.discrepancy_stop([0.1], -3), r"\[0, 255\]"),
    (lambda: stopping.oracle_stop([]), "non-empty"),
    (lambda: stopping.guided_stop([1.0, 0.5], [np.nan], 25, 10), "differ in length"),
    (lambda: gd.stage_timesteps(5, 0, "linear"), "positive whole number"),
])
def test_bad_criterion_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- tuned settings
def test_setup_reads_the_tuned_stage_settings_and_says_where_they_came_from(tmp_path, cache):
    from dipddpm_lib import tuned

    doc = {"version": tuned.TUNED_VERSION, "profile": "smoke", "tune_photos": ["rocket", "coins"],
           "settings": {"es_num_stages": {"value": 3, "grid": "es_stages", "metric": "guided_gap_db",
                                          "photos": ["rocket"], "reason": "cheapest"},
                        "dip_channels": {"value": 4, "grid": "dip_width", "metric": "final_psnr",
                                         "photos": ["rocket"], "reason": "best"}},
           "untuned": {"es_stage_schedule": {"grid": "es_schedule", "reason": "point failed"}}}
    path = tuned.write_tuned(doc, tmp_path / "tuned.json")
    prof, setup, settings = es.make_setup("smoke", tuned=str(path), start_ratio=2.0)
    assert setup.num_stages == 3 and prof.dip_channels == 4 and setup.start_ratio == 2.0
    assert setup.stage_schedule == prof.es_stage_schedule == "linear"  # fallback: the profile's
    s = settings["settings"]
    assert s["es_num_stages"]["source"] == "tuned" and s["es_start_ratio"]["source"] == "parameter"
    assert s["es_stage_schedule"]["source"] == "profile (fallback)"
    assert s["es_num_stages"]["photos"] == ["rocket"] and "point failed" in s["es_stage_schedule"]["note"]
    _, plain, rec = es.make_setup("smoke")
    assert plain.num_stages == get_smoke().es_num_stages and rec["tuned_file"] is None
    doc["settings"]["dip_scales"] = {"value": 6}  # valid alone, too deep for 32-px photographs
    with pytest.raises(ValueError, match="not a multiple of 64"):
        es.make_setup("smoke", tuned=str(tuned.write_tuned(doc, tmp_path / "deep.json")))
    assert cache_files(cache) == []


def get_smoke():
    from dipddpm_lib import get_profile

    return get_profile("smoke")


def test_the_results_table_gives_the_95_interval_and_the_worst_gap(setup):
    records = [{"photo": "astronaut", "sigma": 25.0, "seed": s, "criterion": c, "iteration": 5 + s,
                "iterations_run": 10, "fired": True, "psnr": 20.0 + s, "ssim": 0.5, "gap_db": 1.0,
                "own_gap_db": 0.5, "compute_saved": 0.5, "gflops": 1.0}
               for s in (0, 1, 2) for c in stopping.CRITERIA]
    summary = esr.summarize(records, dataclasses.replace(setup, sigmas=(25.0,)))
    table = esr.results_table(summary)
    assert "21.00 ± 2.48" in table  # mean 21, std 1, n 3: t(0.975, 2) · 1 / √3
    gap = summary["guided"]["gap_db"]
    assert gap["n"] == 3 and gap["worst"] == gap["max"] == 1.0 and gap["ci95"] == 0.0


# --------------------------------------------------------------------------- the peers
def test_recorder_with_lookup_and_prior_keeps_each_output_at_its_offline_stop(smoke, setup):
    clean, noisy, sigmas = es.make_batch(setup, 0)
    lookup = stopping.SigmaLookup.fit([15.0, 50.0], [12, 6])
    rec = stopping.ReferenceRecorder(noisy, clean, sigmas, setup, lookup=lookup,
                               prior_x0=clean.clone())
    res = dip.fit(dip.Degradation("denoise", noisy), dip.DIPConfig.from_profile(smoke),
                  setup.budget, callback=rec, snapshot_every=1, progress=False)
    assert set(rec.criteria) == set(stopping.CRITERIA) - {"guided", "sure"}
    for n in range(len(sigmas)):
        stops = rec.stops_for(n)
        assert stops["sigma_lookup"].iteration == lookup.predict(sigmas[n])
        # a perfect denoiser: the distance to x̂0 is the MSE to the clean image, the oracle's
        assert stops["prior_distance"].iteration == stops["oracle"].iteration
        assert stops["es_wmv_raw"] == stops["es_wmv"]
        for name, stop in stops.items():
            if name in stopping.RAW:  # raw output at the stop: its clean PSNR is the raw history's
                got = float(stopping_psnr(rec.outputs[name][n], clean[n]))
                assert got == pytest.approx(rec.rows["psnr_clean_raw"][stop.iteration - 1, n], abs=1e-4)
            else:
                assert torch.equal(rec.outputs[name][n], res.snapshots[stop.iteration][n]), name


def stopping_psnr(a, b):
    from dipddpm_lib.metrics import psnr

    return psnr(a[None], b[None])[0]


def test_prior_distance_to_the_observation_is_the_residual_and_never_fires(smoke, setup):
    clean, noisy, sigmas = es.make_batch(setup, 0)
    rec = stopping.ReferenceRecorder(noisy, clean, sigmas, setup, prior_x0=noisy.clone())
    dip.fit(dip.Degradation("denoise", noisy), dip.DIPConfig.from_profile(smoke), setup.budget,
            callback=rec, progress=False)
    np.testing.assert_allclose(rec.rows["distance"], rec.rows["residual"])


def test_until_fired_ends_the_run_once_the_named_rules_fired(smoke, setup, cache):
    long = dataclasses.replace(setup, fixed_iterations=200)
    ref = es.run_reference(long, smoke, 0, cache, progress=False, until_fired=("es_wmv", "es_emv"))
    steps = len(ref.history["residual"])
    assert steps < long.budget
    assert all(ref.stops[c][n].fired for c in ("es_wmv", "es_emv") for n in range(len(long.pairs)))
    assert max(ref.stops["es_wmv"][n].iterations_run for n in range(len(long.pairs))) <= steps
    with pytest.raises(ValueError, match="does not have"):
        stopping.ReferenceRecorder(*es.make_batch(long, 0), long, until_fired=("sure",))


def test_bad_prior_estimates_are_refused(setup):
    clean, noisy, sigmas = es.make_batch(setup, 0)
    with pytest.raises(ValueError, match="must match the observations"):
        stopping.ReferenceRecorder(noisy, clean, sigmas, setup, prior_x0=clean[:, :1])


def test_sure_run_stops_every_image_and_charges_its_probes(smoke, setup, cache):
    run = es.run_sure(setup, smoke, 0, cache, progress=False, probe_every=2)
    n = len(setup.pairs)
    h = run.history
    assert h["sure"].shape == h["divergence"].shape == (len(h["residual"]), n)
    assert np.isfinite(h["divergence"][::2]).all() and np.isnan(h["divergence"][1::2]).all()
    s2 = (np.array([s for _, s in setup.pairs]) / 255.0) ** 2
    np.testing.assert_allclose(h["sure"][::2], h["residual"][::2] - s2 + 2 * s2 * h["divergence"][::2],
                               rtol=1e-4, atol=1e-6)
    assert all(s.iteration <= len(h["residual"]) for s in run.stops["sure"])
    step = dip.dip_flops_per_iteration(dip.DIPConfig.from_profile(smoke, input_depth=3), 3,
                                       setup.photo_size, setup.photo_size)
    assert run.flops_per_iteration > step  # the probes' forward passes are charged
    seeds = [es.SeedRuns(es.run_reference(setup, smoke, 0, cache, progress=False),
                         es.run_guided(setup, smoke, 0, cache, progress=False), run)]
    records = esr.evaluate(setup, seeds[0])
    assert {r["criterion"] for r in records} >= {"sure", "guided"}
    assert set(esr.run_compute(setup, seeds)) == {"reference", "guided", "sure"}


def test_divergence_probe_needs_the_observation_as_input(smoke, setup):
    clean, noisy, _ = es.make_batch(setup, 0)
    with pytest.raises(ValueError, match="net_input is the observation"):
        dip.fit(dip.Degradation("denoise", noisy), dip.DIPConfig.from_profile(smoke), 2,
                divergence_every=1, progress=False)


def test_the_lookup_is_calibrated_on_the_tune_photos_only(smoke, setup, cache):
    tune = es.tune_setup(setup, smoke)
    assert set(tune.photos) == set(smoke.tune_photos) and not set(tune.photos) & set(setup.photos)
    lookup, ref = es.calibrate_lookup(setup, smoke, cache, progress=False)
    assert [s for s, _ in lookup.calibration] == [s for _, s in tune.pairs]
    assert [p for _, p in lookup.calibration] == [s.iteration for s in ref.stops["oracle"]]


def test_paper_regime_uses_the_authors_window_and_patience(smoke, setup):
    paper = authors.paper_setup(setup, smoke)
    k = smoke.es_paper_regime_scale
    assert paper.window == max(2, round(es.PAPER_WINDOW * k))
    assert paper.patience == max(1, round(es.PAPER_PATIENCE * k))
    assert paper.budget == max(1, round(es.PAPER_ITERATIONS * k)) and paper.seeds == setup.seeds[:1]
    quick = __import__("dipddpm_lib").get_profile("quick")
    qp = authors.paper_setup(es.StoppingSetup.from_profile(quick), quick)
    assert (qp.window, qp.patience, qp.budget) == (100, 1000, 3000) and qp.photo_size == 128
    with pytest.raises(ValueError, match="es_paper_photos"):
        authors.paper_setup(setup, dataclasses.replace(smoke, es_paper_photos=("lena",)))


def test_stops_table_marks_rules_that_never_fired(setup):
    rec = lambda c, fired: {"photo": "astronaut", "sigma": 25.0, "seed": 0, "criterion": c,  # noqa: E731
                            "iteration": 300, "iterations_run": 300, "fired": fired, "psnr": 20.0,
                            "ssim": 0.5, "gap_db": 1.25, "own_gap_db": 0.5}
    table = esr.stops_table([rec("es_wmv_raw", False), rec("oracle", True)])
    assert "| ES-WMV (authors: raw) | 300: 1.25 (0.50), not fired |" in table
    assert "| oracle (upper bound) | 300: 1.25 (0.50) |" in table


def test_the_paper_regime_job_fills_the_cache_chapter_04_reads(smoke, cache, monkeypatch, capsys):
    """The build's own job (``python -m dipddpm_lib.experiments.early_stopping``) fits the
    authors'-regime run with the authors' settings; the chapter, set up with other (tuned)
    settings, finds it in the cache, and the σ lookup is read off its history."""
    from dipddpm_lib import photo_prior

    authors.main(["--profile", "smoke"])
    assert "ES authors' regime (smoke)" in capsys.readouterr().out
    prof, setup, _ = es.make_setup("smoke", num_stages=3, stage_iterations=4)
    prior = photo_prior.train_photo_prior(prof, cache=cache, progress=False)
    monkeypatch.setattr(dip, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("refit")))
    run = authors.run_paper_regime(dataclasses.replace(setup, wmv_window_factors=(1.0, 2.0)), prof,
                              cache, prior=prior, progress=False)
    paper = authors.paper_setup(setup, prof)
    assert run.reference.history["residual"].shape[1] == len(paper.pairs)
    lookup = stopping.SigmaLookup.fit([25.0], [7])
    recs = esr.lookup_records(paper, run, lookup)
    curve = run.reference.history["psnr_clean"]
    for n, r in enumerate(recs):
        assert r["criterion"] == "sigma_lookup" and r["iteration"] == min(7, len(curve))
        assert r["gap_db"] == pytest.approx(float(np.nanmax(curve[:, n]) - curve[r["iteration"] - 1, n]))
    assert authors.paper_fit_kwargs(dataclasses.replace(prof, dip_lr=0.05))["lr"] == authors.PAPER_LR


def test_a_photograph_given_by_path_runs_and_is_stored_under_its_stem(smoke, cache, tmp_path):
    from skimage.io import imsave

    from dipddpm_lib.results import load_array

    path = tmp_path / "my_photo.png"
    imsave(path, (load_photo("chelsea", 64).permute(0, 2, 3, 1)[0].numpy() * 255).astype(np.uint8),
           check_contrast=False)
    prof, setup, _ = es.make_setup("smoke", photos=[str(path)], sigmas=[25], seeds=(0,))
    runs = [es.SeedRuns(es.run_reference(setup, prof, 0, cache, progress=False),
                        es.run_guided(setup, prof, 0, cache, progress=False))]
    (tmp_path / "out").mkdir()
    names = esr.save_stop_arrays(tmp_path / "out", setup, runs)
    assert "clean_my_photo" in names and "stop_guided_my_photo_25" in names
    assert load_array(tmp_path / "out", "clean_my_photo").shape == (1, 3, 32, 32)
    records = esr.evaluate(setup, runs[0])
    assert {r["photo"] for r in records} == {str(path)}
