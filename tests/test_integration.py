import pytest
import torch

from dipddpm_lib import ddpm, get_profile, integration
from dipddpm_lib.cache import Cache
from dipddpm_lib.data import load_digits
from dipddpm_lib.dip import DIPConfig

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
    prior = integration.fit_dip_snapshots(refs, CFG, [5], progress=False)[5]
    out = integration.dip_to_t0(model, prior, 0)
    assert torch.equal(out.images, prior.images) and out.compute.nfe == 0
    moved = integration.dip_to_t0(model, prior, 10, num_steps=4)
    assert not torch.equal(moved.images, prior.images)
    assert moved.compute.nfe == 4 and moved.compute.dip_iters == 5
    assert moved.compute.flops > prior.compute.flops


@pytest.mark.parametrize("seed", [3])
def test_tdpm_with_no_dip_at_T_is_the_plain_ddpm_chain(setup, seed):
    model, refs = setup
    plain = ddpm.sample(model.unet, model.beta_schedule, "ddpm", 1000, num_samples=len(refs),
                        seed=seed, progress=False)
    tdpm = integration.tdpm_dip(model, refs, 1000, CFG, [0], seed=seed, sampler="ddpm",
                                num_steps=1000, progress=False)[0]
    assert torch.equal(tdpm.images, plain.images)
    assert tdpm.compute.nfe == 1000 and tdpm.compute.dip_iters == 0


def test_truncated_start_is_add_noise(setup):
    _, refs = setup
    z = torch.randn(refs.shape, generator=torch.Generator().manual_seed(0))
    abar = ddpm.alphas_cumprod("linear")
    xt = integration.truncated_start(refs, 200, z, "linear")
    torch.testing.assert_close(xt, abar[200].sqrt() * (2 * refs - 1) + (1 - abar[200]).sqrt() * z)
    assert torch.equal(integration.truncated_start(refs, 1000, z, "linear"), z)


def test_dip_snapshot_flops_grow_linearly(setup):
    _, refs = setup
    snaps = integration.fit_dip_snapshots(refs, CFG, [2, 4, 8], progress=False)
    f = {k: v.compute.flops for k, v in snaps.items()}
    assert f[4] == pytest.approx(2 * f[2]) and f[8] == pytest.approx(4 * f[2])
    assert [snaps[k].compute.dip_iters for k in (2, 4, 8)] == [2, 4, 8]
    assert snaps[2].compute.wall_s < snaps[8].compute.wall_s


def test_tdpm_fits_the_truncated_target(setup):
    model, refs = setup
    res = integration.tdpm_dip(model, refs, 50, CFG, [0, 30], sampler="ddim", num_steps=5,
                               progress=False)
    assert set(res) == {0, 30}
    assert res[30].compute.dip_iters == 30 and res[30].compute.nfe == 5
    assert res[30].images.shape == refs.shape


def test_equal_flops_steps():
    assert integration.equal_flops_steps(10e9, 1e9) == 10
    assert integration.equal_flops_steps(0.2e9, 1e9) == 1
    assert integration.equal_flops_steps(1e15, 1e9) == 1000


def test_rescale_to_x0_is_unbiased():
    x0 = torch.full((1, 1, 64, 64), 0.7)
    ys = [integration.diffusion_noisy(x0, 600, s, "linear") for s in range(20)]
    est = torch.stack([integration.rescale_to_x0(y, 600, "linear")[0] for y in ys]).mean()
    _, std = integration.rescale_to_x0(ys[0], 600, "linear")
    assert float(est) == pytest.approx(0.7, abs=4 * std / (20 * 64 * 64) ** 0.5)


@pytest.mark.parametrize("call,match", [
    (lambda m, r: integration.dip_to_t0(m, integration.Result(r, None), 1001), r"\[0, T=1000\]"),
    (lambda m, r: integration.tdpm_dip(m, r, 1200, CFG, [0]), r"\[0, T=1000\]"),
    (lambda m, r: integration.tdpm_dip(m, r, 10, CFG, [-1]), ">= 0"),
    (lambda m, r: integration.diffusion_noisy(r * float("inf"), 600, 0, "linear"), "NaN or Inf"),
    (lambda m, r: integration.dip_to_t0(m, integration.Result(r[:, :0], None), 5), "0 channel"),
])
def test_bad_inputs(setup, call, match):
    model, refs = setup
    with pytest.raises(ValueError, match=match):
        call(model, refs)


def _psnr_summary(**methods):
    """A task-B summary: method -> (mean PSNR, std), plus DDIM-equal-FLOPs counterparts."""
    return {m: {"psnr": {"mean": mu, "std": sd}, "gflops_per_image": {"mean": 1.0, "std": 0.0},
                **({"chain": "ddim, <= 20 calls"} if m.startswith(("dip_t0", "tdpm")) else {})}
            for m, (mu, sd) in methods.items()}


@pytest.mark.parametrize("tdpm,twin,beats,adds", [
    ((12.8, 0.3), (12.7, 0.3), True, "adds nothing measurable"),  # the seed-run case
    ((11.7, 0.3), (12.7, 0.3), False, "costs 1.00 dB"),
    ((14.0, 0.1), (12.7, 0.1), True, "adds 1.30 dB"),
])
def test_denoising_verdict_weighs_the_spread_and_the_equal_flops_twin(tdpm, twin, beats, adds):
    summary = _psnr_summary(tdpm_dip=tdpm, ddim_eq_tdpm_dip=twin, ddpm_all=(11.6, 0.3),
                            ddim_1=(13.9, 0.2), dip_fixed=(5.6, 0.1), dip_oracle_peak=(9.5, 0.4),
                            noisy_rescaled=(4.8, 0.1))
    cmp = integration.equal_compute_comparison(summary, "psnr", True,
                                               {"DDIM": "ddim_eq_{name}"})
    v = integration.verdict_denoising(summary, cmp)
    assert v["best_dip_method"] == "tdpm_dip" and v["beats_ddpm_chain"] is beats
    assert v["margin_db"] == pytest.approx(tdpm[0] - 11.6)
    assert adds in v["text"] and ("**beats**" in v["text"]) is beats
    assert v["gain_over_ddim_at_equal_flops_db"] == pytest.approx(tdpm[0] - twin[0])


def test_denoising_verdict_within_the_spread_is_not_a_win():
    summary = _psnr_summary(tdpm_dip=(11.7, 0.3), ddim_eq_tdpm_dip=(12.7, 0.3),
                            ddpm_all=(11.6, 0.3), dip_fixed=(5.6, 0.1),
                            dip_oracle_peak=(9.5, 0.4), noisy_rescaled=(4.8, 0.1))
    v = integration.verdict_denoising(summary, [])
    assert v["beats_ddpm_chain"] is False and "does not beat" in v["text"]


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
    first = (integration.generation_study(**gen_args), integration.denoising_study(**den_args))
    def no_fit(*a, **k):
        raise RuntimeError("fitted DIP again")
    monkeypatch.setattr(integration, "fit", no_fit)
    again = (integration.generation_study(**gen_args), integration.denoising_study(**den_args))
    for (rows, images), (rows2, images2) in zip(first, again):
        assert rows2 == rows and list(images2) == list(images)
        assert all(torch.equal(images[m], images2[m]) for m in images)
    with pytest.raises(RuntimeError, match="fitted DIP again"):  # another setting is a miss
        integration.denoising_study(**{**den_args, "t_noise": 60})
