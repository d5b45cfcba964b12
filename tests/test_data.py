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
    with pytest.raises(ValueError, match="same picture as 'chelsea'.*valid choices: astronaut"):
        data.load_photo("cat")
    with pytest.raises(ValueError, match="distinct"):
        data.check_photos(["rocket", "rocket"])


@pytest.mark.parametrize("name", data.PHOTOS)
def test_every_named_photo_loads_offline(name, monkeypatch):
    """Every photograph ships inside scikit-image or scikit-learn: no download (every socket
    connection is made to fail, so a fetch would show up as an error)."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError(f"{name}: tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    x = data.load_photo(name, 32)
    assert x.shape == (1, 3, 32, 32) and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
    assert float(x.std()) > 0.01  # a picture, not a blank


def test_named_photos_come_from_the_right_source():
    from sklearn.datasets import load_sample_image

    assert np.array_equal(data._photo_array("china"), load_sample_image("china.jpg"))
    left, right = data._photo_array("motorcycle_left"), data._photo_array("motorcycle_right")
    assert left.shape == right.shape and not np.array_equal(left, right)


def test_every_profile_photo_set_is_named_in_photos_and_roles_are_read_from_the_profile():
    from dipddpm_lib import PROFILES

    quick = PROFILES["quick"]
    for f in ("eval_photos", "tune_photos", "prior_train_photos"):
        assert set(getattr(quick, f)) <= set(data.PHOTOS)
    assert data.photo_roles(quick, ["camera", "rocket", "moon", "clock"]) == \
        {"camera": "eval", "rocket": "tune", "moon": "prior_train", "clock": "none"}


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


# --------------------------------------------------------------------------- photographs by path
def _write_png(path, h, w, channels=3):
    from skimage.io import imsave

    rng = np.random.default_rng(0)
    shape = (h, w, channels) if channels > 1 else (h, w)
    imsave(path, (rng.random(shape) * 255).astype(np.uint8), check_contrast=False)
    return path


def test_photo_by_path_loads_like_a_name(tmp_path):
    from dipddpm_lib import data

    path = _write_png(tmp_path / "my holiday.png", 90, 150)
    x = data.load_photo(str(path), 64)
    assert x.shape == (1, 3, 64, 64) and 0 <= x.min() and x.max() <= 1
    assert data.load_photo(path, 64, "gray").shape == (1, 1, 64, 64)
    assert data.photo_name(str(path)) == "my holiday" and data.photo_name("camera") == "camera"
    assert data.check_photos([str(path), "camera"]) == (str(path), "camera")
    from dipddpm_lib import get_profile
    assert data.photo_roles(get_profile("smoke"), [str(path)]) == {str(path): "user"}


@pytest.mark.parametrize("make,match", [
    (lambda d: d / "missing.png", "no such file"),
    (lambda d: d, "is a folder"),
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "not a readable image"),
    (lambda d: (d / "broken.png").write_bytes(b"not a png") and d / "broken.png",
     "not a readable image"),
    (lambda d: _write_png(d / "tiny.png", 20, 40), "too small"),
])
def test_bad_photo_paths_give_one_clear_error(tmp_path, make, match):
    from dipddpm_lib import data

    path = make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=match):
        data.load_photo(str(path), 32)
    assert sorted(tmp_path.rglob("*")) == before


def test_two_files_with_one_stem_are_refused(tmp_path):
    from dipddpm_lib import data

    (tmp_path / "a").mkdir()
    a = _write_png(tmp_path / "a" / "x.png", 64, 64)
    b = _write_png(tmp_path / "x.png", 64, 64)
    with pytest.raises(ValueError, match="share the name 'x'"):
        data.check_photos([str(a), str(b)])


def test_unknown_name_mentions_paths():
    from dipddpm_lib import data

    with pytest.raises(ValueError, match="valid choices.*or a path to an image file"):
        data.load_photo("astronautt", 32)
