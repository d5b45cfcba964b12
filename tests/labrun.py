"""Start JupyterLab from a virtual environment on a free local port, with a token (for the
browser test of ``test_lab_browser.py``)."""
from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def jupyter_in(prefix: str | Path) -> Path:
    """The ``jupyter`` executable of the environment at ``prefix`` (a clear error without it)."""
    exe = Path(prefix) / "bin" / "jupyter"
    if not exe.is_file():
        raise FileNotFoundError(f"no jupyter in the environment {prefix} (looked for {exe}); "
                                "`make venv` installs JupyterLab into .venv")
    return exe


def lab_url(port: int, token: str, path: str = "", host: str = "127.0.0.1") -> str:
    """The URL of ``path`` (e.g. ``lab/tree/x.ipynb``) on a local server, token included."""
    if not token:
        raise ValueError("a JupyterLab URL needs a token")
    return f"http://{host}:{int(port)}/{path.lstrip('/')}?token={token}"


@contextlib.contextmanager
def running_lab(prefix: str | Path, root_dir: Path, env: dict | None = None,
                timeout: float = 60.0):
    """Run ``jupyter lab`` of the environment at ``prefix`` serving ``root_dir``; yields
    ``(port, token)`` once the server answers, and stops it on exit.

    Jupyter's own config, data (user kernels), settings and workspaces are folders of
    ``<root_dir's parent>/jupyter``, beside the server's log ``jupyter-lab.log``: a user's setup
    neither leaks in nor gets written, and the kernels found are the environment's own.
    ``env`` is added to the server's environment (its kernels inherit it).
    """
    exe = jupyter_in(prefix)
    root_dir = Path(root_dir)
    home = root_dir.parent / "jupyter"
    port, token = free_port(), secrets.token_hex(16)
    run_env = {**os.environ, **(env or {}), "JUPYTER_TOKEN": token,
               "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
               "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    log = open(root_dir.parent / "jupyter-lab.log", "w")
    proc = subprocess.Popen(
        [str(exe), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root_dir}",
         "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        env=run_env, stdout=log, stderr=subprocess.STDOUT, cwd=root_dir)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({proc.returncode}); see {log.name}")
            try:
                with urllib.request.urlopen(lab_url(port, token, "api/status"), timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"jupyter lab did not answer in {timeout:g} s; see {log.name}")
                time.sleep(0.5)
        yield port, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
