"""Seconds per DIP iteration (forward, backward, Adam step) of the skip network in the
standard (contiguous) and channels-last memory formats, interleaved so that the machine's
load hits both alike; prints medians and their ratio. ``dip.fit`` uses channels-last.

    .venv/bin/python scripts/bench_dip.py [--threads 1] [--reps 9]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from dipddpm_lib.dip import DIPConfig, SkipNet, make_input

# (scales, channels, image side, networks fitted at once): chapter 04's and the tuning
# points' 3×32 nets, task C's grouped 3×16 fits, and the paper's 5×128 at 128 px
CASES = ((3, 32, 32, 2), (3, 32, 64, 1), (3, 16, 64, 6), (5, 128, 128, 1))


def step_fn(cfg: DIPConfig, side: int, nets: int, memory_format):
    net = SkipNet(cfg, 3, nets=nets).to(memory_format=memory_format)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    z = make_input(cfg, side, side, 0, nets).contiguous(memory_format=memory_format)
    y = torch.rand(nets, 3, side, side)

    def step():
        loss = (net(z) - y).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s); median s/iteration over {args.reps} interleaved reps")
    for scales, channels, side, nets in CASES:
        cfg = DIPConfig(scales=scales, channels=channels)
        fns = [step_fn(cfg, side, nets, f) for f in (torch.contiguous_format, torch.channels_last)]
        times = ([], [])
        for _ in range(args.reps + 1):
            for fn, ts in zip(fns, times):
                start = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - start)
        a, b = (statistics.median(ts[1:]) for ts in times)  # the first rep warms up
        print(f"{scales}×{channels} at {side} px, {nets} net(s): contiguous {a:.4f}  "
              f"channels-last {b:.4f}  ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
