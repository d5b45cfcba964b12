"""The CPU-runnable parts of scripts/gpu_check.sh: the image-folder generator and the dry run."""
import os
import shutil
import subprocess
import sys

import pytest
from nbrun import REPO

from dipddpm_lib.data import load_folder

sys.path.insert(0, str(REPO / "scripts"))
from make_image_folder import write_folder  # noqa: E402


def test_the_generated_folder_is_read_as_unlabelled_rgb_images(tmp_path):
    folder = write_folder(tmp_path / "images", n=6, size=32, seed=1)
    x = load_folder(folder, 32)
    assert x.shape == (6, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert float(x.std()) > 0.05  # shapes and gradients, not a flat image
    again = load_folder(write_folder(tmp_path / "again", n=6, size=32, seed=1), 32)
    assert (again == x).all()  # a seed gives the same folder
    with pytest.raises(ValueError, match="need n"):
        write_folder(tmp_path / "none", n=0)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_dry_run_prints_every_run_and_runs_none(tmp_path):
    out = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run",
                          str(tmp_path / "work")], capture_output=True, text=True, check=True,
                         cwd=REPO, env={**os.environ, "PY": sys.executable})
    lines = [l for l in out.stdout.splitlines() if l.startswith("+ ")]
    assert lines[0] == "+ make venv"
    runs = [l for l in lines if "papermill" in l]
    assert len(runs) == 4 and sum("DIPDDPM_DETERMINISTIC=1" in l for l in runs) == 2
    assert all("-p profile full -p device cuda" in l for l in runs)
    assert len(list((tmp_path / "work" / "images").glob("*.png"))) == 2000
    assert not any((tmp_path / "work").glob("ch0*/metrics.json"))
