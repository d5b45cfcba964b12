import os

import torch

from dipddpm_lib import repro


def test_deterministic_switch_round_trip(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        repro.deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        # ops without a deterministic CUDA kernel (DIP's bilinear and reflection-pad backward) warn
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        repro.deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_environment_flag(monkeypatch):
    monkeypatch.setenv("DIPDDPM_DETERMINISTIC", "0")
    assert repro.from_environment() is False
    monkeypatch.setenv("DIPDDPM_DETERMINISTIC", "1")
    try:
        assert repro.from_environment() is True and torch.are_deterministic_algorithms_enabled()
    finally:
        repro.deterministic(False)
