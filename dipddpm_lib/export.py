"""The report's export: ``report.html`` (code hidden, images embedded, maths by a local MathJax,
nothing fetched from the network), every chapter's HTML, and ``report.pdf`` by headless Chromium.
Chromium and MathJax come from Debian (``chromium``, ``libjs-mathjax``): installed with apt-get
where possible; otherwise the HTML is still written (maths left as TeX without MathJax)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .cache import atomic_path
from .report import REPORT_CHAPTER, chapters

MATHJAX_DIRS = ("/usr/share/javascript/mathjax", "/usr/share/mathjax")
MATHJAX_CONFIG = "TeX-AMS_CHTML-full"
#: What the HTML's maths needs from a MathJax 2 tree (CommonHTML output, TeX input, web fonts).
MATHJAX_FILES = ("MathJax.js", f"config/{MATHJAX_CONFIG}.js", "config/local", "extensions",
                 "jax/input/TeX", "jax/output/CommonHTML", "jax/element",
                 "fonts/HTML-CSS/TeX/woff", "fonts/HTML-CSS/TeX/otf", "localization/en")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable, or ``None``."""
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def find_mathjax() -> Path | None:
    """A local MathJax 2 tree (``$DIPDDPM_MATHJAX`` or Debian's ``libjs-mathjax``), or ``None``."""
    return next((Path(c) for c in (os.environ.get("DIPDDPM_MATHJAX"), *MATHJAX_DIRS)
                 if c and (Path(c) / "MathJax.js").exists()), None)


def can_apt_install() -> bool:
    """Root, with apt-get on the PATH."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure_export_tools(install: bool = True, log=print) -> list[str]:
    """Install the missing export tools with apt-get where possible; return what is still
    missing, after saying in one line what to install."""
    def missing_tools():
        return [pkg for pkg, found in (("chromium", find_chromium()), ("libjs-mathjax", find_mathjax()))
                if found is None]

    missing = missing_tools()
    if missing and install and can_apt_install():
        log(f"installing {' '.join(missing)} with apt-get (for the report's maths and PDF) …")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:  # the package lists may be stale: refresh once and retry
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, capture_output=True, text=True)
        missing = missing_tools()
    if missing:
        log(f"NOTE: install {' '.join(missing)} (e.g. `sudo apt-get install {' '.join(missing)}`) "
            f"for rendered maths and the PDF; the HTML is written without them.")
    return missing


_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{#- no require.js from a CDN: the report needs no JavaScript but MathJax, which is local -#}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{#- no mermaid.js from a CDN either: the report has no diagrams -#}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style type="text/css">
  /* print: A4, and long Markdown outputs may break across pages (lab keeps each whole) */
  @page { size: A4; margin: 14mm 12mm; }
  @media print {
    /* JupyterLab's boxes are flex/table cells that scroll: a scroll box never breaks */
    * { overflow: visible !important; }
    .jp-Cell, .jp-Cell-outputWrapper, .jp-OutputArea, .jp-OutputArea-child,
    .jp-OutputArea-output, .jp-RenderedHTMLCommon { display: block !important;
                                                     break-inside: auto !important; }
    .jp-OutputArea-prompt { display: none !important; }
    img, tr, .MathJax_CHTML, .mjx-chtml { break-inside: avoid; }
    h1, h2, h3 { break-after: avoid; }
  }
</style>
{%- endblock extra_css -%}
"""


def copy_mathjax(dest: Path) -> Path | None:
    """Copy what the maths needs from the local MathJax 2 tree into ``dest`` (``None``: none)."""
    source = find_mathjax()
    if source is None:
        return None
    for src, dst in ((source / rel, dest / rel) for rel in MATHJAX_FILES):
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=False)
        elif src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return dest


def export_html(notebook: Path, html_path: Path, mathjax_url: str | None = None,
                hide_code: bool = True) -> Path:
    """One self-contained HTML file; ``mathjax_url`` is relative to it (``None``: maths as TeX)."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"dipddpm.html.j2": _TEMPLATE})],
                            template_file="dipddpm.html.j2", embed_images=True,
                            exclude_input=hide_code, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    exporter.mathjax_url = mathjax_url or ""
    nb = nbformat.read(notebook, as_version=4)
    if hide_code:  # the report's reader wants results, not library warnings or progress bars
        for cell in nb.cells:
            cell.outputs = [o for o in cell.get("outputs", [])
                            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    if mathjax_url is None:  # no local MathJax: drop the (empty) script tag and its config
        body = body.replace('<script src=""> </script>', "")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")
        os.chmod(tmp, 0o644)
    return html_path


def chromium_command(chromium: str, html_path: Path, pdf_path: Path, profile_dir: Path,
                     budget_ms: int = 30000) -> list[str]:
    """Headless Chromium printing a local HTML file to PDF, offline: no network services, a
    throw-away user profile, and virtual time so MathJax has typeset before the print."""
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--no-first-run", "--no-default-browser-check",
            "--no-pdf-header-footer", "--host-resolver-rules=MAP * ~NOTFOUND",  # no network at all
            f"--user-data-dir={profile_dir}",
            f"--virtual-time-budget={budget_ms}", f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri()]


def export_pdf(html_path: Path, pdf_path: Path, timeout_s: int = 300) -> Path:
    """Print the HTML to PDF with headless Chromium; ``RuntimeError`` if it fails."""
    chromium = find_chromium()
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dipddpm-chromium-") as profile_dir:
        tmp_pdf = Path(profile_dir) / "out.pdf"
        done = subprocess.run(chromium_command(chromium, html_path, tmp_pdf, Path(profile_dir)),
                              capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0 or not tmp_pdf.exists() or tmp_pdf.stat().st_size == 0:
            raise RuntimeError(f"Chromium did not print {html_path.name} (exit {done.returncode}): "
                               f"{done.stderr.strip()[-800:]}")
        shutil.move(str(tmp_pdf), pdf_path)
    return pdf_path


def export_report(executed_dir: Path, out_dir: Path, install: bool = True, log=print) -> dict:
    """The executed report and chapters as HTML, the report as PDF (``pdf``: ``None`` without
    Chromium); returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = ensure_export_tools(install=install, log=log)
    mathjax = copy_mathjax(out_dir / "mathjax")
    written = {"html": None, "pdf": None, "chapters": [], "mathjax": mathjax, "missing": missing}
    url = f"mathjax/MathJax.js?config={MATHJAX_CONFIG}" if mathjax else None
    current = {p.name for p in chapters()}  # not stray runs kept beside them
    for nb in sorted(p for p in executed_dir.glob("[0-9][0-9]_*.ipynb") if p.name in current):
        if nb.stem == REPORT_CHAPTER:
            written["html"] = export_html(nb, out_dir / "report.html", url, hide_code=True)
        else:
            written["chapters"].append(export_html(nb, out_dir / "chapters" / f"{nb.stem}.html",
                                                   f"../{url}" if url else None, hide_code=False))
    if written["html"] is not None and find_chromium():
        written["pdf"] = export_pdf(written["html"], out_dir / "report.pdf")
    return written


