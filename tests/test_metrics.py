import numpy as np
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


#: Training steps of the test's classifier: enough for 0.99 test accuracy on every seed tried.
STEPS = 100


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from dipddpm_lib.cache import Cache

    xtr, ytr = load_digits(16, "train")
    xte, yte = load_digits(16, "test")
    cache = Cache(tmp_path_factory.mktemp("cache"))
    clf = metrics.train_classifier(xtr, ytr, xte, yte, steps=STEPS, cache=cache, progress=False)
    return clf, xtr, xte, cache, (xtr, ytr, xte, yte)


def test_classifier_is_accurate_and_cached(classifier):
    clf, *_, cache, args = classifier
    # measured at 100 steps: test accuracy 1.000, 0.992, 0.992, 0.992 for training seeds 0-3
    assert clf.test_accuracy >= 0.95
    again = metrics.train_classifier(*args, steps=STEPS, cache=cache, progress=False)
    assert again.test_accuracy == clf.test_accuracy
    with pytest.raises(RuntimeError, match="accuracy"):
        metrics.train_classifier(*args, steps=STEPS, cache=cache, progress=False, min_accuracy=1.01)


class _FixedLogits(torch.nn.Module):
    """A stand-in classifier net: image i gets the i-th row of ``logits``."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float32)

    def forward(self, x):
        return self.logits[:len(x)]


def test_confident_fraction_on_known_logits():
    sure, unsure = [8.0] + [0.0] * 9, [0.0] * 10  # p(top) = 0.997 and 0.1
    clf = metrics.Classifier(_FixedLogits([sure, unsure, sure, unsure]), 1.0, "stub")
    x = torch.zeros(4, 1, 16, 16)
    assert metrics.confident_fraction(clf.probabilities(x)) == 0.5
    assert metrics.confident_fraction(clf.probabilities(x), threshold=0.05) == 1.0
    assert metrics.confident_fraction(clf.probabilities(x), threshold=0.999) == 0.0


def test_class_entropy_on_known_probabilities():
    eye = torch.eye(10)
    assert metrics.class_entropy(eye) == pytest.approx(1.0)  # every class used once
    assert metrics.class_entropy(torch.full((5, 10), 0.1)) == pytest.approx(1.0)
    assert metrics.class_entropy(eye[[3, 3, 3]]) == pytest.approx(0.0, abs=1e-12)  # one class
    two = eye[[0, 1, 0, 1]]
    assert metrics.class_entropy(two) == pytest.approx(np.log(2) / np.log(10))
    for bad in (torch.ones(10), torch.ones(0, 10), torch.ones(3, 1), torch.full((2, 3), -1.0),
                torch.full((2, 3), float("nan"))):
        with pytest.raises(ValueError):
            metrics.class_entropy(bad)


def _cloud(n, dim=8, seed=0, shift=0.0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) + shift


def test_precision_recall_on_hand_made_features():
    real = _cloud(200)
    same = metrics.precision_recall(real, real.clone())
    assert (same["precision"], same["recall"], same["k"]) == (1.0, 1.0, 3)
    far = metrics.precision_recall(real, _cloud(100, seed=1, shift=100.0))
    assert (far["precision"], far["recall"]) == (0.0, 0.0)
    collapsed = metrics.precision_recall(real, real[:1].repeat(50, 1))  # one point, repeated
    assert collapsed["precision"] == 1.0 and collapsed["recall"] == pytest.approx(1 / 200)
    half = metrics.precision_recall(real, real[:100])  # realistic, but covers half the data
    assert half["precision"] == 1.0 and 0.4 < half["recall"] < 1.0
    # the definition is symmetric: swapping the sets swaps precision and recall
    fake = _cloud(150, seed=2, shift=0.5)
    a, b = metrics.precision_recall(real, fake), metrics.precision_recall(fake, real)
    assert (a["precision"], a["recall"]) == (b["recall"], b["precision"])
    radii = metrics.knn_radii(real)
    assert metrics.precision_recall(real, fake, real_radii=radii) == a
    line = torch.arange(6.0)[:, None]  # points 0..5 on a line
    assert metrics.knn_radii(line, 1).tolist() == [1.0] * 6
    assert metrics.knn_radii(line, 2).tolist() == [2.0, 1.0, 1.0, 1.0, 1.0, 2.0]


@pytest.mark.parametrize("real,fake,kwargs,match", [
    (_cloud(10), _cloud(3), {}, "at least 4 feature vectors, got 3"),  # k = 3 ≥ n
    (_cloud(3), _cloud(10), {}, "at least 4 feature vectors, got 3"),
    (_cloud(10), _cloud(10), dict(k=10), "at least 11"),
    (_cloud(10), _cloud(10), dict(k=0), "positive whole number"),
    (_cloud(10, dim=8), _cloud(10, dim=4), {}, "same dimension, got 8 and 4"),
    (torch.ones(10), _cloud(10), {}, "N×D tensor"),
    (_cloud(10), _cloud(10).fill_(float("nan")), {}, "NaN"),
    (_cloud(10), _cloud(10), dict(real_radii=torch.ones(3)), "one radius per real vector"),
])
def test_precision_recall_bad_inputs(real, fake, kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics.precision_recall(real, fake, **kwargs)


def test_precision_recall_in_pixel_space_rejects_every_control():
    """No trained network: raw pixels as features, so the margins do not depend on training."""
    from dipddpm_lib.metrics import control_sets

    xtr, _ = load_digits(16, "train")
    xte, _ = load_digits(16, "test")
    real_px = xtr.flatten(1)
    radii = metrics.knn_radii(real_px)
    n, idx = 64, torch.randperm(len(xte), generator=torch.Generator().manual_seed(0))[:64]
    real = metrics.precision_recall(real_px, xte[idx].flatten(1), real_radii=radii)
    # measured (n = 64, seeds 0-2): precision 0.89-0.94, recall 0.95-0.96
    assert real["precision"] > 0.75 and real["recall"] > 0.75
    # measured (n = 64, seeds 0-2): min(precision, recall) is 0 for noise, black, white and the
    # repeated digit, and at most 0.05 for the 5x5-blurred digits (precision 0.16-0.30)
    for name, x in control_sets(xte, n, seed=0).items():
        pr = metrics.precision_recall(real_px, x.flatten(1), real_radii=radii)
        assert min(pr["precision"], pr["recall"]) < 0.2, (name, pr)


def test_fid_names_features_and_orders_quality(classifier):
    clf, xtr, xte, *_ = classifier
    g = torch.Generator().manual_seed(0)
    scorer = metrics.GenerationScorer(xtr, clf)
    near = scorer(xte)
    blurred = torch.nn.functional.avg_pool2d(xte, 3, 1, 1)
    far = scorer(torch.rand(xte.shape, generator=g))
    mid = scorer(blurred)
    assert near["features"].startswith("in-domain CNN classifier")
    # measured with 100-step classifiers of training seeds 0-3: FID near 1.1-1.4, blurred
    # 9.8-23, noise 190-620; KID near -0.02-0.008, noise 38-640: every gap is 7x or more
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
    one_shot = metrics.GenerationScorer(xtr, clf, kid_subset=50)(xte[:100])  # a fresh reference
    assert a["fid"] == pytest.approx(one_shot["fid"], rel=1e-4)
    for key in ("confident_fraction", "class_entropy", "precision", "recall"):
        assert a[key] == one_shot[key] and 0 <= a[key] <= 1
    assert a["fid"] != b["fid"] and a["features"] == clf.name and a["pr_k"] == metrics.PR_K
    with torch.no_grad():  # the scorer's precision/recall is the pure function on its features
        pure = metrics.precision_recall(clf.net.features(xtr), clf.net.features(xte[:100]))
    assert (a["precision"], a["recall"]) == pytest.approx((pure["precision"], pure["recall"]),
                                                          abs=0.02)


def test_kid_is_reproducible_and_leaves_global_rng_alone(classifier):
    clf, xtr, xte, *_ = classifier
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = metrics.GenerationScorer(xtr, clf, kid_subset=40)(xte[:80])
    assert torch.equal(torch.random.get_rng_state(), state)
    b = metrics.GenerationScorer(xtr, clf, kid_subset=40)(xte[:80])
    assert a == b
