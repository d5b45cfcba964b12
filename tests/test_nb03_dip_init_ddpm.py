"""Chapter 03 runs headless under the smoke profile and stores what the report reads."""
import numpy as np
import pytest

from nbrun import run_notebook


@pytest.mark.notebook
def test_nb03_smoke(nb_cache, tmp_path):
    m = run_notebook("03_dip_init_ddpm", tmp_path)
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
        a = np.load(tmp_path / f"{name}.npy")
        assert a.dtype == np.float32 and a.ndim == 4 and 0 <= a.min() and a.max() <= 1
    for fig in ("gen_quality_vs_flops", "gen_wall_and_novelty", "gen_samples", "denoise_quality_vs_flops",
                "denoise_examples", "photo_psnr_vs_iteration"):  # figures/dip_init_ddpm.py
        assert (tmp_path / f"{fig}.png").exists(), fig
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
    clean = torch.from_numpy(np.load(tmp_path / "photo_clean_camera.npy"))
    assert clean.shape == (1, 3, 32, 32)
    for method in ("noisy", "hybrid_red", "bm3d"):
        a = np.load(tmp_path / f"photo_{method}_camera_s25.npy")
        assert a.shape == (2, 3, 32, 32)  # seeds × C × H × W
        stored = [r["psnr"] for r in ph["rows"] if r["method"] == method and r["photo"] == "camera"
                  and r["sigma"] == 25.0]
        again = psnr(torch.from_numpy(a), clean.expand(2, -1, -1, -1)).tolist()
        assert np.allclose(stored, again, atol=1e-3)
    assert (tmp_path / "photo_examples.png").exists() and (tmp_path / "photo_psnr_vs_wall.png").exists()


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


@pytest.mark.notebook
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
])
def test_nb03_bad_parameters_fail_before_any_work(nb_cache, tmp_path, params, match):
    import papermill as pm
    from nbrun import NOTEBOOKS

    before = sorted(p for p in nb_cache.rglob("*"))
    out = tmp_path / "never_created"
    with pytest.raises(pm.PapermillExecutionError, match=match):
        pm.execute_notebook(str(NOTEBOOKS / "03_dip_init_ddpm.ipynb"), str(tmp_path / "x.ipynb"),
                            parameters={"profile": "smoke", "output_dir": str(out), **params},
                            cwd=str(NOTEBOOKS), progress_bar=False, kernel_name="python3")
    assert not out.exists()
    assert sorted(p for p in nb_cache.rglob("*")) == before
