"""Run a chapter notebook headless under the smoke profile (papermill) and read its results."""
from __future__ import annotations

import json
import os
from pathlib import Path

import papermill as pm

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def run_notebook(name: str, out_dir: Path, **params) -> dict:
    """Execute ``notebooks/<name>.ipynb`` with ``profile=smoke`` into ``out_dir``.

    Returns the ``metrics.json`` it wrote. The executed notebook is kept beside it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"profile": "smoke", "output_dir": str(out_dir), **params}
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out_dir / f"{name}.executed.ipynb"),
                        parameters=parameters, cwd=str(NOTEBOOKS), progress_bar=False,
                        kernel_name="python3")
    return json.loads((out_dir / "metrics.json").read_text())


def smoke_cache_env(tmp_root: Path) -> None:
    """Point the library's cache at a test-session folder (inherited by notebook kernels)."""
    os.environ["DIPDDPM_CACHE"] = str(tmp_root)
    os.environ["DIPDDPM_PROFILE"] = "smoke"


def markdown_outputs(path) -> str:
    """Every Markdown text an executed notebook displayed (its ``Markdown(f"…")`` cells)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return "\n".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells
                     if c.cell_type == "code" for o in c.get("outputs", []))
