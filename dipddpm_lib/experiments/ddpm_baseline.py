"""Chapter 01's study: samplers × step counts × seeds from the same prior noise, scored beside
their compute, the real reference and the controls; the quality bar and tables."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np
import torch
from tqdm.auto import tqdm

from ..cache import Cache
from ..compute import count_flops
from ..ddpm import BETA_SCHEDULES, SAMPLERS, TrainedDDPM, sample_cached
from ..errors import check_choice, check_images, check_positive_int, check_seeds
from ..features import check_scoring
from ..metrics import CONTROLS, PR_K, blur_kernel, control_sets, scorer_for, test_subset
from ..profiles import Profile, check_device, get_profile
from ..results import fmt, markdown_table, paired_difference, scaled, spread

SAMPLER_NAMES = {"ddpm": "DDPM", "ddim": "DDIM", "dpm-solver++": "DPM-Solver++"}
KID_SCALE = 1e3  # KID is in squared feature units; tables and plots show it × KID_SCALE
SCORES = ("fid", "kid", "precision", "recall", "confident_fraction", "class_entropy")
COMPARED = {"fid": -1, "precision": +1, "recall": +1}  # the sign of a better difference
SCORE_NAMES = {"fid": "FID", "kid": "KID ×10³ (feature units²)", "precision": "precision",
               "recall": "recall", "confident_fraction": "confident fraction",
               "class_entropy": "class entropy"}
_DIGITS = {q: 2 if q in ("fid", "kid") else 3 for q in SCORES}  # decimals shown in tables
CLASS_SCORES = ("confident_fraction", "class_entropy")  # None without labels
NO_LABELS = "n/a (no labels)"
NEAR_COPIES = ("blurred", "repeated")  # controls made from real test images


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
    def key(self) -> str:  # file- and JSON-friendly: ddpm_1000, ddim_10, dpmpp_20
        return f"{self.sampler.replace('-solver++', 'pp')}_{self.num_steps}"

    @property
    def label(self) -> str:  # reader-facing: "DDPM, 1000 steps", "DPM-Solver++, 20 steps"
        return f"{SAMPLER_NAMES[self.sampler]}, {self.num_steps} steps"


def check_steps(what: str, steps) -> tuple[int, ...]:
    """A non-empty list of distinct positive whole step counts (a single int is allowed)."""
    steps = (steps,) if isinstance(steps, (int, np.integer)) else steps
    if isinstance(steps, str) or not hasattr(steps, "__iter__"):
        raise ValueError(f"{what} must be a list of positive whole numbers, got {steps!r}")
    if len(set(steps := tuple(steps))) != len(steps) or not steps:
        raise ValueError(f"{what} must be a non-empty list of distinct step counts, got {steps!r}")
    return tuple(check_positive_int(what, s) for s in steps)


def check_sweep(methods, seeds, num_samples, num_train_timesteps: int = 1000):
    """Distinct :class:`Method` of at most T steps, the seeds, and at least ``PR_K + 1``
    samples per set (precision and recall need ``PR_K`` neighbours)."""
    methods = list(methods)
    if not methods or not all(isinstance(m, Method) for m in methods):
        raise ValueError(f"methods must be a non-empty list of Method(sampler, num_steps); "
                         f"valid samplers: {', '.join(SAMPLERS)}")
    if len({m.key for m in methods}) != len(methods):
        raise ValueError(f"methods repeat: {[m.key for m in methods]}")
    too_long = [m.label for m in methods if m.num_steps > num_train_timesteps]
    if too_long:
        raise ValueError(f"{too_long[0]}: num_steps must be at most T={num_train_timesteps}")
    seeds = check_seeds(seeds)
    if check_positive_int("num_samples", num_samples) < PR_K + 1:
        raise ValueError(f"num_samples must be at least {PR_K + 1} (precision and recall use "
                         f"each sample's {PR_K} nearest neighbours), got {num_samples}")
    return methods, seeds


def baseline_methods(ddim_steps, dpm_steps, ddpm_steps: int = 1000) -> list[Method]:
    """DDPM at ``ddpm_steps``, DDIM at each ``ddim_steps``, DPM-Solver++ at each ``dpm_steps``."""
    return ([Method("ddpm", ddpm_steps)]
            + [Method("ddim", k) for k in check_steps("sampler_steps", ddim_steps)]
            + [Method("dpm-solver++", k) for k in check_steps("dpm_steps", dpm_steps)])


@dataclass(frozen=True)
class SweepPlan:
    """Chapter 01's settings, resolved against the profile; the baseline is the first method."""
    profile: Profile
    methods: list[Method]
    seeds: tuple[int, ...]
    train_seed: int = 0

    baseline = property(lambda self: self.methods[0].key)
    beta_schedule = property(lambda self: self.profile.beta_schedule)

    def to_dict(self) -> dict:
        """The run's settings for ``metrics.json``."""
        p = self.profile
        return {"profile": p.name, "beta_schedule": p.beta_schedule, "seeds": list(self.seeds),
                "train_seed": self.train_seed, "image_size": p.image_size,
                "train_steps": p.train_steps, "num_samples": p.num_samples,
                "method_keys": [m.key for m in self.methods]}


def make_plan(profile: str = "quick", seeds=None, beta_schedule=None, image_size=None,
              train_steps=None, num_samples=None, sampler_steps=None, dpm_steps=None,
              ddpm_steps=None, train_seed: int = 0, device=None, data_dir=None,
              fid_features=None, batch_size=None) -> SweepPlan:
    """Chapter 01's parameters, checked before any work; ``None`` ones from the profile."""
    given = dict(beta_schedule=beta_schedule, image_size=image_size, train_steps=train_steps,
                 num_samples=num_samples, sampler_steps=sampler_steps, dpm_steps=dpm_steps,
                 ddpm_sample_steps=ddpm_steps, device=device, data_dir=data_dir,
                 fid_features=fid_features, batch_size=batch_size)
    given = {k: check_steps(k, v) if k in ("sampler_steps", "dpm_steps") else v
             for k, v in given.items() if v is not None}
    prof = check_device(get_profile(profile, **given))
    check_choice("beta schedule", prof.beta_schedule, BETA_SCHEDULES)
    check_scoring(prof)
    size, levels = check_positive_int("image_size", prof.image_size), len(prof.unet_channels)
    if size % 2 ** (levels - 1):  # the UNet halves the image once per extra level
        raise ValueError(f"image_size must be a multiple of {2 ** (levels - 1)} for a "
                         f"{levels}-level UNet, got {size}")
    check_positive_int("train_steps", prof.train_steps)
    check_positive_int("batch_size", prof.batch_size)
    methods, seeds = check_sweep(
        baseline_methods(prof.sampler_steps, prof.dpm_steps, prof.ddpm_sample_steps),
        prof.seeds if seeds is None else seeds, prof.num_samples, prof.num_train_timesteps)
    return SweepPlan(prof, methods, seeds, check_seeds([train_seed])[0])


@dataclass
class Sweep:
    """A sweep's per-seed rows (the tidy table) and its sample sets by method key and seed."""
    rows: list[dict]
    samples: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)

    def images(self, key: str) -> torch.Tensor:
        """Every seed's samples of one method, in seed order."""
        return torch.cat([self.samples[key][s] for s in sorted(self.samples[key])])


def score(images: torch.Tensor, x_train: torch.Tensor, classifier) -> dict:
    """:data:`SCORES`, KID's std and the features' name, against the train split."""
    m = scorer_for(x_train, classifier)(images)
    return {k: m[k] for k in (*SCORES, "kid_std", "features")}


def sweep(model: TrainedDDPM, methods, seeds, num_samples: int, x_train: torch.Tensor,
          classifier, batch_size: int = 256, cache: Cache | None = None,
          progress: bool = True) -> Sweep:
    """Draw (cached) and score ``num_samples`` images per method × seed: a row each."""
    methods, seeds = check_sweep(methods, seeds, num_samples, model.num_train_timesteps)
    check_positive_int("batch_size", batch_size)
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


def _spreads(rows: list[dict]) -> dict:
    return {k: spread(r[k] for r in rows) for k in SCORES if rows[0].get(k) is not None}


def _per_seed(sets, seeds, x_train: torch.Tensor, classifier) -> dict:
    rows: dict[str, list] = {}
    for seed in check_seeds(seeds):
        for name, images in sets(seed).items():
            rows.setdefault(name, []).append({"seed": seed, "num_samples": len(images),
                                              **score(images, x_train, classifier)})
    return {name: {"num_samples": r[0]["num_samples"], **_spreads(r), "per_seed": r}
            for name, r in rows.items()}


def real_reference(x_test: torch.Tensor, x_train: torch.Tensor, classifier, seeds,
                   num_samples: int) -> dict:
    """Real test images scored like a sample set: same-size subsets per seed; the whole split."""
    ref = _per_seed(lambda s: {"real": test_subset(x_test, num_samples, s)}, seeds, x_train,
                    classifier)["real"]
    return {**ref, "label": f"real test images ({ref['num_samples']} per seed)",
            "full_test": {"num_samples": len(x_test), **score(x_test, x_train, classifier)}}


def control_labels(image_size: int) -> dict[str, str]:
    """Reader-facing names of :data:`metrics.CONTROLS`."""
    k = blur_kernel(image_size)
    return {"noise": "uniform noise", "black": "constant black", "white": "constant white",
            "blurred": f"blurred test images ({k}×{k} box)", "repeated": "one test image repeated"}


def controls(x_test: torch.Tensor, x_train: torch.Tensor, classifier, seeds,
             num_samples: int) -> dict:
    """Every control of :func:`metrics.control_sets` scored like a sample set, per seed."""
    check_images(x_test, "test images")
    labels = control_labels(min(x_test.shape[-2:]))
    scored = _per_seed(lambda s: control_sets(x_test, num_samples, s), seeds, x_train, classifier)
    return {name: {"label": labels[name], **c} for name, c in scored.items()}


def training_compute(model: TrainedDDPM, profile: Profile) -> dict:
    """Training's FLOPs (a batch's forward + backward × steps), seconds, parameters, loss."""
    unet = model.unet
    c, s = unet.config.in_channels, unet.config.sample_size
    x = torch.zeros(profile.batch_size, c, s, s, device=unet.device)
    t = torch.zeros(profile.batch_size, dtype=torch.long, device=unet.device)
    flops = count_flops(lambda: unet(x, t).sample.square().mean().backward())[0] * profile.train_steps
    unet.zero_grad(set_to_none=True)
    return {"steps": profile.train_steps, "batch_size": profile.batch_size,
            "seconds": model.meta["train_seconds"], "n_params": model.meta["n_params"],
            "final_loss": model.meta["final_loss"], "flops": flops, "gflops": flops / 1e9}


def summarize(rows: list[dict]) -> dict:
    """Per method: its rows, the spread of each score and wall time, its compute."""
    fixed = ("label", "sampler", "num_steps", "num_samples", "features", "nfe", "gflops")
    return {key: {**{k: mine[0][k] for k in fixed}, "per_seed": mine, **_spreads(mine),
                  "gflops_per_image": mine[0]["gflops"] / mine[0]["num_samples"],
                  "wall_s": spread(r["wall_s"] for r in mine)}
            for key in dict.fromkeys(r["method"] for r in rows)
            for mine in [[r for r in rows if r["method"] == key]]}


def _bar_checks(entry: dict, reference: dict, min_precision: float, min_recall: float,
                max_fid_ratio: float) -> dict:
    p, r = entry["precision"]["mean"], entry["recall"]["mean"]
    ratio = entry["fid"]["mean"] / reference["fid"]["mean"]
    passes = bool(p >= min_precision and r >= min_recall and ratio <= max_fid_ratio)
    return {"precision": p, "recall": r, "fid_ratio": ratio, "passes": passes}


def quality_bar(methods: dict, reference: dict, controls: dict | None = None,
                baseline: str = "ddpm_1000", min_precision: float = 0.5, min_recall: float = 0.5,
                max_fid_ratio: float = 3.0) -> dict:
    """Does ``baseline`` pass? With ``controls``, also the controls and the reference, and the
    control margin: the reference's min(precision, recall) − the largest control's."""
    b, limits = methods[baseline], (min_precision, min_recall, max_fid_ratio)
    checks = _bar_checks(b, reference, *limits)
    out = {"method": baseline, "min_precision": min_precision, "min_recall": min_recall,
           "max_fid_ratio": max_fid_ratio, "fid": b["fid"]["mean"],
           "reference_fid": reference["fid"]["mean"], "passed": checks.pop("passes"), **checks,
           "confident_fraction": (b.get("confident_fraction") or {}).get("mean")}
    if controls:
        ref = _bar_checks(reference, reference, *limits)
        ctl = {k: _bar_checks(c, reference, *limits) for k, c in controls.items()}
        lowest = {k: min(c["precision"], c["recall"]) for k, c in ctl.items()}
        worst, ref_min = max(lowest, key=lowest.get), min(ref["precision"], ref["recall"])
        controls_fail = not any(c["passes"] for c in ctl.values())
        out.update({
            "reference": ref, "controls": ctl, "reference_min_pr": ref_min,
            "worst_control": worst, "worst_control_min_pr": lowest[worst],
            "control_margin": ref_min - lowest[worst], "controls_fail": controls_fail,
            "reference_passes": ref["passes"],
            "controls_fail_reference_passes": bool(ref["passes"] and controls_fail)})
    return out


def ordered(methods: dict) -> dict:
    """Method summaries by sampler, then step count (a JSON round trip sorts the keys)."""
    return dict(sorted(methods.items(), key=lambda kv: (SAMPLERS.index(kv[1]["sampler"]),
                                                        kv[1]["num_steps"])))


def closest_to(methods: dict, baseline: str = "ddpm_1000") -> str:
    """The key of the non-baseline method whose mean FID is nearest the baseline's."""
    others = [k for k in methods if k != baseline]
    if not others:
        raise ValueError("no method besides the baseline to compare with")
    target = methods[baseline]["fid"]["mean"]
    return min(others, key=lambda k: abs(methods[k]["fid"]["mean"] - target))


def failed(methods: dict, reference: dict, fail_ratio: float = 10.0) -> list[str]:
    """Keys of the methods whose mean FID exceeds ``fail_ratio`` × the real reference's."""
    return [k for k, m in ordered(methods).items()
            if m["fid"]["mean"] > fail_ratio * reference["fid"]["mean"]]


def paired(a: dict, b: dict, q: str) -> dict:
    """Paired difference ``a − b`` of score ``q`` over the seeds both have."""
    av, bv = ({r["seed"]: r[q] for r in e["per_seed"]} for e in (a, b))
    seeds = [s for s in av if s in bv]
    return paired_difference([av[s] for s in seeds], [bv[s] for s in seeds])


def paired_comparisons(methods: dict, baseline: str = "ddpm_1000") -> dict:
    """Every other method − ``baseline``, paired, on :data:`COMPARED`, with a verdict."""
    b, out = methods[baseline], {}
    for key, m in ordered(methods).items():
        if key == baseline:
            continue
        diffs = {q: paired(m, b, q) for q in COMPARED}
        good = [q for q, d in diffs.items() if d["resolved"] and d["mean"] * COMPARED[q] > 0]
        bad = [q for q, d in diffs.items() if d["resolved"] and d["mean"] * COMPARED[q] < 0]
        verdict = ("mixed" if good and bad else "better" if good else "worse" if bad
                   else "not resolved")
        out[key] = {"label": m["label"], **diffs, "better_on": good, "worse_on": bad,
                    "verdict": verdict}
    return out


def steps_effect(methods: dict, sampler: str) -> dict:
    """A sampler's fewest- and most-step methods and their paired FID difference."""
    mine = sorted((k for k, m in methods.items() if m["sampler"] == sampler),
                  key=lambda k: methods[k]["num_steps"])
    if len(mine) < 2:
        raise ValueError(f"{sampler} runs at fewer than two step counts: {mine}")
    return {"fewest": mine[0], "most": mine[-1], "steps": [methods[k]["num_steps"] for k in mine],
            "fid": paired(methods[mine[-1]], methods[mine[0]], "fid")}


def _cell(s, digits: int = 2, factor: float = 1.0, missing: str = "–") -> str:
    if s is None:
        return missing
    return fmt(scaled(s, factor), digits) if isinstance(s, dict) else f"{s * factor:.{digits}f}"


def _signed(d: dict, digits: int) -> str:
    sign = "+" if round(d["mean"], digits) >= 0 else "−"
    return f"{sign}{abs(d['mean']):.{digits}f} ± {d['ci95']:.{digits}f}"


def results_table(methods: dict, reference: dict, controls: dict | None = None) -> str:
    """Markdown table: every method with its compute, the real references, the controls."""
    def scores(e):
        return {q: _cell(e.get(q), d, KID_SCALE if q == "kid" else 1.0,
                         NO_LABELS if q in CLASS_SCORES else "–") for q, d in _DIGITS.items()}
    rows = [{"set": m["label"], "kind": "sampler", "nfe": str(m["nfe"]),
             "gflops": f"{m['gflops']:.1f}", "wall_s": _cell(m["wall_s"], 1), **scores(m)}
            for m in ordered(methods).values()]
    full = reference["full_test"]
    rows.append({"set": reference["label"], "kind": "real images", **scores(reference)})
    rows.append({"set": f"real test images (all {full['num_samples']}, for information)",
                 "kind": "real images", **scores(full)})
    for k in sorted(controls or {}, key=lambda k: (CONTROLS + (k,)).index(k)):
        rows.append({"set": f"control: {controls[k]['label']}", **scores(controls[k]),
                     "kind": "near-copy of test images" if k in NEAR_COPIES else "control"})
    cols = {"set": "set", "kind": "kind", "nfe": "NFE", "gflops": "GFLOPs / set",
            "wall_s": "wall s / set", **SCORE_NAMES}
    return markdown_table([{k: r.get(k, "–") for k in cols} for r in rows], cols)


def comparison_table(comparisons: dict, baseline_label: str) -> str:
    """:func:`paired_comparisons` as a Markdown table."""
    rows = [{"method": c["label"], **{q: _signed(c[q], _DIGITS[q]) for q in COMPARED},
             "verdict": c["verdict"], **{f"{w}_on": ", ".join(SCORE_NAMES[q] for q in c[f"{w}_on"])
                                         or "–" for w in ("better", "worse")}}
            for c in comparisons.values()]
    return markdown_table(rows, {"method": "method", "fid": f"ΔFID vs {baseline_label}",
                                 "precision": "Δprecision", "recall": "Δrecall", "verdict":
                                 "verdict", "better_on": "better on", "worse_on": "worse on"})
