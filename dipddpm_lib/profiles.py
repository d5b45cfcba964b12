"""Run profiles: one frozen config object holds every size, step count and sample count.

``smoke`` runs in seconds (tests), ``quick`` is the CPU default, ``full`` is the GPU run on a
user's 64×64 RGB image folder. A notebook picks one with its ``profile`` parameter and may
override single fields: ``get_profile("quick", train_steps=500)``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import check_choice


@dataclass(frozen=True)
class Profile:
    """Every size, step count and sample count used by one run of the report."""

    name: str
    device: str = "cpu"

    # --- generation data (digits, or a user folder in `full`) ---------------------------
    dataset: str = "digits"  # "digits" or "folder"
    data_dir: str | None = None
    image_size: int = 16
    test_fraction: float = 0.2

    # --- DDPM --------------------------------------------------------------------------
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_attention: tuple[bool, ...] = (False, True, False)
    unet_layers_per_block: int = 1
    train_steps: int = 1600
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    num_samples: int = 128
    sample_batch: int = 256
    sampler_steps: tuple[int, ...] = (10, 20, 50, 100)
    dpm_steps: tuple[int, ...] = (10, 20)
    seeds: tuple[int, ...] = (0, 1, 2)

    # --- DIP ---------------------------------------------------------------------------
    photos: tuple[str, ...] = ("astronaut", "camera", "coffee", "chelsea")
    photo_size: int = 64
    dip_scales: int = 3
    dip_channels: int = 32
    dip_skip_channels: int = 4
    dip_input_depth: int = 32
    dip_upsample: str = "bilinear"
    dip_iterations: int = 800
    dip_lr: float = 0.01
    dip_reg_noise_std: float = 1.0 / 30.0
    dip_ema: float = 0.99

    # --- metrics -----------------------------------------------------------------------
    classifier_steps: int = 600
    fid_features: str = "classifier"  # "classifier" or a path to a TorchScript feature net
    min_classifier_accuracy: float = 0.95

    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        image_size=16,
        unet_channels=(16, 32),
        unet_attention=(False, False),
        train_steps=30,
        batch_size=32,
        warmup_steps=5,
        num_samples=16,
        sample_batch=16,
        sampler_steps=(5, 10),
        dpm_steps=(5,),
        seeds=(0, 1),
        photos=("astronaut", "camera"),
        photo_size=32,
        dip_scales=2,
        dip_channels=8,
        dip_iterations=20,
        classifier_steps=30,
        min_classifier_accuracy=0.0,
    ),
    "quick": Profile(name="quick"),
    "full": Profile(
        name="full",
        device="cuda",
        dataset="folder",
        image_size=64,
        unet_channels=(128, 256, 256, 256),
        unet_attention=(False, False, True, False),
        unet_layers_per_block=2,
        train_steps=60_000,
        batch_size=128,
        lr=2e-4,
        warmup_steps=1000,
        ema_decay=0.9999,
        num_samples=1024,
        sample_batch=512,
        seeds=(0, 1, 2),
        photos=("astronaut", "camera", "coffee", "chelsea", "rocket", "horse"),
        photo_size=256,
        dip_scales=5,
        dip_channels=128,
        dip_iterations=3000,
        classifier_steps=5000,
        min_classifier_accuracy=0.0,
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    """Return the named profile, with single fields overridden.

    Raises ``ValueError`` naming the valid choices for an unknown profile or field.
    """
    check_choice("profile", name, PROFILES)
    base = PROFILES[name]
    valid = {f.name for f in dataclasses.fields(Profile)} - {"name"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown profile field(s) {unknown}; valid fields: {sorted(valid)}")
    fixed = {k: tuple(v) if isinstance(getattr(base, k), tuple) else v for k, v in overrides.items()}
    return dataclasses.replace(base, **fixed)
