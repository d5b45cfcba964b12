"""Chapter 04's evaluation: one record per (photograph, σ, seed, criterion), summaries with
95 % intervals, the quality bar, and Markdown tables."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import dip
from ..compute import Compute
from ..data import photo_name, photo_roles
from ..metrics import psnr, ssim
from ..results import fmt, markdown_table, paired_difference, save_array, spread
from ..stopping import CRITERIA, NEEDS_SIGMA, ORACLES, RAW, SigmaLookup, last_minimum_stop
from .early_stopping import NOTEBOOK, Run, SeedRuns, StoppingSetup, _fit_kwargs


def _stop_outputs(run: SeedRuns) -> tuple[dict, dict, dict, dict]:
    """Per criterion: stops, outputs, FLOPs per iteration, and the clean PSNR of its own peak
    (the best output of the trajectory and convention it reads)."""
    ref = run.reference
    stops, outputs = dict(ref.stops), dict(ref.outputs)
    flops = {c: ref.flops_per_iteration for c in stops}
    at = lambda x: psnr(x, ref.clean).double().numpy()  # noqa: E731
    ema_peak, raw_peak = at(ref.outputs["oracle"]), at(ref.outputs["oracle_raw"])
    peak = {c: raw_peak if c in RAW else ema_peak for c in stops}
    for c, r in (("guided", run.guided), ("sure", run.sure)):
        if r is not None:
            stops[c], outputs[c], flops[c] = r.stops[c], r.outputs[c], r.flops_per_iteration
            peak[c] = (np.nanmax(r.history["psnr_clean"], 0) if c == "guided"
                       else at(r.outputs["oracle_raw"]))
    return stops, outputs, flops, peak


def _record(setup: StoppingSetup, photo, sigma, seed, c, s, psnr_db, ssim_, gap, own_gap,
            flops) -> dict:
    fixed = setup.fixed_iterations
    return {"photo": photo, "sigma": sigma, "seed": seed, "criterion": c,
            "iteration": s.iteration, "iterations_run": s.iterations_run, "fired": s.fired,
            "psnr": psnr_db, "ssim": ssim_, "gap_db": gap, "own_gap_db": own_gap,
            "compute_saved": (fixed - s.iterations_run) / fixed,
            "gflops": s.iterations_run * flops / 1e9}


def evaluate(setup: StoppingSetup, run: SeedRuns) -> list[dict]:
    """One record per (photograph, σ, criterion) of a seed: stop, PSNR, SSIM, ``gap_db`` (to
    the plain run's EMA peak), ``own_gap_db`` (to its own peak), compute."""
    ref = run.reference
    stops, outputs, flops, own = _stop_outputs(run)
    quality = {c: (psnr(outputs[c], ref.clean).double().numpy(),
                   ssim(outputs[c], ref.clean).double().numpy()) for c in stops}
    return [_record(setup, photo, sigma, ref.seed, c, stops[c][n], p, float(quality[c][1][n]),
                    float(quality["oracle"][0][n]) - p, float(max(own[c][n], p)) - p, flops[c])
            for n, (photo, sigma) in enumerate(setup.pairs) for c in CRITERIA if c in stops
            for p in [float(quality[c][0][n])]]


def es_wmv_sensitivity(setup: StoppingSetup, references: list[Run]) -> dict:
    """ES-WMV's gap to the oracle for every recorded window × patience, from the histories."""
    out = {}
    for w in setup.wmv_windows:
        key = "variance" if w == setup.window else f"variance_w{w}"
        for p in setup.wmv_patiences:
            stops = [(r.history["psnr_clean"][:, n], last_minimum_stop(r.history[key][:, n], p))
                     for r in references for n in range(r.history["psnr_clean"].shape[1])]
            gaps = [c.max() - c[s.iteration - 1] for c, s in stops]
            out[f"W={w},P={p}"] = {"window": w, "patience": p, "gap_db": _gap_stats(gaps),
                                   "iterations_run": spread([s.iterations_run for _, s in stops])}
    return out


def sensitivity_table(sensitivity: dict) -> str:
    """ES-WMV's mean (worst) gap per window (rows) and patience (columns)."""
    patiences = sorted({v["patience"] for v in sensitivity.values()})
    cell = "{mean:.2f} (worst {worst:.2f})"
    rows = [{"w": w, **{p: cell.format(**sensitivity[f"W={w},P={p}"]["gap_db"]) for p in patiences}}
            for w in sorted({v["window"] for v in sensitivity.values()})]
    return markdown_table(rows, {"w": "window W", **{p: f"P = {p}" for p in patiences}})


def _gap_stats(gaps) -> dict:
    s = spread(gaps)
    return {**s, "worst": s["max"]}


def summarize(records: list[dict], setup: StoppingSetup) -> dict:
    """Per criterion: spreads of every record field, gaps per σ, what it reads and returns."""
    out = {}
    for c in [c for c in CRITERIA if any(r["criterion"] == c for r in records)]:
        rows = [r for r in records if r["criterion"] == c]
        own = [r["own_gap_db"] for r in rows]
        of = lambda *keys: {k: spread([r[k] for r in rows]) for k in keys}  # noqa: E731
        out[c] = {
            **of("iteration", "iterations_run", "psnr", "ssim"),
            "gap_db": _gap_stats([r["gap_db"] for r in rows]),
            "gap_db_by_sigma": {str(s): _gap_stats([r["gap_db"] for r in rows if r["sigma"] == s])
                                for s in setup.sigmas if any(r["sigma"] == s for r in rows)},
            "own_gap_db": _gap_stats(own) if np.isfinite(own).all() else None,
            **of("compute_saved", "gflops"),
            "fired_fraction": float(np.mean([r["fired"] for r in rows])),
            "needs_sigma": c in NEEDS_SIGMA, "needs_clean": c in ORACLES,
            "output": "raw" if c in RAW else "EMA",
        }
    return out


def quality_bar(summary: dict, max_gap_db: float = 1.0, sigmas=(25.0, 50.0)) -> dict:
    """Is the guided mean gap at ``sigmas`` (those run) ≤ ``max_gap_db``; the best criterion
    without the clean image; the guided rule's difference to every peer."""
    g, mean = summary["guided"], {c: summary[c]["gap_db"]["mean"] for c in summary}
    have = [str(float(s)) for s in sigmas if str(float(s)) in g["gap_db_by_sigma"]]
    gaps = [g["gap_db_by_sigma"][s]["mean"] for s in have]
    peers = [c for c in summary if c not in ORACLES]
    best = min(peers, key=mean.get)
    return {"guided_mean_gap_db": mean["guided"], "max_gap_db": max_gap_db,
            "bar_sigmas": [float(s) for s in have] or None,
            "guided_gap_by_bar_sigma_db": dict(zip(have, gaps)),
            "guided_within_max_gap": bool(max(gaps or [mean["guided"]]) <= max_gap_db),
            "best_criterion": best, "best_gap_db": mean[best], "guided_is_best": best == "guided",
            "guided_minus_peer_db": {c: mean["guided"] - mean[c] for c in peers if c != "guided"},
            "es_wmv_mean_gap_db": mean["es_wmv"],
            "guided_no_worse_than_es_wmv": bool(mean["guided"] <= mean["es_wmv"]),
            "guided_minus_es_wmv_db": mean["guided"] - mean["es_wmv"]}


def run_compute(setup: StoppingSetup, runs: list[SeedRuns]) -> dict:
    """DIP iterations, GFLOPs and wall seconds of each kind of run, summed over seeds and images."""
    def cost(run) -> Compute:
        iters = len(run.history["residual"]) * len(setup.pairs)
        return Compute(flops=iters * run.flops_per_iteration, dip_iters=iters, wall_s=run.wall_s)

    done = {k: [getattr(r, k) for r in runs if getattr(r, k) is not None]
            for k in ("reference", "guided", "sure")}
    return {k: sum(map(cost, d), Compute()).to_dict() for k, d in done.items() if d}


def save_stop_arrays(out_dir, setup: StoppingSetup, runs: list[SeedRuns]) -> list[str]:
    """Write ``stop_<criterion>_<image>_<sigma>`` and ``noisy_<image>_<sigma>`` (one image per
    seed) and ``clean_<image>``; return the names written."""
    names, per_seed = [], [_stop_outputs(r)[1] for r in runs]

    def save(name: str, images) -> None:
        save_array(out_dir, name, images)
        names.append(name)

    for n, (photo, sigma) in enumerate(setup.pairs):
        photo = photo_name(photo)
        tag = f"{photo}_{sigma:g}"
        for c in [c for c in CRITERIA if c in per_seed[0]]:
            save(f"stop_{c}_{tag}", torch.stack([o[c][n] for o in per_seed]))
        save(f"noisy_{tag}", torch.stack([r.reference.noisy[n] for r in runs]))
        if f"clean_{photo}" not in names:
            save(f"clean_{photo}", runs[0].reference.clean[n:n + 1])
    return names


def build_metrics(profile, setup: StoppingSetup, runs: list[SeedRuns], records, summary,
                  settings: dict | None = None, extra: dict | None = None) -> dict:
    """Everything the chapter reports, for ``metrics.json``; ``extra`` adds sections."""
    return {"profile": profile.name, "notebook": NOTEBOOK, "seeds": list(setup.seeds),
            "setup": setup.to_dict(), "photo_sets": photo_roles(profile, setup.photos),
            "settings_source": settings or {},
            "network": dataclasses.asdict(dip.DIPConfig.from_profile(profile)),
            "fit": _fit_kwargs(profile), "methods": summary, "quality_bar": quality_bar(summary),
            "es_wmv_sensitivity": es_wmv_sensitivity(setup, [r.reference for r in runs]),
            "compute": run_compute(setup, runs),
            "flops_per_iteration": runs[0].reference.flops_per_iteration, "runs": records,
            **(extra or {})}


def sigma_table(summary: dict, setup: StoppingSetup) -> str:
    """Mean gap to the oracle ± its 95 % t-interval (and the worst) per criterion and σ."""
    sig = [str(s) for s in setup.sigmas]
    cell = "{mean:.2f} ± {ci95:.2f} (worst {worst:.2f})"
    rows = [{"c": LABELS[c], **{s: cell.format(**summary[c]["gap_db_by_sigma"][s])
                                if s in summary[c]["gap_db_by_sigma"] else "–" for s in sig}}
            for c in summary if c not in ORACLES]
    return markdown_table(rows, {"c": "criterion", **{s: f"σ = {float(s):g}" for s in sig}})


LABELS = {"guided": "guided (ours)", "prior_distance": "learned prior (ours)",
          "sure": "SURE (DF-STE set-up)", "sigma_lookup": "σ lookup (tune photos)",
          "es_wmv": "ES-WMV, EMA output", "es_wmv_raw": "ES-WMV (authors: raw)",
          "es_emv": "ES-EMV (authors: raw)", "discrepancy": "discrepancy",
          "fixed": "fixed (profile)", "ulyanov": "fixed (Ulyanov, scaled)",
          "oracle": "oracle (upper bound)", "oracle_raw": "oracle, raw output"}


def results_table(summary: dict) -> str:
    """The summary, one row per criterion (± the 95 % t-interval)."""
    rows = [{"c": LABELS[c], "output": s["output"], "it": fmt(s["iteration"], 0),
             "reads": "clean image" if s["needs_clean"] else "σ" if s["needs_sigma"] else "–",
             "run": f"{s['iterations_run']['mean']:.0f}", "psnr": s["psnr"],
             "ssim": f"{s['ssim']['mean']:.3f}", "gap": s["gap_db"],
             "median": f"{s['gap_db']['median']:.2f}", "worst": f"{s['gap_db']['worst']:.2f}",
             "own": f"{s['own_gap_db']['mean']:.2f}" if s["own_gap_db"] else "–",
             "saved": f"{100 * s['compute_saved']['mean']:.0f}%"} for c, s in summary.items()]
    return markdown_table(rows, {"c": "criterion", "reads": "reads", "output": "output",
                                 "it": "stop iteration", "run": "iterations run",
                                 "psnr": "PSNR (dB)", "ssim": "SSIM", "gap": "gap mean",
                                 "median": "gap median", "worst": "gap worst",
                                 "own": "own-peak gap", "saved": "compute saved"})


def stops_table(records: list[dict]) -> str:
    """Per criterion (rows) and image (columns): stop iteration, gap (own-peak gap)."""
    images = list(dict.fromkeys((r["photo"], r["sigma"]) for r in records))
    rows = {c: {"c": LABELS[c]} for c in CRITERIA if any(r["criterion"] == c for r in records)}
    for r in records:
        rows[r["criterion"]].setdefault((r["photo"], r["sigma"]),  # the first seed's
            f"{r['iteration']}: {r['gap_db']:.2f} ({r['own_gap_db']:.2f})"
            + ("" if r["fired"] or r["criterion"] in ORACLES else ", not fired"))
    return markdown_table(list(rows.values()),
                          {"c": "criterion", **{(p, s): f"{photo_name(p)}, σ = {s:g}" for p, s in images}})


def paired_gap_difference(records: list[dict], a: str, b: str) -> dict:
    """:func:`~dipddpm_lib.results.paired_difference` of two criteria's gaps (``a`` − ``b``)
    over the runs they share."""
    key = lambda r: (r["photo"], r["sigma"], r["seed"])  # noqa: E731
    gb = {key(r): r["gap_db"] for r in records if r["criterion"] == b}
    pairs = [(r["gap_db"], gb[key(r)]) for r in records if r["criterion"] == a and key(r) in gb]
    if not pairs:
        raise ValueError(f"no runs with both {a!r} and {b!r}")
    return paired_difference(*zip(*pairs))


def lookup_records(setup: StoppingSetup, run: SeedRuns, lookup: SigmaLookup) -> list[dict]:
    """``sigma_lookup``'s records read off the EMA PSNR history of a run without the lookup
    (no output image is kept, so SSIM is NaN)."""
    ref = run.reference
    curve = ref.history["psnr_clean"]
    out = []
    for n, (photo, sigma) in enumerate(setup.pairs):
        stop = lookup.stop(sigma, len(curve))
        p, peak = float(curve[stop.iteration - 1, n]), float(np.nanmax(curve[:, n]))
        out.append(_record(setup, photo, sigma, ref.seed, "sigma_lookup", stop, p, float("nan"),
                           peak - p, peak - p, ref.flops_per_iteration))
    return out
