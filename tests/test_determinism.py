"""Same seed ⇒ same numbers: each chapter, rerun under `smoke` with an empty cache and the
parameters and thread count the smoke build ran it with, writes the build's metrics.json
values, timings excluded."""
import re

import pytest

from nbrun import NOTEBOOKS, run_notebook
from smokebuild import thread_env

TIMING = re.compile(r"(wall|seconds|time|duration|_s$|_s_|per_second)", re.I)
CHAPTERS = sorted(p.stem for p in NOTEBOOKS.glob("0[1-4]_*.ipynb"))


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


@pytest.mark.notebook
@pytest.mark.parametrize("name", CHAPTERS)
def test_same_seed_same_numbers(name, smoke_build, tmp_path, monkeypatch):
    built = smoke_build.metrics(name)
    params = smoke_build.parameters(name)
    for key, value in thread_env({}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DIPDDPM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    again = run_notebook(name, out, **{**params, "output_dir": str(out)})
    assert _strip(again, [(str(out), "<out>"), (str(tmp_path / "cache"), "<cache>")]) == \
        _strip(built, [(params["output_dir"], "<out>"), (str(smoke_build.cache), "<cache>")])
