"""Stopping rules for DIP: each criterion is a pure function over a history (numpy arrays,
iteration 1 first) returning a :class:`Stop`, plus the online recorders that build those
histories inside a fit's callback. ``oracle`` reads the clean image: an upper bound, never a
setting."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .errors import check_positive_int, check_sigma
from .metrics import psnr

#: Every criterion, in the tables' order. The plain DIP run feeds all but ``guided`` and
#: ``sure`` (their own fits); the :data:`RAW` ones return its raw outputs, the rest its EMA.
CRITERIA = ("guided", "prior_distance", "sure", "sigma_lookup", "discrepancy", "es_wmv_raw",
            "es_emv", "es_wmv", "fixed", "ulyanov", "oracle", "oracle_raw")
#: The criteria that return a raw (not averaged) output, scored against the raw peak.
RAW = ("es_wmv_raw", "es_emv", "oracle_raw", "sure")
#: The criteria that read σ (the oracles read the clean image instead).
NEEDS_SIGMA = ("guided", "prior_distance", "sure", "sigma_lookup", "discrepancy")
ORACLES = ("oracle", "oracle_raw")
#: ES-EMV's smoothing weight (the authors' ``alpha``).
EMV_ALPHA = 0.1


@dataclass(frozen=True)
class Stop:
    """``iteration``: the step whose output is returned; ``iterations_run``: the steps run to
    decide (its compute); ``fired``: False when the rule never triggered within the history."""

    iteration: int
    iterations_run: int
    fired: bool = True


def _history(values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D history, got shape {arr.shape}")
    return arr


def _paired(a, b, what_a: str, what_b: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _history(a, what_a), _history(b, what_b)
    if len(a) != len(b):
        raise ValueError(f"{what_a} and {what_b} differ in length ({len(a)}, {len(b)})")
    return a, b


def oracle_stop(psnr_clean) -> Stop:
    """The iteration of peak PSNR against the clean image."""
    it = int(np.nanargmax(_history(psnr_clean, "psnr_clean"))) + 1
    return Stop(it, it, True)


def fixed_stop(history_length: int, iterations: int) -> Stop:
    """A fixed iteration count."""
    iterations = check_positive_int("iterations", iterations)
    it = min(iterations, history_length)
    return Stop(it, it, bool(history_length >= iterations))


def discrepancy_stop(residual, sigma: float) -> Stop:
    """Morozov: the first iteration whose MSE to the observation is ≤ σ² (σ on 0-255)."""
    h = _history(residual, "residual")
    hit = np.flatnonzero(h <= (check_sigma(sigma) / 255.0) ** 2)
    it = int(hit[0]) + 1 if hit.size else len(h)
    return Stop(it, it, bool(hit.size))


def last_minimum_stop(values, patience: int) -> Stop:
    """Stop once ``values`` has not reached a new minimum for ``patience`` iterations and return
    that minimum (NaN entries are not yet defined, never a minimum): ES-WMV over the moving
    variance, ES-EMV over the exponential one, SURE, and the learned-prior distance."""
    patience = check_positive_int("patience", patience)
    v = _history(values, "history")
    valid = np.isfinite(v)
    if not valid.any():
        return Stop(len(v), len(v), False)
    filled = np.where(valid, v, np.inf)
    run_min = np.minimum.accumulate(filled)
    new_min = valid & (filled <= run_min) & np.r_[True, filled[1:] < run_min[:-1]]
    argmin = np.maximum.accumulate(np.where(new_min, np.arange(len(v)), -1))
    waited = np.arange(len(v)) - argmin
    done = np.flatnonzero((argmin >= 0) & (waited >= patience))
    if done.size:
        i = int(done[0])
        return Stop(int(argmin[i]) + 1, i + 1, True)
    return Stop(int(argmin[-1]) + 1, len(v), False)


def guided_stop(stage_residual, stage_absorbed, sigma: float, stage_iterations: int) -> Stop:
    """Stop at the end of the first stage ``k ≥ 1`` with ``R_{k−1} − R_k ≤ 2 σ² a_k`` (``R``:
    MSE to the observation at each stage end, ``a``: absorbed share, NaN for the last stage)."""
    r, a = _paired(stage_residual, stage_absorbed, "stage_residual", "stage_absorbed")
    stage_iterations = check_positive_int("stage_iterations", stage_iterations)
    drop = r[:-1] - r[1:]
    noise_gain = 2.0 * (check_sigma(sigma) / 255.0) ** 2 * a[1:]
    hit = np.flatnonzero(np.isfinite(noise_gain) & (drop <= noise_gain))
    it = (int(hit[0]) + 2 if hit.size else len(r)) * stage_iterations
    return Stop(it, it, bool(hit.size))


def absorbed_fraction(output: torch.Tensor, output_before: torch.Tensor, noise: torch.Tensor,
                      noise_std: torch.Tensor) -> torch.Tensor:
    """Share of an injected noise ``noise_std · noise`` the output took up since
    ``output_before``: ⟨Δoutput, noise⟩ / (N · noise_std), per image."""
    gain = ((output - output_before) * noise).flatten(1).mean(1)
    return gain / noise_std.clamp_min(1e-12)


class MovingVariance:
    """ES-WMV's windowed moving variance, online: ``push(outputs)`` (N×C×H×W) returns the
    per-pixel variance of the last ``window`` outputs averaged over pixels, per image (NaN until
    the window is full). Running float64 sums make a push cost one output."""

    def __init__(self, window: int):
        self.window = check_positive_int("window", window)
        if self.window < 2:
            raise ValueError(f"window must be at least 2 outputs, got {window}")
        self._frames: list[torch.Tensor] = []
        self._sum = self._sum_sq = None

    def push(self, outputs: torch.Tensor) -> np.ndarray:
        """Add one step's outputs (N×C×H×W)."""
        x = outputs.detach().cpu().double()
        if self._sum is None:
            self._sum, self._sum_sq = torch.zeros_like(x), torch.zeros_like(x)
        self._frames.append(x)
        self._sum += x
        self._sum_sq += x * x
        if len(self._frames) > self.window:
            old = self._frames.pop(0)
            self._sum -= old
            self._sum_sq -= old * old
        if len(self._frames) < self.window:
            return np.full(x.shape[0], np.nan)
        mean = self._sum / self.window
        per_pixel = (self._sum_sq / self.window - mean * mean).clamp_min(0)
        return per_pixel.flatten(1).mean(1).numpy()


class ExpMovingVariance:
    """ES-EMV's statistic (the authors' ``EWMVar``), online: the EMA starts at the first
    output; each later ``x`` updates ``δ = x − ema``, ``ema ← clip(ema + α δ, 0, 1)``,
    ``emv ← (1 − α)(emv + α ‖δ‖²/P)`` (a per-pixel mean where the authors sum). ``push``
    returns the EMV per image, NaN for the first output."""

    def __init__(self, alpha: float = EMV_ALPHA):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.ema = self.emv = None  # tensors from the first push on

    def push(self, outputs: torch.Tensor) -> np.ndarray:
        """Add one step's outputs (N×C×H×W)."""
        x = outputs.detach().cpu().double()
        if self.ema is None:
            self.ema, self.emv = x.clone(), torch.zeros(x.shape[0], dtype=torch.float64)
            return np.full(x.shape[0], np.nan)
        delta = x - self.ema
        self.ema = (self.ema + self.alpha * delta).clamp(0.0, 1.0)
        self.emv = (1.0 - self.alpha) * (self.emv + self.alpha * delta.pow(2).flatten(1).mean(1))
        return self.emv.numpy().copy()


def mc_divergence(f: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, eps: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One-probe Monte-Carlo ``div f(y) / P`` per image (Ramani et al., 2008):
    ``bᵀ (f(y + ε b) − f(y)) / (ε P)``, ``b ~ N(0, I)``."""
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    b = torch.randn(y.shape, generator=generator, dtype=y.dtype)
    with torch.no_grad():
        diff = f(y + eps * b) - f(y)
    return (b * diff).flatten(1).sum(1) / (eps * y[0].numel())


def sure_mse(residual, divergence, sigma: float) -> np.ndarray:
    """SURE's estimate of the MSE to the clean image, ``R − σ² + 2σ² div/P`` (σ on 0-255)."""
    r, d = _paired(residual, divergence, "residual", "divergence")
    s2 = (check_sigma(sigma) / 255.0) ** 2
    return r - s2 + 2.0 * s2 * d


@dataclass
class SigmaLookup:
    """Iterations as a function of σ: least squares on ``log(iterations) = a + b·log(σ)``
    through oracle peaks of the tune photographs (one σ: slope 0, the median count)."""

    a: float = 0.0
    b: float = 0.0
    calibration: list = field(default_factory=list)

    @classmethod
    def fit(cls, sigmas, peaks) -> "SigmaLookup":
        s = np.asarray([check_sigma(x) for x in sigmas], dtype=np.float64)
        p = np.asarray(peaks, dtype=np.float64)
        if s.size == 0 or s.size != p.size:
            raise ValueError(f"need one oracle peak per σ, got {s.size} σ and {p.size} peaks")
        if (s <= 0).any() or (p < 1).any():
            raise ValueError("σ must be positive and peaks at least iteration 1")
        ls, lp = np.log(s), np.log(p)
        if np.ptp(ls) == 0:
            a, b = float(np.median(lp)), 0.0
        else:
            b, a = (float(v) for v in np.polyfit(ls, lp, 1))
        return cls(a, b, [(float(x), float(y)) for x, y in zip(s, p)])

    def predict(self, sigma: float) -> int:
        """The fitted iteration count at ``sigma`` (0-255 scale, positive)."""
        sigma = check_sigma(sigma)
        if sigma <= 0:
            raise ValueError("σ must be positive")
        return max(1, int(round(float(np.exp(self.a + self.b * np.log(sigma))))))

    def stop(self, sigma: float, history_length: int) -> Stop:
        """The looked-up count as a :class:`Stop` on a history of ``history_length``."""
        return fixed_stop(history_length, self.predict(sigma))


class ReferenceRecorder:
    """``dip.fit`` callback on a plain DIP run: records what each plain-run criterion reads and
    keeps each one's output (EMA, or raw for :data:`RAW`) at its current candidate stop, so no
    trajectory is stored. ``lookup`` adds ``sigma_lookup``; ``prior_x0`` (a trained denoiser's
    estimate of each clean image) adds ``prior_distance``; ``until_fired`` ends the fit once
    those criteria have fired on every image."""

    def __init__(self, noisy: torch.Tensor, clean: torch.Tensor, sigmas, setup,
                 lookup: SigmaLookup | None = None, prior_x0: torch.Tensor | None = None,
                 until_fired: tuple[str, ...] = ()):
        self.noisy, self.clean, self.sigmas, self.setup = noisy, clean, np.asarray(sigmas), setup
        self.lookup, self.prior_x0 = lookup, prior_x0
        if prior_x0 is not None and tuple(prior_x0.shape) != tuple(noisy.shape):
            raise ValueError(f"prior_x0 {tuple(prior_x0.shape)} must match the observations "
                             f"{tuple(noisy.shape)}")
        self.variance_of = {"variance" if w == setup.window else f"variance_w{w}": MovingVariance(w)
                            for w in setup.wmv_windows}
        self.emv = ExpMovingVariance(EMV_ALPHA)
        keys = ["residual", "variance", "emv", "psnr_clean", "psnr_clean_raw",
                *(k for k in self.variance_of if k != "variance")]
        keys += ["distance"] if prior_x0 is not None else []
        self.rows = {k: np.full((setup.budget, len(self.sigmas)), np.nan) for k in keys}
        self.length = 0
        self.criteria = self.criteria_for(lookup is not None, prior_x0 is not None)
        unknown = sorted(set(until_fired) - set(self.criteria))
        if unknown:
            raise ValueError(f"until_fired names criteria this run does not have: {unknown}")
        self.until_fired = tuple(until_fired)
        self.outputs = {c: torch.zeros_like(clean) for c in self.criteria}

    @staticmethod
    def criteria_for(lookup: bool, prior: bool) -> list[str]:
        skip = {"guided", "sure", *(() if lookup else ("sigma_lookup",)),
                *(() if prior else ("prior_distance",))}
        return [c for c in CRITERIA if c not in skip]

    def stops_for(self, n: int) -> dict[str, Stop]:
        """Each criterion's stop for image ``n`` on the history so far."""
        h = {k: v[:self.length, n] for k, v in self.rows.items()}
        wmv = last_minimum_stop(h["variance"], self.setup.patience)
        out = {"oracle": oracle_stop(h["psnr_clean"]),
               "oracle_raw": oracle_stop(h["psnr_clean_raw"]),
               "fixed": fixed_stop(self.length, self.setup.fixed_iterations),
               "ulyanov": fixed_stop(self.length, self.setup.ulyanov_iterations),
               "discrepancy": discrepancy_stop(h["residual"], self.sigmas[n]),
               "es_wmv": wmv, "es_wmv_raw": wmv,
               "es_emv": last_minimum_stop(h["emv"], self.setup.patience)}
        if self.lookup is not None:
            out["sigma_lookup"] = self.lookup.stop(self.sigmas[n], self.length)
        if self.prior_x0 is not None:
            out["prior_distance"] = last_minimum_stop(h["distance"], self.setup.patience)
        return out

    def __call__(self, i: int, out: torch.Tensor, out_ema: torch.Tensor, hist) -> bool:
        ema, raw = out_ema.detach().cpu(), out.detach().cpu()
        mse = lambda a, b: (a - b).pow(2).flatten(1).mean(1).double().numpy()  # noqa: E731
        self.rows["residual"][i - 1] = mse(ema, self.noisy)
        for key, mv in self.variance_of.items():
            self.rows[key][i - 1] = mv.push(raw)
        self.rows["emv"][i - 1] = self.emv.push(raw)
        if self.prior_x0 is not None:
            self.rows["distance"][i - 1] = mse(ema, self.prior_x0)
        self.rows["psnr_clean"][i - 1] = psnr(ema, self.clean).double().numpy()
        self.rows["psnr_clean_raw"][i - 1] = psnr(raw, self.clean).double().numpy()
        self.length = i
        return keep_at_stops(self, i, raw, ema, self.until_fired) and bool(self.until_fired)


def keep_at_stops(recorder, i: int, raw: torch.Tensor, ema: torch.Tensor | None, until) -> bool:
    """Keep each image's output (raw for :data:`RAW`, else EMA) of every criterion of
    ``recorder.stops_for`` whose current stop is step ``i``; True once ``until`` fired on all."""
    done = True
    for n in range(len(recorder.sigmas)):
        stops = recorder.stops_for(n)
        for name, stop in stops.items():
            if stop.iteration == i:
                recorder.outputs[name][n] = (raw if name in RAW else ema)[n]
        done &= all(stops[c].fired for c in until)
    return done
