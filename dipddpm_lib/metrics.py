"""PSNR / SSIM per image; FID, KID, improved precision / recall (Kynkäänniemi et al. 2019), the
confident fraction and class entropy of sample sets in a named feature network; control sets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from tqdm.auto import tqdm

from .cache import Cache, cached, digest
from .errors import check_images, check_positive_int, check_seeds


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB (images in [0,1])."""
    x, ref = _batch(x), _batch(ref)
    return peak_signal_noise_ratio(x.clamp(0, 1), ref, data_range=1.0, dim=(1, 2, 3),
                                   reduction="none")


def ssim(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of ``x`` against ``ref`` (both N×C×H×W in [0,1])."""
    x, ref = _batch(x), _batch(ref)
    kernel = 7 if min(x.shape[-2:]) < 32 else 11
    return structural_similarity_index_measure(x.clamp(0, 1), ref, data_range=1.0,
                                               kernel_size=kernel, reduction="none")


def _batch(x: torch.Tensor) -> torch.Tensor:
    return (x.unsqueeze(0) if x.dim() == 3 else x).float()


class FeatureNet(nn.Module):
    """A small CNN classifier; ``features`` (its penultimate layer) feeds FID and KID."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        w, num_features = 32, 128
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * w, num_features), nn.ReLU(),
        )
        self.head = nn.Linear(num_features, num_classes)
        self.num_features = num_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features of images in [0,1]."""
        return self.body(x * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class Classifier:
    """The cached in-domain classifier and what it scored on the held-out test split."""
    net: FeatureNet
    test_accuracy: float
    name: str

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax class probabilities for images in [0,1]."""
        return torch.cat([F.softmax(self.net(x[i:i + 512].float()), 1) for i in range(0, len(x), 512)])


def fit_feature_net(kind: str, key: dict, make_net, batch_loss, test, steps: int, seed: int,
                    acc_key: str, cache=None, progress: bool = True) -> tuple[nn.Module, float]:
    """``make_net()`` trained (or cached under ``kind``) with AdamW, one-cycle to 3e-3, on
    ``batch_loss(net, gen)``, and its accuracy ``acc_key`` on ``test() → (images, labels)``."""
    def _train():
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        net = make_net()
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        for _ in tqdm(range(steps), desc=kind, disable=not progress, mininterval=2):
            loss = batch_loss(net, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        x, y = test()
        with torch.no_grad():
            acc = float((net.eval()(x).argmax(1) == y).float().mean())
        return dict(net.state_dict()), {acc_key: acc}

    tensors, meta = cached(kind, key, _train, cache)
    net = make_net()
    net.load_state_dict(tensors)
    return net.eval(), meta[acc_key]


def train_classifier(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                     y_test: torch.Tensor, steps: int = 600, seed: int = 0,
                     cache: Cache | None = None, min_accuracy: float = 0.0,
                     progress: bool = True) -> Classifier:
    """The cached in-domain classifier whose features FID/KID use (``RuntimeError`` below ``min_accuracy``)."""
    check_images(x_train, "classifier training images")
    n_cls = int(y_train.max()) + 1
    key = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
           "steps": steps, "seed": seed, "classes": n_cls}

    def batch_loss(net, gen):  # 128 training images, shifted by up to a pixel each way
        idx = torch.randint(0, len(x_train), (128,), generator=gen)
        dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
        return F.cross_entropy(net(torch.roll(x_train[idx], shifts=(dx, dy), dims=(2, 3))),
                               y_train[idx])

    net, acc = fit_feature_net("classifier", key, lambda: FeatureNet(x_train.shape[1], n_cls),
                               batch_loss, lambda: (x_test, y_test), steps, seed, "test_accuracy",
                               cache, progress)
    if acc < min_accuracy:
        raise RuntimeError(f"feature classifier test accuracy {acc:.3f} < required {min_accuracy}")
    return Classifier(net, acc, f"in-domain CNN classifier features ({net.num_features}-d, "
                                f"test acc {acc:.3f})")


def confident_fraction(probs: torch.Tensor, threshold: float = 0.9) -> float:
    """Share of images whose top class probability is at least ``threshold`` (gameable)."""
    return float((probs.max(1).values >= threshold).float().mean())


def class_entropy(probs: torch.Tensor) -> float:
    """Entropy of the mean class distribution (N×C) over log(C): 1 uniform, 0 one class."""
    p = _check_features(probs, "class probabilities")
    if p.shape[1] < 2 or len(p) == 0 or (p < 0).any():
        raise ValueError(f"class_entropy needs N ≥ 1 rows of C ≥ 2 non-negative class "
                         f"probabilities, got shape {tuple(p.shape)}")
    m = p.mean(0)
    m = m / m.sum()
    h = -(m * m.clamp_min(1e-300).log()).sum()
    return float((h / np.log(probs.shape[1])).clamp(0.0, 1.0))


PR_K = 3  # k of the k-NN balls of precision / recall (Kynkäänniemi et al. use 3)


def _check_features(f, what: str) -> torch.Tensor:
    if not isinstance(f, torch.Tensor) or f.dim() != 2:
        raise ValueError(f"{what} must be an N×D tensor of feature vectors, got "
                         f"{tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__}")
    if not torch.isfinite(f).all():
        raise ValueError(f"{what} hold NaN or Inf values")
    return f.detach().double()


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # exact differences, not the |a|² + |b|² − 2ab shortcut: equal vectors are at distance 0
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def knn_radii(features: torch.Tensor, k: int = PR_K) -> torch.Tensor:
    """Distance from each feature vector (N×D) to its k-th nearest other vector."""
    f = _check_features(features, "features")
    k = check_positive_int("k", k)
    if k >= len(f):
        raise ValueError(f"k = {k} nearest neighbours need at least {k + 1} feature vectors, "
                         f"got {len(f)}")
    return _dist(f, f).kthvalue(k + 1, dim=1).values


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_K,
                     real_radii: torch.Tensor | None = None) -> dict:
    """Share of ``fake`` inside the real vectors' k-NN balls (precision) and of ``real``
    inside the fake ones' (recall); ``real_radii``: ``knn_radii(real, k)`` computed once."""
    r, f = _check_features(real, "real features"), _check_features(fake, "generated features")
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real and generated features must have the same dimension, got "
                         f"{r.shape[1]} and {f.shape[1]}")
    fake_radii = knn_radii(f, k)
    if real_radii is None:
        real_radii = knn_radii(r, k)
    elif real_radii.shape != (len(r),):
        raise ValueError(f"real_radii must hold one radius per real vector ({len(r)}), got "
                         f"shape {tuple(real_radii.shape)}")
    d = _dist(f, r)  # N_fake × N_real
    precision = (d <= real_radii.double()[None]).any(1).double().mean()
    recall = (d.T <= fake_radii[None]).any(1).double().mean()
    return {"precision": float(precision), "recall": float(recall), "k": k}


def nearest_distance(x: torch.Tensor, bank: torch.Tensor) -> np.ndarray:
    """Per-image RMS pixel distance from each ``x`` to its nearest neighbour in ``bank``."""
    a, b = x.flatten(1).double(), bank.flatten(1).double()
    return (torch.cdist(a, b).min(1).values / np.sqrt(a.shape[1])).numpy()


class GenerationScorer:
    """Every generation score of sample sets against one fixed reference (features and k-NN radii
    computed once), in ``source``'s features; class scores None without probabilities."""

    def __init__(self, reference: torch.Tensor, source, kid_subset: int = 100):
        check_images(reference, "reference images")
        self.classifier, self.n_real, self.kid_subset = source, len(reference), kid_subset
        self.k, self._ref = PR_K, self._features(reference)
        given = nn.Identity()  # torchmetrics is fed features already extracted once
        given.num_features = self._ref.shape[1]
        self._kid_args = dict(feature=given, normalize=True, reset_real_features=False)
        self.fid = FrechetInceptionDistance(**self._kid_args)
        self._kids: dict[int, KernelInceptionDistance] = {}
        self._update(self.fid, self._ref, real=True)
        self._ref_radii = knn_radii(self._ref, self.k)

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.classifier.net.features(x[i:i + 512].float())
                          for i in range(0, len(x), 512)])

    @staticmethod
    @torch.no_grad()
    def _update(metric, f: torch.Tensor, real: bool) -> None:
        for i in range(0, len(f), 512):  # the batches the features were extracted in
            metric.update(f[i:i + 512], real=real)

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor) -> dict:
        check_images(samples, "generated images")
        f = self._features(samples)
        subset = min(self.kid_subset, len(samples), self.n_real)
        if subset not in self._kids:  # one KID (the reference's features in) per subset size
            self._kids[subset] = KernelInceptionDistance(subset_size=subset, **self._kid_args)
            self._update(self._kids[subset], self._ref, real=True)
        kid = self._kids[subset]
        for metric in (self.fid, kid):
            metric.reset()
            self._update(metric, f, real=False)
        with torch.random.fork_rng(devices=[]):  # KID's subsets: seeded, caller's RNG kept
            torch.manual_seed(0)
            kid_mean, kid_std = kid.compute()
        pr = precision_recall(self._ref, f, self.k, real_radii=self._ref_radii)
        probs = self.classifier.probabilities(samples) \
            if hasattr(self.classifier, "probabilities") else None
        return {"fid": float(self.fid.compute()), "kid": float(kid_mean),
                "kid_std": float(kid_std), "features": self.classifier.name,
                "n_real": self.n_real, "n_fake": len(samples),
                "precision": pr["precision"], "recall": pr["recall"], "pr_k": self.k,
                "confident_fraction": None if probs is None else confident_fraction(probs),
                "class_entropy": None if probs is None else class_entropy(probs)}


_SCORER: dict = {}


def scorer_for(reference: torch.Tensor, classifier) -> GenerationScorer:
    """The :class:`GenerationScorer` of the last (reference, feature source), kept."""
    key = (classifier.name, id(classifier), digest(reference))
    if _SCORER.get("key") != key:  # the classifier is kept so that its id is not reused
        _SCORER.update(key=key, scorer=GenerationScorer(reference, classifier), classifier=classifier)
    return _SCORER["scorer"]


CONTROLS = ("noise", "black", "white", "blurred", "repeated")  # sets a measure must reject


def blur_kernel(image_size: int) -> int:
    """The blurred control's box: ``image_size // 4 + 1`` made odd."""
    k = check_positive_int("image_size", image_size) // 4 + 1
    return k + 1 - k % 2


def test_subset(x_test: torch.Tensor, num_samples: int, seed: int) -> torch.Tensor:
    """The seed's random subset of ``num_samples`` test images (all of them if fewer)."""
    check_images(x_test, "test images")
    n = min(check_positive_int("num_samples", num_samples), len(x_test))
    seed = check_seeds([seed])[0]
    return x_test[torch.randperm(len(x_test), generator=torch.Generator().manual_seed(seed))[:n]]


def control_sets(x_test: torch.Tensor, num_samples: int, seed: int) -> dict[str, torch.Tensor]:
    """:data:`CONTROLS` at a sample set's size, from the seed's :func:`test_subset`."""
    real = test_subset(x_test, num_samples, seed).float()
    k = blur_kernel(min(real.shape[-2:]))
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(seed))
    return {"noise": noise, "black": torch.zeros_like(real), "white": torch.ones_like(real),
            "blurred": F.avg_pool2d(real, k, 1, k // 2),
            "repeated": real[:1].repeat(len(real), 1, 1, 1)}
