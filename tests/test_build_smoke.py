"""The whole smoke report, built once per session by Snakemake (conftest's ``smoke_build``,
tests/smokebuild.py) as `make report PROFILE=smoke` builds it, and every check that reads it:
the build and its no-op rerun, each chapter's stored results (the chapters' real papermill
runs), every grid's metric paths, and the determinism reruns (same seed ⇒ same numbers).

One module, so that pytest-xdist (``--dist loadfile``) runs all of it on the worker that
builds while the other workers run the rest."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from nbrun import NOTEBOOKS, run_notebook
from smokebuild import thread_env
from test_workflow import snakemake

from dipddpm_lib import build, collate, get_profile, stopping, sweep
from dipddpm_lib.experiments import early_stopping as es
from dipddpm_lib.results import load_array
from dipddpm_lib.tuned import read_tuned

TIMING = re.compile(r"(wall|seconds|time|duration|_s$|_s_|per_second)", re.I)
CHAPTERS = sorted(p.stem for p in NOTEBOOKS.glob("0[1-4]_*.ipynb"))
SPREAD_KEYS = {"mean", "std", "median", "min", "max", "n", "ci95", "ci_lo", "ci_hi"}
SCORES = ("fid", "kid", "precision", "recall", "confident_fraction", "class_entropy")
DIP_KEYS = {"final_psnr", "peak_psnr", "peak_iteration", "final_ssim", "peak_ssim", "wall_s",
            "gflops"}
METHOD_KEYS = {"iteration", "iterations_run", "psnr", "ssim", "gap_db", "gap_db_by_sigma",
               "compute_saved", "gflops", "fired_fraction"}


def _method_keys(p) -> list[str]:
    return ([f"ddpm_{p.ddpm_sample_steps}"] + [f"ddim_{k}" for k in p.sampler_steps]
            + [f"dpmpp_{k}" for k in p.dpm_steps])


# --------------------------------------------------------------------------- the build
@pytest.mark.notebook
def test_the_smoke_report_builds_then_a_rerun_does_nothing(smoke_build):
    """The whole smoke report (conftest's smoke_build: Snakemake, an empty cache); the chapter
    tests check each chapter's outputs."""
    assert smoke_build.returncode == 0, smoke_build.log[-4000:]
    root = smoke_build.root
    report = root / "report" / "smoke"
    assert (report / "report.html").stat().st_size > 0
    timings = json.loads((report / "timings.json").read_text())["seconds"]
    assert {"chapter/01_ddpm_baseline", "photo_prior", "chapter/06_report"} <= set(timings)
    for ch in build.CHAPTERS:
        assert (smoke_build.results / ch / "metrics.json").exists(), ch
    tuned = json.loads((smoke_build.results / "tuned.json").read_text())
    assert tuned["profile"] == "smoke" and tuned["settings"]
    ablations = smoke_build.metrics("05_ablations")  # every real point ran and was collated
    assert ablations["n_done"] == ablations["n_points"] == len(build.plan("smoke", smoke_build.results))
    assert ablations["failed_points"] == [] and ablations["missing_points"] == []
    report_m = smoke_build.metrics("06_report")
    assert report_m["chapters_missing"] == [] and len(report_m["chapters_with_results"]) == 5
    env = {"DIPDDPM_CACHE": str(smoke_build.cache)}
    again = snakemake("--cores", "2", root=root, config=["profile=smoke", "install_tools=false"], env_extra=env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_every_grid_reads_numbers_its_chapter_writes(smoke_build):
    """Smoke runs a few grids; every grid of every profile names metric paths that the smoke
    build's run of its chapter (with the same sections) has."""
    grids = {g.name: g for prof in ("full", "quick", "smoke") for g in sweep.load_grids(prof)}
    for g in grids.values():
        metrics = smoke_build.metrics(g.notebook_name)
        for label, path in g.metrics.items():
            assert collate.lookup(metrics, path), f"grid {g.name}: {label} = {path} not in {g.notebook_name}"


# --------------------------------------------------------------------------- each chapter's results
@pytest.mark.notebook
def test_chapter_01_stores_what_it_reports(smoke_build):
    metrics = smoke_build.metrics("01_ddpm_baseline")
    out = smoke_build.chapter_dir("01_ddpm_baseline")
    smoke = get_profile("smoke")
    n_seeds, keys = len(smoke.seeds), _method_keys(smoke)
    assert metrics["profile"] == "smoke" and metrics["beta_schedule"] == "linear"
    assert metrics["seeds"] == list(smoke.seeds) and metrics["methods"].keys() == set(keys)
    assert metrics["features"].startswith("in-domain CNN classifier")
    assert 0 <= metrics["classifier_test_accuracy"] <= 1
    train = metrics["train"]
    assert train["steps"] == smoke.train_steps and train["n_params"] > 0
    assert train["seconds"] > 0 and train["gflops"] > 0 and np.isfinite(train["final_loss"])
    for key in keys:
        m = metrics["methods"][key]
        for q in (*SCORES, "wall_s"):
            assert set(m[q]) == SPREAD_KEYS and m[q]["n"] == n_seeds
        for q in ("precision", "recall", "class_entropy"):
            assert all(0 <= r[q] <= 1 for r in m["per_seed"])
        assert m["nfe"] == int(key.split("_")[1]) and m["gflops"] > 0
        assert [r["seed"] for r in m["per_seed"]] == list(smoke.seeds)
        assert m["features"] == metrics["features"]
        arr = load_array(out, f"samples_{key}")
        assert arr.shape == (n_seeds * smoke.num_samples, 1, smoke.image_size, smoke.image_size)
        assert arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
        assert metrics["arrays"][f"samples_{key}"]["shape"] == list(arr.shape)
    ref = metrics["reference_real_test"]
    assert ref["num_samples"] == smoke.num_samples and ref["fid"]["n"] == n_seeds
    assert ref["full_test"]["num_samples"] > smoke.num_samples
    assert set(ref["full_test"]) >= set(SCORES)
    controls = metrics["controls"]
    assert set(controls) == {"noise", "black", "white", "blurred", "repeated"}
    for c in controls.values():
        assert c["num_samples"] == smoke.num_samples and [r["seed"] for r in c["per_seed"]] == \
            list(smoke.seeds)
        assert all(set(c[q]) == SPREAD_KEYS and c[q]["n"] == n_seeds for q in SCORES)
    # training-free facts about the controls: constant images are the same on every seed, and
    # one image repeated covers at most one real image's ball in any feature space
    assert controls["black"]["fid"]["std"] == 0 and controls["white"]["precision"]["std"] == 0
    assert controls["repeated"]["recall"]["max"] <= 1 / metrics["train_images"] + 1e-12
    bar = metrics["quality_bar"]
    assert bar["method"] == keys[0] and isinstance(bar["passed"], bool)
    assert (bar["min_precision"], bar["min_recall"], bar["max_fid_ratio"]) == (0.5, 0.5, 3.0)
    assert bar["precision"] == metrics["methods"][keys[0]]["precision"]["mean"]
    assert bar["worst_control"] in controls and set(bar["controls"]) == set(controls)
    assert bar["control_margin"] == pytest.approx(
        min(ref["precision"]["mean"], ref["recall"]["mean"])
        - max(min(c["precision"]["mean"], c["recall"]["mean"]) for c in controls.values()))
    assert isinstance(bar["controls_fail_reference_passes"], bool)
    assert set(metrics["paired_vs_baseline"]) == set(keys[1:])
    assert all(c["verdict"] in ("better", "worse", "mixed", "not resolved")
               for c in metrics["paired_vs_baseline"].values())
    for fig in ("training_loss", "samples", "quality_vs_compute"):
        assert (out / f"{fig}.png").stat().st_size > 0


@pytest.mark.notebook
def test_chapter_02_stores_what_it_reports(smoke_build):
    metrics = smoke_build.metrics("02_dip_baseline")
    out = smoke_build.chapter_dir("02_dip_baseline")
    smoke = get_profile("smoke")
    images = list(smoke.dip_baseline_photos)
    assert metrics["profile"] == "smoke" and metrics["task"] == "denoise"
    assert metrics["seeds"] == list(smoke.seeds) and metrics["sigma"] == 25
    assert set(metrics["per_image"]) == set(images)
    for name, m in metrics["per_image"].items():
        assert DIP_KEYS <= set(m["dip"])
        assert m["dip"]["final_psnr"]["n"] == len(smoke.seeds)
        assert 1 <= m["dip"]["peak_iteration"]["min"] <= smoke.dip_baseline_iterations
        assert m["dip"]["gflops"]["mean"] > 0 and m["dip"]["wall_s"]["mean"] > 0
        for method in ("nl_means", "wavelet", "tv"):
            assert m[method]["psnr"] > m["observed_psnr"]  # every classical denoiser helps
            assert m[method]["flops"] is None and m[method]["wall_s"] >= 0
        shapes = {kind: load_array(out, f"{kind}_{name}").shape
                  for kind in ("clean", "observed", "dip_final", "dip_peak")}
        size = smoke.photo_size
        assert shapes["clean"] == shapes["observed"] == (1, 3, size, size)
        assert shapes["dip_final"] == shapes["dip_peak"] == (len(smoke.seeds), 3, size, size)
    assert {"inpaint", "sr4"} <= set(metrics)
    assert metrics["inpaint"]["biharmonic"]["psnr"] > 0 and DIP_KEYS <= set(metrics["sr4"]["dip"])
    sr_name = metrics["sr4"]["image"]
    assert load_array(out, f"sr4_observed_{sr_name}").shape[-1] == smoke.photo_size // 4
    assert "quality_bar" in metrics["summary"] and metrics["compute"]["dip"]["gflops"] > 0
    for fig in ("psnr_curves", "restorations", "showcase_curves", "showcase_restorations"):
        assert (out / f"{fig}.png").stat().st_size > 0
    arr = load_array(out, f"dip_final_{images[0]}")
    assert arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    # tune, then evaluate: every tunable setting is the one the build's tuning grids chose (on
    # the tune photos), and the photos are eval photos
    src, tuned = metrics["settings_source"], read_tuned(smoke_build.results / "tuned.json")
    assert src["tuned_file"] == smoke_build.parameters("02_dip_baseline")["tuned"]
    assert set(src["settings"]) == {"dip_scales", "dip_channels", "dip_lr"}
    # smoke tunes the depth only (its width and lr grids have no smoke values): the depth is the
    # chosen one, the others are the profile's
    assert {n for n in src["settings"] if n in tuned["settings"]} == {"dip_scales"}
    for name, entry in src["settings"].items():
        if name in tuned["settings"]:
            assert entry["source"] == "tuned" and entry["value"] == tuned["settings"][name]["value"]
        else:
            assert entry["source"] == "profile" and entry["value"] == getattr(smoke, name), name
    assert set(metrics["photo_sets"].values()) == {"eval"}
    dip = metrics["per_image"][images[0]]["dip"]["final_psnr"]
    assert {"ci95", "ci_lo", "ci_hi"} <= set(dip) and dip["ci95"] >= 0


@pytest.mark.notebook
def test_chapter_03_stores_what_the_report_reads(smoke_build):
    m = smoke_build.metrics("03_dip_init_ddpm")
    out = smoke_build.chapter_dir("03_dip_init_ddpm")
    gen, den = m["generation"], m["denoising"]
    assert m["seeds"] == [0, 1] and m["features"].startswith("in-domain CNN classifier")
    methods = set(gen["summary"])
    from dipddpm_lib import get_profile

    ddpm_key = f"ddpm_{get_profile('smoke').ddpm_sample_steps}"  # named by its own step count
    assert {ddpm_key, "test_refs"} <= methods and "ddpm_1000" not in methods
    assert any(k.startswith("dip_t0_") for k in methods) and any(k.startswith("tdpm_") for k in methods)
    for row in gen["equal_compute"]:  # every variant is matched by DDIM and DPM-Solver++
        assert any(k.startswith("DDIM (") for k in row) and any(k.startswith("DPM-Solver++ (") for k in row)
    for key in ("fid", "kid", "confident_fraction", "dist_to_ref", "nn_train_dist",
                "gflops_per_image", "nfe", "wall_s"):
        assert key in gen["summary"][ddpm_key], key
    assert {"ddpm_all", "dip_fixed", "dip_oracle_peak", "tdpm_dip"} <= set(den["summary"])
    assert all(len(s["seeds"]) == 2 for s in den["summary"].values())
    assert "beats_ddpm_chain" in den["verdict"] and "new" in gen["verdict"]
    assert "text" not in gen["verdict"]  # prose quotes wall times: not data
    for name in ("denoise_clean", "denoise_noisy", "denoise_ddpm_all", "denoise_tdpm_dip"):
        a = np.load(out / f"{name}.npy")
        assert a.dtype == np.float32 and a.ndim == 4 and 0 <= a.min() and a.max() <= 1
    for fig in ("gen_quality_vs_flops", "gen_wall_and_novelty", "gen_samples", "denoise_quality_vs_flops",
                "denoise_examples", "photo_psnr_vs_iteration"):  # figures/dip_init_ddpm.py
        assert (out / f"{fig}.png").exists(), fig
    # task C: photographs, every method, arrays an outside check can recompute PSNR from
    ph = m["photographs"]
    assert ph["photos"] == ["camera"] and ph["sigmas"] == [25.0, 50.0]
    by = ph["summary"]["25"]
    for name in ("noisy", "bm3d", "nl_means", "dip", "dip_oracle", "ddpm_x0", "ddpm_chain", "tdpm_dip",
                 "fuse_avg", "hybrid_red", "hybrid_target"):
        assert name in by, name
    assert any(k.startswith("ddim_") for k in by) and any(k.startswith("dip_t0_") for k in by)
    assert by["dip_oracle"]["oracle"] and not by["dip"]["knows_sigma"] and by["bm3d"]["knows_sigma"]
    assert set(ph["verdict"]) == {"25", "50"}
    from dipddpm_lib.metrics import psnr
    import torch
    clean = torch.from_numpy(np.load(out / "photo_clean_camera.npy"))
    assert clean.shape == (1, 3, 32, 32)
    for method in ("noisy", "hybrid_red", "bm3d"):
        a = np.load(out / f"photo_{method}_camera_s25.npy")
        assert a.shape == (2, 3, 32, 32)  # seeds × C × H × W
        stored = [r["psnr"] for r in ph["rows"] if r["method"] == method and r["photo"] == "camera"
                  and r["sigma"] == 25.0]
        again = psnr(torch.from_numpy(a), clean.expand(2, -1, -1, -1)).tolist()
        assert np.allclose(stored, again, atol=1e-3)
    assert (out / "photo_examples.png").exists() and (out / "photo_psnr_vs_wall.png").exists()


@pytest.mark.notebook
def test_chapter_04_stores_what_it_reports(smoke_build):
    metrics = smoke_build.metrics("04_early_stopping")
    tmp_path = smoke_build.chapter_dir("04_early_stopping")
    smoke, setup, _ = es.make_setup("smoke", None, smoke_build.parameters("04_early_stopping")["tuned"])
    assert metrics["settings_source"]["tuned_file"] == smoke_build.parameters("04_early_stopping")["tuned"]
    assert metrics["profile"] == "smoke" and metrics["seeds"] == list(smoke.seeds)
    assert set(metrics["methods"]) == set(stopping.CRITERIA)  # the peers run by default
    for name, m in metrics["methods"].items():
        assert METHOD_KEYS <= set(m), name
        assert m["gap_db"]["n"] == len(setup.pairs) * len(smoke.seeds)
        assert m["gap_db"]["mean"] <= m["gap_db"]["worst"]
    assert metrics["methods"]["oracle"]["gap_db"]["worst"] == 0.0
    assert metrics["methods"]["fixed"]["iteration"]["mean"] == smoke.dip_iterations
    assert metrics["methods"]["ulyanov"]["iteration"]["mean"] == setup.ulyanov_iterations
    assert metrics["setup"]["window"] == setup.window
    assert metrics["setup"]["patience"] == setup.patience
    bar = metrics["quality_bar"]
    assert bar["guided_mean_gap_db"] == metrics["methods"]["guided"]["gap_db"]["mean"]
    for kind in ("reference", "guided", "sure"):
        assert metrics["compute"][kind]["gflops"] > 0 and metrics["compute"][kind]["wall_s"] > 0
    assert len(metrics["es_wmv_sensitivity"]) == len(setup.wmv_windows) * len(setup.wmv_patiences)
    assert len(metrics["runs"]) == len(setup.pairs) * len(smoke.seeds) * len(stopping.CRITERIA)
    size = smoke.es_photo_size
    for photo, sigma in setup.pairs:
        for c in stopping.CRITERIA:
            arr = load_array(tmp_path, f"stop_{c}_{photo}_{sigma:g}")
            assert arr.shape == (len(smoke.seeds), 3, size, size)
            assert arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
        assert load_array(tmp_path, f"noisy_{photo}_{sigma:g}").shape[0] == len(smoke.seeds)
        assert load_array(tmp_path, f"clean_{photo}").shape == (1, 3, size, size)
    look = metrics["sigma_lookup"]
    assert look["tune_photos"] == list(smoke.tune_photos)[:len(look["tune_photos"])]
    assert not set(look["tune_photos"]) & set(smoke.photos)
    paper = metrics["paper_regime"]
    assert paper["setup"]["photo_size"] == smoke.es_paper_photo_size
    assert paper["network"]["scales"] == smoke.es_paper_dip_scales
    assert {"es_wmv_raw", "es_emv", "sigma_lookup", "prior_distance"} <= set(paper["methods"])
    assert "guided" not in paper["methods"] and paper["iterations"] >= 1
    assert bar["best_criterion"] in metrics["methods"] and bar["best_criterion"] not in stopping.ORACLES
    # an outside check: every gap recomputed from the stored arrays alone
    import torch

    from dipddpm_lib.metrics import psnr
    for photo, sigma in setup.pairs:
        clean = torch.from_numpy(load_array(tmp_path, f"clean_{photo}")).expand(len(smoke.seeds), -1, -1, -1)
        peak = psnr(torch.from_numpy(load_array(tmp_path, f"stop_oracle_{photo}_{sigma:g}")), clean)
        for c in stopping.CRITERIA:
            got = peak - psnr(torch.from_numpy(load_array(tmp_path, f"stop_{c}_{photo}_{sigma:g}")), clean)
            runs = sorted((r for r in metrics["runs"] if r["criterion"] == c and r["photo"] == photo
                           and r["sigma"] == sigma), key=lambda r: r["seed"])
            np.testing.assert_allclose(got.numpy(), [r["gap_db"] for r in runs], atol=1e-3)
    for fig in ("stage_levels", "stage_gallery", "stage_monitor", "rule_evidence", "stop_curves",
                "gaps", "sigma_lookup", "paper_regime_curves"):
        assert (tmp_path / f"{fig}.png").stat().st_size > 0



# --------------------------------------------------------------------------- the whole report


# --------------------------------------------------------------------------- same seed, same numbers
def _strip(obj, paths):
    """Drop timing keys; replace run-specific paths by placeholders."""
    if isinstance(obj, dict):
        return {k: _strip(v, paths) for k, v in obj.items() if not TIMING.search(str(k))}
    if isinstance(obj, list):
        return [_strip(v, paths) for v in obj]
    if isinstance(obj, str):
        for p, tag in paths:
            obj = obj.replace(p, tag)
    return obj


def test_strip_drops_timings_and_names_paths():
    doc = {"wall_s": 1.0, "psnr": 20.0, "out": "/tmp/a/x.npy", "runs": [{"seconds": 2, "n": 3}]}
    assert _strip(doc, [("/tmp/a", "<out>")]) == {"psnr": 20.0, "out": "<out>/x.npy", "runs": [{"n": 3}]}


#: Chapters rerun from an empty cache: 01 trains the digit DDPM, its classifier and the photo
#: prior again, so those trainings are checked too. 03 and 04 start from the cache as they found
#: it in the build (what earlier jobs wrote: the DDPMs, chapter 01's samples, the ES regime).
FROM_EMPTY = ("01_ddpm_baseline", "02_dip_baseline")


def _entries(cache: Path) -> set[Path]:
    """A cache's entries (``<kind>/<key>`` folders), relative to its root."""
    return {e.relative_to(cache) for e in cache.glob("*/*") if e.is_dir()} if cache.exists() else set()


def cache_as_found(smoke_build, chapter: str, dest: Path) -> set[Path]:
    """Copy every cache entry the build had finished writing when ``chapter`` began into
    ``dest``; the copied entries."""
    began = smoke_build.started(chapter)
    copied = set()
    for entry in _entries(smoke_build.cache):
        files = [f for f in (smoke_build.cache / entry).rglob("*") if f.is_file()]
        if files and max(f.stat().st_mtime for f in files) < began:
            shutil.copytree(smoke_build.cache / entry, dest / entry)
            copied.add(entry)
    return copied


@pytest.mark.notebook
@pytest.mark.parametrize("name", CHAPTERS)
def test_same_seed_same_numbers(name, smoke_build, tmp_path, monkeypatch):
    built = smoke_build.metrics(name)
    params = smoke_build.parameters(name)
    for key, value in thread_env({}).items():
        monkeypatch.setenv(key, value)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIPDDPM_CACHE", str(cache))
    copied = set() if name in FROM_EMPTY else cache_as_found(smoke_build, name, cache)
    out = tmp_path / "out"
    again = run_notebook(name, out, **{**params, "output_dir": str(out)})
    assert _entries(cache) - copied, f"{name} computed nothing again: its results came from the cache"
    assert _strip(again, [(str(out), "<out>"), (str(tmp_path / "cache"), "<cache>")]) == \
        _strip(built, [(params["output_dir"], "<out>"), (str(smoke_build.cache), "<cache>")])
