"""JupyterLab in a real browser: chapter 02 opened in headless Chromium, run on the project's
kernel "dipddpm (.venv)" under the smoke profile; no cell errs and the progress bars are
widgets. Skipped where Chromium or Playwright is absent (``make`` installs Playwright; the
browser is the system's Chromium, nothing is downloaded)."""
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from labrun import jupyter_in, lab_url, running_lab

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "02_dip_baseline"
KERNEL = "dipddpm (.venv)"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
RUN_TIMEOUT_S = 240
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser"))
                 if p), None)

# Lab's own settings for the test: every cell in the DOM (no windowing), and no news toast.
LAB_SETTINGS = {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}


def _notebook_copy(root: Path, out_dir: Path) -> Path:
    """Chapter 02 copied into the served folder, its parameters cell writing to ``out_dir``."""
    nb = json.loads((REPO / "notebooks" / f"{NOTEBOOK}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    cell["source"] = "".join(cell["source"]).rstrip("\n") + f"\noutput_dir = {str(out_dir)!r}\n"
    path = root / f"{NOTEBOOK}.ipynb"
    path.write_text(json.dumps(nb, indent=1))
    return path


def _lab_settings(settings_dir: Path) -> None:
    for name, values in LAB_SETTINGS.items():
        path = settings_dir / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _wait_for_run_all(page, timeout: float) -> list[str]:
    """Poll the input prompts until no cell is queued or running; returns the prompts."""
    deadline, started, quiet = time.monotonic() + timeout, False, 0
    while time.monotonic() < deadline:
        prompts = [p.strip() for p in page.locator(".jp-CodeCell .jp-InputPrompt").all_text_contents()]
        busy = any("*" in p for p in prompts)
        started = started or busy or any(any(ch.isdigit() for ch in p) for p in prompts)
        quiet = quiet + 1 if started and not busy else 0
        if quiet >= 3:
            return prompts
        time.sleep(1)
    raise TimeoutError(f"Run All did not finish in {timeout:g} s: {prompts}")


def test_jupyter_in_names_the_missing_jupyter(tmp_path):
    with pytest.raises(FileNotFoundError, match="no jupyter in the environment"):
        jupyter_in(tmp_path)
    with pytest.raises(ValueError, match="needs a token"):
        lab_url(8888, "")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
def test_chapter_02_runs_in_jupyterlab_with_widget_progress_bars(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (Path(sys.prefix) / "share" / "jupyter" / "kernels" / "dipddpm").is_dir():
        pytest.skip(f"kernel {KERNEL!r} not installed in {sys.prefix} (`make venv` installs it)")
    root, out_dir = tmp_path / "lab", tmp_path / "out"
    root.mkdir()
    nb_path = _notebook_copy(root, out_dir)
    _lab_settings(tmp_path / "jupyter" / "settings")
    env = {"DIPDDPM_PROFILE": "smoke", "DIPDDPM_CACHE": str(tmp_path / "cache")}
    shot = tmp_path / f"jupyterlab_{NOTEBOOK}.png"
    with running_lab(sys.prefix, root, env) as (port, token), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(lab_url(port, token, f"lab/tree/{nb_path.name}"))
            page.wait_for_selector(".jp-Notebook .jp-CodeCell")
            # the project's kernel, chosen as a user does: the kernel name in the toolbar
            page.click(".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName")
            page.select_option(".jp-Dialog select", label=KERNEL)
            page.click(".jp-Dialog .jp-mod-accept")
            page.wait_for_selector(f".jp-Toolbar-kernelName:has-text('{KERNEL}')")
            page.wait_for_selector(f".jp-StatusBar-TextItem:has-text('{KERNEL} | Idle')")
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")  # Run ▸ Run All Cells
            page.click(".lm-Menu-item[data-command='runmenu:run-all']")
            prompts = _wait_for_run_all(page, RUN_TIMEOUT_S)
            # tqdm.auto's bars as ipywidgets: an HBox holding a FloatProgress (.widget-hprogress);
            # the chapter's DIP bar is left in place at 100 %, the inner ones close when done
            bars = page.locator(".jp-OutputArea-output .widget-hbox:has(.widget-hprogress)")
            texts = bars.all_text_contents()
            if texts:
                bars.first.scroll_into_view_if_needed()
            page.keyboard.press("Control+s")
            page.wait_for_selector(".jp-mod-dirty", state="detached")
            page.screenshot(path=str(shot))
            print(f"\nscreenshot of JupyterLab: {shot}")
        finally:
            browser.close()
    saved = json.loads(nb_path.read_text())
    code = [c for c in saved["cells"] if c["cell_type"] == "code"]
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{len(errors)} cell(s) erred: {errors[0]['ename']}: {errors[0]['evalue']}"
    assert all(c["execution_count"] for c in code), f"cells left unexecuted: {prompts}"
    assert saved["metadata"]["kernelspec"]["display_name"] == KERNEL
    assert any(WIDGET_MIME in o.get("data", {}) for c in code for o in c["outputs"]), \
        "no progress bar was a widget (tqdm.auto fell back to text)"
    assert any("100%" in t for t in texts), f"no finished progress bar in the page: {texts}"
    assert (out_dir / "metrics.json").is_file()
