"""The photo DDPM prior: its crop bank, its training (tiny), and its one-step denoiser."""
import pytest
import torch

from dipddpm_lib import ddpm, get_profile, photo_prior
from dipddpm_lib.cache import Cache
from dipddpm_lib.data import load_photo


def test_crop_bank_is_deterministic_rgb_and_in_range():
    a = photo_prior.crop_bank(["moon", "brick"], 16, 12, (32, 48), seed=3, progress=False)
    b = photo_prior.crop_bank(["moon", "brick"], 16, 12, (32, 48), seed=3, progress=False)
    c = photo_prior.crop_bank(["moon", "brick"], 16, 12, (32, 48), seed=4, progress=False)
    assert a.shape == (12, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal(a[:, 0], a[:, 1])  # grey photographs: three equal channels


@pytest.mark.parametrize("kwargs,match", [
    (dict(names=["astronautt"]), "valid choices"),
    (dict(names=[]), "non-empty"),
    (dict(short_sides=(8,)), "at least the crop size"),
    (dict(crop=0), "crop"),
])
def test_crop_bank_bad_inputs(kwargs, match):
    args = dict(names=["moon"], crop=16, n=4, short_sides=(32,), progress=False) | kwargs
    with pytest.raises(ValueError, match=match):
        photo_prior.crop_bank(**args)


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    from dipddpm_lib.cache import Cache

    p = get_profile("smoke", prior_train_steps=2, prior_n_crops=16)
    cache = Cache(tmp_path_factory.mktemp("prior"))
    return photo_prior.train_photo_prior(p, cache=cache, progress=False), p, cache


def test_prior_is_fully_convolutional_and_cached(prior):
    model, p, cache = prior
    assert not any("Attn" in b for b in model.unet.config.down_block_types)
    assert model.meta["config"]["data"]["photos"] == list(p.prior_train_photos)
    again = photo_prior.train_photo_prior(p, cache=cache, progress=False)
    assert (again.loss_history == model.loss_history).all()
    assert again.meta["train_seconds"] == model.meta["train_seconds"]  # loaded, not retrained
    assert next(iter(cache.root.rglob("*.safetensors")), None) is not None


def test_a_cached_prior_is_loaded_without_making_its_crops(prior, monkeypatch):
    model, p, cache = prior
    def no_crops(*args, **kwargs):
        raise AssertionError("the crop bank was made for a cached prior")
    monkeypatch.setattr(photo_prior, "crop_bank", no_crops)
    again = photo_prior.train_photo_prior(p, cache=cache, progress=False)
    assert (again.loss_history == model.loss_history).all()
    with pytest.raises(AssertionError, match="crop bank was made"):  # a new recipe trains
        photo_prior.train_photo_prior(get_profile("smoke", prior_n_crops=32), cache=cache, progress=False)


def test_images_given_as_a_function_need_their_shape_and_a_key(tmp_path):
    p = get_profile("smoke", train_steps=1)
    x = torch.rand(8, 3, 16, 16)
    with pytest.raises(ValueError, match="data_key and their"):
        ddpm.train_ddpm(lambda: x, p, data_key={"what": "x"}, cache=Cache(tmp_path), progress=False)
    with pytest.raises(ValueError, match=r"shape \(8, 3, 16, 16\), not \(4, 3, 16, 16\)"):
        ddpm.train_ddpm(lambda: x, p, data_key={"what": "x"}, shape=(4, 3, 16, 16),
                        cache=Cache(tmp_path), progress=False)
    assert not list(tmp_path.rglob("*.safetensors"))  # nothing half-written
    lazy = ddpm.train_ddpm(lambda: x, p, data_key={"what": "x"}, shape=(8, 3, 16, 16),
                           cache=Cache(tmp_path / "a"), progress=False)
    given = ddpm.train_ddpm(x, p, data_key={"what": "x"}, cache=Cache(tmp_path / "b"), progress=False)
    assert lazy.meta["config"] == given.meta["config"]  # one cache key either way
    assert all(torch.equal(a, b) for a, b in zip(lazy.unet.state_dict().values(),
                                                 given.unet.state_dict().values()))


@pytest.mark.parametrize("size", [64, 128])
def test_prior_denoises_whole_photographs(prior, size):
    model, *_ = prior
    x = load_photo("astronaut", size)
    y = x + 25 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    x0, compute = photo_prior.denoise_x0(model, y, 25)
    assert x0.shape == x.shape and torch.isfinite(x0).all() and 0 <= x0.min() and x0.max() <= 1
    assert compute.nfe == 1 and compute.flops > 0


def test_denoise_at_sigma_zero_is_the_identity_and_grey_stays_grey(prior):
    model, *_ = prior
    x = load_photo("camera", 64, "gray")
    x0, compute = photo_prior.denoise_x0(model, x, 0)
    assert torch.allclose(x0, x, atol=1e-6) and compute.nfe == 0 and compute.flops == 0
    assert photo_prior.denoise_x0(model, x, 15)[0].shape == x.shape


@pytest.mark.parametrize("sigma,images,match", [
    (300, None, "0-255"), (25, torch.zeros(1, 2, 64, 64), "expected 1 .grayscale. or 3"),
    (25, torch.full((1, 3, 64, 64), float("nan")), "NaN"),
])
def test_denoise_bad_inputs(prior, sigma, images, match):
    model, *_ = prior
    images = torch.zeros(1, 3, 64, 64) if images is None else images
    with pytest.raises(ValueError, match=match):
        photo_prior.denoise_x0(model, images, sigma)


def test_one_step_curve_rows_and_cache(prior, monkeypatch):
    model, p, cache = prior
    rows = photo_prior.one_step_curve(model, ["camera"], 32, [25], [0, 1], progress=False, cache=cache)
    assert [(r["photo"], r["sigma"], r["seed"]) for r in rows] == [("camera", 25.0, 0), ("camera", 25.0, 1)]
    assert all(r["t_sigma"] > 0 and r["nl_means"] > r["noisy"] for r in rows)
    monkeypatch.setattr(photo_prior, "denoise_x0", lambda *a, **k: pytest.fail("recomputed"))
    again = photo_prior.one_step_curve(model, ["camera"], 32, [25], [0, 1], progress=False, cache=cache)
    assert again == rows  # loaded from the cache


def test_denoise_each_image_at_its_own_sigma(prior):
    prior, *_ = prior
    y = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    sigmas = [15.0, 25.0, 0.0]
    x0, gflops = photo_prior.denoise_x0_each(prior, y, sigmas)
    for n, s in enumerate(sigmas):
        alone, c = photo_prior.denoise_x0(prior, y[n:n + 1], s)
        assert torch.equal(x0[n:n + 1], alone.clamp(0, 1))
    assert torch.allclose(x0[2:], y[2:], atol=1e-6)  # σ = 0: the identity, and it costs nothing
    assert gflops > 0 and x0.min() >= 0 and x0.max() <= 1
