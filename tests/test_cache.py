import json

import pytest
import torch

from dipddpm_lib.cache import Cache, atomic_write_json, config_key
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


def test_partial_temp_dirs_are_ignored(cache):
    tmp = cache.root / "k" / ".abc.tmp-123"
    tmp.mkdir(parents=True)
    (tmp / "tensors.safetensors").write_bytes(b"half")
    assert cache.get("k", {"n": 1}) is None


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


def test_cached_computes_once_and_keys_on_every_setting(tmp_path):
    from dipddpm_lib.cache import cached

    c, calls = Cache(tmp_path), []

    def compute():
        calls.append(1)
        return {"x": torch.arange(3.0)}, {"n": len(calls)}

    key = {"data": torch.zeros(2, 2), "arch": (3, 32), "lr": 0.01}
    t1, m1 = cached("study", key, compute, c)
    t2, m2 = cached("study", dict(key), compute, c)
    assert len(calls) == 1 and m2["n"] == 1 and torch.equal(t2["x"], t1["x"])
    cached("study", {**key, "data": torch.ones(2, 2)}, compute, c)  # other data: a miss
    cached("study", {**key, "lr": 0.0}, compute, c)  # 0 is a value, not "unset"
    assert len(calls) == 3


def test_digest_tells_shape_and_dtype_apart():
    from dipddpm_lib.cache import digest

    z = torch.zeros(4)
    assert digest(z) == digest(torch.zeros(4))
    assert len({digest(z), digest(z.reshape(2, 2)), digest(z.double())}) == 3
    assert digest(None) is None


def test_cached_writes_nothing_when_compute_fails(tmp_path):
    from dipddpm_lib.cache import cached

    def boom():
        raise RuntimeError("bad input")

    with pytest.raises(RuntimeError, match="bad input"):
        cached("study", {"a": 1}, boom, Cache(tmp_path))
    assert not any(p.name != ".lock" and p.is_file() for p in tmp_path.rglob("*"))
    assert not list(tmp_path.glob("study/*/meta.json"))
