"""Chapter 04's peer criteria (`stopping`): ES-EMV, SURE, the learned-prior rule and the σ lookup."""
import numpy as np
import pytest
import torch

from dipddpm_lib import stopping
from dipddpm_lib.stopping import Stop


def online_statistic(recorder, outputs) -> np.ndarray:
    """A recorder's statistic over a sequence of outputs (T×C×H×W), one image: shape T."""
    return np.array([recorder.push(torch.as_tensor(o).unsqueeze(0))[0] for o in outputs])


# --------------------------------------------------------------------------- ES-EMV
def test_exp_moving_variance_follows_the_authors_recurrence():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(6, 1, 3, 4, 4, generator=g)
    alpha, ema, emv, expect = 0.1, None, None, []
    for f in frames:  # the recurrence written out
        x = f.double()
        if ema is None:
            ema, emv = x.clone(), 0.0
            expect.append(np.nan)
            continue
        d = x - ema
        ema = (ema + alpha * d).clamp(0, 1)
        emv = (1 - alpha) * (emv + alpha * d.pow(2).mean().item())
        expect.append(emv)
    got = online_statistic(stopping.ExpMovingVariance(alpha), frames[:, 0])
    assert np.isnan(got[0]) and np.allclose(got[1:], expect[1:], rtol=1e-12)
    # per image in a batch, the same numbers
    rec = stopping.ExpMovingVariance(alpha)
    batch = [rec.push(torch.cat([f, f.flip(-1)])) for f in frames]
    assert np.allclose([b[0] for b in batch[1:]], expect[1:], rtol=1e-12)


def test_es_emv_is_zero_for_a_still_output():
    assert np.allclose(online_statistic(stopping.ExpMovingVariance(0.1), torch.ones(5, 1, 4, 4))[1:], 0.0)


# --------------------------------------------------------------------------- SURE
def test_mc_divergence_of_linear_maps():
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 3, 64, 64, generator=g)
    for a in (0.0, 0.3, 1.0):
        d = stopping.mc_divergence(lambda v: a * v + 0.2, y, 1e-3, torch.Generator().manual_seed(2))
        assert d.shape == (2,) and torch.allclose(d, torch.full((2,), a, dtype=d.dtype), atol=0.1)
    const = stopping.mc_divergence(lambda v: torch.zeros_like(v), y, 1e-3)
    assert torch.equal(const, torch.zeros(2))


def test_sure_estimates_the_true_mse_of_a_shrinkage_without_the_clean_image():
    """f(y) = x + a·n: true MSE a²σ²; SURE from y, f(y) and div f = a alone agrees."""
    g = torch.Generator().manual_seed(3)
    sigma = 25.0
    x = torch.rand(1, 3, 96, 96, generator=g)
    n = torch.randn(x.shape, generator=g) * sigma / 255
    y = x + n
    for a in (0.0, 0.5, 1.0):
        out = x + a * n
        residual = [float((out - y).pow(2).mean())]
        true = float((out - x).pow(2).mean())
        est = stopping.sure_mse(residual, [a], sigma)[0]
        assert est == pytest.approx(true, abs=0.05 * (sigma / 255) ** 2)


def test_sure_bad_inputs():
    with pytest.raises(ValueError, match="differ in length"):
        stopping.sure_mse([0.1, 0.2], [0.5], 25)
    with pytest.raises(ValueError, match="eps must be positive"):
        stopping.mc_divergence(lambda v: v, torch.zeros(1, 1, 4, 4), 0.0)


# --------------------------------------------------------------------------- learned prior
def test_prior_distance_with_a_perfect_denoiser_is_the_oracle():
    """The distance to a perfect estimate is the MSE to the clean image, so its minimum is
    the oracle's PSNR peak."""
    psnr = 30.0 - (np.arange(1, 501) - 317) ** 2 / 5e3
    mse = 10 ** (-psnr / 10)
    assert stopping.last_minimum_stop(mse, 100).iteration == stopping.oracle_stop(psnr).iteration
    assert stopping.last_minimum_stop(mse, 100) == Stop(317, 417, True)


# --------------------------------------------------------------------------- σ lookup
def test_sigma_lookup_fits_a_power_law_and_interpolates():
    sigmas = [15, 15, 25, 50]
    peaks = [8000 * s ** -0.8 for s in sigmas]
    lut = stopping.SigmaLookup.fit(sigmas, peaks)
    assert lut.b == pytest.approx(-0.8) and np.exp(lut.a) == pytest.approx(8000)
    assert lut.predict(25) == round(8000 * 25 ** -0.8)
    assert lut.predict(35) == round(8000 * 35 ** -0.8)  # a σ it was not calibrated at
    assert lut.stop(25, 100) == Stop(100, 100, False)  # the history is shorter than the count
    one = stopping.SigmaLookup.fit([25, 25, 25], [300, 500, 400])
    assert one.b == 0 and one.predict(50) == 400  # a single σ: the median peak


@pytest.mark.parametrize("sigmas,peaks,match", [
    ([], [], "one oracle peak per σ"),
    ([25, 50], [300], "one oracle peak per σ"),
    ([0, 25], [300, 200], "positive"),
    ([25, 50], [300, 0], "at least iteration 1"),
    ([25, 300], [300, 200], r"\[0, 255\]"),
])
def test_sigma_lookup_bad_inputs(sigmas, peaks, match):
    with pytest.raises(ValueError, match=match):
        stopping.SigmaLookup.fit(sigmas, peaks)


def test_exp_moving_variance_bad_alpha():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        stopping.ExpMovingVariance(0.0)
