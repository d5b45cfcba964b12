import os

import pytest
import torch

# Tests never touch the user's cache, and run on the CPU with a fixed thread count.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty cache directory, also set as the default for the library."""
    from dipddpm_lib.cache import Cache

    root = tmp_path / "cache"
    monkeypatch.setenv("DIPDDPM_CACHE", str(root))
    return Cache(root)


@pytest.fixture
def smoke():
    from dipddpm_lib import get_profile

    return get_profile("smoke")


def cache_files(cache) -> list:
    """Every file under the cache root (an empty list when nothing was written)."""
    return sorted(p for p in cache.root.rglob("*") if p.is_file()) if cache.root.exists() else []
