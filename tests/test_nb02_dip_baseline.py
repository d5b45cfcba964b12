"""Chapter 02 (DIP baseline) on a user's photograph by path, and a bad task (its results, as the
smoke build ran it: tests/test_build_smoke.py)."""
import pytest
from nbrun import run_checks_cell, run_notebook

from dipddpm_lib import get_profile
from dipddpm_lib.results import load_array


def test_dip_baseline_notebook_rejects_a_bad_task_before_writing(tmp_path, nb_cache):
    out = tmp_path / "out"
    fits_before = sorted(nb_cache.glob("dip_fit/*"))
    with pytest.raises(ValueError, match="valid choices: denoise, inpaint, sr4"):
        run_checks_cell("02_dip_baseline", out, task="deblur")
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
