import os

import pytest

# Tests never touch the user's cache; torch's thread count follows OMP_NUM_THREADS.


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


@pytest.fixture(scope="session")
def nb_cache(tmp_path_factory):
    """One cache for every notebook smoke run in the session: a chapter reuses what the
    previous one trained (as in a real report build)."""
    from nbrun import smoke_cache_env

    root = tmp_path_factory.mktemp("nb_cache")
    old = {k: os.environ.get(k) for k in ("DIPDDPM_CACHE", "DIPDDPM_PROFILE")}
    smoke_cache_env(root)
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory):
    """The whole smoke report built once by Snakemake (tests/smokebuild.py), read by
    tests/test_build_smoke.py; shared should another pytest-xdist worker ask for it (each has
    its own session and temp folder below a common one)."""
    from smokebuild import shared_build

    base = tmp_path_factory.getbasetemp()
    return shared_build(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


@pytest.fixture(scope="session")
def failing_points(tmp_path_factory):
    """The dummy grids' points built with --keep-going, one failing on purpose (tests/test_workflow.py;
    chapter 05's test collates them): ``(grid_file, root, config, targets, completed process)``."""
    from test_workflow import dummy_grid, point_targets, snakemake

    tmp_path = tmp_path_factory.mktemp("failing")
    grid_file, root = dummy_grid(tmp_path), tmp_path / "root"
    config = ["profile=smoke", f"grid_file={grid_file}"]
    targets = point_targets(grid_file, root)
    done = snakemake("--cores", "2", "--keep-going", *targets, root=root, config=config)
    return grid_file, root, config, targets, done
