"""Chapter 03, as the smoke build ran it, stores what the report reads; task C on a photograph
given as a file; bad parameters fail before any work."""
import numpy as np
import pytest

from nbrun import run_notebook


@pytest.mark.notebook
def test_nb03_smoke(smoke_build):
    m = smoke_build.metrics("03_dip_init_ddpm")
    out = smoke_build.chapter_dir("03_dip_init_ddpm")
    gen, den = m["generation"], m["denoising"]
    assert m["seeds"] == [0, 1] and m["features"].startswith("in-domain CNN classifier")
    methods = set(gen["summary"])
    from dipddpm_lib import get_profile

    ddpm_key = f"ddpm_{get_profile('smoke').ddpm_sample_steps}"  # named by its own step count
    assert {ddpm_key, "test_refs"} <= methods and "ddpm_1000" not in methods
    assert any(k.startswith("dip_t0_") for k in methods) and any(k.startswith("tdpm_") for k in methods)
    for row in gen["equal_compute"]:  # every variant is matched by DDIM and DPM-Solver++
        assert any(k.startswith("DDIM (") for k in row) and any(k.startswith("DPM-Solver++ (") for k in row)
    for key in ("fid", "kid", "confident_fraction", "dist_to_ref", "nn_train_dist",
                "gflops_per_image", "nfe", "wall_s"):
        assert key in gen["summary"][ddpm_key], key
    assert {"ddpm_all", "dip_fixed", "dip_oracle_peak", "tdpm_dip"} <= set(den["summary"])
    assert all(len(s["seeds"]) == 2 for s in den["summary"].values())
    assert "beats_ddpm_chain" in den["verdict"] and "new" in gen["verdict"]
    assert "text" not in gen["verdict"]  # prose quotes wall times: not data
    for name in ("denoise_clean", "denoise_noisy", "denoise_ddpm_all", "denoise_tdpm_dip"):
        a = np.load(out / f"{name}.npy")
        assert a.dtype == np.float32 and a.ndim == 4 and 0 <= a.min() and a.max() <= 1
    for fig in ("gen_quality_vs_flops", "gen_wall_and_novelty", "gen_samples", "denoise_quality_vs_flops",
                "denoise_examples", "photo_psnr_vs_iteration"):  # figures/dip_init_ddpm.py
        assert (out / f"{fig}.png").exists(), fig
    # task C: photographs, every method, arrays an outside check can recompute PSNR from
    ph = m["photographs"]
    assert ph["photos"] == ["astronaut", "camera"] and ph["sigmas"] == [25.0, 50.0]
    by = ph["summary"]["25"]
    for name in ("noisy", "bm3d", "nl_means", "dip", "dip_oracle", "ddpm_x0", "ddpm_chain", "tdpm_dip",
                 "fuse_avg", "hybrid_red", "hybrid_target"):
        assert name in by, name
    assert any(k.startswith("ddim_") for k in by) and any(k.startswith("dip_t0_") for k in by)
    assert by["dip_oracle"]["oracle"] and not by["dip"]["knows_sigma"] and by["bm3d"]["knows_sigma"]
    assert set(ph["verdict"]) == {"25", "50"}
    from dipddpm_lib.metrics import psnr
    import torch
    clean = torch.from_numpy(np.load(out / "photo_clean_camera.npy"))
    assert clean.shape == (1, 3, 32, 32)
    for method in ("noisy", "hybrid_red", "bm3d"):
        a = np.load(out / f"photo_{method}_camera_s25.npy")
        assert a.shape == (2, 3, 32, 32)  # seeds × C × H × W
        stored = [r["psnr"] for r in ph["rows"] if r["method"] == method and r["photo"] == "camera"
                  and r["sigma"] == 25.0]
        again = psnr(torch.from_numpy(a), clean.expand(2, -1, -1, -1)).tolist()
        assert np.allclose(stored, again, atol=1e-3)
    assert (out / "photo_examples.png").exists() and (out / "photo_psnr_vs_wall.png").exists()


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


@pytest.mark.notebook
def test_nb03_rejects_a_bad_parameter_before_any_work(nb_cache, tmp_path):
    """The notebook runs those checks before it writes anything."""
    import papermill as pm

    before = sorted(p for p in nb_cache.rglob("*"))
    out = tmp_path / "never_created"
    with pytest.raises(pm.PapermillExecutionError, match=r"t0 must be in \[0, T=1000\]"):
        run_notebook("03_dip_init_ddpm", tmp_path, output_dir=str(out), t0_list=[5, 2000])
    assert not out.exists()
    assert sorted(p for p in nb_cache.rglob("*")) == before
