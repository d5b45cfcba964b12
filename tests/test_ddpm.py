import pytest
import torch
import torch.nn as nn

from dipddpm_lib import ddpm
from dipddpm_lib.data import load_digits
from conftest import cache_files


class OracleUNet(nn.Module):
    """Predicts the exact noise for a known clean batch: a perfect denoiser.

    With it every sampler must land back on the clean images, which checks that the
    sampler's time indexing agrees with the scheduler's ``add_noise``.
    """

    def __init__(self, x0_model, beta_schedule="linear"):
        super().__init__()
        self.x0 = x0_model
        self.abar = ddpm.make_scheduler(beta_schedule).alphas_cumprod
        self.w = nn.Parameter(torch.zeros(1))
        self.config = type("C", (), {"in_channels": x0_model.shape[1],
                                     "sample_size": x0_model.shape[-1]})()

    def forward(self, x, t):
        a = self.abar[t].view(-1, 1, 1, 1).float()
        eps = (x - a.sqrt() * self.x0) / (1 - a).sqrt() + 0 * self.w
        return type("O", (), {"sample": eps})()


@pytest.fixture(scope="module")
def digits():
    return load_digits(16, "test")[0][:4]


def test_q_sample_matches_add_noise_formula(digits):
    noise = torch.randn(digits.shape, generator=torch.Generator().manual_seed(0))
    abar = ddpm.alphas_cumprod("cosine")
    for t in (1, 10, 600, 1000):
        xt = ddpm.q_sample(digits, t, noise, "cosine")
        expected = abar[t].sqrt() * ddpm.to_model(digits) + (1 - abar[t]).sqrt() * noise
        torch.testing.assert_close(xt, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(ddpm.q_sample(digits, 0, noise), ddpm.to_model(digits))


@pytest.mark.parametrize("sampler,steps", [("ddpm", 1000), ("ddpm", 30), ("ddim", 7),
                                           ("dpm-solver++", 7)])
@pytest.mark.parametrize("t_start", [5, 600, 1000])
def test_chain_started_at_t_with_perfect_denoiser_recovers_x0(digits, sampler, steps, t_start):
    oracle = OracleUNet(ddpm.to_model(digits))
    noise = torch.randn(digits.shape, generator=torch.Generator().manual_seed(1))
    x_t = ddpm.q_sample(digits, t_start, noise)
    res = ddpm.sample(oracle, "linear", sampler, steps, x_start=x_t, t_start=t_start,
                      progress=False)
    assert res.timesteps[0] == t_start - 1  # the chain starts where add_noise put x_t
    assert res.compute.nfe == len(res.timesteps) <= max(steps, 1)
    torch.testing.assert_close(res.images, digits, atol=2e-3, rtol=0)


def test_t_start_zero_returns_input_unchanged(digits):
    oracle = OracleUNet(ddpm.to_model(digits))
    res = ddpm.sample(oracle, "linear", "ddim", 10, x_start=ddpm.to_model(digits), t_start=0)
    assert torch.equal(res.images, digits) and res.compute.nfe == 0


def test_midway_ddim_keeps_a_fixed_stride_within_budget():
    sched = ddpm.make_scheduler("linear", "ddim")
    ts = ddpm._timesteps(sched, "ddim", 10, 600, 1000)
    strides = {a - b for a, b in zip(ts, ts[1:])}
    assert ts[0] == 599 and len(strides) == 1 and len(ts) <= 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from dipddpm_lib import get_profile
    from dipddpm_lib.cache import Cache

    cache = Cache(tmp_path_factory.mktemp("cache"))
    x, _ = load_digits(16, "train")
    p = get_profile("smoke", train_steps=40)
    return ddpm.train_ddpm(x, p, cache=cache, progress=False), x, p, cache


def test_training_lowers_the_loss_and_caches(trained):
    model, x, p, cache = trained
    h = model.loss_history
    assert h[-10:].mean() < 0.7 * h[:5].mean()
    again = ddpm.train_ddpm(x, p, cache=cache, progress=False)  # cache hit: no retraining
    assert again.meta["train_seconds"] == model.meta["train_seconds"]
    for (k, a), b in zip(model.unet.state_dict().items(), again.unet.state_dict().values()):
        assert torch.equal(a, b), k
    assert len(list((cache.root / "ddpm").iterdir())) == 1


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver++"])
def test_sampling_shapes_and_same_seed_same_numbers(trained, sampler):
    model = trained[0]
    a = ddpm.sample(model.unet, "linear", sampler, 5, num_samples=3, seed=7, progress=False)
    b = ddpm.sample(model.unet, "linear", sampler, 5, num_samples=3, seed=7, progress=False)
    c = ddpm.sample(model.unet, "linear", sampler, 5, num_samples=3, seed=8, progress=False)
    assert a.images.shape == (3, 1, 16, 16)
    assert 0 <= float(a.images.min()) and float(a.images.max()) <= 1
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.compute.nfe == 5 and a.compute.flops > 0 and a.compute.wall_s > 0


def test_flops_scale_with_nfe(trained):
    model = trained[0]
    a = ddpm.sample(model.unet, "linear", "ddim", 5, num_samples=2, progress=False)
    b = ddpm.sample(model.unet, "linear", "ddim", 10, num_samples=2, progress=False)
    assert b.compute.flops == pytest.approx(2 * a.compute.flops)


@pytest.mark.parametrize("kwargs,match", [
    (dict(sampler="euler"), "valid choices: ddpm, ddim, dpm-solver\\+\\+"),
    (dict(beta_schedule="quadratic"), "valid choices: linear, cosine"),
    (dict(num_steps=0), "positive whole number"),
    (dict(num_steps=-3), "positive whole number"),
    (dict(num_steps=1001), "at most T"),
    (dict(t_start=1001, x_start=torch.zeros(2, 1, 16, 16)), r"\[0, T=1000\]"),
    (dict(t_start=-1, x_start=torch.zeros(2, 1, 16, 16)), r"\[0, T=1000\]"),
    (dict(t_start=5, x_start=torch.full((2, 1, 16, 16), float("nan"))), "NaN or Inf"),
    (dict(t_start=5, x_start=torch.zeros(2, 3, 16, 16)), "3 channel"),
])
def test_sample_bad_inputs(trained, kwargs, match):
    model = trained[0]
    args = dict(beta_schedule="linear", sampler="ddim", num_steps=5, num_samples=2,
                progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ddpm.sample(model.unet, **args)


@pytest.mark.parametrize("override,match", [
    (dict(beta_schedule="sigmoid"), "valid choices: linear, cosine"),
    (dict(train_steps=0), "positive whole number"),
    (dict(batch_size=-1), "positive whole number"),
    (dict(train_precision="fp16"), "valid choices: fp32, bf16"),
])
def test_train_bad_inputs_write_nothing(cache, override, match):
    from dipddpm_lib import get_profile

    x, _ = load_digits(16, "test")
    with pytest.raises(ValueError, match=match):
        ddpm.train_ddpm(x, get_profile("smoke", **override), cache=cache, progress=False)
    with pytest.raises(ValueError, match="NaN or Inf"):
        ddpm.train_ddpm(x * float("nan"), get_profile("smoke"), cache=cache, progress=False)
    assert cache_files(cache) == []


def test_sample_cache_key_is_the_same_in_every_process():
    """diffusers lists `_use_default_values` in set order, which changes with the process's
    string-hash seed; the cache key must not (else no process finds another's samples)."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json; from dipddpm_lib.ddpm import make_scheduler, scheduler_key; "
            "print(json.dumps([scheduler_key(make_scheduler(b, s)) for b in ('linear', 'cosine') "
            "for s in ('ddpm', 'ddim', 'dpm-solver++')]))")
    keys = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert keys[0] == keys[1]
    assert not any(k.startswith("_") for d in json.loads(keys[0]) for k in d)


def test_bf16_training_is_its_own_cache_entry_and_learns(trained):
    """``train_precision="bf16"`` (the photo prior's) runs the forward pass under bfloat16
    autocast: a separate checkpoint (the key says so), float32 weights, and a falling loss."""
    model, x, p, cache = trained
    import dataclasses

    bf = ddpm.train_ddpm(x, dataclasses.replace(p, train_precision="bf16"), cache=cache,
                         progress=False)
    assert bf.meta["config"]["train_precision"] == "bf16"
    assert "train_precision" not in model.meta["config"]  # fp32 keys are unchanged
    assert len(list((cache.root / "ddpm").iterdir())) == 2
    assert all(v.dtype == torch.float32 for v in bf.unet.state_dict().values()
               if v.is_floating_point())
    h = bf.loss_history
    assert h[-10:].mean() < 0.7 * h[:5].mean()


def test_a_model_carries_its_own_T(tmp_path):
    """Chains, noise levels and checks use the T a model was trained with, not 1000."""
    from dipddpm_lib import get_profile
    from dipddpm_lib.cache import Cache
    from dipddpm_lib.methods.dip_t0 import dip_t0

    x, _ = load_digits(16, "train")
    p = get_profile("smoke", train_steps=2, num_train_timesteps=50)
    model = ddpm.train_ddpm(x[:64], p, cache=Cache(tmp_path), progress=False)
    assert model.num_train_timesteps == 50
    res = ddpm.sample_cached(model, "ddpm", 50, 2, cache=Cache(tmp_path), progress=False)
    assert res.compute.nfe == 50 and res.timesteps[0] == 49
    assert dip_t0(model, x[:2], 50, steps=2)[0].shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"\[0, T=50\]"):
        dip_t0(model, x[:2], 51)
