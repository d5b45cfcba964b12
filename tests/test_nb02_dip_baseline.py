"""Chapter 02 (DIP baseline), as the smoke build ran it (with the build's tuned.json), stores what
it reports; a user's photograph by path; a bad task."""
import numpy as np
import pytest
from nbrun import run_notebook

from dipddpm_lib import get_profile
from dipddpm_lib.results import load_array
from dipddpm_lib.tuned import read_tuned

DIP_KEYS = {"final_psnr", "peak_psnr", "peak_iteration", "final_ssim", "peak_ssim", "wall_s",
            "gflops"}


@pytest.mark.notebook
def test_dip_baseline_notebook_smoke(smoke_build):
    metrics = smoke_build.metrics("02_dip_baseline")
    out = smoke_build.chapter_dir("02_dip_baseline")
    smoke = get_profile("smoke")
    images = list(smoke.dip_baseline_photos)
    assert metrics["profile"] == "smoke" and metrics["task"] == "denoise"
    assert metrics["seeds"] == list(smoke.seeds) and metrics["sigma"] == 25
    assert set(metrics["per_image"]) == set(images)
    for name, m in metrics["per_image"].items():
        assert DIP_KEYS <= set(m["dip"])
        assert m["dip"]["final_psnr"]["n"] == len(smoke.seeds)
        assert 1 <= m["dip"]["peak_iteration"]["min"] <= smoke.dip_baseline_iterations
        assert m["dip"]["gflops"]["mean"] > 0 and m["dip"]["wall_s"]["mean"] > 0
        for method in ("nl_means", "wavelet", "tv"):
            assert m[method]["psnr"] > m["observed_psnr"]  # every classical denoiser helps
            assert m[method]["flops"] is None and m[method]["wall_s"] >= 0
        shapes = {kind: load_array(out, f"{kind}_{name}").shape
                  for kind in ("clean", "observed", "dip_final", "dip_peak")}
        size = smoke.photo_size
        assert shapes["clean"] == shapes["observed"] == (1, 3, size, size)
        assert shapes["dip_final"] == shapes["dip_peak"] == (len(smoke.seeds), 3, size, size)
    assert {"inpaint", "sr4"} <= set(metrics)
    assert metrics["inpaint"]["biharmonic"]["psnr"] > 0 and DIP_KEYS <= set(metrics["sr4"]["dip"])
    sr_name = metrics["sr4"]["image"]
    assert load_array(out, f"sr4_observed_{sr_name}").shape[-1] == smoke.photo_size // 4
    assert "quality_bar" in metrics["summary"] and metrics["compute"]["dip"]["gflops"] > 0
    for fig in ("psnr_curves", "restorations", "showcase_curves", "showcase_restorations"):
        assert (out / f"{fig}.png").stat().st_size > 0
    arr = load_array(out, f"dip_final_{images[0]}")
    assert arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    # tune, then evaluate: every tunable setting is the one the build's tuning grids chose (on
    # the tune photos), and the photos are eval photos
    src, tuned = metrics["settings_source"], read_tuned(smoke_build.results / "tuned.json")
    assert src["tuned_file"] == smoke_build.parameters("02_dip_baseline")["tuned"]
    assert set(src["settings"]) == {"dip_scales", "dip_channels", "dip_lr"}
    for name, entry in src["settings"].items():
        assert entry["source"] == "tuned" and entry["value"] == tuned["settings"][name]["value"], name
    assert set(metrics["photo_sets"].values()) == {"eval"}
    dip = metrics["per_image"][images[0]]["dip"]["final_psnr"]
    assert {"ci95", "ci_lo", "ci_hi"} <= set(dip) and dip["ci95"] >= 0


@pytest.mark.notebook
def test_dip_baseline_notebook_rejects_a_bad_task_before_writing(tmp_path, nb_cache):
    import papermill as pm

    out = tmp_path / "out"
    fits_before = sorted(nb_cache.glob("dip_fit/*"))
    with pytest.raises(pm.PapermillExecutionError, match="valid choices: denoise, inpaint, sr4"):
        run_notebook("02_dip_baseline", tmp_path, output_dir=str(out), task="deblur")
    assert not out.exists()
    assert sorted(nb_cache.glob("dip_fit/*")) == fits_before


@pytest.mark.notebook
def test_dip_baseline_denoises_a_photograph_given_as_a_file(tmp_path, nb_cache):
    """A user's own photograph (any size, here a 150×90 PNG) is restored by path; its arrays
    are stored under the file's stem."""
    from skimage.data import coffee
    from skimage.io import imsave

    path = tmp_path / "input" / "my_photo.png"
    path.parent.mkdir()
    imsave(path, coffee()[100:190, 200:350], check_contrast=False)
    out = tmp_path / "out"
    metrics = run_notebook("02_dip_baseline", out, images=[str(path)], showcase_iterations=2)
    smoke = get_profile("smoke")
    assert list(metrics["per_image"]) == [str(path)]
    m = metrics["per_image"][str(path)]
    assert m["dip"]["final_psnr"]["n"] == len(smoke.seeds)
    assert m["nl_means"]["psnr"] > m["observed_psnr"]
    clean = load_array(out, "clean_my_photo")
    assert clean.shape == (1, 3, smoke.photo_size, smoke.photo_size)
    assert load_array(out, "dip_final_my_photo").shape[0] == len(smoke.seeds)
