"""Chapter 06 (the report) runs headless under the smoke profile: it formats its text from the
chapters' stored results, copies their figures to its figures folder, and notes what is missing."""
import json

import pytest

from nbrun import markdown_outputs, run_notebook
from test_report import png_bytes, synthetic_results


@pytest.mark.notebook
def test_nb06_smoke(nb_cache, tmp_path):
    root = tmp_path / "results"
    results = synthetic_results()
    results["02_dip_baseline"] = None  # a chapter without results: the report notes it
    for chapter, metrics in results.items():
        if metrics is not None:
            (root / chapter).mkdir(parents=True)
            (root / chapter / "metrics.json").write_text(json.dumps(metrics))
    (root / "01_ddpm_baseline" / "quality_vs_compute.png").write_bytes(png_bytes())
    figures, out = tmp_path / "figures", tmp_path / "out"

    m = run_notebook("06_report", out, results_root=str(root), figures_dir=str(figures))

    assert m["profile"] == "smoke"
    assert m["chapters_with_results"] == ["01_ddpm_baseline", "03_dip_init_ddpm", "04_early_stopping",
                                          "05_ablations"]
    assert m["chapters_missing"] == ["02_dip_baseline"]
    assert m["headline"]["ddpm"]["fid"] == 12.345 and m["headline"]["ablations"]["g"]["value"] == "3"
    assert m["figures"]["ddpm_quality_vs_compute.png"] == "ddpm_quality_vs_compute.png"
    assert m["figures"]["ablations.png"] is None
    assert (figures / "ddpm_quality_vs_compute.png").exists()
    text = (out / "06_report.executed.ipynb").read_text()
    abstract = markdown_outputs(out / "06_report.executed.ipynb")  # formatted from the stored results
    assert "DDPM-1000 samples reach precision 0.81 and recall 0.66" in abstract
    assert ("in-domain FID of 12.35 ± 1.20 against 10.00 ± 0.80 for real test images of the same "
            "number (ratio 1.23; ± is the half-width of the 95 % t-interval over 3 seeds)") in abstract
    assert ("quality bar (precision ≥ 0.50, recall ≥ 0.50, FID ratio ≤ 3) is met; it rejects "
            "every control set") in abstract and "margin of 0.78 in min(precision, recall)" in abstract
    assert "0.81 dB below the oracle peak on average, within the 1.0 dB bar; ES-WMV: 1.50 dB" in abstract
    assert "g → `3` (the profile's value, kept: nothing resolved better; psnr 27.00 ± 2.25 on rocket)" in abstract
    assert "**DIP baseline.** No results yet." in abstract
    assert ("Of the 14 variant configurations that produce new samples, 0 beat DDIM and 14 lose "
            "to it (1 / 13 against DPM-Solver++)") in abstract
    assert "16 more configurations are near-copies" in abstract and "(10.61)" in abstract
    assert "11.57 dB) does not beat the DDPM chain (11.61 dB)." in abstract
    assert "has no results for this profile yet" in text and "Figure not available" in text
