"""Chapter 03, tasks A and B: the two variants (methods/dip_t0.py, methods/tdpm_dip.py) on the
digit DDPM and the study loops, summaries and verdict numbers (experiments/dip_init_ddpm.py)."""
import pytest
import torch

from dipddpm_lib import ddpm, get_profile
from dipddpm_lib.cache import Cache
from dipddpm_lib.data import load_digits
from dipddpm_lib.dip import DIPConfig
from dipddpm_lib.experiments import dip_init_ddpm as exp
from dipddpm_lib.experiments import dip_init_ddpm_results as exr
from dipddpm_lib.methods import dip_t0 as dt, tdpm_dip as td

CFG = DIPConfig(scales=2, channels=8, skip_channels=2, input_depth=8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    x, _ = load_digits(16, "train")
    model = ddpm.train_ddpm(x, get_profile("smoke", train_steps=20),
                            cache=Cache(tmp_path_factory.mktemp("c")), progress=False)
    refs, _ = load_digits(16, "test")
    return model, refs[:3]


def test_dip_to_t0_zero_returns_dip_output_unchanged(setup):
    model, refs = setup
    x, c_dip = dt.fit_dip_snapshots(refs, CFG, [5], progress=False)[5]
    out, c = dt.dip_t0(model, x, 0)
    assert torch.equal(out, x) and c.nfe == 0
    moved, c = dt.dip_t0(model, x, 10, steps=4)
    assert not torch.equal(moved, x) and moved.shape == x.shape  # the digit prior stays grey
    assert c.nfe == 4 and c.dip_iters == 0 and c.flops > 0 and c_dip.dip_iters == 5


@pytest.mark.parametrize("seed", [3])
def test_tdpm_with_no_dip_at_T_is_the_plain_ddpm_chain(setup, seed, tmp_path):
    _, refs = setup
    x, _ = load_digits(16, "train")  # a model of T = 100: the full chain in a tenth of the calls
    model = ddpm.train_ddpm(x, get_profile("smoke", train_steps=2, num_train_timesteps=100),
                            cache=Cache(tmp_path / "c"), progress=False)
    T = model.num_train_timesteps
    plain = ddpm.sample(model.unet, model.beta_schedule, "ddpm", T, num_samples=len(refs),
                        seed=seed, progress=False, num_train_timesteps=T)
    x, c = td.tdpm_generate(model, refs, T, CFG, [0], seed=seed, sampler="ddpm", steps=T,
                            progress=False)[0]
    assert torch.equal(x, plain.images)
    assert c.nfe == T == 100 and c.dip_iters == 0


def test_truncated_start_is_add_noise(setup):
    _, refs = setup
    z = torch.randn(refs.shape, generator=torch.Generator().manual_seed(0))
    abar = ddpm.alphas_cumprod("linear")
    xt = td.truncated_start(refs, 200, z, "linear")
    torch.testing.assert_close(xt, abar[200].sqrt() * (2 * refs - 1) + (1 - abar[200]).sqrt() * z)
    assert torch.equal(td.truncated_start(refs, 1000, z, "linear"), z)


def test_dip_snapshot_flops_grow_linearly(setup):
    _, refs = setup
    snaps = dt.fit_dip_snapshots(refs, CFG, [0, 2, 4, 8], progress=False)
    assert list(snaps) == [2, 4, 8]  # 0 iterations: no DIP output
    f = {k: c.flops for k, (_, c) in snaps.items()}
    assert f[4] == pytest.approx(2 * f[2]) and f[8] == pytest.approx(4 * f[2])
    assert [snaps[k][1].dip_iters for k in (2, 4, 8)] == [2, 4, 8]
    assert snaps[2][1].wall_s < snaps[8][1].wall_s


def test_tdpm_fits_the_truncated_target(setup):
    model, refs = setup
    res = td.tdpm_generate(model, refs, 50, CFG, [0, 30], sampler="ddim", steps=5, progress=False)
    assert list(res) == [0, 30]
    x, c = res[30]
    assert c.dip_iters == 30 and c.nfe == 5 and x.shape == refs.shape


def test_tdpm_dip_takes_a_state_or_an_image(setup):
    """``space="state"``: DIP's output is x_t itself; ``"image"``: an estimate in [0, 1], scaled
    to the state sqrt(abar_t)(2x − 1). The same chain runs from both."""
    model, refs = setup
    abar = ddpm.alphas_cumprod("linear")[40]
    a, ca = td.tdpm_dip(model, refs, 40, steps=3, space="image")
    b, cb = td.tdpm_dip(model, float(abar) ** 0.5 * ddpm.to_model(refs), 40, steps=3, space="state")
    assert torch.equal(a, b) and ca.nfe == cb.nfe == 3
    state = 2 * refs - 1
    out, c = td.tdpm_dip(model, state, 0, space="state")  # t = 0: the state, in [0, 1]
    assert torch.allclose(out, refs) and c.nfe == 0
    with pytest.raises(ValueError, match="space"):
        td.tdpm_dip(model, refs, 10, space="x0")


def test_tdpm_fit_on_the_observation_uses_dips_own_input(setup):
    model, refs = setup
    y = exp.diffusion_noisy(refs, 60, 0, "linear")
    res = td.tdpm_fit(model, y, 60, CFG, [3], steps=2, progress=False)
    x, c = res[3]
    assert list(res) == [3] and x.shape == refs.shape and c.dip_iters == 3 and c.nfe == 2


def test_prior_channels_repeat_grey_only_for_an_rgb_prior(setup):
    model, refs = setup
    assert dt.prior_channels(model, refs) is refs  # the digit prior is grey


def test_unet_flops_per_image_is_one_call_at_the_models_size(setup):
    from dipddpm_lib.photo_prior import unet_flops

    model, refs = setup
    assert exp.unet_flops_per_image(model) == unet_flops(model, tuple(refs.shape[1:])) > 0


def test_equal_flops_steps():
    assert exp.equal_flops_steps(10e9, 1e9) == 10
    assert exp.equal_flops_steps(0.2e9, 1e9) == 1
    assert exp.equal_flops_steps(1e15, 1e9) == 1000


def test_rescale_to_x0_is_unbiased():
    x0 = torch.full((1, 1, 64, 64), 0.7)
    ys = [exp.diffusion_noisy(x0, 600, s, "linear") for s in range(20)]
    est = torch.stack([exp.rescale_to_x0(y, 600, "linear")[0] for y in ys]).mean()
    _, std = exp.rescale_to_x0(ys[0], 600, "linear")
    assert float(est) == pytest.approx(0.7, abs=4 * std / (20 * 64 * 64) ** 0.5)


@pytest.mark.parametrize("call,match", [
    (lambda m, r: dt.dip_t0(m, r, 1001), r"\[0, T=1000\]"),
    (lambda m, r: td.tdpm_generate(m, r, 1200, CFG, [0]), r"\[0, T=1000\]"),
    (lambda m, r: td.tdpm_generate(m, r, 10, CFG, [-1]), ">= 0"),
    (lambda m, r: td.tdpm_dip(m, r, 1001), r"\[0, T=1000\]"),
    (lambda m, r: exp.diffusion_noisy(r * float("inf"), 600, 0, "linear"), "NaN or Inf"),
    (lambda m, r: dt.dip_t0(m, r[:, :0], 5), "0 channel"),
    (lambda m, r: exp.check_study_params([5], [5], [2], "euler", 2, 600, 4, 4, "linear"), "valid choices"),
    (lambda m, r: exp.check_study_params([5], [5], [2], "ddim", 0, 600, 4, 4, "linear"), "chain_steps"),
    (lambda m, r: exp.check_study_params([5], [5], [-2], "ddim", 2, 600, 4, 4, "linear"), ">= 0"),
])
def test_bad_inputs(setup, call, match):
    model, refs = setup
    with pytest.raises(ValueError, match=match):
        call(model, refs)


def _psnr_summary(**methods):
    """A task-B summary from per-seed PSNRs (seeds 0, 1, 2, …), as ``summarise`` makes it."""
    from dipddpm_lib.results import spread

    return {m: {"psnr": spread(v), "values": {"psnr": list(v)}, "seeds": list(range(len(v))),
                "gflops_per_image": spread([1.0] * len(v)),
                **({"chain": "ddim, <= 20 calls"} if m.startswith(("dip_t0", "tdpm")) else {})}
            for m, v in methods.items()}


@pytest.mark.parametrize("tdpm,twin,beats,adds", [
    ((12.5, 12.8, 13.1), (12.4, 12.7, 13.1), True, None),  # the seed-run case: nothing measurable
    ((11.4, 11.7, 12.0), (12.4, 12.7, 13.0), False, False),  # costs 1.00 dB
    ((13.7, 14.0, 14.3), (12.4, 12.7, 13.0), True, True),  # adds 1.30 dB
])
def test_denoising_verdict_weighs_the_spread_and_the_equal_flops_twin(tdpm, twin, beats, adds):
    summary = _psnr_summary(tdpm_dip=tdpm, ddim_eq_tdpm_dip=twin, ddpm_all=(11.2, 11.9, 11.7),
                            ddim_1=(13.9, 13.7, 14.1), dip_fixed=(5.6, 5.5, 5.7),
                            dip_oracle_peak=(9.5, 9.1, 9.9), noisy_rescaled=(4.8, 4.7, 4.9))
    cmp = exr.equal_compute_comparison(summary, "psnr", True, {"DDIM": "ddim_eq_{name}"})
    v = exr.verdict_denoising(summary, cmp)
    assert v["best_dip_method"] == "tdpm_dip" and v["beats_ddpm_chain"] is beats
    assert v["margin_db"] == pytest.approx(sum(tdpm) / 3 - 11.6) and v["margin_n_seeds"] == 3
    assert v["best_non_dip_method"] == "ddim_1" and v["n_dip_methods"] == 1
    assert "text" not in v  # sentences are the notebook's
    assert v["gain_over_ddim_at_equal_flops_db"] == pytest.approx((sum(tdpm) - sum(twin)) / 3)
    twin_diff = exr.paired(summary["tdpm_dip"], summary["ddim_eq_tdpm_dip"], "psnr")
    assert (None if not twin_diff["resolved"] else twin_diff["mean"] > 0) is adds


def test_denoising_verdict_within_the_spread_is_not_a_win():
    summary = _psnr_summary(tdpm_dip=(11.4, 11.7, 12.0), ddim_eq_tdpm_dip=(12.4, 12.7, 13.0),
                            ddpm_all=(11.2, 11.9, 11.7), dip_fixed=(5.6, 5.5, 5.7),
                            dip_oracle_peak=(9.5, 9.1, 9.9), noisy_rescaled=(4.8, 4.7, 4.9))
    v = exr.verdict_denoising(summary, [])
    assert v["beats_ddpm_chain"] is False and v["wins_vs_ddim_equal_flops"] == 0


def test_equal_flops_wins_are_paired_over_seeds():
    """A 0.1 dB gain on every seed is resolved although both methods' spreads over seeds are
    ten times wider; a larger mean gain that flips sign across seeds is not."""
    summary = _psnr_summary(a=(10.1, 12.1, 14.1), ddim_eq_a=(10.0, 12.0, 14.0),
                            b=(11.0, 13.5, 13.0), ddim_eq_b=(10.0, 12.0, 14.0))
    cmp = {r["method"]: r for r in exr.equal_compute_comparison(
        summary, "psnr", True, {"DDIM": "ddim_eq_{name}"})}
    assert cmp["a"]["wins vs DDIM"] and not cmp["a"]["loses vs DDIM"]
    assert not cmp["b"]["wins vs DDIM"] and not cmp["b"]["loses vs DDIM"]
    lower = exr.equal_compute_comparison(summary, "psnr", False, {"DDIM": "ddim_eq_{name}"})
    assert {r["method"]: r["loses vs DDIM"] for r in lower} == {"a": True, "b": False}
    rows = {r["method"]: r for r in exr.equal_flops_rows(list(cmp.values()), "psnr")}
    assert rows["a"]["DDIM"].endswith("; wins") and rows["b"]["DDIM"].endswith("; not resolved")
    assert rows["a"]["psnr"]["mean"] == pytest.approx(12.1)


def test_generation_speedup_in_flops_and_wall_and_never_for_near_copies():
    from dipddpm_lib.results import spread

    def entry(fid, dist, gflops, wall):
        return {"fid": spread([fid, fid]), "dist_to_ref": spread([dist, dist]),
                "gflops_per_image": spread([gflops] * 2), "wall_s": spread([wall] * 2)}

    summary = {"ddpm_1000": entry(9.0, 0.30, 50.0, 60.0), "test_refs": entry(8.0, 0.0, 0.0, 0.0),
               "ddim_20": entry(12.0, 0.30, 1.0, 1.2),
               "tdpm_new": entry(8.5, 0.25, 2.0, 30.0),   # new samples: FLOPs x25, wall x2
               "dip_copy": entry(8.1, 0.01, 1.0, 20.0)}   # a near-copy of its reference
    cmp = [{"method": "tdpm_new"}, {"method": "dip_copy"}]
    v = exr.verdict_generation(summary, cmp)
    assert v["new"]["speedup_vs_ddpm_at_matched_fid"] == pytest.approx(25.0)
    assert v["new"]["wall_speedup_vs_ddpm_at_matched_fid"] == pytest.approx(2.0)
    assert "speedup_vs_ddpm_at_matched_fid" not in v["copy"]
    assert v["new"]["best"] == "tdpm_new" and v["copy"]["best"] == "dip_copy"
    assert v["baseline_speedup_vs_ddpm_at_matched_fid"] is None  # DDIM-20 does not match FID 9
    assert exr.near_copies(summary, cmp) == (pytest.approx(0.15), {"dip_copy"})
    # the chain is named by its own step count
    short = {("ddpm_50" if k == "ddpm_1000" else k): e for k, e in summary.items()}
    v = exr.verdict_generation(short, cmp)
    assert v["ddpm_chain"] == "DDPM-50" and v["ddpm_fid"] == pytest.approx(9.0)
    with pytest.raises(ValueError, match="one DDPM chain"):
        exr.verdict_generation({**short, "ddpm_100": short["ddpm_50"]}, cmp)


@pytest.mark.parametrize("method,label", [
    ("tdpm_k300_t5", "TDPM-DIP, 300 DIP iterations, T′ = 5"),
    ("dip_t0_k50_t200", "DIP→t0, 50 DIP iterations, t0 = 200"), ("dip_t0_200", "DIP→t0, t0 = 200"),
    ("ddim_20", "DDIM-20"), ("dpmpp_7", "DPM-Solver++-7"), ("ddpm_1000", "DDPM-1000"),
    ("ddim_eq_tdpm_dip", "DDIM at the FLOPs of TDPM-DIP"), ("dip_oracle_peak", "DIP oracle peak (upper bound)"),
])
def test_methods_have_readers_names(method, label):
    assert exp.method_label(method) == label


def test_studies_are_cached_whole_and_reload_in_order(setup, tmp_path, monkeypatch):
    from dipddpm_lib.metrics import train_classifier

    model, _ = setup
    x_train, y_train = load_digits(16, "train")
    x_test, y_test = load_digits(16, "test")
    store = Cache(tmp_path / "studies")
    clf = train_classifier(x_train, y_train, x_test, y_test, 20, cache=store, progress=False)
    gen_args = dict(model=model, classifier=clf, x_train=x_train, x_test=x_test, seeds=[0],
                    num_refs=4, dip_cfg=CFG, dip_iterations=[2], t0_list=[5], t_trunc_list=[5],
                    chain_steps=2, ddpm_steps=5, progress=False, cache=store)
    den_args = dict(model=model, x_clean=x_test[:2], seeds=[0], t_noise=50, dip_cfg=CFG,
                    dip_iterations=2, t0_list=[5], ddim_steps=[1], chain_steps=2, progress=False,
                    cache=store)
    first = (exp.generation_study(**gen_args), exp.denoising_study(**den_args))
    def no_fit(*a, **k):
        raise RuntimeError("fitted DIP again")
    monkeypatch.setattr(exp, "fit", no_fit)
    monkeypatch.setattr(dt, "fit", no_fit)
    again = (exp.generation_study(**gen_args), exp.denoising_study(**den_args))
    for (rows, images), (rows2, images2) in zip(first, again):
        assert rows2 == rows and list(images2) == list(images)
        assert all(torch.equal(images[m], images2[m]) for m in images)
    with pytest.raises(RuntimeError, match="fitted DIP again"):  # another setting is a miss
        exp.denoising_study(**{**den_args, "t_noise": 60})


@pytest.mark.parametrize("num_refs,pool,drawn", [(4, 6, 6), (4, None, 4), (4, 3, 4)])
def test_generation_study_takes_ddpm_refs_from_chapter_01s_set(setup, cache, monkeypatch,
                                                               num_refs, pool, drawn):
    """With ``ddpm_pool`` ≥ ``num_refs`` the DDPM chain's samples are the first ``num_refs`` of
    chapter 01's cached set of ``ddpm_pool`` images (not a new draw), charged per image."""
    from dipddpm_lib.metrics import train_classifier

    model, _ = setup
    x_train, y_train = load_digits(16, "train")
    x_test, y_test = load_digits(16, "test")
    clf = train_classifier(x_train, y_train, x_test, y_test, 20, cache=cache, progress=False)
    calls, real = [], ddpm.sample_cached

    def spy(model, sampler, num_steps, num_samples, *args, **kwargs):
        res = real(model, sampler, num_steps, num_samples, *args, **kwargs)
        if sampler == "ddpm":
            calls.append((num_samples, res))
        return res

    monkeypatch.setattr(ddpm, "sample_cached", spy)
    rows, images = exp.generation_study(
        model, clf, x_train[:200], x_test, seeds=[0], num_refs=num_refs, dip_cfg=CFG,
        dip_iterations=[2], t0_list=[5], t_trunc_list=[5], chain_steps=2, ddpm_steps=5,
        baselines=(), progress=False, ddpm_pool=pool)
    (n, res), = calls
    assert n == drawn
    assert torch.equal(images["ddpm_5"], res.images[:num_refs])  # named by its 5 steps
    row = next(r for r in rows if r["method"] == "ddpm_5")
    assert row["gflops_per_image"] == pytest.approx(res.compute.flops / drawn / 1e9)
    assert row["wall_s"] == pytest.approx(res.compute.wall_s * num_refs / drawn)  # the set's wall
    assert {"precision", "recall", "class_entropy"} <= set(row)
