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
    assert {"ddpm_1000", "test_refs"} <= methods
    assert any(k.startswith("dip_t0_") for k in methods) and any(k.startswith("tdpm_") for k in methods)
    for row in gen["equal_compute"]:  # every variant is matched by DDIM and DPM-Solver++
        assert any(k.startswith("DDIM (") for k in row) and any(k.startswith("DPM-Solver++ (") for k in row)
    for key in ("fid", "kid", "confident_fraction", "dist_to_ref", "nn_train_dist",
                "gflops_per_image", "nfe", "wall_s"):
        assert key in gen["summary"]["ddpm_1000"], key
    assert {"ddpm_all", "dip_fixed", "dip_oracle_peak", "tdpm_dip"} <= set(den["summary"])
    assert all(len(s["seeds"]) == 2 for s in den["summary"].values())
    assert "beats_ddpm_chain" in den["verdict"] and "new" in gen["verdict"]
    assert "text" not in gen["verdict"]  # prose quotes wall times: not data
    for name in ("denoise_clean", "denoise_noisy", "denoise_ddpm_all", "denoise_tdpm_dip"):
        a = np.load(tmp_path / f"{name}.npy")
        assert a.dtype == np.float32 and a.ndim == 4 and 0 <= a.min() and a.max() <= 1
    assert (tmp_path / "gen_quality_vs_flops.png").exists()


@pytest.mark.notebook
@pytest.mark.parametrize("params,match", [
    ({"t0_list": [5, 2000]}, r"t0 must be in \[0, T=1000\]"),
    ({"t_noise": -1}, r"t_noise must be in \[0, T=1000\]"),
    ({"chain_sampler": "euler"}, "valid choices: ddpm, ddim, dpm-solver"),
    ({"beta_schedule": "quadratic"}, "valid choices: linear, cosine"),
    ({"profile": "fast"}, "valid choices: smoke, quick, full"),
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
