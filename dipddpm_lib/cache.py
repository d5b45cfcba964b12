"""Content-addressed cache: ``<root>/<kind>/<hash of config>/`` holds ``tensors.safetensors``
(optional) and ``meta.json`` (the config and every file's SHA-256). Entries are written to a
temporary folder renamed into place; a damaged entry reads as a miss. Nothing is unpickled.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # annotations only: importing this module imports no torch
    import torch

_TENSORS, _META = "tensors.safetensors", "meta.json"
CACHE_VERSION = 1  #: in every key; bump it when code changes what a cached computation returns


def default_root() -> Path:
    """``$DIPDDPM_CACHE`` if set, else ``.cache`` in the project checkout, else ``~/.cache/dipddpm``."""
    if os.environ.get("DIPDDPM_CACHE"):
        return Path(os.environ["DIPDDPM_CACHE"])
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / ".cache"
    return Path.home() / ".cache" / "dipddpm"


def config_key(config: dict) -> str:
    """Stable 16-hex-digit hash of a JSON-able config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (read in 1 MiB chunks) by ``hashlib``'s ``algorithm``."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """A temporary file beside ``path`` to write, renamed onto it when the block ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.flush()
        os.fsync(f.fileno())


def _json_default(o):
    if hasattr(o, "tolist"):  # numpy and torch values
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


@contextlib.contextmanager
def _locked(entry: Path):
    """An exclusive ``fcntl.flock`` on a temporary file named after the entry (none without fcntl)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, as before
        yield
        return
    name = hashlib.sha256(str(entry.resolve()).encode()).hexdigest()[:24]
    with open(Path(tempfile.gettempdir()) / f"dipddpm-{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        yield


class Cache:
    """A content-addressed store of tensors + JSON metadata under ``root``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    def path(self, kind: str, config: dict) -> Path:
        """Directory of the entry for ``config`` (it may not exist)."""
        return self.root / kind / config_key(config)

    def get(self, kind: str, config: dict) -> tuple[dict[str, torch.Tensor], dict] | None:
        """Return ``(tensors, meta)`` for a valid entry, or ``None`` on a miss or damaged entry."""
        entry = self.path(kind, config)
        meta_path = entry / _META
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            for name, digest in meta["_files"].items():
                if file_digest(entry / name) != digest:
                    raise ValueError(f"checksum mismatch for {name}")
            from safetensors.torch import load_file

            tensors = load_file(entry / _TENSORS) if _TENSORS in meta["_files"] else {}
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
            warnings.warn(f"cache entry {entry} is damaged ({err}); recomputing it")
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return tensors, meta

    def put(self, kind: str, config: dict, tensors: dict[str, torch.Tensor] | None = None,
            meta: dict | None = None) -> Path:
        """Write an entry atomically: build it in a temporary directory, then rename it."""
        entry = self.path(kind, config)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.tmp-"))
        try:
            files = {}
            if tensors:
                from safetensors.torch import save_file

                save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                          tmp / _TENSORS)
                files[_TENSORS] = file_digest(tmp / _TENSORS)
            atomic_write_json(tmp / _META, {"config": config, **(meta or {}), "_files": files})
            if entry.exists():  # a concurrent writer won; keep theirs
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return entry

    def get_or_compute(self, kind: str, config: dict,
                       compute: Callable[[], tuple[dict[str, torch.Tensor], dict]]):
        """The cached ``(tensors, meta)``, or computed and stored under a lock (one process computes)."""
        hit = self.get(kind, config)
        if hit is None:
            with _locked(self.path(kind, config)):
                hit = self.get(kind, config)  # another process may have computed it meanwhile
                if hit is None:
                    self.put(kind, config, *compute())
                    hit = self.get(kind, config)
        return hit


def is_tensor(x) -> bool:
    """``isinstance(x, torch.Tensor)`` without importing torch (the build's steps never do)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def digest(x) -> str | None:
    """Short SHA-256 of an array's or tensor's shape, dtype and values (None for None)."""
    if x is None:
        return None
    a = np.ascontiguousarray(x.detach().cpu().contiguous().numpy() if is_tensor(x) else x)
    return hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()[:16]


def keyable(value):
    """``value`` as plain JSON for a cache key (tensors and arrays by :func:`digest`)."""
    if is_tensor(value) or isinstance(value, np.ndarray):
        return digest(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return keyable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): keyable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [keyable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def cached(kind: str, key: dict, compute: Callable[[], tuple[dict[str, torch.Tensor], dict]],
           cache: Cache | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The library's one cache: ``compute()`` → ``(tensors, meta)`` stored under ``kind`` and
    :func:`keyable` ``key`` plus :data:`CACHE_VERSION`; a hit skips ``compute``."""
    full_key = {**keyable(key), "cache_version": CACHE_VERSION}
    return (cache or Cache()).get_or_compute(kind, full_key, compute)
