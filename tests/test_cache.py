import json

import pytest
import torch

from dipddpm_lib.cache import atomic_write_json, config_key
from conftest import cache_files


def test_key_is_order_independent_and_content_addressed():
    assert config_key({"a": 1, "b": 2}) == config_key({"b": 2, "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})


def test_miss_then_hit(cache):
    calls = []

    def compute():
        calls.append(1)
        return {"w": torch.arange(4.0)}, {"note": "x"}

    t1, m1 = cache.get_or_compute("k", {"n": 1}, compute)
    t2, m2 = cache.get_or_compute("k", {"n": 1}, compute)
    assert len(calls) == 1
    assert torch.equal(t1["w"], t2["w"]) and m2["note"] == "x" and m2["config"] == {"n": 1}
    cache.get_or_compute("k", {"n": 2}, compute)
    assert len(calls) == 2
    assert (cache.path("k", {"n": 1}) / "tensors.safetensors").exists()


def test_failed_compute_leaves_nothing(cache):
    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k", {"n": 1}, boom)
    assert cache_files(cache) == []


def test_failed_write_leaves_nothing(cache):
    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        cache.put("k", {"n": 1}, {"w": torch.ones(2)}, {"bad": Unserialisable()})
    assert cache_files(cache) == []
    assert cache.get("k", {"n": 1}) is None


def test_corrupt_entry_is_a_miss_and_recomputed(cache):
    cache.put("k", {"n": 1}, {"w": torch.ones(1000)}, {})
    f = cache.path("k", {"n": 1}) / "tensors.safetensors"
    f.write_bytes(f.read_bytes()[:-100])  # truncated, as a killed copy would leave it
    with pytest.warns(UserWarning, match="damaged"):
        assert cache.get("k", {"n": 1}) is None
    t, _ = cache.get_or_compute("k", {"n": 1}, lambda: ({"w": torch.zeros(3)}, {}))
    assert torch.equal(t["w"], torch.zeros(3))


def test_partial_temp_dirs_are_ignored_and_cleaned(cache):
    tmp = cache.root / "k" / ".abc.tmp-123"
    tmp.mkdir(parents=True)
    (tmp / "tensors.safetensors").write_bytes(b"half")
    assert cache.get("k", {"n": 1}) is None
    assert cache.clean_partial() == 1 and not tmp.exists()


def test_atomic_json(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": torch.tensor(1.5), "b": (1, 2)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1.5, "b": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_concurrent_misses_compute_once(cache):
    """Two builders asking for the same missing entry: one computes, the other waits and loads."""
    import threading
    import time

    import torch

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.3)
        return {"x": torch.ones(2)}, {"n": len(calls)}

    out = []
    threads = [threading.Thread(target=lambda: out.append(cache.get_or_compute("k", {"a": 1}, slow)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(out) == 2
    assert all(torch.equal(t["x"], torch.ones(2)) and m["n"] == 1 for t, m in out)
