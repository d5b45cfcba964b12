import numpy as np
import pytest
import torch
from skimage.io import imsave

from dipddpm_lib import data
from dipddpm_lib.errors import check_images


def test_digits_shapes_range_and_split():
    xtr, ytr = data.load_digits(16, "train")
    xte, yte = data.load_digits(16, "test")
    assert xtr.shape[1:] == (1, 16, 16) and xte.shape[1:] == (1, 16, 16)
    assert len(xtr) + len(xte) == 1797 and len(xte) == round(0.2 * 1797)
    assert 0.0 <= float(xtr.min()) and float(xtr.max()) <= 1.0
    assert set(ytr.tolist()) == set(range(10))
    x32, _ = data.load_digits(32, "test")
    assert x32.shape[1:] == (1, 32, 32)


def test_split_is_deterministic_and_disjoint():
    a_tr, a_te = data.split_indices(100, 0.2, seed=3)
    b_tr, b_te = data.split_indices(100, 0.2, seed=3)
    assert np.array_equal(a_tr, b_tr) and np.array_equal(a_te, b_te)
    assert not set(a_tr) & set(a_te) and len(a_tr) + len(a_te) == 100
    _, c_te = data.split_indices(100, 0.2, seed=4)
    assert not np.array_equal(a_te, c_te)


@pytest.mark.parametrize("color,channels", [("rgb", 3), ("gray", 1)])
def test_photo_is_resized_and_cropped(color, channels):
    x = data.load_photo("coffee", 64, color)  # 400×600 source
    assert x.shape == (1, channels, 64, 64) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert data.load_photo("camera", 32, "rgb").shape == (1, 3, 32, 32)  # gray source


def test_photo_bad_inputs():
    with pytest.raises(ValueError, match="valid choices: astronaut"):
        data.load_photo("lena")
    with pytest.raises(ValueError, match="multiple of 32"):
        data.load_photo("astronaut", 50)


def _write(path, shape, dtype=np.uint8):
    imsave(path, (np.random.default_rng(0).random(shape) * 255).astype(dtype), check_contrast=False)


def test_folder_loads_rgb_of_any_size(tmp_path):
    _write(tmp_path / "a.png", (40, 70, 3))
    _write(tmp_path / "b.png", (90, 50))  # grayscale → RGB
    x = data.load_folder(tmp_path, 32)
    assert x.shape == (2, 3, 32, 32)


def test_folder_skips_non_images_with_a_warning(tmp_path):
    _write(tmp_path / "a.png", (40, 40, 3))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipped 2"):
        x = data.load_folder(tmp_path, 32)
    assert len(x) == 1


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="is empty"):
        data.load_folder(tmp_path)
    (tmp_path / "readme.md").write_text("hi")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable image"):
        data.load_folder(tmp_path)


def test_image_checks():
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_images(torch.tensor([[[float("nan")]]]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_images(torch.full((1, 3, 4, 4), float("inf")))
    with pytest.raises(ValueError, match="2 channel"):
        check_images(torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="expected 1"):
        check_images(torch.zeros(1, 3, 8, 8), channels=1)
    with pytest.raises(ValueError, match="at least 32"):
        check_images(torch.zeros(1, 3, 16, 16), min_size=32)
