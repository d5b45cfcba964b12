"""Chapter 03, tasks A and B: summaries, equal-FLOPs comparisons, near-copies, verdicts."""
from __future__ import annotations

import re

from ..results import fmt, paired_difference, spread
from .dip_init_ddpm import method_label

SUMMARY_KEYS = ("fid", "kid", "confident_fraction", "psnr", "ssim", "dist_to_ref", "nn_train_dist",
                "gflops_per_image", "nfe", "dip_iters", "wall_s")


def summarise(rows: list[dict], keys=SUMMARY_KEYS) -> dict:
    """Per method: the spread over seeds of each numeric key, its per-seed ``values``, the seeds
    and the method's non-numeric parameters."""
    out: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        present = [k for k in keys if group[0].get(k) is not None]  # class scores need labels
        out[method] = {**{k: spread([r[k] for r in group]) for k in present},
                       "values": {k: [r[k] for r in group] for k in present},
                       **{k: v for k, v in group[0].items()
                          if k not in keys and k not in ("seed", "method") and not isinstance(v, float)},
                       "seeds": [r["seed"] for r in group]}
    return out


def paired(a: dict, b: dict, metric: str) -> dict:
    """Paired difference ``a − b`` of ``metric`` over the two entries' shared seeds."""
    va, vb = (dict(zip(e["seeds"], e["values"][metric])) for e in (a, b))
    seeds = [s for s in a["seeds"] if s in vb]
    return paired_difference([va[s] for s in seeds], [vb[s] for s in seeds])


def equal_compute_comparison(summary: dict, metric: str, higher_is_better: bool,
                             baselines: dict[str, str]) -> list[dict]:
    """Per DIP-based method: ``metric`` beside each baseline's at its FLOPs, and whether it wins or
    loses (resolved paired difference). ``baselines``: label → key template (``"ddim_{k}"``,
    ``k`` the method's ``equal_flops_steps``, or ``"ddim_eq_{name}"``)."""
    out, sign = [], 1 if higher_is_better else -1
    for name, entry in summary.items():
        k = entry.get("equal_flops_steps")
        if k is None and f"ddim_eq_{name}" not in summary:
            continue
        row = {"method": name, metric: entry[metric], "gflops_per_image": entry["gflops_per_image"]}
        for label, template in baselines.items():
            key = template.format(k=k, name=name)
            if key not in summary:
                continue
            d = paired(entry, summary[key], metric)
            row[f"{label} ({key})"] = summary[key][metric]
            row[f"wins vs {label}"] = bool(d["resolved"] and sign * d["mean"] > 0)
            row[f"loses vs {label}"] = bool(d["resolved"] and sign * d["mean"] < 0)
        out.append(row)
    return out


def equal_flops_rows(cmp: list[dict], metric: str) -> list[dict]:
    """:func:`equal_compute_comparison` as tidy rows with readers' names."""
    def cell(r, name, key):  # the baseline's value and the verdict against it
        verdict = "wins" if r[f"wins vs {name}"] else "loses" if r[f"loses vs {name}"] else "not resolved"
        return f"{method_label(key)}: {fmt(r[f'{name} ({key})'])}; {verdict}"

    return [{"method": method_label(r["method"]), metric: r[metric], "gflops": r["gflops_per_image"],
             **{name: cell(r, name, key) for k in r if k.endswith(")") for name, key in [k[:-1].split(" (")]}}
            for r in cmp]


def ddpm_chain_key(summary: dict) -> str:
    """Task A's plain DDPM chain from noise in ``summary``."""
    keys = [m for m in summary if re.fullmatch(r"ddpm_\d+", m)]
    if len(keys) != 1:
        raise ValueError(f"expected one DDPM chain (ddpm_<steps>) in the summary, got {keys}")
    return keys[0]


def _count(cmp: list[dict], key: str) -> int:
    return sum(bool(r.get(key)) for r in cmp)


def near_copies(summary: dict, cmp: list[dict]) -> tuple[float, set[str]]:
    """``(threshold, methods)``: methods of ``cmp`` closer to their own reference than half the
    DDPM chain's distance."""
    limit = 0.5 * summary[ddpm_chain_key(summary)]["dist_to_ref"]["mean"]
    return limit, {r["method"] for r in cmp if summary[r["method"]]["dist_to_ref"]["mean"] < limit}


def verdict_generation(summary: dict, cmp: list[dict]) -> dict:
    """Task A's numbers: equal-FLOPs wins and losses for ``new`` samples and near-copies (whose
    FID inherits the test images'), and the largest speed-up over the DDPM chain at matched FID."""
    key = ddpm_chain_key(summary)
    ddpm, refs = summary[key], summary["test_refs"]
    fid, gfl, wall = ({m: summary[m][k]["mean"] for m in summary} for k in ("fid", "gflops_per_image", "wall_s"))
    copies = near_copies(summary, cmp)[1]

    def speedup(methods):
        good = [m for m in methods if fid[m] <= ddpm["fid"]["mean"]]
        if not good:
            return None, None
        m = max(good, key=lambda k: gfl[key] / gfl[k])
        return gfl[key] / gfl[m], wall[key] / wall[m] if wall[m] > 0 else None

    b_flops, b_wall = speedup([m for m in summary if m.startswith(("ddim_", "dpmpp_"))])
    out = {"ddpm_chain": "DDPM-" + key.split("_")[1], "ddpm_fid": ddpm["fid"]["mean"],
           "test_refs_fid": refs["fid"]["mean"],
           "baseline_speedup_vs_ddpm_at_matched_fid": b_flops,
           "baseline_wall_speedup_vs_ddpm_at_matched_fid": b_wall}
    for g, rows in (("new", [r for r in cmp if r["method"] not in copies]),
                    ("copy", [r for r in cmp if r["method"] in copies])):
        names = [r["method"] for r in rows]
        out[g] = {"n": len(rows), **{f"{w}_vs_{tag}": _count(rows, f"{w} vs {label}")
                                     for tag, label in (("ddim", "DDIM"), ("dpmpp", "DPM-Solver++"))
                                     for w in ("wins", "loses")},
                  "best": min(names, key=fid.get) if names else None}
        if g == "new":  # a near-copy's lower cost is not a generation speed-up: none is given
            out[g].update(zip(("speedup_vs_ddpm_at_matched_fid", "wall_speedup_vs_ddpm_at_matched_fid"),
                              speedup(names)))
    return out


def verdict_denoising(summary: dict, cmp: list[dict]) -> dict:
    """Task B's numbers: the best DIP-based method against the DDPM chain from ``y`` (paired), the
    best method without DIP, DIP's oracle peak, and the equal-FLOPs wins and losses."""
    psnr = {m: summary[m]["psnr"]["mean"] for m in summary}
    dip_based = [m for m in psnr if m.startswith(("dip_", "tdpm")) and m != "dip_oracle_peak"]
    best = max(dip_based, key=psnr.get)
    others = [m for m in psnr if m not in dip_based and m not in ("dip_oracle_peak", "noisy_rescaled")]
    best_other = max(others, key=psnr.get)
    d = paired(summary[best], summary["ddpm_all"], "psnr")
    out = {"best_dip_method": best, "best_dip_psnr": psnr[best], "ddpm_all_psnr": psnr["ddpm_all"],
           "margin_db": d["mean"], "margin_ci95_db": d["ci95"], "margin_n_seeds": d["n"],
           "beats_ddpm_chain": bool(d["resolved"] and d["mean"] > 0),
           "best_non_dip_method": best_other, "best_non_dip_psnr": psnr[best_other],
           "oracle_peak_psnr": psnr["dip_oracle_peak"],
           "wins_vs_ddim_equal_flops": _count(cmp, "wins vs DDIM"),
           "loses_vs_ddim_equal_flops": _count(cmp, "loses vs DDIM"), "n_dip_methods": len(cmp)}
    if f"ddim_eq_{best}" in psnr:  # what the DIP start adds over DDIM's budget from y itself
        out["gain_over_ddim_at_equal_flops_db"] = paired(summary[best], summary[f"ddim_eq_{best}"], "psnr")["mean"]
    return out
