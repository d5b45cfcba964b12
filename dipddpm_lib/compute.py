"""Compute accounting: FLOPs (``FlopCounterMode``, each distinct network call counted once and
multiplied by its number of calls), network evaluations, wall seconds."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Compute:
    """What a piece of work cost. ``nfe``: denoiser evaluations; ``dip_iters``: DIP steps."""

    flops: float = 0.0
    nfe: int = 0
    dip_iters: int = 0
    wall_s: float = 0.0

    def __add__(self, other: "Compute") -> "Compute":
        return Compute(self.flops + other.flops, self.nfe + other.nfe,
                       self.dip_iters + other.dip_iters, self.wall_s + other.wall_s)

    def per_image(self, n: int) -> "Compute":
        """One of ``n`` images' share of a batch's work: FLOPs and wall seconds divided by n."""
        return Compute(self.flops / n, self.nfe, self.dip_iters, self.wall_s / n)

    def to_dict(self) -> dict:
        """JSON-able dict; FLOPs also given in GFLOPs for reading."""
        return {**asdict(self), "gflops": self.flops / 1e9}


def count_flops(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    """Run ``fn(*args, **kwargs)`` once under ``FlopCounterMode``; return ``(flops, result)``."""
    with FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
    return float(counter.get_total_flops()), out


class Timer:
    """Context manager measuring wall seconds: ``with Timer() as t: ...; t.seconds``."""

    def __enter__(self):
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start
