"""Sampler sweeps: sample sets for (sampler, steps) methods × seeds, scored in-domain.

A *method* is a sampler and a step count, ``Method("ddim", 20)``. A sweep draws the same
number of samples for every method with the same seeds (so from the same prior noise)
through :func:`ddpm.sample_cached`, and scores each set against the train split with the
in-domain classifier: FID, KID, precision and recall (Kynkäänniemi et al. 2019), the confident
fraction and the class entropy. Its per-seed rows are the tidy table; :func:`summarize` turns
them into mean ± 95 % interval per method beside the compute (NFE, FLOPs, wall seconds). The
reference is real test images scored the same way, on subsets of the same size as a sample set
(small-sample FID is biased upwards: compare like with like); the controls
(:func:`control_sets`: noise, constant images, blurred digits, one repeated digit) are scored
the same way too, and the quality bar must tell them from the real images.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from itertools import product

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .cache import Cache
from .compute import count_flops
from .ddpm import BETA_SCHEDULES, SAMPLERS, TrainedDDPM, make_scheduler, sample_cached
from .errors import check_choice, check_images, check_positive_int, check_seeds
from .metrics import PR_K, Classifier, GenerationScorer
from .plots import image_grid
from .profiles import Profile, check_device, get_profile
from .results import CI_NOTE, fmt, paired_difference, spread

SAMPLER_KEYS = {"ddpm": "ddpm", "ddim": "ddim", "dpm-solver++": "dpmpp"}
SAMPLER_LABELS = {"ddpm": "DDPM", "ddim": "DDIM", "dpm-solver++": "DPM-Solver++"}
SAMPLER_COLORS = {"ddpm": "black", "ddim": "tab:blue", "dpm-solver++": "tab:orange"}
#: KID is in squared feature units; tables, plots and prose show it × KID_SCALE.
KID_SCALE = 1e3
KID_LABEL = "KID ×10³ (feature units²)"
QUALITIES = {"fid": "FID (in-domain, lower is better)",
             "kid": "KID ×10³ (feature units², lower is better)",
             "precision": "precision (higher is better)", "recall": "recall (higher is better)",
             "confident_fraction": "confident fraction (higher is better)"}
#: What every sample set, the real reference and every control is scored on, per seed.
SCORES = ("fid", "kid", "precision", "recall", "confident_fraction", "class_entropy")
COSTS = {"nfe": "denoiser evaluations (NFE)", "gflops": "GFLOPs per sample set",
         "wall_s": "wall seconds per sample set"}


# --------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class Method:
    """One sampler at one step count, e.g. ``Method("ddim", 20)`` (key ``ddim_20``)."""

    sampler: str
    num_steps: int

    def __post_init__(self):
        check_choice("sampler", self.sampler, SAMPLERS)
        object.__setattr__(self, "num_steps", check_positive_int(
            f"{self.sampler} num_steps", self.num_steps))

    @property
    def key(self) -> str:
        """File- and JSON-friendly name: ``ddpm_1000``, ``ddim_10``, ``dpmpp_20``."""
        return f"{SAMPLER_KEYS[self.sampler]}_{self.num_steps}"

    @property
    def label(self) -> str:
        """Reader-facing name: ``DDPM-1000``, ``DDIM-10``, ``DPM-Solver++-20``."""
        return f"{SAMPLER_LABELS[self.sampler]}-{self.num_steps}"


def check_steps(what: str, steps) -> tuple[int, ...]:
    """A non-empty list of distinct positive whole step counts (a single int is allowed)."""
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
        steps = (steps,)
    if isinstance(steps, str):
        raise ValueError(f"{what} must be a list of positive whole numbers, got {steps!r}")
    try:
        steps = tuple(steps)
    except TypeError:
        raise ValueError(f"{what} must be a list of positive whole numbers, "
                         f"got {steps!r}") from None
    if not steps or len(set(steps)) != len(steps):
        raise ValueError(f"{what} must be a non-empty list of distinct step counts, got {steps!r}")
    return tuple(check_positive_int(what, s) for s in steps)


def check_methods(methods, num_train_timesteps: int = 1000) -> list[Method]:
    """A non-empty list of distinct :class:`Method` with at most T steps each."""
    methods = list(methods)
    if not methods or not all(isinstance(m, Method) for m in methods):
        raise ValueError(f"methods must be a non-empty list of Method(sampler, num_steps); "
                         f"valid samplers: {', '.join(SAMPLERS)}")
    if len({m.key for m in methods}) != len(methods):
        raise ValueError(f"methods repeat: {[m.key for m in methods]}")
    for m in methods:
        if m.num_steps > num_train_timesteps:
            raise ValueError(f"{m.label}: num_steps must be at most T={num_train_timesteps}")
    return methods


def baseline_methods(ddim_steps, dpm_steps, ddpm_steps: int = 1000) -> list[Method]:
    """DDPM at ``ddpm_steps``, DDIM at each ``ddim_steps``, DPM-Solver++ at each ``dpm_steps``."""
    return ([Method("ddpm", ddpm_steps)]
            + [Method("ddim", k) for k in check_steps("sampler_steps", ddim_steps)]
            + [Method("dpm-solver++", k) for k in check_steps("dpm_steps", dpm_steps)])


# --------------------------------------------------------------------------- the chapter's plan
@dataclass(frozen=True)
class SweepPlan:
    """A sampler sweep's settings, resolved against the profile and validated."""

    profile: Profile
    methods: list[Method]
    seeds: tuple[int, ...]
    train_seed: int = 0

    @property
    def baseline(self) -> str:
        """Key of the reference sampler, the (long) DDPM chain: the first method."""
        return self.methods[0].key

    @property
    def beta_schedule(self) -> str:
        """The noise schedule the DDPM is trained and sampled with."""
        return self.profile.beta_schedule

    def to_dict(self) -> dict:
        """The run's settings for ``metrics.json``."""
        p = self.profile
        return {"profile": p.name, "beta_schedule": p.beta_schedule, "seeds": list(self.seeds),
                "train_seed": self.train_seed, "image_size": p.image_size,
                "train_steps": p.train_steps, "num_samples": p.num_samples,
                "method_keys": [m.key for m in self.methods]}


def make_plan(profile: str = "quick", seeds=None, beta_schedule=None, image_size=None,
              train_steps=None, num_samples=None, sampler_steps=None, dpm_steps=None,
              ddpm_steps=None, train_seed: int = 0, device=None, data_dir=None) -> SweepPlan:
    """Validate chapter 01's parameters and fill the ``None`` ones from the profile.

    Raises ``ValueError`` naming the valid choices before anything is loaded or trained (a
    ``device`` this machine lacks included, :func:`~dipddpm_lib.profiles.check_device`).
    ``ddpm_steps`` defaults to the profile's ``ddpm_sample_steps`` (T = 1000 but in smoke);
    ``data_dir`` is the image folder of a ``folder`` dataset (``full``).
    """
    given = dict(beta_schedule=beta_schedule, image_size=image_size, train_steps=train_steps,
                 num_samples=num_samples, sampler_steps=sampler_steps, dpm_steps=dpm_steps,
                 ddpm_sample_steps=ddpm_steps, device=device, data_dir=data_dir)
    for key in ("sampler_steps", "dpm_steps"):
        if given[key] is not None:
            given[key] = check_steps(key, given[key])
    prof = check_device(get_profile(profile, **{k: v for k, v in given.items() if v is not None}))
    check_choice("beta schedule", prof.beta_schedule, BETA_SCHEDULES)
    check_image_size(prof)
    check_positive_int("train_steps", prof.train_steps)
    check_num_samples(prof.num_samples)
    T = prof.num_train_timesteps
    methods = check_methods(baseline_methods(prof.sampler_steps, prof.dpm_steps,
                                             prof.ddpm_sample_steps), T)
    return SweepPlan(prof, methods, check_seeds(prof.seeds if seeds is None else seeds),
                     check_seeds([train_seed])[0])


def check_num_samples(num_samples) -> int:
    """A whole number of samples per set, at least ``PR_K + 1`` (precision and recall use each
    sample's ``PR_K``-th nearest neighbour; FID fits a covariance)."""
    if check_positive_int("num_samples", num_samples) < PR_K + 1:
        raise ValueError(f"num_samples must be at least {PR_K + 1} (precision and recall use "
                         f"each sample's {PR_K} nearest neighbours), got {num_samples}")
    return int(num_samples)


def check_image_size(profile: Profile) -> int:
    """The UNet halves the image once per extra level: the size must divide by 2**(levels-1)."""
    size = check_positive_int("image_size", profile.image_size)
    step = 2 ** (len(profile.unet_channels) - 1)
    if size % step:
        raise ValueError(f"image_size must be a multiple of {step} for a "
                         f"{len(profile.unet_channels)}-level UNet, got {size}")
    return size


# --------------------------------------------------------------------------- the sweep
@dataclass
class Sweep:
    """A sweep's per-seed rows (the tidy table) and its sample sets by method key and seed."""

    rows: list[dict]
    samples: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)

    def images(self, key: str) -> torch.Tensor:
        """Every seed's samples of one method, concatenated in seed order."""
        return torch.cat([self.samples[key][s] for s in sorted(self.samples[key])])


_SCORER: dict = {}


def _scorer(x_train: torch.Tensor, classifier: Classifier) -> GenerationScorer:
    """One :class:`GenerationScorer` per (train split, classifier), kept while they are the
    same: the reference features and k-NN radii are computed once for every set scored."""
    digest = hashlib.sha256(x_train.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
    key = (classifier.name, id(classifier), tuple(x_train.shape), digest)
    if _SCORER.get("key") != key:
        _SCORER.clear()
        _SCORER.update(key=key, scorer=GenerationScorer(x_train, classifier),
                       classifier=classifier)
    return _SCORER["scorer"]


def score(images: torch.Tensor, x_train: torch.Tensor, classifier: Classifier) -> dict:
    """FID, KID (± std over subsets; reproducible, see ``metrics``), precision and recall
    (k = ``PR_K``), confident fraction and class entropy of ``images`` vs the train split."""
    m = _scorer(x_train, classifier)(images)
    return {k: m[k] for k in (*SCORES, "kid_std", "features")}


def sweep(model: TrainedDDPM, methods, seeds, num_samples: int, x_train: torch.Tensor,
          classifier: Classifier, batch_size: int = 256, cache: Cache | None = None,
          progress: bool = True) -> Sweep:
    """Draw and score ``num_samples`` images for every method × seed (sample sets are cached).

    Each row holds the method, seed, every score in ``SCORES`` and the sampler's compute
    (NFE, FLOPs, wall seconds as recorded when the set was drawn).
    """
    methods = check_methods(methods, model.num_train_timesteps)
    seeds = check_seeds(seeds)
    num_samples = check_num_samples(num_samples)
    batch_size = check_positive_int("batch_size", batch_size)
    check_images(x_train, "train images")
    out = Sweep([])
    for method, seed in tqdm(list(product(methods, seeds)), desc="sampler sweep",
                             disable=not progress):
        res = sample_cached(model, method.sampler, method.num_steps, num_samples, seed,
                            batch_size, cache=cache, progress=progress)
        out.samples.setdefault(method.key, {})[seed] = res.images
        c = res.compute
        out.rows.append({"method": method.key, "label": method.label, "sampler": method.sampler,
                         "num_steps": method.num_steps, "seed": seed, "num_samples": num_samples,
                         **score(res.images, x_train, classifier), "nfe": c.nfe,
                         "flops": c.flops, "gflops": c.flops / 1e9, "wall_s": c.wall_s})
    return out


def real_reference(x_test: torch.Tensor, x_train: torch.Tensor, classifier: Classifier, seeds,
                   num_samples: int) -> dict:
    """Real test images scored like a sample set: the floor FID can reach.

    Per seed, a random subset of the test split of ``num_samples`` images (all of them if the
    split is smaller); and once, the whole test split, for information.
    """
    check_images(x_test, "test images")
    num_samples = check_positive_int("num_samples", num_samples)
    n = min(num_samples, len(x_test))
    rows = []
    for seed in check_seeds(seeds):
        idx = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(seed))[:n]
        rows.append({"seed": seed, "num_samples": n, **score(x_test[idx], x_train, classifier)})
    return {**_spreads(rows), "label": f"real test images ({n} per seed)", "num_samples": n,
            "per_seed": rows,
            "full_test": {"num_samples": len(x_test), **score(x_test, x_train, classifier)}}


def blur_kernel(image_size: int) -> int:
    """The blurred control's box size: ``image_size // 4 + 1`` made odd (5 at 16 px)."""
    k = check_positive_int("image_size", image_size) // 4 + 1
    return k + 1 - k % 2


CONTROLS = ("noise", "black", "white", "blurred", "repeated")


def control_labels(image_size: int) -> dict[str, str]:
    """Reader-facing names of the controls."""
    k = blur_kernel(image_size)
    return {"noise": "uniform noise", "black": "constant black", "white": "constant white",
            "blurred": f"blurred test images ({k}×{k} box)",
            "repeated": "one test image repeated"}


def control_sets(x_test: torch.Tensor, num_samples: int, seed: int) -> dict[str, torch.Tensor]:
    """Sets a quality measure must reject, each the size of a sample set: uniform noise,
    constant black, constant white, the seed's real test subset (the one
    :func:`real_reference` scores) blurred with a box of :func:`blur_kernel` pixels, and that
    subset's first image repeated (mode collapse)."""
    check_images(x_test, "test images")
    n = min(check_positive_int("num_samples", num_samples), len(x_test))
    seed = check_seeds([seed])[0]
    idx = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(seed))[:n]
    real = x_test[idx].float()
    k = blur_kernel(min(real.shape[-2:]))
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(seed))
    return {"noise": noise, "black": torch.zeros_like(real), "white": torch.ones_like(real),
            "blurred": F.avg_pool2d(real, k, 1, k // 2), "repeated": real[:1].repeat(n, 1, 1, 1)}


def controls(x_test: torch.Tensor, x_train: torch.Tensor, classifier: Classifier, seeds,
             num_samples: int) -> dict:
    """Every control of :func:`control_sets` scored like a sample set, per seed, with the
    same spreads as a method (and the same number of images as the real reference)."""
    check_images(x_test, "test images")
    labels = control_labels(min(x_test.shape[-2:]))
    per_seed = {name: [] for name in CONTROLS}
    for seed in check_seeds(seeds):
        for name, images in control_sets(x_test, num_samples, seed).items():
            per_seed[name].append({"seed": seed, "num_samples": len(images),
                                   **score(images, x_train, classifier)})
    return {name: {"label": labels[name], "num_samples": rows[0]["num_samples"],
                   **_spreads(rows), "per_seed": rows} for name, rows in per_seed.items()}


def training_compute(model: TrainedDDPM, profile: Profile) -> dict:
    """What training cost: FLOPs of one forward + backward pass on a batch (counted once)
    times the training steps, the recorded wall seconds, the parameter count, the final loss."""
    unet = model.unet
    c, s = unet.config.in_channels, unet.config.sample_size
    x = torch.zeros(profile.batch_size, c, s, s, device=unet.device)
    t = torch.zeros(profile.batch_size, dtype=torch.long, device=unet.device)
    flops_per_step, _ = count_flops(lambda: unet(x, t).sample.square().mean().backward())
    unet.zero_grad(set_to_none=True)
    flops = flops_per_step * profile.train_steps
    return {"steps": profile.train_steps, "batch_size": profile.batch_size,
            "seconds": model.meta["train_seconds"], "n_params": model.meta["n_params"],
            "final_loss": model.meta["final_loss"], "flops": flops, "gflops": flops / 1e9}


# --------------------------------------------------------------------------- summaries
def _spreads(rows: list[dict]) -> dict:
    return {k: spread(r[k] for r in rows) for k in SCORES if k in rows[0]}


def summarize(rows: list[dict]) -> dict:
    """Per method (in row order): per-seed rows, the spread (mean, 95 % interval, …) of every
    score in ``SCORES`` and of wall seconds, and the (seed-independent) NFE and GFLOPs of one
    sample set."""
    out = {}
    for key in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == key]
        first = mine[0]
        out[key] = {"label": first["label"], "sampler": first["sampler"],
                    "num_steps": first["num_steps"], "num_samples": first["num_samples"],
                    "features": first["features"], "per_seed": mine, **_spreads(mine),
                    "nfe": first["nfe"], "gflops": first["gflops"],
                    "gflops_per_image": first["gflops"] / first["num_samples"],
                    "wall_s": spread(r["wall_s"] for r in mine)}
    return out


def _bar_checks(entry: dict, reference: dict, min_precision: float, min_recall: float,
                max_fid_ratio: float) -> dict:
    p, r = entry["precision"]["mean"], entry["recall"]["mean"]
    ratio = entry["fid"]["mean"] / reference["fid"]["mean"]
    ok = {"precision_ok": p >= min_precision, "recall_ok": r >= min_recall,
          "fid_ok": ratio <= max_fid_ratio}
    return {"precision": p, "recall": r, "fid_ratio": ratio, **ok, "passes": all(ok.values())}


def quality_bar(methods: dict, reference: dict, controls: dict | None = None,
                baseline: str = "ddpm_1000", min_precision: float = 0.5, min_recall: float = 0.5,
                max_fid_ratio: float = 3.0) -> dict:
    """Do ``baseline``'s samples look like the data, and cover it? Its mean precision is at
    least ``min_precision``, its mean recall at least ``min_recall``, and its mean FID within
    ``max_fid_ratio`` × the same-size real reference's. The confident fraction is recorded but
    not judged (constant images score 1 on it).

    With ``controls`` the bar is also tested on them: every control should fail it and the real
    reference pass it (``controls_fail_reference_passes``); ``control_margin`` is the real
    reference's min(precision, recall) minus the largest min(precision, recall) of a control.
    """
    b = methods[baseline]
    checks = _bar_checks(b, reference, min_precision, min_recall, max_fid_ratio)
    out = {"method": baseline,
           "rule": (f"mean precision ≥ {min_precision:g}, mean recall ≥ {min_recall:g} and mean "
                    f"FID ≤ {max_fid_ratio:g} × the same-size real reference's"),
           "min_precision": min_precision, "min_recall": min_recall,
           "max_fid_ratio": max_fid_ratio, "fid": b["fid"]["mean"],
           "reference_fid": reference["fid"]["mean"],
           **{k: v for k, v in checks.items() if k != "passes"}, "passed": checks["passes"],
           "confident_fraction": b["confident_fraction"]["mean"]}
    if controls:
        ref = _bar_checks(reference, reference, min_precision, min_recall, max_fid_ratio)
        ctl = {k: _bar_checks(c, reference, min_precision, min_recall, max_fid_ratio)
               for k, c in controls.items()}
        lowest = {k: min(c["precision"], c["recall"]) for k, c in ctl.items()}
        worst = max(lowest, key=lowest.get)
        ref_min = min(ref["precision"], ref["recall"])
        out.update({
            "reference": ref, "controls": ctl, "reference_min_pr": ref_min,
            "worst_control": worst, "worst_control_min_pr": lowest[worst],
            "control_margin": ref_min - lowest[worst],
            "controls_fail": not any(c["passes"] for c in ctl.values()),
            "reference_passes": ref["passes"],
            "controls_fail_reference_passes": bool(ref["passes"]
                                                   and not any(c["passes"] for c in ctl.values()))})
    return out


def ordered(methods: dict) -> dict:
    """Method summaries by sampler (DDPM, DDIM, DPM-Solver++), then step count: a JSON
    round trip sorts keys alphabetically, this puts them back in reading order."""
    return dict(sorted(methods.items(), key=lambda kv: (SAMPLERS.index(kv[1]["sampler"]),
                                                        kv[1]["num_steps"])))


def _scaled(s: dict, factor: float) -> dict:
    """A spread dict with every value (not n) multiplied by ``factor`` (KID × 10³)."""
    return {k: v * factor if k != "n" and isinstance(v, (int, float)) else v for k, v in s.items()}


def _cell(s: dict | None, digits: int = 2, factor: float = 1.0) -> str:
    if s is None:
        return "–"
    if isinstance(s, dict):
        return fmt(_scaled(s, factor), digits)
    return f"{s * factor:.{digits}f}"


def _quality_cells(e: dict) -> list[str]:
    return [_cell(e.get("fid")), _cell(e.get("kid"), 2, KID_SCALE), _cell(e.get("precision"), 3),
            _cell(e.get("recall"), 3), _cell(e.get("confident_fraction"), 3),
            _cell(e.get("class_entropy"), 3)]


def _ordered_controls(controls: dict) -> dict:
    """Controls in ``CONTROLS`` order (a JSON round trip sorts them alphabetically)."""
    rank = {k: i for i, k in enumerate(CONTROLS)}
    return dict(sorted(controls.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def table_caption(methods: dict) -> str:
    """How to read the results table's ``±``, with the number of seeds it is taken over."""
    m = next(iter(methods.values()))
    return (f"_Each cell: {CI_NOTE} ({m['fid']['n']} seeds, {m['num_samples']} images per seed "
            f"and set). {KID_LABEL}: KID is in squared units of the classifier's features. "
            f"Precision and recall: k = {PR_K} nearest neighbours in the same features._")


def results_table(methods: dict, reference: dict, controls: dict | None = None) -> str:
    """Markdown table, under a caption that says how to read ``±``: compute and every score
    per method (mean ± 95 % t-interval over seeds), then the real-image reference rows, then
    the controls scored the same way."""
    methods = ordered(methods)
    head = ["method", "NFE", "GFLOPs / set", "wall s / set", "FID", KID_LABEL, "precision",
            "recall", "confident fraction", "class entropy"]
    rows = [[m["label"], str(m["nfe"]), f"{m['gflops']:.1f}", fmt(m["wall_s"], 1),
             *_quality_cells(m)] for m in methods.values()]
    full = reference["full_test"]
    rows.append([reference["label"], "–", "–", "–", *_quality_cells(reference)])
    rows.append([f"real test images (all {full['num_samples']}, for information)", "–", "–",
                 "–", *_quality_cells(full)])
    for c in _ordered_controls(controls or {}).values():
        rows.append([f"control: {c['label']}", "–", "–", "–", *_quality_cells(c)])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return table_caption(methods) + "\n\n" + "\n".join(
        lines + ["| " + " | ".join(r) + " |" for r in rows])


def closest_to(methods: dict, baseline: str = "ddpm_1000") -> str:
    """The key of the non-baseline method whose mean FID is nearest the baseline's."""
    target = methods[baseline]["fid"]["mean"]
    others = [k for k in methods if k != baseline]
    if not others:
        raise ValueError("no method besides the baseline to compare with")
    return min(others, key=lambda k: abs(methods[k]["fid"]["mean"] - target))


#: Scores a sampler is compared on, and the sign of a difference (method − baseline) that
#: makes it better.
COMPARED = {"fid": -1, "precision": +1, "recall": +1}


def _paired(a: dict, b: dict, q: str) -> dict:
    """Paired difference ``a − b`` of score ``q`` over the seeds both have."""
    bs = {r["seed"]: r[q] for r in b["per_seed"]}
    seeds = [r["seed"] for r in a["per_seed"] if r["seed"] in bs]
    av = {r["seed"]: r[q] for r in a["per_seed"]}
    return paired_difference([av[s] for s in seeds], [bs[s] for s in seeds])


def paired_comparisons(methods: dict, baseline: str = "ddpm_1000") -> dict:
    """Every other method against ``baseline``: the paired per-seed difference (method −
    baseline) of FID, precision and recall with its 95 % interval, and a verdict. A method is
    ``better`` (``worse``) only where at least one difference is resolved (its interval
    excludes 0) in its favour (against it) and none the other way; ``mixed`` when resolved
    both ways; otherwise ``not resolved``."""
    b, out = methods[baseline], {}
    for key, m in ordered(methods).items():
        if key == baseline:
            continue
        diffs = {q: _paired(m, b, q) for q in COMPARED}
        good = [q for q, d in diffs.items() if d["resolved"] and d["mean"] * COMPARED[q] > 0]
        bad = [q for q, d in diffs.items() if d["resolved"] and d["mean"] * COMPARED[q] < 0]
        verdict = ("mixed" if good and bad else "better" if good else "worse" if bad
                   else "not resolved")
        out[key] = {"label": m["label"], **diffs, "better_on": good, "worse_on": bad,
                    "verdict": verdict}
    return out


def _diff(d: dict, digits: int) -> str:
    """``+0.23 ± 1.15``: a signed paired difference and its 95 % half-width."""
    sign = "+" if round(d["mean"], digits) >= 0 else "−"
    return f"{sign}{abs(d['mean']):.{digits}f} ± {d['ci95']:.{digits}f}"


_NAMES = {"fid": "FID", "precision": "precision", "recall": "recall"}


def _verdict_text(c: dict) -> str:
    if c["verdict"] == "not resolved":
        return "not resolved at this sample size"
    parts = []
    if c["better_on"]:
        parts.append("better on " + ", ".join(_NAMES[q] for q in c["better_on"]))
    if c["worse_on"]:
        parts.append("worse on " + ", ".join(_NAMES[q] for q in c["worse_on"]))
    return "; ".join(parts)


def comparison_table(comparisons: dict, baseline_label: str) -> str:
    """Markdown table of :func:`paired_comparisons`: differences method − baseline."""
    head = ["method", f"ΔFID vs {baseline_label}", "Δprecision", "Δrecall", "verdict"]
    rows = [[c["label"], _diff(c["fid"], 2), _diff(c["precision"], 3), _diff(c["recall"], 3),
             _verdict_text(c)] for c in comparisons.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def findings(metrics: dict, fail_ratio: float = 10.0) -> str:
    """The chapter's findings as Markdown prose, every number read from ``metrics``
    (the baseline is the quality bar's method). A few-step sampler is called better or worse
    than the baseline only where a paired difference over seeds is resolved (95 % interval
    excludes 0). Methods whose mean FID exceeds ``fail_ratio`` × the real-image reference are
    named as failed."""
    ms, ref = ordered(metrics["methods"]), metrics["reference_real_test"]
    bar = metrics["quality_bar"]
    baseline = bar["method"]
    b = ms[baseline]
    ctl = metrics.get("controls") or {}
    conf_note = ""
    if "black" in ctl:
        conf_note = (f" (the constant-black control scores "
                     f"{ctl['black']['confident_fraction']['mean']:.3f} on it)")
    lines = [
        f"- **Quality bar ({b['label']}).** Precision {fmt(b['precision'], 3)} and recall "
        f"{fmt(b['recall'], 3)} (bar: precision ≥ {bar['min_precision']:.2f} and recall ≥ "
        f"{bar['min_recall']:.2f}); FID {fmt(b['fid'])} against {fmt(ref['fid'])} for "
        f"{ref['label']}, a ratio of {bar['fid_ratio']:.2f} (bar ≤ {bar['max_fid_ratio']:g}). "
        f"The bar is **{'met' if bar['passed'] else 'not met'}**. Its confident fraction, "
        f"{fmt(b['confident_fraction'], 3)}, is reported but not judged{conf_note}."]
    if "control_margin" in bar:
        worst = ctl.get(bar["worst_control"], {}).get("label", bar["worst_control"])
        lines.append(
            f"- **Controls.** The real test images score min(precision, recall) = "
            f"{bar['reference_min_pr']:.3f}; the highest control ({worst}) "
            f"{bar['worst_control_min_pr']:.3f}: a margin of {bar['control_margin']:.3f}. "
            + ("Every control fails the bar and the real images pass it."
               if bar["controls_fail_reference_passes"] else
               "**The bar does not separate them**: "
               + ("the real images fail it" if not bar["reference_passes"] else
                  "a control passes it") + ", so read its verdict with care."))
    best = min(ms, key=lambda k: ms[k]["fid"]["mean"])
    lines.append(f"- **Lowest FID:** {ms[best]['label']} ({fmt(ms[best]['fid'])}, "
                 f"{ms[best]['nfe']} NFE).")
    comps = metrics.get("paired_vs_baseline") or paired_comparisons(ms, baseline)
    comps = {k: comps[k] for k in ms if k in comps}  # reading order, also after a JSON round trip
    if comps:
        groups = {v: [c["label"] for c in comps.values() if c["verdict"] == v]
                  for v in ("better", "worse", "mixed", "not resolved")}
        said = "; ".join(f"{v}: {', '.join(names)}" for v, names in groups.items() if names)
        lines.append(
            f"- **Few-step samplers against {b['label']}** (paired differences over the "
            f"{b['fid']['n']} seeds, table below): {said}. A sampler is called better or worse "
            f"only where the 95 % interval of a paired difference excludes zero; otherwise the "
            f"comparison is not resolved at this sample size.")
        k = closest_to(ms, baseline)
        c, d = ms[k], comps[k]
        lines.append(
            f"- **Closest few-step sampler to {b['label']} by FID:** {c['label']}, FID "
            f"{fmt(c['fid'])} (paired difference {_diff(d['fid'], 2)}, "
            f"{'resolved' if d['fid']['resolved'] else 'not resolved at this sample size'}), "
            f"precision {fmt(c['precision'], 3)}, recall {fmt(c['recall'], 3)}, at "
            f"{c['nfe'] / b['nfe']:.1%} of its NFE and FLOPs and "
            f"{c['wall_s']['mean'] / b['wall_s']['mean']:.1%} of its wall time.")
    failed = {k for k, m in ms.items() if m["fid"]["mean"] > fail_ratio * ref["fid"]["mean"]}
    working = {k: m for k, m in ms.items() if k not in failed}
    samplers = [m["sampler"] for m in working.values()]
    lines += [_steps_line(working, s) for s in dict.fromkeys(samplers) if samplers.count(s) > 1]
    if failed:
        names = ", ".join(m["label"] for k, m in ms.items() if k in failed)
        lines.append(f"- **Failed:** {names}: mean FID above {fail_ratio:g}× the "
                     "real-image reference. Look at their sample grids before reading their other "
                     "numbers; the sampler, not the model, is the suspect when another sampler on "
                     "the same model does well.")
    worst = max(ms, key=lambda k: ms[k]["fid"]["mean"])
    lines.append(f"- **Highest FID:** {ms[worst]['label']} ({fmt(ms[worst]['fid'])}, "
                 f"precision {fmt(ms[worst]['precision'], 3)}, recall "
                 f"{fmt(ms[worst]['recall'], 3)}).")
    text = "\n".join(lines)
    if comps:
        text += "\n\n" + comparison_table(comps, b["label"])
    return text


def _steps_line(methods: dict, sampler: str) -> str:
    """Does one sampler change with more steps? The paired FID difference between its most
    and fewest steps, resolved or not."""
    mine = sorted((m for m in methods.values() if m["sampler"] == sampler),
                  key=lambda m: m["num_steps"])
    few, many = mine[0], mine[-1]
    d = _paired(many, few, "fid")
    if d["resolved"]:
        verdict = f"resolved: {'more steps lower' if d['mean'] < 0 else 'more steps raise'} FID"
    else:
        verdict = "not resolved at this sample size: more steps do not measurably change FID here"
    steps = ", ".join(str(m["num_steps"]) for m in mine)
    return (f"- **{SAMPLER_LABELS[sampler]} at {steps} steps:** mean FID "
            f"{few['fid']['mean']:.2f} at {few['num_steps']} steps and {many['fid']['mean']:.2f} "
            f"at {many['num_steps']} steps, a paired difference of {_diff(d, 2)}, {verdict}.")


SCHEDULER_KNOBS = ("clip_sample", "set_alpha_to_one", "algorithm_type", "solver_order",
                   "thresholding", "sample_max_value", "lambda_min_clipped", "final_sigmas_type",
                   "timestep_spacing", "prediction_type")


def scheduler_settings(beta_schedule: str, methods) -> dict:
    """The diffusers scheduler settings each sampler in ``methods`` runs with (the knobs in
    ``SCHEDULER_KNOBS`` that it has), for ``metrics.json`` and the text."""
    out = {}
    for sampler in dict.fromkeys(m.sampler for m in methods):
        cfg = make_scheduler(beta_schedule, sampler).config
        out[sampler] = {"class": type(make_scheduler(beta_schedule, sampler)).__name__,
                        **{k: _plain(cfg[k]) for k in SCHEDULER_KNOBS if k in cfg}}
    return out


def _plain(v):
    """A JSON-safe scalar: strings, bools, ints and None as they are, floats finite or as text."""
    if isinstance(v, (str, bool, int)) or v is None:
        return v
    return float(v) if np.isfinite(v) else str(float(v))


def scheduler_text(settings: dict) -> str:
    """One Markdown line per sampler: its diffusers class and settings."""
    return "\n".join(f"- **{SAMPLER_LABELS[s]}**: `{c['class']}` ("
                     + ", ".join(f"{k}={v}" for k, v in c.items() if k != "class") + ")"
                     for s, c in settings.items())


# --------------------------------------------------------------------------- figures
def plot_training_loss(loss_history, window: int = 50, ax=None):
    """Per-step training loss (faint) and its running mean over ``window`` steps (log scale)."""
    loss = np.asarray(loss_history, dtype=np.float64)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    ax.plot(np.arange(1, len(loss) + 1), loss, color="tab:blue", alpha=0.25, lw=0.6,
            label="per step")
    w = max(1, min(window, len(loss)))
    smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
    ax.plot(np.arange(w, len(loss) + 1), smooth, color="tab:blue", label=f"mean of {w} steps")
    ax.set(xlabel="training step", ylabel="ε-prediction MSE", yscale="log")
    ax.legend(fontsize=8)
    return ax.figure


def plot_sample_grids(sweep_result: Sweep, methods, seed: int, n: int = 32, nrow: int = 16):
    """One grid of the first ``n`` samples of ``seed`` per method (same prior noise for all)."""
    methods = list(methods)
    rows = -(-min(n, len(sweep_result.samples[methods[0].key][seed])) // nrow)
    fig, axes = plt.subplots(len(methods), 1, figsize=(nrow * 0.45, len(methods) *
                                                       (rows * 0.45 + 0.35)), squeeze=False)
    for ax, m in zip(axes[:, 0], methods):
        image_grid(sweep_result.samples[m.key][seed][:n], nrow=nrow, ax=ax,
                   title=f"{m.label} (seed {seed})")
    fig.tight_layout()
    return fig


def _err(s) -> float:
    """The error bar of a spread dict: its 95 % interval half-width (std for old results)."""
    return s.get("ci95", s["std"]) if isinstance(s, dict) else 0.0


def plot_quality_vs_compute(methods: dict, reference: dict, qualities=tuple(QUALITIES),
                            costs=tuple(COSTS)):
    """Quality (rows) against compute (columns), mean ± 95 % t-interval over seeds, one line
    per sampler; the real-image reference as a dashed line with its 95 % interval as a band.
    KID is drawn × ``KID_SCALE``. FID's axis is logarithmic: a poor sampler's FID can be a
    hundred times the real images', and a linear axis would flatten every other one."""
    methods = ordered(methods)
    fig, axes = plt.subplots(len(qualities), len(costs), figsize=(4 * len(costs),
                                                                  3 * len(qualities)),
                             squeeze=False)
    for (i, q), (j, c) in product(enumerate(qualities), enumerate(costs)):
        ax = axes[i, j]
        f = KID_SCALE if q == "kid" else 1.0
        for sampler in dict.fromkeys(m["sampler"] for m in methods.values()):
            mine = [m for m in methods.values() if m["sampler"] == sampler]
            x = [m[c]["mean"] if isinstance(m[c], dict) else m[c] for m in mine]
            y = [m[q]["mean"] * f for m in mine]
            ax.errorbar(x, y, yerr=[_err(m[q]) * f for m in mine],
                        xerr=[_err(m[c]) for m in mine], marker="o", ms=4, capsize=2,
                        color=SAMPLER_COLORS[sampler], label=SAMPLER_LABELS[sampler])
            for m, xv, yv in zip(mine, x, y):
                ax.annotate(str(m["num_steps"]), (xv, yv), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        r = reference[q]
        ax.axhline(r["mean"] * f, color="green", ls="--", lw=1, label="real test images")
        ax.axhspan((r["mean"] - _err(r)) * f, (r["mean"] + _err(r)) * f, color="green",
                   alpha=0.1)
        ax.set_xscale("log")
        if q == "fid":
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(xlabel=COSTS[c] if i == len(qualities) - 1 else None,
               ylabel=QUALITIES[q] if j == 0 else None)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9, frameon=False)
    return fig


def settings_text(plan: SweepPlan) -> str:
    """One Markdown paragraph that states what this run does, read from the plan."""
    p = plan.profile
    return (f"**This run** (profile `{p.name}`): {p.image_size}×{p.image_size} digits, "
            f"`{plan.beta_schedule}` β schedule, UNet {tuple(p.unet_channels)} trained for "
            f"{p.train_steps} steps at batch {p.batch_size} (training seed {plan.train_seed}); "
            f"{p.num_samples} samples per method and seed, seeds "
            f"{', '.join(map(str, plan.seeds))}; methods "
            f"{', '.join(m.label for m in plan.methods)}.")

