"""Sampler sweeps: sample sets for (sampler, steps) methods × seeds, scored in-domain.

A *method* is a sampler and a step count, ``Method("ddim", 20)``. A sweep draws the same
number of samples for every method with the same seeds (so from the same prior noise)
through :func:`ddpm.sample_cached`, and scores each set against the train split with the
in-domain classifier: FID, KID and the confident fraction. Its per-seed rows are the tidy
table; :func:`summarize` turns them into mean ± spread per method beside the compute (NFE,
FLOPs, wall seconds). The reference is real test images scored the same way, on subsets of
the same size as a sample set (small-sample FID is biased upwards: compare like with like).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter
import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import Cache
from .compute import count_flops
from .ddpm import BETA_SCHEDULES, SAMPLERS, TrainedDDPM, make_scheduler, sample_cached
from .errors import check_choice, check_images, check_positive_int, check_seeds
from .metrics import Classifier, generation_metrics
from .plots import image_grid
from .profiles import Profile, get_profile
from .results import fmt, spread

SAMPLER_KEYS = {"ddpm": "ddpm", "ddim": "ddim", "dpm-solver++": "dpmpp"}
SAMPLER_LABELS = {"ddpm": "DDPM", "ddim": "DDIM", "dpm-solver++": "DPM-Solver++"}
SAMPLER_COLORS = {"ddpm": "black", "ddim": "tab:blue", "dpm-solver++": "tab:orange"}
QUALITIES = {"fid": "FID (in-domain, lower is better)", "kid": "KID (in-domain, lower is better)",
             "confident_fraction": "confident fraction (higher is better)"}
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
              ddpm_steps=None, train_seed: int = 0) -> SweepPlan:
    """Validate chapter 01's parameters and fill the ``None`` ones from the profile.

    Raises ``ValueError`` naming the valid choices before anything is loaded or trained.
    ``ddpm_steps`` defaults to the profile's ``ddpm_sample_steps`` (T = 1000 but in smoke).
    """
    given = dict(beta_schedule=beta_schedule, image_size=image_size, train_steps=train_steps,
                 num_samples=num_samples, sampler_steps=sampler_steps, dpm_steps=dpm_steps,
                 ddpm_sample_steps=ddpm_steps)
    for key in ("sampler_steps", "dpm_steps"):
        if given[key] is not None:
            given[key] = check_steps(key, given[key])
    prof = get_profile(profile, **{k: v for k, v in given.items() if v is not None})
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
    """A whole number of samples per set, at least 2 (FID fits a covariance)."""
    if check_positive_int("num_samples", num_samples) < 2:
        raise ValueError(f"num_samples must be at least 2 (FID needs a covariance), "
                         f"got {num_samples}")
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


def score(images: torch.Tensor, x_train: torch.Tensor, classifier: Classifier) -> dict:
    """FID, KID (± std over subsets; reproducible, see ``metrics``) and confident fraction
    of ``images`` vs the train split."""
    m = generation_metrics(images, x_train, classifier)
    return {k: m[k] for k in ("fid", "kid", "kid_std", "confident_fraction", "features")}


def sweep(model: TrainedDDPM, methods, seeds, num_samples: int, x_train: torch.Tensor,
          classifier: Classifier, batch_size: int = 256, cache: Cache | None = None,
          progress: bool = True) -> Sweep:
    """Draw and score ``num_samples`` images for every method × seed (sample sets are cached).

    Each row holds the method, seed, FID/KID/confident fraction and the sampler's compute
    (NFE, FLOPs, wall seconds as recorded when the set was drawn).
    """
    T = model.meta.get("config", {}).get("num_train_timesteps", 1000)
    methods = check_methods(methods, T)
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
    return {k: spread(r[k] for r in rows) for k in ("fid", "kid", "confident_fraction")}


def summarize(rows: list[dict]) -> dict:
    """Per method (in row order): per-seed rows, mean ± spread of FID/KID/confident fraction
    and wall seconds, and the (seed-independent) NFE and GFLOPs of one sample set."""
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


def quality_bar(methods: dict, reference: dict, baseline: str = "ddpm_1000",
                min_confident: float = 0.70, max_fid_ratio: float = 3.0) -> dict:
    """Do ``baseline``'s samples look like digits? Its mean confident fraction is at least
    ``min_confident`` and its mean FID within ``max_fid_ratio`` × the same-size reference's."""
    b = methods[baseline]
    ratio = b["fid"]["mean"] / reference["fid"]["mean"]
    conf = b["confident_fraction"]["mean"]
    return {"method": baseline, "confident_fraction": conf, "min_confident_fraction": min_confident,
            "fid": b["fid"]["mean"], "reference_fid": reference["fid"]["mean"],
            "fid_ratio": ratio, "max_fid_ratio": max_fid_ratio,
            "confident_ok": conf >= min_confident, "fid_ok": ratio <= max_fid_ratio,
            "passed": bool(conf >= min_confident and ratio <= max_fid_ratio)}


def ordered(methods: dict) -> dict:
    """Method summaries by sampler (DDPM, DDIM, DPM-Solver++), then step count: a JSON
    round trip sorts keys alphabetically, this puts them back in reading order."""
    return dict(sorted(methods.items(), key=lambda kv: (SAMPLERS.index(kv[1]["sampler"]),
                                                        kv[1]["num_steps"])))


def results_table(methods: dict, reference: dict) -> str:
    """Markdown table: compute and quality per method (mean ± std over seeds), then the
    real-image reference rows."""
    methods = ordered(methods)
    head = ["method", "NFE", "GFLOPs / set", "wall s / set", "FID", "KID", "confident fraction"]
    rows = [[m["label"], str(m["nfe"]), f"{m['gflops']:.1f}", fmt(m["wall_s"], 1),
             fmt(m["fid"]), fmt(m["kid"], 3), fmt(m["confident_fraction"], 3)]
            for m in methods.values()]
    full = reference["full_test"]
    rows.append([reference["label"], "–", "–", "–", fmt(reference["fid"]),
                 fmt(reference["kid"], 3), fmt(reference["confident_fraction"], 3)])
    rows.append([f"real test images (all {full['num_samples']}, for information)", "–", "–",
                 "–",
                 f"{full['fid']:.2f}", f"{full['kid']:.3f}",
                 f"{full['confident_fraction']:.3f}"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def closest_to(methods: dict, baseline: str = "ddpm_1000") -> str:
    """The key of the non-baseline method whose mean FID is nearest the baseline's."""
    target = methods[baseline]["fid"]["mean"]
    others = [k for k in methods if k != baseline]
    if not others:
        raise ValueError("no method besides the baseline to compare with")
    return min(others, key=lambda k: abs(methods[k]["fid"]["mean"] - target))


def findings(metrics: dict, fail_ratio: float = 10.0) -> str:
    """The chapter's findings as Markdown prose, every number read from ``metrics``
    (the baseline is the quality bar's method). Methods whose mean FID exceeds
    ``fail_ratio`` × the real-image reference are named as failed."""
    ms, ref = ordered(metrics["methods"]), metrics["reference_real_test"]
    bar = metrics["quality_bar"]
    baseline = bar["method"]
    b = ms[baseline]
    lines = [
        f"- **Quality bar ({b['label']}).** Confident fraction {fmt(b['confident_fraction'], 3)} "
        f"(bar ≥ {bar['min_confident_fraction']:.2f}); FID {fmt(b['fid'])} against "
        f"{fmt(ref['fid'])} for {ref['label']}, a ratio of {bar['fid_ratio']:.2f} (bar ≤ "
        f"{bar['max_fid_ratio']:g}). The bar is **{'met' if bar['passed'] else 'not met'}**."]
    best = min(ms, key=lambda k: ms[k]["fid"]["mean"])
    lines.append(f"- **Lowest FID:** {ms[best]['label']} ({fmt(ms[best]['fid'])}, "
                 f"{ms[best]['nfe']} NFE).")
    if len(ms) > 1:
        k = closest_to(ms, baseline)
        c = ms[k]
        gap = c["fid"]["mean"] - b["fid"]["mean"]
        noise = np.hypot(c["fid"]["std"], b["fid"]["std"])
        within = "within" if abs(gap) <= noise else "outside"
        lines.append(
            f"- **Closest few-step sampler to {b['label']}:** {c['label']}, FID {fmt(c['fid'])} "
            f"({'+' if gap >= 0 else '−'}{abs(gap):.2f}, {within} the seed spread of "
            f"{noise:.2f}), confident fraction {fmt(c['confident_fraction'], 3)}, at "
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
                 f"confident fraction {fmt(ms[worst]['confident_fraction'], 3)}).")
    return "\n".join(lines)


def _steps_line(methods: dict, sampler: str) -> str:
    """Does one sampler improve with more steps? Its FID range against the seed spread."""
    mine = sorted((m for m in methods.values() if m["sampler"] == sampler),
                  key=lambda m: m["num_steps"])
    lo = min(mine, key=lambda m: m["fid"]["mean"])
    hi = max(mine, key=lambda m: m["fid"]["mean"])
    gap = hi["fid"]["mean"] - lo["fid"]["mean"]
    typical = float(np.mean([m["fid"]["std"] for m in mine]))
    verdict = (f"smaller than the typical seed spread of {typical:.2f}: more steps do not "
               "measurably change FID here" if gap < typical
               else f"larger than the typical seed spread of {typical:.2f}")
    steps = ", ".join(str(m["num_steps"]) for m in mine)
    return (f"- **{SAMPLER_LABELS[sampler]} at {steps} steps:** mean FID from "
            f"{lo['fid']['mean']:.2f} ({lo['num_steps']} steps) to {hi['fid']['mean']:.2f} "
            f"({hi['num_steps']} steps), a range of {gap:.2f}, {verdict}.")


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


def plot_quality_vs_compute(methods: dict, reference: dict, qualities=tuple(QUALITIES),
                            costs=tuple(COSTS)):
    """Quality (rows) against compute (columns), mean ± std over seeds, one line per sampler;
    the real-image reference as a dashed line with its ± std band."""
    methods = ordered(methods)
    fig, axes = plt.subplots(len(qualities), len(costs), figsize=(4 * len(costs),
                                                                  3 * len(qualities)),
                             squeeze=False)
    for (i, q), (j, c) in product(enumerate(qualities), enumerate(costs)):
        ax = axes[i, j]
        for sampler in dict.fromkeys(m["sampler"] for m in methods.values()):
            mine = [m for m in methods.values() if m["sampler"] == sampler]
            x = [m[c]["mean"] if isinstance(m[c], dict) else m[c] for m in mine]
            xerr = [m[c]["std"] if isinstance(m[c], dict) else 0.0 for m in mine]
            ax.errorbar(x, [m[q]["mean"] for m in mine], yerr=[m[q]["std"] for m in mine],
                        xerr=xerr, marker="o", ms=4, capsize=2, color=SAMPLER_COLORS[sampler],
                        label=SAMPLER_LABELS[sampler])
            for m, xv in zip(mine, x):
                ax.annotate(str(m["num_steps"]), (xv, m[q]["mean"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        r = reference[q]
        ax.axhline(r["mean"], color="green", ls="--", lw=1, label="real test images")
        ax.axhspan(r["mean"] - r["std"], r["mean"] + r["std"], color="green", alpha=0.1)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(xlabel=COSTS[c] if i == len(qualities) - 1 else None,
               ylabel=QUALITIES[q] if j == 0 else None)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 0.96))
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

