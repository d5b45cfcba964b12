"""The report notebook's (``06_report``) helpers: the chapters' stored results, the figures it
copies, its headline numbers, its per-chapter tables and the compute table."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .build import CHAPTERS, NOTEBOOKS, REPO, REPORT_CHAPTER
from .errors import check_choice
from .results import markdown_table, read_json
from .tuned import settings_table

REPORTED_CHAPTERS = CHAPTERS[:-1]  # each one's results/<profile>/<name>/metrics.json


def chapters() -> list[Path]:
    """The report's notebooks, in order: ``notebooks/NN_*.ipynb``."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@dataclass(frozen=True)
class Figure:
    name: str  # file name in figures/<profile>/
    chapter: str  # the notebook that makes it
    source: str  # its file name in the chapter's output folder
    caption: str


FIGURES = (
    Figure("ddpm_quality_vs_compute.png", "01_ddpm_baseline", "quality_vs_compute.png",
           "DDPM, DDIM and DPM-Solver++: in-domain FID, KID ×10³, precision, recall, class "
           "entropy and confident fraction (95 % intervals over seeds) against NFE, FLOPs and "
           "wall seconds"),
    Figure("ddpm_samples.png", "01_ddpm_baseline", "samples.png", "Samples of every sampler"),
    Figure("dip_psnr_curves.png", "02_dip_baseline", "psnr_curves.png",
           "DIP: PSNR against iteration, against the observation and the clean image"),
    Figure("dip_restorations.png", "02_dip_baseline", "restorations.png",
           "DIP and classical denoisers, image by image"),
    Figure("equal_compute_generation.png", "03_dip_init_ddpm", "gen_quality_vs_flops.png",
           "Generation at equal FLOPs: DIP→t0 and TDPM-DIP against DDIM and DPM-Solver++"),
    Figure("equal_compute_denoising.png", "03_dip_init_ddpm", "denoise_quality_vs_flops.png",
           "Denoising at a diffusion noise level at equal FLOPs"),
    Figure("photo_prior_psnr_vs_sigma.png", "01_ddpm_baseline", "photo_prior_psnr_vs_sigma.png",
           "The photo DDPM's one-step denoising against σ on the eval photographs, beside the "
           "noisy input and NL-means"),
    Figure("photo_psnr_vs_wall.png", "03_dip_init_ddpm", "photo_psnr_vs_wall.png",
           "Photographs at DIP's noise levels: every single prior and combination, PSNR against "
           "wall time (95 % intervals over photograph × seed problems)"),
    Figure("photo_examples.png", "03_dip_init_ddpm", "photo_examples.png",
           "Each eval photograph restored by every method, with a zoomed crop"),
    Figure("early_stopping_curves.png", "04_early_stopping", "stop_curves.png",
           "Every stopping criterion on the PSNR curves"),
    Figure("early_stopping_gaps.png", "04_early_stopping", "gaps.png",
           "Gap to the oracle peak per criterion"),
    Figure("ablations.png", "05_ablations", "ablations.png",
           "Every ablation grid, mean ± 95 % t-interval over seeds"),
)


def load_results(profile: str, results_root: str | Path | None = None) -> dict:
    """Each chapter's ``metrics.json`` (``None`` for a chapter that has not run)."""
    root = Path(results_root) if results_root else REPO / "results" / profile
    return {name: read_json(root / name / "metrics.json") for name in REPORTED_CHAPTERS}


def copy_figures(profile: str, results_root: str | Path | None = None,
                 dest: str | Path | None = None) -> dict[str, Path | None]:
    """Copy every report figure that exists into ``dest`` (default ``figures/<profile>/``);
    returns figure name → its path there, or ``None`` where the chapter has not made it."""
    root = Path(results_root) if results_root else REPO / "results" / profile
    dest = Path(dest) if dest else REPO / "figures" / profile
    dest.mkdir(parents=True, exist_ok=True)
    return {fig.name: shutil.copyfile(src, dest / fig.name) if src.exists() else None
            for fig in FIGURES for src in [root / fig.chapter / fig.source]}


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def headline_numbers(results: dict) -> dict:
    """The abstract's numbers, read from the chapters' results (``None`` where missing)."""
    m1, m2, m3, m4, m5 = (results.get(k) for k in REPORTED_CHAPTERS)
    out = {}
    if m1:
        bar = m1.get("quality_bar", {})
        out["ddpm"] = {k: bar.get(k) for k in (
            "method", "fid", "reference_fid", "fid_ratio", "max_fid_ratio", "precision", "recall",
            "min_precision", "min_recall", "confident_fraction", "passed", "control_margin",
            "worst_control", "controls_fail_reference_passes")}
        out["ddpm"]["label"] = _get(m1, "methods", bar.get("method"), "label") or bar.get("method")
        # the ± convention: half-width of the 95 % t-interval over the seeds (results.CI_NOTE)
        out["ddpm"]["fid_ci95"] = _get(m1, "methods", bar.get("method"), "fid", "ci95")
        out["ddpm"]["reference_fid_ci95"] = _get(m1, "reference_real_test", "fid", "ci95")
        out["ddpm"]["n_seeds"] = _get(m1, "methods", bar.get("method"), "fid", "n")
    if m2:
        mean = _get(m2, "summary", "mean_over_images") or {}
        out["dip"] = {"n_images": len(m2.get("per_image", {})), "sigma": m2.get("sigma"),
                      "iterations": m2.get("iterations"), **mean,
                      "quality_bar_passed": _get(m2, "summary", "quality_bar", "passed")}
    if m3:
        out["equal_compute"] = dict(_get(m3, "generation", "verdict") or {})
        out["denoising"] = dict(_get(m3, "denoising", "verdict") or {})
    if m4:
        out["early_stopping"] = dict(m4.get("quality_bar", {}),
                                     guided_compute_saved=_get(m4, "methods", "guided",
                                                               "compute_saved", "mean"))
    if m5:
        out["ablations"] = {name: {**g["chosen"], "reason": _get(g, "choice", "reason"),
                                   "photos": g.get("photos")}
                            for name, g in m5.get("grids", {}).items() if g.get("chosen") is not None}
    return out


def section_tables(chapter: str, results: dict) -> tuple[str | None, str | None]:
    """``(tables, None)``, ``(None, "missing")`` without results, or ``(None, error)`` for
    results without the expected layout."""
    m = results.get(chapter)
    if m is None:
        return None, "missing"
    try:
        return _SECTIONS[chapter](m), None
    except (KeyError, TypeError, ValueError, IndexError) as err:
        return None, f"{type(err).__name__}: {err}"


def _ddpm_section(m: dict) -> str:
    from .experiments import ddpm_baseline as ch01
    label = m["methods"][m["quality_bar"]["method"]]["label"]
    paired = {k: m["paired_vs_baseline"][k] for k in ch01.ordered(m["methods"])
              if k in m.get("paired_vs_baseline", {})}
    return (ch01.results_table(m["methods"], m["reference_real_test"], m.get("controls"))
            + ("\n\n" + ch01.comparison_table(paired, label) if paired else ""))


def _settings_line(m: dict) -> str:
    rec = m.get("settings_source")
    return ("\n\n" + settings_table(rec)) if rec and rec.get("settings") else ""


def _dip_section(m: dict) -> str:
    from .figures import dip_baseline as ch02
    return ch02.quality_table(m["per_image"]) + _settings_line(m)


def _integration_section(m: dict) -> str:
    from .experiments import dip_init_ddpm_results as ch03
    columns = {"method": "method", "gflops": "GFLOPs/img", "DDIM": "DDIM, equal FLOPs",
               "DPM-Solver++": "DPM-Solver++, equal FLOPs"}
    return "\n\n".join(markdown_table(ch03.equal_flops_rows(m[task]["equal_compute"], metric),
                                      {**columns, metric: label})
                         for task, metric, label in (("generation", "fid", "FID"),
                                                     ("denoising", "psnr", "PSNR (dB)")))


def _early_stopping_section(m: dict) -> str:
    from .experiments import early_stopping_results as esr
    return esr.results_table(m["methods"]) + _settings_line(m)


def _ablations_section(m: dict) -> str:
    rows = [{"grid": name, "parameter": f"`{g['parameter']}`", "chosen": f"`{g['chosen']['value']}`",
             "reason": g["choice"]["reason"], "metric": g["chosen"]["metric"], "value": g["chosen"]}
            for name, g in m["grids"].items() if g.get("chosen")]
    return markdown_table(rows, {"grid": "grid", "parameter": "parameter", "chosen": "chosen value",
                                 "reason": "why", "metric": "by", "value": "mean ± 95 % CI"})


_SECTIONS = {"01_ddpm_baseline": _ddpm_section, "02_dip_baseline": _dip_section,
             "03_dip_init_ddpm": _integration_section, "04_early_stopping": _early_stopping_section,
             "05_ablations": _ablations_section}


def figure(name: str) -> "Figure":
    """The report figure called ``name``."""
    check_choice("report figure", name, [f.name for f in FIGURES])
    return next(f for f in FIGURES if f.name == name)


def compute_rows(results: dict) -> list[dict]:
    """The compute each chapter declares (wall seconds as measured when the work was done)."""
    rows = []
    m1, m2, m3, m4, m5 = (results.get(k) for k in REPORTED_CHAPTERS)

    def add(chapter, work, wall_s, gflops=None):
        rows.append({"chapter": chapter, "work": work, "wall_s": wall_s, "gflops": gflops})

    def total(rs, key):
        return sum(r.get(key, 0.0) for r in rs)

    if m1 and "train" in m1:
        add("01", f"DDPM training ({m1['train'].get('steps')} steps)", m1["train"].get("seconds"),
            m1["train"].get("gflops"))
        per_seed = [r for m in m1.get("methods", {}).values() for r in m.get("per_seed", [])]
        add("01", f"sampling ({len(per_seed)} sample sets)", total(per_seed, "wall_s"),
            total(per_seed, "gflops"))
    if m1 and "photo_prior" in m1:
        pp = m1["photo_prior"]
        add("01", f"photo DDPM prior training ({pp.get('steps')} steps)", pp.get("train_seconds"))
    if m2 and "compute" in m2:
        dip = m2["compute"].get("dip", {})
        add("02", f"DIP fits ({dip.get('iterations')} network-iterations)", dip.get("wall_s"),
            dip.get("gflops"))
    for task, what, runs in (("generation", "generation", "method × seed"),
                             ("denoising", "denoising", "method × seed"),
                             ("photographs", "photographs, task C", "method × photo × σ × seed")):
        task_rows = _get(m3, task, "rows") or []  # a task-C-only run has no task A or B
        if task_rows:  # task C's GFLOPs: per image, summed over every run
            add("03", f"{what} ({len(task_rows)} {runs} runs)", total(task_rows, "wall_s"),
                total(task_rows, "gflops_per_image") if task == "photographs" else None)
    if m4 and "compute" in m4:
        for what, runs in (("{} DIP runs", m4["compute"]),
                           ("σ lookup's calibration on the tune photos", _get(m4, "sigma_lookup", "compute")),
                           ("ES authors' regime, {} DIP run", _get(m4, "paper_regime", "compute"))):
            for kind, c in (runs or {}).items():
                add("04", f"{what.format(kind)} ({c.get('dip_iters')} image-iterations)",
                    c.get("wall_s"), c.get("gflops"))
    if m5 and "compute" in m5:
        add("05", f"ablation points ({m5.get('n_done')} with results)",
            m5["compute"].get("total_point_wall_s"))
    return rows


def compute_markdown(rows: list[dict]) -> str:
    """:func:`compute_rows` as a Markdown table."""
    return markdown_table([{**r, "wall_s": "–" if r["wall_s"] is None else f"{r['wall_s']:.0f}",
                            "gflops": "not counted" if r["gflops"] is None else f"{r['gflops']:.3g}"}
                           for r in rows],
                          {"chapter": "chapter", "work": "work", "wall_s": "wall s", "gflops": "GFLOPs"})
