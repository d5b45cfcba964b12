import pytest
import torch

from dipddpm_lib import metrics
from dipddpm_lib.data import load_digits


def test_psnr_and_ssim_known_values():
    x = torch.full((2, 1, 16, 16), 0.5)
    assert metrics.psnr(x + 0.1, x).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert metrics.ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert (metrics.ssim(noisy, x) < 0.9).all()
    assert metrics.psnr(x[0], x[0] + 0.1).shape == (1,)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from dipddpm_lib.cache import Cache

    xtr, ytr = load_digits(16, "train")
    xte, yte = load_digits(16, "test")
    cache = Cache(tmp_path_factory.mktemp("cache"))
    clf = metrics.train_classifier(xtr, ytr, xte, yte, steps=300, cache=cache, progress=False)
    return clf, xtr, xte, cache, (xtr, ytr, xte, yte)


def test_classifier_is_accurate_and_cached(classifier):
    clf, *_, cache, args = classifier
    assert clf.test_accuracy >= 0.95
    again = metrics.train_classifier(*args, steps=300, cache=cache, progress=False)
    assert again.test_accuracy == clf.test_accuracy
    with pytest.raises(RuntimeError, match="accuracy"):
        metrics.train_classifier(*args, steps=300, cache=cache, progress=False, min_accuracy=1.01)


def test_confident_fraction_separates_digits_from_noise(classifier):
    clf, _, xte, *_ = classifier
    noise = torch.rand(200, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    real = metrics.confident_fraction(clf, xte)
    assert real > 0.9 and metrics.confident_fraction(clf, noise) < real - 0.3


def test_fid_names_features_and_orders_quality(classifier):
    clf, xtr, xte, *_ = classifier
    g = torch.Generator().manual_seed(0)
    near = metrics.fid_kid(xtr, xte, clf.net, clf.name)
    blurred = torch.nn.functional.avg_pool2d(xte, 3, 1, 1)
    far = metrics.fid_kid(xtr, torch.rand(xte.shape, generator=g), clf.net, clf.name)
    mid = metrics.fid_kid(xtr, blurred, clf.net, clf.name)
    assert near["features"].startswith("in-domain CNN classifier")
    assert near["fid"] < mid["fid"] < far["fid"]
    assert near["kid"] < far["kid"]


def test_nearest_distance_is_zero_for_members():
    bank = torch.rand(10, 1, 4, 4)
    d = metrics.nearest_distance(bank[:3], bank)
    assert d.tolist() == pytest.approx([0, 0, 0], abs=1e-6)


def test_scorer_reuses_reference_and_matches_one_shot_metrics(classifier):
    clf, xtr, xte, *_ = classifier
    scorer = metrics.GenerationScorer(xtr, clf, kid_subset=50)
    a, b = scorer(xte[:100]), scorer(xte[100:200])
    one_shot = metrics.generation_metrics(xte[:100], xtr, clf, kid_subset=50)
    assert a["fid"] == pytest.approx(one_shot["fid"], rel=1e-4)
    assert a["confident_fraction"] == one_shot["confident_fraction"]
    assert a["fid"] != b["fid"] and a["features"] == clf.name


def test_kid_is_reproducible_and_leaves_global_rng_alone(classifier):
    clf, xtr, xte, *_ = classifier
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = metrics.fid_kid(xtr, xte[:80], clf.net, clf.name, kid_subset=40)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = metrics.fid_kid(xtr, xte[:80], clf.net, clf.name, kid_subset=40)
    assert a == b
