import numpy as np
import pytest
import torch

from dipddpm_lib import dip
from dipddpm_lib.data import load_photo
from dipddpm_lib.metrics import psnr

SMALL = dip.DIPConfig(scales=2, channels=8, skip_channels=4, input_depth=8)


@pytest.fixture(scope="module")
def photo():
    return load_photo("astronaut", 32)


def test_reference_network_defaults_and_shapes():
    ref = dip.DIPConfig()
    assert (ref.scales, ref.channels, ref.skip_channels, ref.input_depth) == (5, 128, 4, 32)
    net = dip.SkipNet(ref, 3)
    with torch.no_grad():
        out = net(dip.make_input(ref, 64, 64))
    assert out.shape == (1, 3, 64, 64) and 0 < float(out.min()) and float(out.max()) < 1
    assert dip.SkipNet(SMALL, 1)(dip.make_input(SMALL, 32, 32)).shape == (1, 1, 32, 32)
    near = dip.SkipNet(dip.DIPConfig(scales=2, channels=8, skip_channels=0, upsample="nearest"), 3)
    assert near(torch.rand(1, 32, 16, 16)).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("task", ["denoise", "inpaint", "sr4"])
def test_degradations(photo, task):
    d = dip.degrade(photo, task, sigma=0, seed=0)
    if task == "sr4":
        assert d.observation.shape == (1, 3, 8, 8)
    elif task == "inpaint":
        assert set(d.mask.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(d.observation, photo * d.mask)
    else:
        assert torch.equal(d.observation, photo)
    noisy = dip.degrade(photo, "denoise", sigma=25, seed=0)
    assert float(psnr(noisy.observation, photo)) == pytest.approx(20.2, abs=1.0)


def test_fit_lowers_loss_and_reports_history(photo):
    d = dip.degrade(photo, "denoise", 25, seed=0)
    r = dip.fit(d, SMALL, iterations=60, clean=photo, progress=False, snapshot_every=20)
    h = r.history
    assert set(h) == {"loss", "psnr_obs", "psnr_obs_ema", "psnr_clean", "psnr_clean_ema"}
    assert all(len(v) == 60 for v in h.values())
    assert h["loss"][-10:].mean() < 0.5 * h["loss"][:3].mean()
    assert r.output.shape == r.output_ema.shape == photo.shape
    assert r.compute.dip_iters == 60 and r.compute.flops > 0
    assert sorted(r.snapshots) == [20, 40, 60]
    assert r.best_iteration is not None and 1 <= r.best_iteration <= 60


def test_fit_same_seed_same_numbers(photo):
    d = dip.degrade(photo, "denoise", 25, seed=0)
    a = dip.fit(d, SMALL, iterations=5, seed=3, progress=False)
    b = dip.fit(d, SMALL, iterations=5, seed=3, progress=False)
    assert np.array_equal(a.history["loss"], b.history["loss"])
    assert torch.equal(a.output, b.output)


def test_callback_stops_the_fit(photo):
    d = dip.degrade(photo, "inpaint", 0, seed=0)
    r = dip.fit(d, SMALL, iterations=50, progress=False, callback=lambda i, *_: i == 7)
    assert r.stopped_at == 7 and len(r.history["loss"]) == 7 and r.compute.dip_iters == 7


def test_sr_fit_runs_at_high_resolution(photo):
    d = dip.degrade(photo, "sr4", 0, seed=0)
    r = dip.fit(d, SMALL, iterations=3, clean=photo, progress=False)
    assert r.output.shape == photo.shape


def test_flops_grow_linearly_with_iterations(photo):
    d = dip.degrade(photo, "denoise", 25)
    f = [dip.fit(d, SMALL, iterations=n, progress=False).compute.flops for n in (2, 4, 8)]
    assert f[1] == pytest.approx(2 * f[0]) and f[2] == pytest.approx(4 * f[0])
    assert f[0] / 2 == pytest.approx(dip.dip_flops_per_iteration(SMALL, 3, 32, 32))


@pytest.mark.parametrize("call,match", [
    (lambda p: dip.degrade(p, "deblur"), "valid choices: denoise, inpaint, sr4"),
    (lambda p: dip.degrade(p, "denoise", sigma=300), r"\[0, 255\]"),
    (lambda p: dip.degrade(p, "denoise", sigma=-1), r"\[0, 255\]"),
    (lambda p: dip.degrade(p * float("nan")), "NaN or Inf"),
    (lambda p: dip.fit(dip.degrade(p[..., :16, :16]), dip.DIPConfig(scales=5), 5), "at least 32"),
    (lambda p: dip.fit(dip.degrade(p), SMALL, 0), "positive whole number"),
    (lambda p: dip.fit(dip.degrade(p), SMALL, 5, clean=p[:, :1]), "expected 3"),
    (lambda p: dip.SkipNet(dip.DIPConfig(upsample="cubic"), 3), "nearest, bilinear"),
])
def test_bad_inputs(photo, call, match):
    with pytest.raises(ValueError, match=match):
        call(photo)


def test_k_batched_network_is_k_independent_networks():
    """Every grouped parameter splits into per-network blocks that reproduce single nets."""
    torch.manual_seed(0)
    batched = dip.SkipNet(SMALL, 3, nets=3)
    z = dip.make_input(SMALL, 16, 16, seed=1, nets=3)
    with torch.no_grad():
        out = batched(z)
    for k in range(3):
        single = dip.SkipNet(SMALL, 3)
        single.load_state_dict({name: t.chunk(3, 0)[k] if t.dim() else t
                                for name, t in batched.state_dict().items()})
        with torch.no_grad():
            ref = single(z.chunk(3, 1)[k])
        torch.testing.assert_close(out[k:k + 1], ref, atol=1e-5, rtol=1e-5)


def test_batched_fit_matches_separate_fits_statistically(photo):
    """A fit of N images gives per-image histories of shape (iterations, N) and, for each
    image, the same quality as fitting it alone (different random init, same method)."""
    imgs = torch.cat([photo, photo.flip(-1)])
    d = dip.degrade(imgs, "denoise", 25, seed=0)
    both = dip.fit(d, SMALL, iterations=60, clean=imgs, progress=False)
    assert both.history["psnr_clean_ema"].shape == (60, 2)
    assert both.output.shape == imgs.shape and both.best_output.shape == imgs.shape
    assert both.best_iteration.shape == (2,)
    alone = dip.fit(dip.Degradation("denoise", d.observation[:1]), SMALL, iterations=60,
                    clean=imgs[:1], progress=False)
    assert both.history["psnr_clean_ema"][-1, 0] == pytest.approx(
        alone.history["psnr_clean_ema"][-1], abs=1.0)
    assert both.compute.flops == pytest.approx(2 * alone.compute.flops, rel=1e-6)


def test_linear_output_and_custom_input_fit_a_signed_target():
    target = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    cfg = dip.DIPConfig(scales=2, channels=8, skip_channels=2, input_depth=1, output="linear")
    r = dip.fit(dip.Degradation("denoise", target), cfg, iterations=150, net_input=target,
                progress=False, reg_noise_std=0)
    assert float(r.output.min()) < 0 < float(r.output.max())
    assert r.history["loss"][-1].max() < 0.5 * r.history["loss"][0].min()
    with pytest.raises(ValueError, match="net_input must be 2×1×16×16"):
        dip.fit(dip.Degradation("denoise", target), cfg, 2, net_input=target[:1], progress=False)
