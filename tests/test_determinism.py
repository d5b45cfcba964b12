"""Same seed ⇒ same numbers: each chapter, run twice under `smoke` with an empty cache each
time (so everything is recomputed), writes identical metrics.json values, timings excluded."""
import re

import pytest

from nbrun import NOTEBOOKS, run_notebook

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


@pytest.mark.notebook
@pytest.mark.parametrize("name", CHAPTERS)
def test_same_seed_same_numbers(name, tmp_path, monkeypatch):
    runs = []
    for tag in ("a", "b"):
        monkeypatch.setenv("DIPDDPM_CACHE", str(tmp_path / f"cache_{tag}"))
        monkeypatch.setenv("DIPDDPM_PROFILE", "smoke")
        out = tmp_path / f"out_{tag}"
        m = run_notebook(name, out)
        runs.append(_strip(m, [(str(out), "<out>"), (str(tmp_path / f"cache_{tag}"), "<cache>")]))
    assert runs[0] == runs[1]
