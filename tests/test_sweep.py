"""Ablation sweeps: the grid file's checks, the points as the build writes them, collation."""
import json
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest

from dipddpm_lib import build, collate, results, sweep, tuned
from dipddpm_lib.cache import atomic_write_json

REPO = Path(__file__).resolve().parents[1]

# A tiny chapter: writes metrics.json from its parameters; fails when x == fail_at.
DUMMY_PARAMETERS = """\
import os
profile = os.environ.get("DIPDDPM_PROFILE", "quick")
seeds = None
output_dir = None
x = 1
y = 0
fail_at = None
"""
DUMMY_BODY = """\
import json, pathlib
if x == fail_at:
    raise RuntimeError(f"x = {x} fails on purpose")
out = pathlib.Path(output_dir)
score = {"mean": float(x) + y, "std": 0.1, "median": float(x) + y, "min": x - 0.1, "max": x + 0.1, "n": 3}
(out / "metrics.json").write_text(json.dumps({"seeds": [0, 1, 2], "score": {"a": score, "b": score},
                                              "cost": float(x) * 10}))
"""


def write_dummy(folder: Path, name: str = "99_dummy") -> Path:
    """A two-cell notebook with a tagged parameters cell."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(DUMMY_PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(DUMMY_BODY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def write_grids(folder: Path, text: str) -> Path:
    path = folder / "ablations.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GRIDS = """\
grids:
  gx:
    notebook: 99_dummy
    parameter: x
    values: [1, 2, 3]
    fixed: {y: 0, x: 2}
    metrics: {score: score.*, cost: cost}
    choose: {metric: score, higher_is_better: true}
    tunes: es_stage_iterations
    why: a dummy grid
  gy:
    notebook: 99_dummy
    parameter: y
    values: {smoke: [0, 5], quick: [0, 5], full: [0, 5, 9]}
    fixed: {x: 2, y: 0}
    metrics: {score: score.a}
"""


@pytest.fixture
def nbdir(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_dummy(folder)
    return folder


def fake_execute(point, profile, work, kernel_name, extra):
    """Stand-in for papermill: what the dummy notebook would write (fast)."""
    params = point.parameters(profile, work)
    if params.get("x") == params.get("fail_at"):
        (work / point.grid.notebook.name).write_text("{}")  # the partial executed notebook
        raise RuntimeError("fails on purpose")
    x, y = params["x"], params.get("y", 0)
    score = {"mean": x + y, "std": 0.1, "median": x + y, "min": x, "max": x, "n": 3}
    (work / point.grid.notebook.name).write_text("{}")
    (work / "metrics.json").write_text(json.dumps({"seeds": [0, 1, 2], "score": {"a": score, "b": score},
                                                   "cost": float(x) * 10}))


def files_under(root: Path) -> list:
    return sorted(p for p in root.rglob("*")) if root.exists() else []


# --------------------------------------------------------------------------- the grid file
def test_load_grids_reads_values_fixed_and_default(nbdir):
    grids = sweep.load_grids("full", write_grids(nbdir, GRIDS))
    gx, gy = grids
    assert gx.values == (1, 2, 3) and gx.default == 2 and gx.choose["metric"] == "score"
    assert gy.values == (0, 5, 9) and gy.choose == {} and gy.default == 0
    pt = sweep.grid_points(gx, "full", nbdir / "res")[0]
    assert pt.parameters("full")["x"] == 1 and pt.parameters("full")["y"] == 0
    assert pt.folder == nbdir / "res" / "gx" / "x=1"


BAD_FILES = {
    "unknown notebook": ("notebook: 99_dummy", "notebook: 98_missing", "valid choices: 99_dummy"),
    "unknown parameter": ("parameter: x", "parameter: z", "valid choices: profile, seeds, output_dir, x, y"),
    "unknown fixed parameter": ("fixed: {y: 0, x: 2}", "fixed: {w: 0}", "fixed parameter"),
    "reserved parameter": ("parameter: x", "parameter: output_dir", "set by the runner"),
    "fixed output_dir": ("fixed: {y: 0, x: 2}", "fixed: {output_dir: /tmp}", "may not set"),
    "profile missing": ("values: {smoke: [0, 5], quick: [0, 5], full: [0, 5, 9]}",
                        "values: {smoke: [0, 5], quick: [0, 5]}", "missing ['full']"),
    "empty values": ("values: [1, 2, 3]", "values: []", "non-empty list"),
    "repeated values": ("values: [1, 2, 3]", "values: [1, 1.0]", "repeat"),
    "unknown key": ("why: a dummy grid", "whyy: typo", "unknown key(s) ['whyy']"),
    "bad choose metric": ("choose: {metric: score,", "choose: {metric: nope,", "choose.metric"),
    "bad choose cost": ("choose: {metric: score,", "choose: {cost: nope, metric: score,", "choose.cost"),
    "no metrics": ("metrics: {score: score.a}", "metrics: {}", "metrics must map"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_grid_file_is_a_clear_error_before_anything_runs(nbdir, case):
    old, new, message = BAD_FILES[case]
    assert old in GRIDS
    path = write_grids(nbdir, GRIDS.replace(old, new, 1))
    with pytest.raises(ValueError, match=None) as err:
        sweep.load_grids("full", path)
    assert message in str(err.value)
    assert not (nbdir.parent / "results").exists()


def test_a_grid_with_no_values_for_a_profile_is_left_out_of_it(nbdir):
    path = write_grids(nbdir, GRIDS.replace("values: [1, 2, 3]", "values: {smoke: [1, 2, 3], quick: [], full: [1, 2, 3]}", 1))
    assert "gx" not in [g.name for g in sweep.load_grids("quick", path)]
    assert "gx" in [g.name for g in sweep.load_grids("smoke", path)]
    with pytest.raises(ValueError, match="no values for profile 'quick'"):
        sweep.load_grids("quick", path, only=["gx"])
    with pytest.raises(ValueError, match="non-empty list"):
        sweep.load_grids("quick", write_grids(nbdir, GRIDS.replace("values: [1, 2, 3]", "values: []", 1)))


def test_bad_profile_top_level_and_grid_name(nbdir):
    path = write_grids(nbdir, GRIDS)
    with pytest.raises(ValueError, match="valid choices: smoke, quick, full"):
        sweep.load_grids("fast", path)
    with pytest.raises(ValueError, match="valid choices: gx, gy"):
        sweep.load_grids("quick", path, only=["gz"])
    with pytest.raises(ValueError, match="unknown top-level key"):
        sweep.load_grids("quick", write_grids(nbdir, "grid:\n  a: 1\n" + GRIDS))


def test_the_project_grid_file_is_valid_and_covers_the_required_ablations():
    required = {("02_dip_baseline", "sigma"), ("03_dip_init_ddpm", "t_noise"),
                ("01_ddpm_baseline", "beta_schedule"), ("02_dip_baseline", "arch"),
                ("02_dip_baseline", "iterations"), ("03_dip_init_ddpm", "t0_list"),
                ("01_ddpm_baseline", "sampler_steps"), ("04_early_stopping", "num_stages"),
                ("04_early_stopping", "stage_schedule"), ("02_dip_baseline", "lr"),
                ("03_dip_init_ddpm", "red_lambda")}
    sizes = {}
    for profile in ("smoke", "quick", "full"):
        grids = sweep.load_grids(profile)
        # quick leaves the β-schedule grid out (its cosine point trains a second DDPM), the
        # digit tasks' t_noise and t0 observations (chapter 03's time goes to the photographs),
        # the grids that repeat what a chapter shows itself (DDIM's step counts, DIP's count),
        # and the tuning of chapter 04's stage spacing (kept at the profile's); smoke, the
        # build the tests run, leaves out the same and DIP's learning rate (one tuning grid per
        # chapter that reads tuned.json is enough to build tune-then-evaluate)
        expected = required - ({("01_ddpm_baseline", "beta_schedule"), ("03_dip_init_ddpm", "t_noise"),
                                ("03_dip_init_ddpm", "t0_list"), ("01_ddpm_baseline", "sampler_steps"),
                                ("02_dip_baseline", "iterations"), ("04_early_stopping", "stage_schedule")}
                               if profile in ("quick", "smoke") else set())
        expected -= {("02_dip_baseline", "lr")} if profile == "smoke" else set()
        assert expected <= {(g.notebook_name, g.parameter) for g in grids}
        assert all(len(g.values) >= 2 for g in grids)
        sizes[profile] = {g.name: len(g.values) for g in grids}
    assert all(sizes["full"][g] >= sizes["quick"][g] for g in sizes["quick"])  # full enlarges
    assert sum(sizes["full"].values()) > sum(sizes["quick"].values())


def test_value_slug_and_format_value():
    assert sweep.value_slug(25) == "25" and sweep.value_slug(25.0) == "25"
    assert sweep.value_slug(0.003) == "0.003" and sweep.value_slug("cosine") == "cosine"
    assert sweep.value_slug([10, 50]) == "10-50"
    assert sweep.value_slug({"scales": 3, "channels": 16}) == "channels-16_scales-3"
    assert sweep.value_slug("a/b c") == "a_b_c"
    assert results.format_value({"scales": 3}) == "scales=3" and results.format_value([5]) == "[5]"


def test_lookup_wildcards_and_patterns():
    m = {"methods": {"ddim_10": {"fid": 1}, "dpmpp_10": {"fid": 2}},
         "per_image": {"a": {"psnr": 3}, "b": {"psnr": 4}}}
    assert collate.lookup(m, "per_image.*.psnr") == [("a", 3), ("b", 4)]
    assert collate.lookup(m, "methods.ddim_*.fid") == [("", 1)]
    assert collate.lookup(m, "methods.nope.fid") == []


# --------------------------------------------------------------------------- points (as the build writes them)
def fake_points(grids, profile, root) -> list:
    """Each point's folder as the report build leaves it (the fake run above; a point identical
    to an earlier one copied by :func:`build.copy_point`); returns the points that failed."""
    done, failed = {}, []
    for g in grids:
        for pt in sweep.grid_points(g, profile, root):
            key = pt.run_key(profile)
            if key in done:
                build.copy_point(pt, done[key], profile)
                continue
            pt.folder.mkdir(parents=True)
            try:
                fake_execute(pt, profile, pt.folder, "python3", {})
            except RuntimeError:
                shutil.rmtree(pt.folder)
                failed.append(pt)
                continue
            atomic_write_json(pt.folder / "point.json", {**pt.record(profile), "profile": profile,
                                                         "wall_s": 1.5, "copied_from": ""})
            done[key] = pt
    return failed


def test_points_are_collected_into_the_tidy_table(nbdir):
    grids = sweep.load_grids("quick", write_grids(nbdir, GRIDS))
    root = nbdir.parent / "results"
    assert fake_points(grids, "quick", root) == []
    copied = json.loads((root / "gy" / "y=0" / "point.json").read_text())
    assert copied["copied_from"] == "gx/x=2" and copied["wall_s"] == 1.5  # gy's y=0 is gx's x=2
    assert all(sweep.is_done(pt, "quick") for g in grids for pt in sweep.grid_points(g, "quick", root))

    rows, missing = collate.collect(grids, "quick", root)
    assert not missing
    assert {(r["grid"], r["metric"], r["key"]) for r in rows} >= {("gx", "score", "a"), ("gx", "score", "b"),
                                                                   ("gx", "cost", ""), ("gy", "score", "")}
    table = collate.read_table(collate.write_table(rows, root / "table.csv"))
    assert len(table) == len(rows) and table[0]["value"] == 1 and table[0]["seeds"] == [0, 1, 2]
    choice = collate.choose_value(table, grids[0])
    assert choice["best"]["value"] == 3 and choice["chosen"]["value"] == 3 and choice["separated"]
    assert choice["best"]["mean"] == pytest.approx(3.0)
    assert choice["best"]["ci95"] == pytest.approx(0.18, abs=0.005)  # the 95 % t-interval, two keys combined
    assert collate.choose_value(table, grids[1]) is None  # a condition: nothing is chosen
    assert [c["value"] for c in collate.grid_curve(table, grids[1], "score")] == [0, 5]


def test_a_point_with_changed_parameters_is_not_done(nbdir):
    root = nbdir.parent / "results"
    grids = sweep.load_grids("quick", write_grids(nbdir, GRIDS), only=["gx"])
    fake_points(grids, "quick", root)
    changed = sweep.load_grids("quick", write_grids(nbdir, GRIDS.replace("{y: 0, x: 2}", "{y: 1}")),
                               only=["gx"])
    assert not any(sweep.is_done(pt, "quick") for pt in sweep.grid_points(changed[0], "quick", root))
    rows, missing = collate.collect(changed, "quick", root)
    assert rows == [] and len(missing) == 3


def _cost_grid(nbdir, default):
    """A setting grid over x = 1, 2, 3 deciding by q (higher is better) with cost c."""
    return sweep.Grid("g", nbdir / "99_dummy.ipynb", "x", (1, 2, 3), metrics={"q": "q", "c": "c"},
                      choose={"metric": "q", "higher_is_better": True, "cost": "c"}, default=default)


def _grid_rows(points):
    """Tidy rows of grid g: (value, mean q, cost c) per point, q with std 0.5 over 3 seeds."""
    rows = []
    for v, q, c in points:
        rows += [{"grid": "g", "value": v, "metric": "q", "key": "", "mean": q, "std": 0.5, "n": 3},
                 {"grid": "g", "value": v, "metric": "c", "key": "", "mean": c, "std": 0.0, "n": 3}]
    return rows


def test_choose_prefers_the_cheapest_value_within_the_95_interval(nbdir):
    grid = _cost_grid(nbdir, default=3)
    rows = _grid_rows([(1, 10.0, 1.0), (2, 12.0, 2.0), (3, 12.3, 4.0)])
    choice = collate.choose_value(rows, grid)
    assert choice["best"]["value"] == 3 and choice["chosen"]["value"] == 2
    assert not choice["separated"]
    assert choice["reason"] == "cheapest" and choice["cost"] == {"1": 1.0, "2": 2.0, "3": 4.0}

    no_cost = sweep.Grid("g", grid.notebook, "x", (1, 2, 3), metrics={"q": "q"},
                         choose={"metric": "q", "higher_is_better": True}, default=2)
    choice = collate.choose_value(rows, no_cost)  # the chapters' 2 is within the spread of 3: kept
    assert choice["chosen"]["value"] == 2 and choice["reason"] == "default"
    far = [dict(r, std=0.01) for r in rows]  # now 3 is clearly best: chosen
    choice = collate.choose_value(far, no_cost)
    assert choice["chosen"]["value"] == 3 and choice["reason"] == "best" and choice["separated"]


def test_choose_keeps_the_chapters_setting_unless_the_tune_photos_resolve_a_better_one(nbdir):
    """The profile's value stands while the best is not resolved from it, even where a
    cheaper value is just as good: tuning changes a setting only on evidence."""
    grid = _cost_grid(nbdir, default=2)
    rows = _grid_rows([(1, 12.1, 1.0), (2, 12.0, 2.0), (3, 12.3, 4.0)])
    choice = collate.choose_value(rows, grid)
    assert choice["chosen"]["value"] == 2 and choice["reason"] == "default"
    resolved = [dict(r, std=0.01) for r in rows]  # now 3 beats the default: the best is taken
    choice = collate.choose_value(resolved, grid)
    assert choice["chosen"]["value"] == 3 and choice["reason"] == "best"


# --------------------------------------------------------------------------- real papermill
@pytest.mark.notebook
def test_real_papermill_points(nbdir):
    """The build's point step drives papermill for real: a point that works and one that raises
    (kept aside with its error, nothing where a done point would be)."""
    root = nbdir.parent / "results"
    text = GRIDS.replace("values: [1, 2, 3]", "values: [1, 2]").replace("{y: 0, x: 2}", "{fail_at: 2}")
    grids = sweep.load_grids("smoke", write_grids(nbdir, text), only=["gx"])
    ok, bad = sweep.grid_points(grids[0], "smoke", root)
    assert build.run_point(ok, "smoke", {"data_dir": "/nowhere"}) > 0  # not declared: not passed
    executed = nbformat.read(ok.folder / "99_dummy.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"]["x"] == 1
    assert "data_dir" not in executed.metadata["papermill"]["parameters"]
    assert json.loads((ok.folder / "metrics.json").read_text())["score"]["a"]["mean"] == 1.0
    assert sweep.is_done(ok, "smoke")
    with pytest.raises(Exception) as err:
        build.run_point(bad, "smoke")
    assert build.error_summary(err.value) == "RuntimeError: x = 2 fails on purpose"  # the notebook's own
    assert "x = 2 fails on purpose" in (bad.failed_folder / "error.txt").read_text()
    assert (bad.failed_folder / "99_dummy.ipynb").exists() and not bad.folder.exists()


def test_with_fixed_passes_seeds_only_where_declared(nbdir):
    grids = sweep.with_fixed(sweep.load_grids("quick", write_grids(nbdir, GRIDS)), seeds=[0, 1],
                             not_a_parameter=1, output=None)
    assert all(g.fixed["seeds"] == [0, 1] and "not_a_parameter" not in g.fixed for g in grids)
    assert sweep.with_fixed(grids, seeds=None)[0].fixed == grids[0].fixed


# --------------------------------------------------------------------------- tune, then evaluate
TUNING_GRIDS = {"dip_depth": {"dip_scales"}, "dip_width": {"dip_channels"}, "dip_lr": {"dip_lr"},
                "es_stages": {"es_num_stages"}, "es_schedule": {"es_stage_schedule"},
                "es_stage_iterations": {"es_stage_iterations"}, "es_start_ratio": {"es_start_ratio"},
                "red_lambda": {"photo_red_lambda"}, "red_sigma_eff": {"photo_red_sigma_eff_ratio"},
                "red_refresh": {"photo_red_refresh"}, "blend_lambda": {"photo_target_lambda"},
                "photo_dip_iterations": {"photo_dip_iterations"}}
#: smoke leaves some of chapter 03's photograph grids out (each point is a notebook run)
SMOKE_WITHOUT = {"red_sigma_eff", "red_refresh", "blend_lambda", "photo_dip_iterations", "es_schedule",
                 "es_start_ratio", "dip_width", "dip_lr", "es_stage_iterations"}  # the tests' build: seconds
QUICK_WITHOUT = {"red_refresh", "blend_lambda", "es_schedule", "es_start_ratio"}  # quick keeps the profile's values (time)


def test_only_grids_whose_value_a_chapter_uses_choose_and_they_run_on_tune_photos():
    from dipddpm_lib import PROFILES

    for profile in ("smoke", "quick", "full"):
        grids = sweep.load_grids(profile)
        tuning = {g.name: set(g.tunes) for g in sweep.tuning_grids(grids)}
        skip = {"smoke": SMOKE_WITHOUT, "quick": QUICK_WITHOUT}.get(profile, set())
        assert tuning == {k: v for k, v in TUNING_GRIDS.items() if k not in skip}
        prof = PROFILES[profile]
        for g in grids:
            if g.name in tuning:
                photos = sweep.grid_photos(g)
                assert photos and set(photos) <= set(prof.tune_photos), (profile, g.name)
                assert not set(photos) & set(prof.eval_photos)
                for key in ("inpaint_image", "sr4_image"):
                    assert g.fixed.get(key) in (None, *prof.tune_photos)
            else:  # a condition or an observation: it has nothing to choose
                assert g.choose == {} and g.tunes == {}, g.name
    grids = sweep.load_grids("quick")
    rows = [{"grid": g.name, "value": v, "metric": m, "key": "", "mean": 1.0, "std": 0.1, "n": 2}
            for g in grids for v in g.values for m in g.metrics]
    for g in grids:
        if g.name not in TUNING_GRIDS:
            assert collate.choose_value(rows, g) is None


def test_stage_schedules_agree_with_the_chapter():
    from dipddpm_lib.methods.guided_dip import STAGE_SCHEDULES

    for s in STAGE_SCHEDULES:
        assert tuned.check_tuned_value("es_stage_schedule", s) == s
    with pytest.raises(ValueError, match="linear, cosine, log"):
        tuned.check_tuned_value("es_stage_schedule", "quadratic")


PHOTO_NB = DUMMY_PARAMETERS + "images = None\n"
TUNE_GRID = """\
grids:
  gt:
    notebook: 97_photos
    parameter: x
    values: [1, 2]
    fixed: {images: [IMAGES]}
    metrics: {score: score.*}
    choose: {metric: score, higher_is_better: true}
    tunes: es_stage_iterations
"""


@pytest.mark.parametrize("change,match", [
    (("[IMAGES]", "[camera]"), r"must run on tune photos; its images holds \['camera'\]. "
                               r"Valid choices \(tune_photos of profile 'quick'\): rocket, coins, china"),
    (("    fixed: {images: [IMAGES]}\n", ""), "'fixed' must name its tune photos"),
    (("    tunes: es_stage_iterations\n", ""), "chooses a value but no chapter uses it"),
    (("    choose: {metric: score, higher_is_better: true}\n", ""), "'tunes' needs 'choose'"),
    (("tunes: es_stage_iterations", "tunes: unet_channels"), "valid choices: dip_scales"),
    (("values: [1, 2]", "values: [0, 2]"), r"whole number in \[1, "),
])
def test_a_tuning_grid_is_checked_before_anything_runs(nbdir, change, match):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PHOTO_NB)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbdir / "97_photos.ipynb")
    good = TUNE_GRID.replace("[IMAGES]", "[rocket]")
    assert sweep.load_grids("quick", write_grids(nbdir, good))[0].tunes == {"es_stage_iterations": None}
    with pytest.raises(ValueError, match=match):
        sweep.load_grids("quick", write_grids(nbdir, TUNE_GRID.replace(*change).replace("[IMAGES]", "[rocket]")))


def test_two_grids_may_not_tune_one_setting(nbdir):
    text = GRIDS + """\
  gz:
    notebook: 99_dummy
    parameter: x
    values: [1, 2]
    metrics: {score: score.a}
    choose: {metric: score}
    tunes: es_stage_iterations
"""
    with pytest.raises(ValueError, match="both tune es_stage_iterations"):
        sweep.load_grids("quick", write_grids(nbdir, text))


def test_collate_writes_the_chosen_settings_and_records_a_failed_grid(nbdir):
    root = nbdir.parent / "results"
    grid_file = write_grids(nbdir, GRIDS)
    grids = sweep.load_grids("quick", grid_file)
    fake_points(grids, "quick", root)
    path = collate.collate_tuned("quick", root, root / "tuned.json", grid_file, log=lambda s: None)
    doc = tuned.read_tuned(path, "quick")
    e = doc["settings"]["es_stage_iterations"]
    assert e["value"] == 3 and e["grid"] == "gx" and e["metric"] == "score" and e["reason"] == "best"
    assert e["seeds"] == [0, 1, 2] and e["n_seeds"] == 3 and e["reason"] in ("best", "default", "cheapest")
    assert e["profile_value"] == 50 and e["chapters"] == ["04_early_stopping"]
    assert doc["untuned"] == {} and doc["tune_photos"] == ["rocket", "coins", "china"]
    assert not [p for p in files_under(root) if ".tmp" in p.name]

    failing = write_grids(nbdir, GRIDS.replace("{y: 0, x: 2}", "{y: 0, x: 2, fail_at: 3}"))
    fake_points(sweep.load_grids("quick", failing), "quick", nbdir.parent / "results2")
    doc = tuned.read_tuned(collate.collate_tuned("quick", nbdir.parent / "results2", root / "tuned.json",
                                               failing, log=lambda s: None))
    assert doc["settings"] == {}
    assert "x=3 of grid gx have no result" in doc["untuned"]["es_stage_iterations"]["reason"]


def _tuned_doc(**settings):
    return {"version": tuned.TUNED_VERSION, "profile": "smoke", "tune_photos": ["rocket"],
            "settings": {f: {"value": v, "grid": "g", "metric": "m", "photos": ["rocket"],
                             "reason": "best"} for f, v in settings.items()},
            "untuned": {}}


def test_tuned_file_round_trip_is_atomic_and_checked(tmp_path):
    path = tuned.write_tuned(_tuned_doc(dip_scales=2, es_stage_schedule="log"), tmp_path / "t.json")
    assert tuned.read_tuned(path, "smoke")["settings"]["dip_scales"]["value"] == 2
    before = path.read_text()
    with pytest.raises(ValueError, match=r"tuned dip_lr .* must be a number in \(0, 1\]"):
        tuned.write_tuned(_tuned_doc(dip_lr=5.0), path)
    assert path.read_text() == before  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary file left


@pytest.mark.parametrize("content,error,match", [
    (None, FileNotFoundError, "does not exist.*tuned=None"),
    ("{not json", ValueError, "unreadable tuned-settings file"),
    ('{"settings": {}}', ValueError, "version"),
    (json.dumps({**_tuned_doc(), "profile": "quick"}), ValueError, "tuned for profile 'quick', not 'smoke'"),
    (json.dumps(_tuned_doc(dip_scales=0)), ValueError, r"tuned dip_scales.*whole number in \[1, 8\]"),
    (json.dumps(_tuned_doc(es_num_stages=1)), ValueError, r"whole number in \[2, "),
    (json.dumps(_tuned_doc(es_stage_schedule="cubic")), ValueError, "valid choices: linear, cosine, log"),
    (json.dumps(_tuned_doc(unet_channels=[1])), ValueError, "unknown tuned setting 'unet_channels'; valid choices: dip_scales"),
])
def test_a_bad_or_missing_tuned_file_is_a_clear_error(tmp_path, content, error, match):
    path = tmp_path / "tuned.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=match):
        tuned.read_tuned(path, "smoke")
    with pytest.raises(error, match=match):
        tuned.tuned_overrides("smoke", path, "04_early_stopping")


def test_tuned_overrides_precedence_and_fallback(tmp_path):
    doc = _tuned_doc(dip_scales=1, es_num_stages=3)
    doc["untuned"] = {"es_stage_schedule": {"grid": "es_schedule", "reason": "point x failed"}}
    path = tuned.write_tuned(doc, tmp_path / "tuned.json")
    over, rec = tuned.tuned_overrides("smoke", path, "04_early_stopping", {"es_num_stages": 4})
    assert over == {"dip_scales": 1}  # the explicit parameter wins over the file
    s = rec["settings"]
    assert s["dip_scales"]["source"] == "tuned" and s["dip_scales"]["photos"] == ["rocket"]
    assert s["es_num_stages"] == {"value": 4, "source": "parameter",
                                  "note": "set by this notebook's parameters"}
    assert s["es_stage_schedule"]["source"] == "profile (fallback)" and rec["fallback"] == ["es_stage_schedule"]
    assert "point x failed" in s["es_stage_schedule"]["note"]
    assert s["dip_lr"]["source"] == "profile" and s["dip_lr"]["value"] == 0.01
    table = tuned.settings_table(rec)
    assert "| `dip_scales` | 1 | tuned | grid " in table and "| profile (fallback) | not tuned: point x failed |" in table
    over, rec = tuned.tuned_overrides("smoke", path, "02_dip_baseline")
    assert over == {"dip_scales": 1} and set(rec["settings"]) == {"dip_scales", "dip_channels", "dip_lr"}
    over, rec = tuned.tuned_overrides("smoke", None, "02_dip_baseline")
    assert over == {} and rec["tuned_file"] is None
    assert all(e["source"] == "profile" for e in rec["settings"].values())
    assert "| profile | no tuned-settings file given |" in tuned.settings_table(rec)
