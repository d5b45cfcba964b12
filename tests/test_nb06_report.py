"""Chapter 06 (the report) runs headless under the smoke profile: it formats its text from the
chapters' stored results, copies their figures to its figures folder, and notes what is missing."""
import json

import pytest

from nbrun import run_notebook
from test_report import png_bytes, synthetic_results


@pytest.mark.notebook
def test_nb06_smoke(nb_cache, tmp_path):
    root = tmp_path / "results"
    results = synthetic_results()
    results["03_dip_init_ddpm"] = None  # a chapter without results: the report notes it
    for chapter, metrics in results.items():
        if metrics is not None:
            (root / chapter).mkdir(parents=True)
            (root / chapter / "metrics.json").write_text(json.dumps(metrics))
    (root / "01_ddpm_baseline" / "quality_vs_compute.png").write_bytes(png_bytes())
    figures, out = tmp_path / "figures", tmp_path / "out"

    m = run_notebook("06_report", out, results_root=str(root), figures_dir=str(figures))

    assert m["profile"] == "smoke"
    assert m["chapters_with_results"] == ["01_ddpm_baseline", "04_early_stopping", "05_ablations"]
    assert m["chapters_missing"] == ["02_dip_baseline", "03_dip_init_ddpm"]
    assert m["headline"]["ddpm"]["fid"] == 12.345 and m["headline"]["ablations"]["g"]["value"] == "3"
    assert m["figures"]["ddpm_quality_vs_compute.png"] == "ddpm_quality_vs_compute.png"
    assert m["figures"]["ablations.png"] is None
    assert (figures / "ddpm_quality_vs_compute.png").exists()
    text = (out / "06_report.executed.ipynb").read_text()
    assert "in-domain FID of 12.35 ± 1.20 against 10.00 ± 0.80" in text  # from the stored results
    assert "has no results for this profile yet" in text and "Figure not available" in text
