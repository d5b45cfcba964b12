"""Run profiles: ``smoke`` (tests, seconds), ``quick`` (the CPU default), ``full`` (GPU, a user's
image folder); ``get_profile("quick", train_steps=500)`` overrides single fields."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from itertools import combinations

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
    unet_channels: tuple[int, ...] = (16, 32, 64)
    unet_attention: tuple[bool, ...] = (False, True, False)
    unet_layers_per_block: int = 1
    train_steps: int = 1600
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    grad_clip: float = 1.0
    train_precision: str = "fp32"  # the digit DDPM: "bf16" autocast is slower for its small UNet
    ema_decay: float = 0.999
    low_t_fraction: float = 0.0  # share of training times drawn on [0, low_t_max) instead of [0, T)
    low_t_max: int = 300
    num_samples: int = 128  # per seed and set (real-test FID spreads ±5.5 at 64, ±1.8 at 128)
    sample_batch: int = 256
    sampler_steps: tuple[int, ...] = (10, 20, 50)
    dpm_steps: tuple[int, ...] = (10, 20)
    seeds: tuple[int, ...] = (0, 1, 2)

    # --- photographs: disjoint sets (check_photo_sets): eval (the report's numbers), tune
    # (settings are chosen on them), prior_train (the photo DDPM's) ----------------------
    eval_photos: tuple[str, ...] = ("astronaut", "camera", "coffee", "chelsea")
    tune_photos: tuple[str, ...] = ("rocket", "coins", "china")
    prior_train_photos: tuple[str, ...] = (
        "motorcycle_left", "motorcycle_right", "hubble_deep_field", "retina",
        "immunohistochemistry", "moon", "brick", "grass", "gravel", "flower")

    # --- the photo DDPM prior (dipddpm_lib.photo_prior), trained on prior_train_photos --------
    prior_photo_size: int = 32  # training crop side; the UNet is fully convolutional
    prior_unet_channels: tuple[int, ...] = (32, 64, 64)  # no attention blocks
    prior_layers_per_block: int = 1
    prior_train_steps: int = 400
    prior_batch_size: int = 64
    prior_lr: float = 1e-3
    prior_warmup_steps: int = 50
    prior_ema_decay: float = 0.995
    prior_train_precision: str = "bf16"  # forward under bfloat16 autocast: ~1.9× faster on CPUs with bf16 units
    prior_low_t_fraction: float = 0.5  # half of each batch at t < low_t_max (DIP's σ range)
    prior_n_crops: int = 8192
    prior_short_sides: tuple[int, ...] = (64, 96, 128, 192)  # rescaling augmentation

    # --- DIP ---------------------------------------------------------------------------
    photos: tuple[str, ...] = ("astronaut", "camera", "coffee")  # chapter 04 (quick: 3 photos × 3 σ)
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
    # chapter 03 task C's DIP: at 64 px 3 × 16 peaks as high as 3 × 32 at half the cost
    photo_dip_scales: int = 3
    photo_dip_channels: int = 16

    # --- chapter 01 (DDPM baseline) ---------------------------------------------------
    ddpm_sample_steps: int = 1000  # the full ancestral chain (T); smoke shortens it

    # --- chapter 02 (DIP baseline) -----------------------------------------------------
    dip_baseline_photos: tuple[str, ...] = ("astronaut", "camera", "coffee")
    dip_baseline_iterations: int = 800  # past the peak (~300-500 iterations): shows the decline
    dip_showcase_iterations: int = 600  # the inpainting and ×4 SR examples

    # --- chapter 04 (early stopping) -------------------------------------------------
    es_photo_size: int = 32  # 32 px: the quick net's PSNR peak falls inside its 800 steps
    es_sigmas: tuple[float, ...] = (15.0, 25.0, 50.0)
    es_paper_scale: float = 0.2  # paper iteration counts (3000; ES-WMV W=100, P=1000) × this
    es_num_stages: int = 12
    es_stage_iterations: int = 50
    es_stage_schedule: str = "linear"  # "linear", "cosine" or "log" (in diffusion time)
    es_start_ratio: float = 1.0  # first stage's extra noise std, in units of the noise σ
    es_wmv_window_factors: tuple[float, ...] = (1.0, 2.5, 5.0)  # ES-WMV sensitivity: W × these
    # ES-WMV / ES-EMV in their authors' regime (W = 100, P = 1000, at most 3000 iterations),
    # one run per photo; quick: the largest net its budget allows (authors: 512 px, 5 × 128)
    es_paper_photos: tuple[str, ...] = ("camera",)
    es_paper_photo_size: int = 128
    es_paper_sigmas: tuple[float, ...] = (25.0, 50.0)
    es_paper_dip_scales: int = 4
    es_paper_dip_channels: int = 16
    es_paper_regime_scale: float = 1.0  # × the papers' W, P and 3000 (smoke: tiny)

    # --- chapter 03 (DIP-initialised DDPM) -----------------------------------------------
    # quick keeps the digit tasks A and B small: task C (photographs) holds the chapter's time
    int_num_refs: int = 32  # reference test images (= samples) per seed in task A
    int_dip_scales: int = 2  # DIP on 16 px digits: 2 scales × 8 channels
    int_dip_channels: int = 8
    int_dip_iterations: tuple[int, ...] = (100, 300)
    int_t0_list: tuple[int, ...] = (10, 50, 200)  # also the T_trunc grid
    int_chain_sampler: str = "ddim"
    int_chain_steps: int = 20  # at most this many denoiser calls from t0 / T_trunc
    int_denoise_images: int = 8
    int_t_noise: int = 600
    int_denoise_dip_iterations: int = 300
    int_denoise_t0_list: tuple[int, ...] = (5, 10, 50)
    int_denoise_ddim_steps: tuple[int, ...] = (1, 10, 50)

    # --- chapter 03, task C (photographs at DIP's noise levels; settings tuned on tune photos)
    photo_sigmas: tuple[float, ...] = (15.0, 25.0, 50.0)  # at `photo_size`
    # task C's eval photographs: two in quick (each costs three DIP fits per σ and seed)
    photo_task_photos: tuple[str, ...] = ("astronaut", "coffee")
    photo_dip_iterations: int = 400  # `dip` and the hybrids' fixed count
    photo_ddim_steps: tuple[int, ...] = (5,)
    photo_t0_list: tuple[int, ...] = (10, 30)  # DIP→t0 starts (those <= t_σ run)
    photo_chain_steps: int = 10  # at most this many calls in the DIP→t0 / TDPM-DIP chains
    photo_red_lambda: float = 1.0  # hybrid_red: target (y + λ D(f))/(1 + λ)
    photo_red_sigma_eff_ratio: float = 0.4  # hybrid_red: D's noise level σ_eff = this × σ
    photo_red_refresh: int = 20  # hybrid_red: D is recomputed every this many DIP steps
    photo_red_warm_start: bool = True  # hybrid_red: D first applied to x̂0(y), not DIP's output (chosen on the tune photos)
    photo_target_lambda: float = 1.0  # hybrid_target: target (y + λ x̂0(y))/(1 + λ)

    # --- metrics -----------------------------------------------------------------------
    classifier_steps: int = 600
    fid_features: str = "classifier"  # or "inception" or a TorchScript file (features.py)
    min_classifier_accuracy: float = 0.95

    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", prior_photo_size=16, prior_unet_channels=(16, 32), prior_train_steps=10,
        prior_batch_size=8, prior_warmup_steps=2, prior_n_crops=64, prior_short_sides=(32, 48),
        unet_channels=(16, 32), unet_attention=(False, False), train_steps=30, batch_size=32,
        warmup_steps=5, num_samples=16, sample_batch=16, sampler_steps=(5, 10), dpm_steps=(5,),
        seeds=(0, 1), photos=("astronaut", "camera"), photo_size=32, dip_scales=2, dip_channels=8,
        dip_iterations=20, ddpm_sample_steps=50, dip_baseline_photos=("astronaut", "camera"),
        dip_baseline_iterations=20, dip_showcase_iterations=10, int_num_refs=8,
        int_dip_iterations=(5, 10), int_t0_list=(5, 50), int_chain_steps=5, int_denoise_images=4,
        int_t_noise=100, int_denoise_dip_iterations=10, int_denoise_t0_list=(5,),
        int_denoise_ddim_steps=(1, 5), photo_sigmas=(25.0, 50.0),
        photo_task_photos=("camera",),  # BM3D alone is 1.4 s per RGB image, whatever its size
        photo_dip_scales=2, photo_dip_channels=8, photo_dip_iterations=20, photo_t0_list=(5, 30),
        photo_chain_steps=3, es_paper_scale=0.01, es_num_stages=4, es_stage_iterations=5,
        es_paper_photos=("astronaut",), es_paper_photo_size=32, es_paper_sigmas=(25.0,),
        es_paper_dip_scales=2, es_paper_dip_channels=8, es_paper_regime_scale=0.01,
        classifier_steps=30, min_classifier_accuracy=0.0,
    ),
    "quick": Profile(name="quick"),
    "full": Profile(
        name="full", device="cuda", dataset="folder", image_size=64,
        unet_channels=(128, 256, 256, 256), unet_attention=(False, False, True, False),
        unet_layers_per_block=2, train_steps=60_000, batch_size=128, lr=2e-4, warmup_steps=1000,
        ema_decay=0.9999, num_samples=1024, sample_batch=512,
        photos=("astronaut", "camera", "coffee", "chelsea"),  # every eval photo
        photo_size=256, dip_scales=5, dip_channels=128, dip_iterations=3000,
        dip_baseline_photos=("astronaut", "camera", "coffee", "chelsea"),
        dip_baseline_iterations=3000, dip_showcase_iterations=3000,
        int_num_refs=1024, int_dip_iterations=(50, 100, 300), int_t0_list=(5, 10, 50, 100, 200),
        int_dip_scales=4, int_dip_channels=64, int_denoise_images=64, int_denoise_dip_iterations=1000,
        photo_task_photos=("astronaut", "camera", "coffee", "chelsea"),  # every eval photo
        photo_dip_scales=5, photo_dip_channels=128, photo_dip_iterations=2000,
        photo_t0_list=(10, 30, 60), photo_chain_steps=20,
        prior_train_precision="fp32",  # bf16 was measured on the CPU only (quick); GPUs vary
        prior_photo_size=64, prior_unet_channels=(64, 128, 256, 256), prior_train_steps=20_000,
        prior_lr=2e-4, prior_warmup_steps=500, prior_ema_decay=0.999, prior_n_crops=65_536,
        prior_short_sides=(256, 384, 512), es_photo_size=256, es_paper_scale=1.0, es_stage_iterations=200,
        es_wmv_window_factors=(1.0,),  # larger windows of 256-px outputs cost GBs of memory
        es_paper_photos=("astronaut", "camera"),  # the eval photos of at least 512 px
        es_paper_photo_size=512, es_paper_dip_scales=5, es_paper_dip_channels=128,  # the ES authors'
        classifier_steps=5000,  # the rotation feature net's steps where Inception is absent
        min_classifier_accuracy=0.0, fid_features="inception",
    ),
}


PHOTO_SETS = ("eval_photos", "tune_photos", "prior_train_photos")
CHAPTER_PHOTO_FIELDS = ("photos", "dip_baseline_photos", "photo_task_photos", "es_paper_photos")  # eval photos only


def check_photo_sets(profile: Profile, chapters: bool = True) -> Profile:
    """The profile, if its photo sets are valid and disjoint and (``chapters``) every chapter's
    photos are eval photos or files."""
    from .data import check_photos, is_photo_path

    sets = {f: check_photos(getattr(profile, f), f"{f} of profile {profile.name!r}")
            for f in PHOTO_SETS}
    for a, b in combinations(PHOTO_SETS, 2):
        if shared := sorted(set(sets[a]) & set(sets[b])):
            raise ValueError(f"profile {profile.name!r}: {a} and {b} must be disjoint; both "
                             f"hold {shared}")
    for f in CHAPTER_PHOTO_FIELDS if chapters else ():
        names = check_photos(getattr(profile, f), f"{f} of profile {profile.name!r}")
        outside = [n for n in names if n not in sets["eval_photos"] and not is_photo_path(n)]
        if outside:
            raise ValueError(f"profile {profile.name!r}: {f} holds {outside}, which are not eval "
                             f"photos; valid choices (eval_photos): {', '.join(sets['eval_photos'])}")
    return profile


def get_profile(name: str, **overrides) -> Profile:
    """The named profile with single fields overridden (chapters may then use tune photos)."""
    check_choice("profile", name, PROFILES)
    base = PROFILES[name]
    valid = {f.name for f in dataclasses.fields(Profile)} - {"name"}
    if unknown := sorted(set(overrides) - valid):
        raise ValueError(f"unknown profile field(s) {unknown}; valid fields: {sorted(valid)}")
    check_photo_sets(base)
    fixed = {k: tuple(v) if isinstance(getattr(base, k), tuple) else v for k, v in overrides.items()}
    out = dataclasses.replace(base, **fixed)
    return check_photo_sets(out, chapters=False) if set(fixed) & set(PHOTO_SETS) else out


def check_device(profile: Profile) -> Profile:
    """The profile, if its ``device`` can run here; otherwise one clear error before any work."""
    import torch

    if profile.device not in ("cpu", "cuda") and not profile.device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {profile.device!r}")
    if profile.device != "cpu" and not torch.cuda.is_available():
        raise ValueError(
            f"profile {profile.name!r} runs on {profile.device!r}, and this machine has no CUDA "
            "device. Use the CPU profile (profile 'quick'; make report PROFILE=quick), or ask "
            "for the CPU explicitly: papermill ... -p device cpu, or make report ... DEVICE=cpu "
            "(slow: the full profile is sized for a GPU).")
    return profile


def run_device(profile: Profile) -> str:
    """Where the profile's networks run."""
    return check_device(profile).device
