"""Chapter 02's library (``experiments/dip_baseline``, ``figures/dip_baseline``, the classical
restorers of ``methods/classical``): cached grouped DIP fits, summaries, tables, plan checks."""
import numpy as np
import pytest
import torch
from conftest import cache_files

from dipddpm_lib import dip, get_profile
from dipddpm_lib.experiments import dip_baseline as restoration
from dipddpm_lib.figures import dip_baseline as figures
from dipddpm_lib.methods import classical
from dipddpm_lib.cache import Cache
from dipddpm_lib.data import load_photo
from dipddpm_lib.metrics import psnr

SMALL = dip.DIPConfig(scales=2, channels=8, skip_channels=4, input_depth=8)
SEEDS = (0, 1)
ITERS = 8
NAMES = ("astronaut", "camera")


@pytest.fixture(scope="module")
def photo():
    return load_photo("astronaut", 32)


@pytest.fixture(scope="module")
def plan():
    """Smoke settings with the small net, 32 px, 2 seeds, 8 iterations."""
    return restoration.make_plan("smoke", seeds=list(SEEDS), images=list(NAMES), image_size=32,
                                 iterations=ITERS, arch={"scales": 2, "channels": 8,
                                                         "skip_channels": 4, "input_depth": 8})


@pytest.fixture(scope="module")
def run(plan, tmp_path_factory):
    """A tiny denoising run: 2 images × 2 seeds × 8 iterations, and its cache."""
    cache = Cache(tmp_path_factory.mktemp("restoration_cache"))
    out = plan.restore(NAMES, "denoise", 25, ITERS, cache=cache, progress=False)
    return out, cache, {n: load_photo(n, 32) for n in NAMES}


# --------------------------------------------------------------------------- classical
@pytest.mark.parametrize("method", ["nl_means", "wavelet", "tv"])
def test_classical_denoisers_beat_the_noisy_input(photo, method):
    d = dip.degrade(photo, "denoise", 25, seed=0)
    r = restoration.classical_restore(method, d, photo)
    assert r.output.shape == photo.shape and 0 <= float(r.output.min()) <= float(r.output.max()) <= 1
    assert r.psnr > float(psnr(d.observation, photo)) + 1.0
    assert 0 < r.ssim <= 1 and r.wall_s >= 0
    assert r.to_dict()["flops"] is None


def test_blind_sigma_estimate_is_close_to_the_truth(photo):
    d = dip.degrade(load_photo("camera", 64), "denoise", 25, seed=0)
    assert classical.estimate_noise_sigma(d.observation) * 255 == pytest.approx(25, abs=3)


def test_inpainting_and_sr_baselines(photo):
    inp = dip.degrade(photo, "inpaint", 0, seed=0)
    r = restoration.classical_restore("biharmonic", inp, photo)
    assert r.psnr > float(psnr(inp.observation, photo)) + 5
    assert r.settings["missing_share"] == pytest.approx(0.5, abs=0.1)
    sr = dip.degrade(photo, "sr4", 0, seed=0)
    b = restoration.classical_restore("bicubic", sr, photo)
    assert b.output.shape == photo.shape
    assert restoration.ImageRestoration("x", photo, sr, [], {}).observed.shape == photo.shape
    with pytest.raises(ValueError, match="valid choices: bicubic"):
        classical.restore("tv", sr, (32, 32))


def test_classical_restore_clips_and_batch_nl_means_agrees(photo):
    d = dip.degrade(photo, "denoise", 50, seed=1)
    x, settings = classical.restore("nl_means", d, (32, 32))
    assert x.shape == photo.shape and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert settings["h_255"] == pytest.approx(0.8 * settings["sigma_est_255"])
    batch, compute = classical.nl_means_denoise(torch.cat([d.observation, d.observation]))
    assert torch.equal(batch[1:], x) and compute.wall_s >= 0
    assert classical.estimate_noise_sigma(d.observation) == classical.estimate_noise_sigma(
        d.observation[0].permute(1, 2, 0).double().numpy())
    assert set(classical.NAMES) >= {m for ms in classical.BY_TASK.values() for m in ms}


def test_peak_is_the_first_maximum_one_based():
    assert restoration.peak(np.array([1.0, 3.0, 2.0, 3.0])) == (3.0, 2)
    assert restoration.peak(np.array([np.nan, 0.5])) == (0.5, 2)


def test_classical_method_must_fit_the_task(photo):
    with pytest.raises(ValueError, match="valid choices: nl_means, wavelet, tv"):
        restoration.classical_restore("bicubic", dip.degrade(photo, "denoise"), photo)


# --------------------------------------------------------------------------- cached fits
def test_stack_degradations(photo):
    ds = [dip.degrade(photo, "inpaint", 0, seed=s) for s in (0, 1)]
    st = dip.stack_degradations(ds)
    assert st.observation.shape == (2, 3, 32, 32) and st.mask.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="different tasks"):
        dip.stack_degradations([ds[0], dip.degrade(photo, "denoise")])
    with pytest.raises(ValueError, match="different shapes"):
        dip.stack_degradations([ds[0], dip.degrade(load_photo("camera", 64), "inpaint")])


def test_fit_is_cached_and_reused(photo, cache, monkeypatch):
    d = dip.degrade(photo, "denoise", 25, seed=0)
    (first,) = restoration.fit_cached(d, photo, SMALL, 4, seed=3, cache=cache)
    assert not first.from_cache and cache_files(cache)

    def no_refit(*args, **kwargs):
        raise AssertionError("fitted again despite a cached fit")

    monkeypatch.setattr(dip, "fit", no_refit)
    (again,) = restoration.fit_cached(d, photo, SMALL, 4, seed=3, cache=cache)
    assert again.from_cache and (again.flops, again.wall_s) == (first.flops, first.wall_s)
    assert torch.equal(again.output_ema, first.output_ema)
    np.testing.assert_array_equal(again.history["psnr_clean"], first.history["psnr_clean"])
    assert again.history["psnr_clean"].shape == (4,) and 1 <= again.best_iteration <= 4
    monkeypatch.undo()
    other = restoration.fit_cached(d, photo, SMALL, 4, seed=3, lr=0.02, cache=cache)
    assert not other[0].from_cache  # another setting, another entry (cache.cached's key)


def test_a_progress_callback_never_stops_a_cached_fit(photo, cache):
    """tqdm's ``update`` returns True after it redraws; as a ``dip.fit`` callback that would stop
    the fit (and cache a short one). A cached fit runs every iteration whatever it returns."""
    d = dip.degrade(photo, "denoise", 25, seed=0)
    calls = []
    (fit,) = restoration.fit_cached(d, photo, SMALL, 5, seed=4, cache=cache,
                                    callback=lambda *a: calls.append(a[0]) or True)
    assert calls == [1, 2, 3, 4, 5] and fit.history["psnr_clean"].shape == (5,)


def test_grouped_fit_splits_per_image(run, plan):
    restorations, _, images = run
    assert [r.name for r in restorations] == list(images)
    for r in restorations:
        assert [f.seed for f in r.fits] == list(SEEDS)
        assert r.curves()["psnr_clean_ema"].shape == (len(SEEDS), ITERS)
        assert all(f.output_ema.shape == f.best_output.shape == (1, 3, 32, 32) for f in r.fits)
    one = restorations[0].fits[0]
    assert restorations[0].clean.shape == (1, 3, 32, 32)
    per_net = dip.dip_flops_per_iteration(plan.arch, 3, 32, 32) * ITERS
    assert one.flops == pytest.approx(per_net, rel=1e-6)


def test_rerun_reads_every_fit_from_the_cache(run, plan):
    restorations, cache, images = run
    again = plan.restore(NAMES, "denoise", 25, ITERS, cache=cache, progress=False)
    assert all(f.from_cache for r in again for f in r.fits)
    assert all(torch.equal(a.output_ema, b.output_ema) for a, b in zip(again[1].fits, restorations[1].fits))


# --------------------------------------------------------------------------- summaries
def test_dip_summary_reports_final_peak_ssim_and_compute(run):
    r = run[0][0]
    s = r.dip_summary()
    assert {"final_psnr", "peak_psnr", "peak_iteration", "final_ssim", "peak_ssim", "wall_s",
            "gflops"} <= set(s)
    assert s["final_psnr"]["n"] == len(SEEDS) and s["seeds"] == list(SEEDS)
    assert s["peak_psnr"]["min"] >= s["final_psnr"]["min"] - 1e-4
    assert s["peak_psnr"]["max"] == pytest.approx(max(s["peak_psnr_raw"]["max"], s["peak_psnr_ema"]["max"]))
    assert 1 <= s["peak_iteration"]["min"] <= s["peak_iteration"]["max"] <= ITERS
    m = r.metrics()
    assert set(m) >= {"observed_psnr", "dip", "nl_means", "wavelet", "tv", "comparison"}


def _fake_image(observed, final, peak, classical):
    one = lambda v: {"mean": v, "min": v, "max": v, "std": 0.0}  # noqa: E731
    m = {"observed_psnr": observed, "observed_ssim": 0.5,
         "dip": {"final_psnr": one(final), "peak_psnr": one(peak), "final_ssim": one(0.8),
                 "peak_ssim": one(0.9), "peak_iteration": one(500), "iterations": 1000},
         **{k: {"psnr": v, "ssim": 0.8} for k, v in classical.items()}}
    m["comparison"] = restoration.compare(m, list(classical))
    return m


def test_summary_quality_bar_and_where_classical_matches_dip():
    per_image = {"a": _fake_image(20, 25, 27, {"nl_means": 26, "wavelet": 24, "tv": 27.5}),
                 "b": _fake_image(20, 23, 24.5, {"nl_means": 22, "wavelet": 25, "tv": 21})}
    s = restoration.summarise(per_image, ["nl_means", "wavelet", "tv"], min_gain_db=5)
    assert s["quality_bar"]["gain_db"] == {"a": 7, "b": 4.5} and not s["quality_bar"]["passed"]
    assert s["classical_at_least_dip_final"] == {"nl_means": ["a"], "wavelet": ["b"], "tv": ["a"]}
    assert s["classical_at_least_dip_peak"] == {"nl_means": [], "wavelet": ["b"], "tv": ["a"]}
    assert s["mean_over_images"]["dip_peak_psnr"] == pytest.approx(25.75)
    assert restoration.summarise(per_image, ["nl_means"], min_gain_db=4)["quality_bar"]["passed"]
    assert s["mean_over_images"]["tv_psnr"] == pytest.approx(24.25)
    assert s["peak_before_last_iteration"] == {"a": True, "b": True}


def test_chapter_metrics_arrays_tables_and_figures(run, tmp_path):
    restorations, _, _ = run
    plan = restoration.make_plan("smoke", seeds=list(SEEDS), images=["astronaut", "camera"],
                                 iterations=ITERS, arch={"scales": 2, "channels": 8})
    m = restoration.chapter_metrics(plan, restorations, {"inpaint": restorations[0]})
    assert m["seeds"] == list(SEEDS) and m["arch"]["channels"] == 8 and "inpaint" in m
    assert m["compute"]["dip"]["networks_fitted"] == 2 * len(SEEDS) + len(SEEDS)
    names = restoration.save_arrays(tmp_path, restorations[0], prefix="x_")
    assert "x_dip_peak_astronaut.npy" in names and "x_nl_means_astronaut.npy" in names
    table = figures.quality_table(m["per_image"])
    assert "| astronaut |" in table and "| NL-means |" in table and "DIP (peak, oracle)" in table
    assert "nl_means" not in table  # human names, never identifiers
    assert "NL-means wall s" in figures.compute_table(m["per_image"])
    fig = figures.plot_psnr_curves(restorations)
    assert len([ax for ax in fig.axes if ax.lines]) == len(restorations)
    assert fig.axes[0].get_title() == "astronaut: denoising"  # human task names
    fig = figures.plot_restorations(restorations)
    assert sum(bool(ax.images) for ax in fig.axes) == 2 * 7


# --------------------------------------------------------------------------- parameters
def test_plan_fills_defaults_from_the_profile():
    plan = restoration.make_plan("quick")
    assert plan.images == ("astronaut", "camera", "coffee") and plan.image_size == 64
    assert plan.iterations == get_profile("quick").dip_baseline_iterations
    assert plan.seeds == (0, 1, 2) and plan.sigma == 25
    assert (plan.arch.scales, plan.arch.channels) == (3, 32)
    assert plan.showcases == {"inpaint": "astronaut", "sr4": "coffee"}
    other = restoration.make_plan("smoke", task="sr4", images="camera", seeds=[4])
    assert other.showcases == {"inpaint": "camera"} and other.seeds == (4,)
    assert plan.profile.dip_lr == 0.01 and plan.to_dict()["optimiser"]["lr"] == 0.01
    faster = restoration.make_plan("quick", lr=0.03)
    assert faster.profile.dip_lr == 0.03 and faster.to_dict()["optimiser"]["lr"] == 0.03


@pytest.mark.parametrize("kwargs,match", [
    ({"profile": "fast"}, "smoke, quick, full"),
    ({"task": "deblur"}, "valid choices: denoise, inpaint, sr4"),
    ({"images": ["astronaut", "lena"]}, "valid choices: astronaut, camera"),
    ({"images": []}, "valid choices: astronaut"),
    ({"inpaint_image": "lena"}, "valid choices: astronaut"),
    ({"image_size": 48}, "multiple of 32"),
    ({"image_size": 32, "arch": {"scales": 6}}, "multiple of 64"),
    ({"sigma": 300}, r"\[0, 255\]"),
    ({"iterations": 0}, "positive whole number"),
    ({"showcase_iterations": 2.5}, "positive whole number"),
    ({"arch": {"layers": 3}}, "valid keys: scales, channels, skip_channels"),
    ({"arch": {"upsample": "cubic"}}, "nearest, bilinear"),
    ({"arch": {"channels": 0}}, "positive whole number"),
    ({"lr": 0}, "lr must be a finite number > 0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"lr": "fast"}, "lr must be a finite number > 0"),
    ({"seeds": []}, "non-empty list"),
    ({"seeds": [0, -1]}, "non-negative"),
    ({"seeds": 3}, "list of non-negative integers"),
])
def test_bad_parameters_fail_before_any_work(kwargs, match, cache):
    with pytest.raises(ValueError, match=match):
        restoration.make_plan(**{"profile": "smoke", **kwargs})
    assert cache_files(cache) == []


def test_restore_checks_inputs_before_writing(plan, cache):
    with pytest.raises(ValueError, match="valid choices: denoise, inpaint, sr4"):
        plan.restore(["astronaut"], "deblur", 25, 4, progress=False)
    with pytest.raises(ValueError, match="valid choices: astronaut"):
        plan.restore(["lena"], "denoise", 25, 4, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        plan.restore(["astronaut"], "denoise", 300, 4, progress=False)
    with pytest.raises(ValueError, match="positive whole number"):
        plan.restore(["astronaut"], "denoise", 25, 0, progress=False)
    assert cache_files(cache) == []


# --------------------------------------------------------------------------- tuned settings
def _tuned(tmp_path, profile="smoke", **settings):
    from dipddpm_lib import tuned

    doc = {"version": tuned.TUNED_VERSION, "profile": profile, "tune_photos": ["rocket"],
           "settings": {f: {"value": v, "grid": f"grid_{f}", "metric": "final_psnr",
                            "photos": ["rocket"], "reason": "best"} for f, v in settings.items()},
           "untuned": {"dip_lr": {"grid": "dip_lr", "reason": "point lr=0.03 of grid dip_lr failed"}}}
    return tuned.write_tuned(doc, tmp_path / "tuned.json")


def test_plan_reads_the_tuned_net_and_records_where_each_setting_came_from(tmp_path, cache):
    path = _tuned(tmp_path, dip_scales=1, dip_channels=4)
    plan = restoration.make_plan("smoke", tuned=str(path))
    assert (plan.arch.scales, plan.arch.channels) == (1, 4) and plan.profile.dip_lr == 0.01
    m = plan.to_dict()
    src = m["settings_source"]["settings"]
    assert src["dip_scales"]["source"] == "tuned" and src["dip_scales"]["photos"] == ["rocket"]
    assert src["dip_lr"]["source"] == "profile (fallback)" and m["settings_source"]["fallback"] == ["dip_lr"]
    assert m["settings_source"]["tuned_file"] == str(path)
    assert m["photo_sets"] == {"astronaut": "eval", "camera": "eval"}
    assert "point lr=0.03" in src["dip_lr"]["note"]
    given = restoration.make_plan("smoke", tuned=str(path), arch={"scales": 2}, lr=0.005)
    assert (given.arch.scales, given.arch.channels, given.profile.dip_lr) == (2, 4, 0.005)
    assert given.settings["settings"]["dip_scales"]["source"] == "parameter"
    untuned = restoration.make_plan("smoke").to_dict()["settings_source"]
    assert untuned["tuned_file"] is None and {e["source"] for e in untuned["settings"].values()} == {"profile"}
    point = restoration.make_plan("smoke", images=["rocket"])  # an ablation point
    assert point.to_dict()["photo_sets"]["rocket"] == "tune"
    assert cache_files(cache) == []


def test_a_bad_tuned_file_or_value_fails_before_any_work(tmp_path, cache):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        restoration.make_plan("smoke", tuned=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="multiple of 64"):  # valid alone, too deep for 32 px
        restoration.make_plan("smoke", tuned=str(_tuned(tmp_path, dip_scales=6)))
    (tmp_path / "tuned.json").write_text((tmp_path / "tuned.json").read_text().replace('"value": 6', '"value": 0'))
    with pytest.raises(ValueError, match=r"whole number in \[1, 8\]"):
        restoration.make_plan("smoke", tuned=str(tmp_path / "tuned.json"))
    with pytest.raises(ValueError, match="tuned for profile 'quick', not 'smoke'"):
        restoration.make_plan("smoke", tuned=str(_tuned(tmp_path, "quick", dip_scales=2)))
    assert cache_files(cache) == []


def test_tables_show_mean_and_interval_half_width():
    d = {"final_psnr": {"mean": 20.0, "std": 0.1, "n": 3, "ci95": 0.25, "min": 19.9, "max": 20.1},
         "peak_psnr": {"mean": 21.0, "std": 0.1, "n": 3, "ci95": 0.25},
         "peak_iteration": {"mean": 5.0, "std": 1.0, "n": 3, "ci95": 2.5},
         "final_ssim": {"mean": 0.5}, "peak_ssim": {"mean": 0.6}, "iterations": 10,
         "wall_s": {"mean": 1.0, "std": 0.0, "n": 3, "ci95": 0.0}, "gflops": {"mean": 1.0}}
    per_image = {"a": {"observed_psnr": 10.0, "observed_ssim": 0.1, "dip": d}}
    table = figures.quality_table(per_image)
    assert "20.00 ± 0.25 (0.500)" in table and "5 ± 2" in table  # mean ± 95 % half-width
    assert "| 10 | 1.0 ± 0.0 | 1 |" in figures.compute_table(per_image)
