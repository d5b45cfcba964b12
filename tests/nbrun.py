"""Run a chapter notebook headless under the smoke profile (papermill) and read its results."""
from __future__ import annotations

import json
import os
from pathlib import Path

from dipddpm_lib.build import execute

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def run_notebook(name: str, out_dir: Path, **params) -> dict:
    """Execute ``notebooks/<name>.ipynb`` with ``profile=smoke`` into ``out_dir``.

    Returns the ``metrics.json`` it wrote. The executed notebook is kept beside it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"profile": "smoke", "output_dir": str(out_dir), **params}
    execute(NOTEBOOKS / f"{name}.ipynb", out_dir / f"{name}.executed.ipynb", parameters)
    return json.loads((out_dir / "metrics.json").read_text())


def run_checks_cell(name: str, out_dir: Path, **params) -> dict:
    """Run a chapter's parameters cell, the given ``params`` (as papermill injects them, with
    ``profile=smoke``) and its first code cell after them, the one that checks every parameter,
    in this process: no kernel is started. A bad parameter raises here as it does in the
    notebook, before any work. Returns the cell's namespace."""
    import nbformat

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {"__name__": "__main__"}
    exec(compile(code[first].source, f"{name}[parameters]", "exec"), namespace)
    namespace.update({"profile": "smoke", "output_dir": str(out_dir), **params})
    exec(compile(code[first + 1].source, f"{name}[checks]", "exec"), namespace)
    return namespace


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
