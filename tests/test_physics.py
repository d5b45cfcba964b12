"""σ ↔ t: a photograph's Gaussian noise level and the DDPM step with the same noise."""
import numpy as np
import pytest

from dipddpm_lib import physics
from dipddpm_lib.ddpm import BETA_SCHEDULES, alphas_cumprod


@pytest.mark.parametrize("schedule", list(BETA_SCHEDULES))
def test_t_to_sigma_matches_the_definition(schedule):
    abar = alphas_cumprod(schedule).double().numpy()
    for t in (1, 10, 56, 300, 999):
        expected = 255 / 2 * np.sqrt((1 - abar[t]) / abar[t])
        assert physics.t_to_sigma(t, schedule) == pytest.approx(expected, rel=1e-12)
    assert physics.t_to_sigma(0, schedule) == 0.0


@pytest.mark.parametrize("schedule", list(BETA_SCHEDULES))
def test_sigma_to_t_inverts_t_to_sigma(schedule):
    levels = physics.sigma_per_step(schedule)
    for t in [t for t in range(0, 1000, 7) if levels[t] <= 255]:
        assert physics.sigma_to_t(physics.t_to_sigma(t, schedule), schedule) == t


@pytest.mark.parametrize("schedule", list(BETA_SCHEDULES))
@pytest.mark.parametrize("sigma", [1.0, 15.0, 25.0, 50.0, 100.0])
def test_sigma_to_t_is_the_nearest_step(schedule, sigma):
    t = physics.sigma_to_t(sigma, schedule)
    here = abs(physics.t_to_sigma(t, schedule) - sigma)
    for other in (t - 1, t + 1):
        assert here <= abs(physics.t_to_sigma(other, schedule) - sigma)


def test_linear_schedule_at_the_dip_noise_levels():
    """The DIP literature's σ = 15, 25, 50 sit at t = 33, 57, 115 on the linear schedule
    (t counts noising steps; diffusers' timestep index of the same step is t − 1)."""
    assert [physics.sigma_to_t(s) for s in (15, 25, 50)] == [33, 57, 115]
    assert physics.sigma_to_t(0) == 0


@pytest.mark.parametrize("bad", [-1, 256, float("nan"), "25", None])
def test_sigma_to_t_rejects_bad_sigma(bad):
    with pytest.raises(ValueError, match="0-255"):
        physics.sigma_to_t(bad)


def test_sigma_to_t_rejects_noise_beyond_the_schedule():
    top = physics.t_to_sigma(10, "linear", num_train_timesteps=10)
    with pytest.raises(ValueError, match="above the linear schedule"):
        physics.sigma_to_t(top * 1.5 if top * 1.5 <= 255 else 255, "linear", num_train_timesteps=10)


@pytest.mark.parametrize("bad", [-1, 1001, 2.5])
def test_t_to_sigma_rejects_bad_steps(bad):
    with pytest.raises(ValueError, match="t must be"):
        physics.t_to_sigma(bad)


def test_check_sigma_takes_any_real_number_and_rejects_the_rest():
    from dipddpm_lib.errors import check_sigma

    assert check_sigma(np.float32(25.0)) == 25.0 and check_sigma(np.int64(15)) == 15.0
    for bad in (True, "25", float("nan"), -1.0, 256):
        with pytest.raises(ValueError, match="0-255 scale"):
            check_sigma(bad)
