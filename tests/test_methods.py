"""Chapter 03's photograph methods (dipddpm_lib.methods) and task C's study loop."""
import numpy as np
import pytest
import torch

from dipddpm_lib import get_profile, photo_prior
from dipddpm_lib.data import load_photo
from dipddpm_lib.dip import DIPConfig, Degradation, degrade, fit
from dipddpm_lib.experiments import photo_denoising as task_c
from dipddpm_lib.methods import classical, ddpm_denoise
from dipddpm_lib.methods.dip_t0 import dip_t0
from dipddpm_lib.methods.hybrid_red import BlendTarget, REDTarget, fuse_avg
from dipddpm_lib.methods.tdpm_dip import tdpm_dip
from dipddpm_lib.metrics import psnr
from dipddpm_lib.physics import sigma_to_t

CFG = DIPConfig(scales=2, channels=8)


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    from dipddpm_lib.cache import Cache

    p = get_profile("smoke", prior_train_steps=2, prior_n_crops=16)
    return photo_prior.train_photo_prior(p, cache=Cache(tmp_path_factory.mktemp("prior")),
                                         progress=False)


@pytest.fixture(scope="module")
def noisy():
    x = torch.cat([load_photo("astronaut", 32), load_photo("camera", 32)])
    y = torch.cat([degrade(x[i:i + 1], "denoise", 25, seed=i).observation for i in range(2)])
    return x, y


# --------------------------------------------------------------------------- hybrids
def _fit(y, target=None, iterations=6):
    return fit(Degradation("denoise", y), CFG, iterations, seed=3, progress=False, target=target,
               callback=None if target is None else target.observe)


def test_hybrid_red_with_lambda_zero_is_plain_dip_exactly(prior, noisy):
    _, y = noisy
    plain = _fit(y)
    tgt = REDTarget(prior, y, lam=0.0, sigma_eff=10, refresh=2)
    red = _fit(y, tgt)
    assert torch.equal(plain.output_ema, red.output_ema)
    assert tgt.compute.nfe == 0 and tgt.compute.flops == 0  # no denoiser call was made


def test_hybrid_red_refreshes_its_target_every_r_steps(prior, noisy):
    _, y = noisy
    tgt = REDTarget(prior, y, lam=1.0, sigma_eff=10, refresh=2)
    assert tgt(1) is y  # before the first refresh the target is the observation
    _fit(y, tgt, iterations=6)
    assert tgt.compute.nfe == 3 and tgt.compute.flops > 0  # steps 2, 4 and 6
    assert not torch.equal(tgt(7), y)
    # the target is the RED fixed point (y + λ D) / (1 + λ): halfway between y and D at λ = 1
    d = 2 * tgt(7) - y
    assert torch.isfinite(d).all() and d.min() > -1e-5 and d.max() < 1 + 1e-5


def test_hybrid_target_with_lambda_zero_is_plain_dip_exactly(prior, noisy):
    _, y = noisy
    tgt = BlendTarget(prior, y, lam=0.0, sigma=25)
    assert torch.equal(_fit(y).output_ema, _fit(y, tgt).output_ema)
    assert tgt.compute.nfe == 0


def test_hybrid_target_blends_the_observation_and_the_ddpm_estimate(prior, noisy):
    _, y = noisy
    x0, c = ddpm_denoise.ddpm_x0(prior, y, 25)
    tgt = BlendTarget(prior, y, lam=3.0, sigma=25)
    assert torch.allclose(tgt(1), (y + 3 * x0) / 4, atol=1e-6)
    assert tgt.compute.nfe == 1 and tgt.compute.flops == pytest.approx(c.flops)
    given = BlendTarget(prior, y, lam=3.0, sigma=25, x0=(x0, c))  # the caller's x̂0 is reused
    assert torch.equal(given(1), tgt(1))


@pytest.mark.parametrize("cls,kwargs", [
    (REDTarget, {"lam": -1.0, "sigma_eff": 10, "refresh": 2}),
    (REDTarget, {"lam": 1.0, "sigma_eff": 10, "refresh": 0}),
    (REDTarget, {"lam": 1.0, "sigma_eff": 300, "refresh": 2}),
    (BlendTarget, {"lam": -0.5, "sigma": 25}),
])
def test_hybrid_bad_settings(prior, noisy, cls, kwargs):
    with pytest.raises(ValueError):
        cls(prior, noisy[1], **kwargs)


# --------------------------------------------------------------------------- the other methods
def test_ddpm_state_is_the_observation_at_t_sigma(prior, noisy):
    _, y = noisy
    x_t, t = ddpm_denoise.observation_state(prior, y, 25)
    assert t == sigma_to_t(25, prior.beta_schedule) and x_t.shape == y.shape
    for fn in (lambda: ddpm_denoise.ddpm_x0(prior, y, 25),
               lambda: ddpm_denoise.ddim(prior, y, 25, 3),
               lambda: ddpm_denoise.ddpm_chain(prior, y, 50)):
        x, c = fn()
        assert x.shape == y.shape and 0 <= x.min() and x.max() <= 1 and c.nfe >= 1 and c.flops > 0
    _, c = ddpm_denoise.ddpm_chain(prior, y, 50)
    assert c.nfe == sigma_to_t(50, prior.beta_schedule)  # ancestral: every step from t_σ


def test_dip_t0_and_tdpm_dip_degenerate_cases(prior, noisy):
    x, _ = noisy
    out, c = dip_t0(prior, x, 0)
    assert torch.equal(out, x) and c.nfe == 0  # t0 = 0: the DIP estimate itself
    out, c = tdpm_dip(prior, x, 0)
    assert torch.equal(out, x) and c.nfe == 0  # t_σ = 0 (σ = 0): nothing to remove
    out, c = tdpm_dip(prior, x[:, :1], 10, steps=2)
    assert out.shape == x[:, :1].shape and c.nfe == 2  # a grey estimate through the RGB prior, and back
    out, c = dip_t0(prior, x, 20, steps=4)
    assert out.shape == x.shape and 1 <= c.nfe <= 4
    with pytest.raises(ValueError, match="t0"):
        dip_t0(prior, x, 5000)


def test_fuse_avg_is_the_mean_and_checks_shapes(noisy):
    x, y = noisy
    assert torch.allclose(fuse_avg(x, y), (x + y) / 2)
    with pytest.raises(ValueError, match="shape"):
        fuse_avg(x, y[:1])


def test_classical_denoisers_remove_noise(noisy):
    x, y = noisy
    for fn in (classical.bm3d_denoise, classical.nl_means_denoise):
        out, c = fn(y, 25)
        assert out.shape == y.shape and c.wall_s > 0 and c.flops == 0
        # measured: BM3D gains ~7 dB and NL-means ~5 dB here; 2 dB leaves a wide margin
        assert (psnr(out, x) - psnr(y.clamp(0, 1), x)).min() > 2


# --------------------------------------------------------------------------- the study
def test_study_rows_images_and_cache(prior, cache):
    photos = {"astronaut": load_photo("astronaut", 32)}
    cfg = task_c.PhotoConfig(sigmas=(25.0,), seeds=(0, 1), dip=CFG, dip_iterations=4,
                             t0_list=(5, 500), chain_steps=2, red_refresh=2)
    rows, images = task_c.run_study(prior, photos, cfg, cache=cache, progress=False)
    methods = {r["method"] for r in rows}
    assert {"noisy", "bm3d", "nl_means", "dip", "dip_oracle", "ddpm_x0", "ddpm_chain", "ddim_5",
            "dip_t0_5", "tdpm_dip", "fuse_avg", "hybrid_red", "hybrid_target"} == methods
    assert "dip_t0_500" not in methods  # t0 above t_σ is not run
    assert len(rows) == len(methods) * 2 and images["dip|25"].shape == (1, 2, 3, 32, 32)
    oracle = {r["seed"]: r["psnr"] for r in rows if r["method"] == "dip_oracle"}
    dip = {r["seed"]: r["psnr"] for r in rows if r["method"] == "dip"}
    assert all(oracle[s] >= dip[s] - 1e-4 for s in dip)  # the peak bounds the final output
    red = next(r for r in rows if r["method"] == "hybrid_red")
    assert red["nfe"] == 2 and red["dip_iters"] == 4 and red["knows_sigma"]
    again = task_c.run_study(prior, photos, cfg, cache=cache, progress=False)
    assert again[0] == rows  # loaded from the cache
    s = task_c.summarise(rows)
    v = task_c.verdict(s)["25"]
    assert v["best_combined"] not in ("fuse_avg", "dip_oracle")
    assert {"best_single", "bm3d", "fuse_avg", "dip_oracle"} <= set(v["against"])
    sub = task_c.PhotoConfig(sigmas=(25.0,), seeds=(0,), dip=CFG, dip_iterations=2,
                             methods=("hybrid_red",))
    rows_sub, _ = task_c.run_study(prior, photos, sub, progress=False)
    assert {r["method"] for r in rows_sub} == {"noisy", "hybrid_red"}


@pytest.mark.parametrize("kwargs,match", [
    ({"photos": ["no_such_photo"]}, "valid choices"),
    ({"photos": ["/no/such/file.png"]}, "no such file"),
    ({"methods": ["hybrid_magic"]}, "unknown task C method"),
    ({"sigmas": [300]}, "sigma"),
    ({"sigmas": [12.5]}, "whole number"),
    ({"sigmas": []}, "at least one"),
    ({"seeds": []}, "at least one seed"),
    ({"red_lambda": -1}, "red_lambda"),
    ({"bogus": 1}, "unknown task C setting"),
])
def test_make_config_bad_inputs(smoke, kwargs, match):
    with pytest.raises(ValueError, match=match):
        task_c.make_config(smoke, **kwargs)


def test_make_config_reads_photo_files_and_explicit_settings(smoke, tmp_path):
    from PIL import Image

    path = tmp_path / "my_photo.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(path)
    cfg, names, record = task_c.make_config(smoke, photos=[str(path), "camera"], red_lambda=2.0)
    assert names == (str(path), "camera") and cfg.red_lambda == 2.0
    assert record["settings"]["photo_red_lambda"]["source"] == "parameter"
    assert cfg.sigmas == smoke.photo_sigmas and cfg.dip_iterations == smoke.photo_dip_iterations


def test_hybrid_red_warm_start_applies_d_to_x_init_until_dip_fits_as_well(prior, noisy):
    _, y = noisy
    x0, _ = ddpm_denoise.ddpm_x0(prior, y, 25)
    tgt = REDTarget(prior, y, lam=1.0, sigma_eff=10, refresh=2, x_init=x0)
    d0, _ = ddpm_denoise.ddpm_x0(prior, x0, 10)
    assert torch.allclose(tgt(1), (y + d0) / 2) and tgt.compute.nfe == 1  # D(x_init) from the start
    far = torch.full_like(y, 0.5)  # a DIP output that fits y worse than x_init does: not used
    tgt.observe(2, far, far, None)
    assert not tgt.switched.any() and torch.allclose(tgt(3), (y + d0) / 2)
    tgt.observe(4, y, y, None)  # an output that fits y exactly: D is applied to it from now on
    assert tgt.switched.all()
    assert torch.allclose(tgt(5), (y + ddpm_denoise.ddpm_x0(prior, y.clamp(0, 1), 10)[0]) / 2)
    off = REDTarget(prior, y, lam=0.0, sigma_eff=10, refresh=2, x_init=x0)
    assert torch.equal(_fit(y).output_ema, _fit(y, off).output_ema)  # λ = 0 is still plain DIP
