import time

import pytest
import torch

from dipddpm_lib.compute import Compute, Timer, count_flops


def test_count_flops_of_a_matmul():
    lin = torch.nn.Linear(64, 32, bias=False)
    flops, out = count_flops(lin, torch.zeros(8, 64))
    assert flops == 2 * 8 * 64 * 32 and out.shape == (8, 32)


def test_backward_is_counted():
    lin = torch.nn.Linear(64, 32, bias=False)
    fwd, _ = count_flops(lin, torch.zeros(8, 64))
    both, _ = count_flops(lambda x: lin(x).sum().backward(), torch.zeros(8, 64))
    assert both == pytest.approx(2 * fwd)  # weight gradient only: the input needs none


def test_compute_adds_and_serialises():
    c = Compute(1e9, 2, 0, 1.0) + Compute(2e9, 3, 5, 0.5)
    assert c.to_dict() == {"flops": 3e9, "nfe": 5, "dip_iters": 5, "wall_s": 1.5, "gflops": 3.0}


def test_timer():
    with Timer() as t:
        time.sleep(0.01)
    assert t.seconds >= 0.01
