"""Chapter 01 (DDPM baseline) rejects a bad parameter before any work (its results, as the
smoke build ran it: tests/test_build_smoke.py)."""
import pytest
from nbrun import run_checks_cell


def test_ddpm_baseline_notebook_rejects_unknown_schedule(tmp_path, nb_cache):
    out = tmp_path / "out"
    before = sorted(p for p in nb_cache.rglob("*"))
    with pytest.raises(ValueError, match="valid choices: linear, cosine"):
        run_checks_cell("01_ddpm_baseline", out, beta_schedule="quadratic")
    assert not out.exists()
    assert sorted(p for p in nb_cache.rglob("*")) == before
