"""Chapter 03: task C on a photograph given as a file; bad parameters fail before any work (its
results, as the smoke build ran it: tests/test_build_smoke.py)."""
import numpy as np
import pytest

from nbrun import run_checks_cell, run_notebook


@pytest.mark.notebook
def test_nb03_task_c_on_a_photograph_given_as_a_file(nb_cache, tmp_path):
    """Task C alone, on a user's image file next to a bundled photograph."""
    from PIL import Image

    path = tmp_path / "holiday.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, 60, 3)) * 255).astype(np.uint8)).save(path)
    m = run_notebook("03_dip_init_ddpm", tmp_path / "out", tasks=["C"], photos=[str(path), "coffee"],
                     photo_sigmas=[25], seeds=[0], photo_methods=["ddpm_x0", "hybrid_red"])
    ph = m["photographs"]
    assert "generation" not in m and ph["photos"] == ["holiday", "coffee"]
    assert ph["roles"] == {"holiday": "user", "coffee": "eval"}
    assert set(ph["summary"]["25"]) == {"noisy", "ddpm_x0", "hybrid_red"}
    assert (tmp_path / "out" / "photo_hybrid_red_holiday_s25.npy").exists()


@pytest.mark.parametrize("params,match", [
    ({"t0_list": [5, 2000]}, r"t0 must be in \[0, T=1000\]"),
    ({"t_noise": -1}, r"t_noise must be in \[0, T=1000\]"),
    ({"chain_sampler": "euler"}, "valid choices: ddpm, ddim, dpm-solver"),
    ({"beta_schedule": "quadratic"}, "valid choices: linear, cosine"),
    ({"profile": "fast"}, "valid choices: smoke, quick, full"),
    ({"tasks": ["D"]}, "tasks must be a non-empty subset"),
    ({"photos": ["/no/such/photo.png"]}, "no such file"),
    ({"photo_sigmas": [12.5]}, "whole numbers"),
    ({"photo_methods": ["hybrid_magic"]}, "unknown task C method"),
    ({"red_lamda": 1.0}, "unknown chapter 03 parameter"),
])
def test_nb03_bad_parameters_fail_before_any_work(cache, params, match):
    """The checks chapter 03 runs first (experiments.dip_init_ddpm.make_plan) name each bad
    parameter, and write nothing."""
    from conftest import cache_files
    from dipddpm_lib.experiments.dip_init_ddpm import make_plan

    params = {"profile": "smoke", **params}
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=match):
        make_plan(params.pop("profile"), **params)
    assert cache_files(cache) == []


def test_nb03_plan_reads_none_as_the_profile_and_zero_as_a_value(cache):
    from dipddpm_lib import get_profile
    from dipddpm_lib.experiments.dip_init_ddpm import make_plan

    smoke = get_profile("smoke")
    plan = make_plan("smoke")
    assert plan.tasks == ["A", "B", "C"] and plan.seeds == list(smoke.seeds)
    assert plan.t_noise == smoke.int_t_noise and plan.t_trunc_list == plan.t0_list == smoke.int_t0_list
    zero = make_plan("smoke", t_noise=0, t0_list=[0], tasks=["C"], photo_sigmas=[15])
    assert zero.t_noise == 0 and zero.t0_list == zero.t_trunc_list == [0]
    assert zero.photo_cfg.sigmas == (15.0,)


def test_nb03_rejects_a_bad_parameter_before_any_work(nb_cache, tmp_path):
    """The notebook runs those checks before it writes anything."""
    before = sorted(p for p in nb_cache.rglob("*"))
    out = tmp_path / "never_created"
    with pytest.raises(ValueError, match=r"t0 must be in \[0, T=1000\]"):
        run_checks_cell("03_dip_init_ddpm", out, t0_list=[5, 2000])
    assert not out.exists()
    assert sorted(p for p in nb_cache.rglob("*")) == before
