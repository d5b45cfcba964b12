"""Chapter 04's evaluation: one record per (photograph, σ, seed, criterion) from the cached
runs of :mod:`.early_stopping`, summaries with 95 % intervals, the quality bar, and tidy
tables. Numbers and tables only; the chapter's sentences are in its notebook."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import dip
from ..compute import Compute
from ..data import photo_name, photo_roles
from ..metrics import psnr, ssim
from ..results import paired_difference, save_array, spread
from ..stopping import CRITERIA, NEEDS_SIGMA, ORACLES, RAW, SigmaLookup, last_minimum_stop
from .early_stopping import NOTEBOOK, ReferenceRun, SeedRuns, StoppingSetup, _fit_kwargs, criteria_of


def _stop_outputs(run: SeedRuns) -> tuple[dict, dict, dict, dict]:
    """Per criterion: stops, outputs, FLOPs per iteration, and the own peak's outputs (the
    best output of the trajectory and convention the criterion reads)."""
    ref = run.reference
    stops, outputs = dict(ref.stops), dict(ref.outputs)
    flops = {c: ref.flops_per_iteration for c in stops}
    peak = {c: ref.outputs["oracle_raw" if c in RAW else "oracle"] for c in stops}
    if run.guided is not None:  # its own peak: the best clean PSNR along its own trajectory
        stops["guided"], outputs["guided"] = run.guided.stops, run.guided.outputs
        flops["guided"] = run.guided.flops_per_iteration
        peak["guided"] = torch.from_numpy(np.nanmax(run.guided.history["psnr_clean"], 0))
    if run.sure is not None:
        stops["sure"], outputs["sure"] = run.sure.stops["sure"], run.sure.outputs["sure"]
        flops["sure"], peak["sure"] = run.sure.flops_per_iteration, run.sure.outputs["oracle_raw"]
    return stops, outputs, flops, peak


def evaluate(setup: StoppingSetup, run: SeedRuns) -> list[dict]:
    """One record per (photograph, σ, criterion) of a seed: the stop, the output's PSNR and
    SSIM against the clean image, ``gap_db`` (to the plain run's EMA peak, the common
    yardstick), ``own_gap_db`` (to the peak of the trajectory and output convention the
    criterion reads: the raw peak for the raw criteria, the guided and SURE runs' own peaks),
    and the compute saved against the fixed count."""
    ref = run.reference
    stops, outputs, flops, peak = _stop_outputs(run)
    fixed = setup.fixed_iterations
    quality = {c: (psnr(outputs[c], ref.clean).double().numpy(),
                   ssim(outputs[c], ref.clean).double().numpy()) for c in stops}
    own = {c: (peak[c].double().numpy() if c == "guided" and peak[c] is not None else
               psnr(peak[c], ref.clean).double().numpy()) for c in stops if peak[c] is not None}
    records = []
    for n, (photo, sigma) in enumerate(setup.pairs):
        for c in [c for c in CRITERIA if c in stops]:
            s = stops[c][n]
            p = float(quality[c][0][n])
            records.append({
                "photo": photo, "sigma": sigma, "seed": ref.seed, "criterion": c,
                "iteration": s.iteration, "iterations_run": s.iterations_run, "fired": s.fired,
                "psnr": p, "ssim": float(quality[c][1][n]),
                "gap_db": float(quality["oracle"][0][n]) - p,
                "own_gap_db": float(max(own[c][n], p)) - p if c in own else float("nan"),
                "compute_saved": (fixed - s.iterations_run) / fixed,
                "gflops": s.iterations_run * flops[c] / 1e9})
    return records


def es_wmv_sensitivity(setup: StoppingSetup, references: list[ReferenceRun]) -> dict:
    """ES-WMV's gap to the oracle for every recorded window × patience (P × 0.5, 1, 2), read
    from the plain runs' histories: is its showing an artefact of the scaled W and P?"""
    references = [getattr(r, "reference", r) for r in references]
    out = {}
    for w in setup.wmv_windows:
        key = "variance" if w == setup.window else f"variance_w{w}"
        for p in setup.wmv_patiences:
            gaps, runs = [], []
            for ref in references:
                curve = ref.history["psnr_clean"]
                for n in range(curve.shape[1]):
                    stop = last_minimum_stop(ref.history[key][:, n], p)
                    gaps.append(curve[:, n].max() - curve[stop.iteration - 1, n])
                    runs.append(stop.iterations_run)
            out[f"W={w},P={p}"] = {"window": w, "patience": p, "gap_db": _gap_stats(gaps),
                                   "iterations_run": spread(runs)}
    return out


def sensitivity_table(sensitivity: dict) -> str:
    """A Markdown table of ES-WMV's mean (worst) gap per window (rows) and patience (columns)."""
    windows = sorted({v["window"] for v in sensitivity.values()})
    patiences = sorted({v["patience"] for v in sensitivity.values()})
    lines = ["| window W | " + " | ".join(f"P = {p}" for p in patiences) + " |",
             "|---|" + "---|" * len(patiences)]
    for w in windows:
        cells = [sensitivity[f"W={w},P={p}"]["gap_db"] for p in patiences]
        lines.append(f"| {w} | " + " | ".join(f"{c['mean']:.2f} (worst {c['worst']:.2f})"
                                             for c in cells) + " |")
    return "\n".join(lines)


def _gap_stats(gaps) -> dict:
    """:func:`~dipddpm_lib.results.spread` of gaps to a peak, with the worst (largest) one."""
    s = spread(gaps)
    return {**s, "worst": s["max"]}


def summarize(records: list[dict], setup: StoppingSetup) -> dict:
    """Per criterion: detected iteration, PSNR/SSIM, the gap to the oracle (mean, median,
    worst, 95 % interval, and per σ), the gap to its own trajectory's peak, compute saved
    against the fixed count (iterations and GFLOPs), whether it needs σ."""
    out = {}
    for c in [c for c in CRITERIA if any(r["criterion"] == c for r in records)]:
        rows = [r for r in records if r["criterion"] == c]
        own = [r.get("own_gap_db", float("nan")) for r in rows]
        out[c] = {
            "iteration": spread([r["iteration"] for r in rows]),
            "iterations_run": spread([r["iterations_run"] for r in rows]),
            "psnr": spread([r["psnr"] for r in rows]), "ssim": spread([r["ssim"] for r in rows]),
            "gap_db": _gap_stats([r["gap_db"] for r in rows]),
            "gap_db_by_sigma": {str(s): _gap_stats([r["gap_db"] for r in rows if r["sigma"] == s])
                                for s in setup.sigmas if any(r["sigma"] == s for r in rows)},
            "own_gap_db": _gap_stats(own) if np.isfinite(own).all() else None,
            "compute_saved": spread([r["compute_saved"] for r in rows]),
            "gflops": spread([r["gflops"] for r in rows]),
            "fired_fraction": float(np.mean([r["fired"] for r in rows])),
            "needs_sigma": c in NEEDS_SIGMA, "needs_clean": c in ORACLES,
            "output": "raw" if c in RAW else "EMA",
        }
    return out


def quality_bar(summary: dict, max_gap_db: float = 1.0, sigmas=(25.0, 50.0)) -> dict:
    """The chapter's quality bar: the guided mean gap at σ ∈ ``sigmas`` (those this run has)
    is ≤ ``max_gap_db``; the best criterion without the clean image (lowest mean gap to the
    plain run's peak); the guided rule's difference to every peer."""
    g = summary["guided"]
    have = [str(float(s)) for s in sigmas if str(float(s)) in g["gap_db_by_sigma"]]
    gaps = [g["gap_db_by_sigma"][s]["mean"] for s in have]
    at = float(np.mean(gaps)) if gaps else g["gap_db"]["mean"]
    peers = [c for c in summary if c not in ORACLES]
    best = min(peers, key=lambda c: summary[c]["gap_db"]["mean"])
    return {"guided_mean_gap_db": g["gap_db"]["mean"], "max_gap_db": max_gap_db,
            "bar_sigmas": [float(s) for s in have] or None,
            "guided_mean_gap_at_bar_sigmas_db": at,
            "guided_gap_by_bar_sigma_db": dict(zip(have, gaps)),
            "guided_within_max_gap": bool(max(gaps or [at]) <= max_gap_db),
            "best_criterion": best, "best_gap_db": summary[best]["gap_db"]["mean"],
            "guided_is_best": best == "guided",
            "guided_minus_peer_db": {c: g["gap_db"]["mean"] - summary[c]["gap_db"]["mean"]
                                     for c in peers if c != "guided"},
            "es_wmv_mean_gap_db": summary["es_wmv"]["gap_db"]["mean"],
            "guided_no_worse_than_es_wmv": bool(g["gap_db"]["mean"] <= summary["es_wmv"]["gap_db"]["mean"]),
            "guided_minus_es_wmv_db": g["gap_db"]["mean"] - summary["es_wmv"]["gap_db"]["mean"]}


def run_compute(setup: StoppingSetup, runs: list[SeedRuns]) -> dict:
    """Compute each kind of run took: DIP iterations, GFLOPs and wall seconds, summed over
    seeds and images (a batched fit's wall time covers all its images)."""
    def cost(run) -> Compute:
        iters = len(run.history["residual"]) * len(setup.pairs)
        return Compute(flops=iters * run.flops_per_iteration, dip_iters=iters, wall_s=run.wall_s)

    done = {k: [getattr(r, k) for r in runs if getattr(r, k) is not None]
            for k in ("reference", "guided", "sure")}
    return {k: sum(map(cost, d), Compute()).to_dict() for k, d in done.items() if d}


def save_stop_arrays(out_dir, setup: StoppingSetup, runs: list[SeedRuns]) -> list[str]:
    """``stop_<criterion>_<image>_<sigma>.npy`` (one image per seed; ``<image>`` is the
    photograph's name or its file's stem), plus ``clean_<image>``
    and ``noisy_<image>_<sigma>`` (one per seed); returns the names written."""
    names = []
    per_seed = [_stop_outputs(r)[1] for r in runs]
    for n, (photo, sigma) in enumerate(setup.pairs):
        photo = photo_name(photo)
        tag = f"{photo}_{sigma:g}"
        for c in criteria_of(runs):
            save_array(out_dir, f"stop_{c}_{tag}", torch.stack([o[c][n] for o in per_seed]))
            names.append(f"stop_{c}_{tag}")
        save_array(out_dir, f"noisy_{tag}", torch.stack([r.reference.noisy[n] for r in runs]))
        names.append(f"noisy_{tag}")
        if f"clean_{photo}" not in names:
            save_array(out_dir, f"clean_{photo}", runs[0].reference.clean[n:n + 1])
            names.append(f"clean_{photo}")
    return names


def build_metrics(profile, setup: StoppingSetup, runs: list[SeedRuns], records, summary,
                  settings: dict | None = None, extra: dict | None = None) -> dict:
    """Everything the chapter reports, for ``metrics.json``; ``settings`` (from
    :func:`make_setup`) records where each tunable setting came from (``settings_source``),
    and ``photo_sets`` the set (eval, tune, prior_train) of each photograph; ``extra`` adds
    sections (the σ lookup, the learned prior, the paper-regime run)."""
    return {"profile": profile.name, "notebook": NOTEBOOK, "seeds": list(setup.seeds),
            "setup": setup.to_dict(), "photo_sets": photo_roles(profile, setup.photos),
            "settings_source": settings or {},
            "network": dataclasses.asdict(dip.DIPConfig.from_profile(profile)),
            "fit": _fit_kwargs(profile), "methods": summary, "quality_bar": quality_bar(summary),
            "es_wmv_sensitivity": es_wmv_sensitivity(setup, runs),
            "compute": run_compute(setup, runs),
            "flops_per_iteration": runs[0].reference.flops_per_iteration, "runs": records,
            "output": {c: summary[c]["output"] for c in summary}, **(extra or {})}


def sigma_table(summary: dict, setup: StoppingSetup) -> str:
    """A Markdown table of the mean gap to the oracle ± its 95 % t-interval (and the worst)
    per criterion and σ."""
    sig = [str(s) for s in setup.sigmas]
    head = ("| criterion | " + " | ".join(f"σ = {float(s):g}" for s in sig) + " |\n|---|"
            + "---|" * len(sig) + "\n")
    cell = "{mean:.2f} ± {ci95:.2f} (worst {worst:.2f})"
    rows = [f"| {LABELS[c]} | " + " | ".join(cell.format(**summary[c]["gap_db_by_sigma"][s])
                                            if s in summary[c]["gap_db_by_sigma"] else "–"
                                            for s in sig) + " |"
            for c in summary if c not in ORACLES]
    return head + "\n".join(rows)


LABELS = {"guided": "guided (ours)", "prior_distance": "learned prior (ours)",
          "sure": "SURE (DF-STE set-up)", "sigma_lookup": "σ lookup (tune photos)",
          "es_wmv": "ES-WMV, EMA output", "es_wmv_raw": "ES-WMV (authors: raw)",
          "es_emv": "ES-EMV (authors: raw)", "discrepancy": "discrepancy",
          "fixed": "fixed (profile)", "ulyanov": "fixed (Ulyanov, scaled)",
          "oracle": "oracle (upper bound)", "oracle_raw": "oracle, raw output"}


def _ci(s: dict) -> float:
    """The 95 % t-interval's half-width of a :func:`spread` dict (its std for an old one)."""
    return s.get("ci95", s["std"])


def results_table(summary: dict) -> str:
    """A Markdown table of the summary, one row per criterion (± the 95 % t-interval over
    photographs × σ × seeds, stated under the table with its n): what it reads (σ, the clean
    image), its output, its stop, PSNR, gaps to the plain run's peak and to its own
    trajectory's peak, compute saved."""
    head = ("| criterion | reads | output | stop iteration | iterations run | PSNR (dB) | SSIM | "
            "gap mean | gap median | gap worst | own-peak gap | compute saved |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for c, s in summary.items():
        reads = "clean image" if s.get("needs_clean") else "σ" if s.get("needs_sigma") else "–"
        own = s.get("own_gap_db")
        rows.append(f"| {LABELS[c]} | {reads} | {s.get('output', 'EMA')} | "
                    f"{s['iteration']['mean']:.0f} ± {_ci(s['iteration']):.0f} "
                    f"| {s['iterations_run']['mean']:.0f} | {s['psnr']['mean']:.2f} ± "
                    f"{_ci(s['psnr']):.2f} | {s['ssim']['mean']:.3f} | "
                    f"{s['gap_db']['mean']:.2f} ± {_ci(s['gap_db']):.2f} | "
                    f"{s['gap_db']['median']:.2f} | {s['gap_db']['worst']:.2f} | "
                    + (f"{own['mean']:.2f}" if own else "–") +
                    f" | {100 * s['compute_saved']['mean']:.0f}% |")
    return head + "\n".join(rows)


def stops_table(records: list[dict]) -> str:
    """A Markdown table with one row per criterion and one column per image of a run: the
    stop iteration, the gap to the plain run's EMA peak and (in brackets) to the peak of the
    criterion's own convention; "not fired" where the rule never triggered."""
    images = list(dict.fromkeys((r["photo"], r["sigma"]) for r in records))
    head = ("| criterion | " + " | ".join(f"{photo_name(p)}, σ = {s:g}" for p, s in images)
            + " |\n|---|" + "---|" * len(images) + "\n")
    rows = []
    for c in [c for c in CRITERIA if any(r["criterion"] == c for r in records)]:
        cells = []
        for p, s in images:
            r = next(r for r in records if r["criterion"] == c and (r["photo"], r["sigma"]) == (p, s))
            cell = f"{r['iteration']}: {r['gap_db']:.2f} ({r['own_gap_db']:.2f})"
            cells.append(cell + ("" if r["fired"] or c in ORACLES else ", not fired"))
        rows.append(f"| {LABELS[c]} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows)


def paired_gap_difference(records: list[dict], a: str, b: str) -> dict:
    """:func:`~dipddpm_lib.results.paired_difference` of two criteria's gaps (``a`` − ``b``,
    dB) over the runs they share (the same photograph, σ and seed): its 95 % t-interval and
    ``resolved`` say whether the two differ."""
    key = lambda r: (r["photo"], r["sigma"], r["seed"])  # noqa: E731
    gb = {key(r): r["gap_db"] for r in records if r["criterion"] == b}
    pairs = [(r["gap_db"], gb[key(r)]) for r in records if r["criterion"] == a and key(r) in gb]
    if not pairs:
        raise ValueError(f"no runs with both {a!r} and {b!r}")
    return paired_difference(*zip(*pairs))


def lookup_records(setup: StoppingSetup, run: SeedRuns, lookup: SigmaLookup) -> list[dict]:
    """``sigma_lookup``'s records on a plain run that did not carry the lookup, read off its
    EMA PSNR history (no output image is kept, so SSIM is NaN): how a count calibrated
    elsewhere does here."""
    ref = run.reference
    curve = ref.history["psnr_clean"]
    out = []
    for n, (photo, sigma) in enumerate(setup.pairs):
        stop = lookup.stop(sigma, len(curve))
        p, peak = float(curve[stop.iteration - 1, n]), float(np.nanmax(curve[:, n]))
        out.append({"photo": photo, "sigma": sigma, "seed": ref.seed, "criterion": "sigma_lookup",
                    "iteration": stop.iteration, "iterations_run": stop.iterations_run,
                    "fired": stop.fired, "psnr": p, "ssim": float("nan"), "gap_db": peak - p,
                    "own_gap_db": peak - p,
                    "compute_saved": (setup.fixed_iterations - stop.iterations_run) / setup.fixed_iterations,
                    "gflops": stop.iterations_run * ref.flops_per_iteration / 1e9})
    return out
