"""Stopping rules for DIP: every criterion is a pure function over a history (numpy arrays,
iteration 1 first) that returns a :class:`Stop`, plus the online recorders that build those
histories inside a fit's callback. One implementation serves the unit tests, the offline replays
of cached trajectories and the live runs.

Without the clean image:

* ``fixed``: a fixed iteration count; ``sigma_lookup`` is the one fitted, per σ, on the tune
  photographs' oracle peaks (:class:`SigmaLookup`): the simplest rule that knows σ.
* ``discrepancy`` (Morozov): the first iteration whose fit error to the observation is ≤ σ².
* ``es_wmv`` (Wang et al., 2021): the windowed moving variance of the raw outputs; stop when
  it has not reached a new minimum for ``patience`` iterations; return that minimum.
* ``es_emv`` (same authors): the exponential moving variance in place of the window.
* ``sure``: Stein's unbiased risk estimate of the MSE to the clean image,
  ``R − σ² + 2σ² div/N`` (:func:`sure_mse`), with a Monte-Carlo divergence
  (:func:`mc_divergence`); stop at its minimum, with a patience.
* ``prior_distance``: the distance of the output to a learned denoiser's estimate of the clean
  image; stop where it stops falling.
* ``guided``: chapter 04's progressive targets (see :mod:`dipddpm_lib.methods.guided_dip`).

``oracle`` reads the clean image: the upper bound, reported as such, never a setting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .errors import check_positive_int, check_sigma
from .metrics import psnr

#: Every criterion, in the tables' order. ``es_wmv``, ``discrepancy``, ``fixed``,
#: ``ulyanov``, ``oracle`` (and, when given, ``sigma_lookup`` and ``prior_distance``) read
#: the plain DIP run and return its EMA output; ``es_wmv_raw``, ``es_emv`` and
#: ``oracle_raw`` read the same run in the ES authors' convention (raw outputs);
#: ``guided`` and ``sure`` run their own fits.
CRITERIA = ("guided", "prior_distance", "sure", "sigma_lookup", "discrepancy", "es_wmv_raw",
            "es_emv", "es_wmv", "fixed", "ulyanov", "oracle", "oracle_raw")
#: The criteria that return a raw (not averaged) output, scored against the raw peak.
RAW = ("es_wmv_raw", "es_emv", "oracle_raw", "sure")
#: The criteria that read σ (the oracles read the clean image instead).
NEEDS_SIGMA = ("guided", "prior_distance", "sure", "sigma_lookup", "discrepancy")
ORACLES = ("oracle", "oracle_raw")
#: ES-EMV's smoothing weight (the authors' ``alpha``).
EMV_ALPHA = 0.1


# --------------------------------------------------------------------------- a stop
@dataclass(frozen=True)
class Stop:
    """Where a criterion stops. ``iteration``: the step whose (EMA) output it returns;
    ``iterations_run``: the steps it had to run to decide (its compute); ``fired``: False
    when the rule never triggered and the run went to its budget."""

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


# --------------------------------------------------------------------------- criteria
def oracle_stop(psnr_clean) -> Stop:
    """The iteration of peak PSNR against the clean image (needs the clean image)."""
    it = int(np.nanargmax(_history(psnr_clean, "psnr_clean"))) + 1
    return Stop(it, it, True)


def fixed_stop(history_length: int, iterations: int) -> Stop:
    """A fixed iteration count; the history must be at least that long."""
    iterations = check_positive_int("iterations", iterations)
    it = min(iterations, history_length)
    return Stop(it, it, bool(history_length >= iterations))


def discrepancy_stop(residual, sigma: float) -> Stop:
    """The first iteration whose MSE to the observation (``residual``) is at most σ²
    (``sigma`` on the 0-255 scale): Morozov's discrepancy principle."""
    h = _history(residual, "residual")
    hit = np.flatnonzero(h <= (check_sigma(sigma) / 255.0) ** 2)
    it = int(hit[0]) + 1 if hit.size else len(h)
    return Stop(it, it, bool(hit.size))


class MovingVariance:
    """Online windowed moving variance: ``push(outputs)`` returns the variance of the last
    ``window`` outputs (NaN until the window is full). Running sums (float64) make a push
    cost one output, whatever the window. The variance of W outputs is their mean squared
    deviation from their mean, per pixel, averaged over pixels (ES-WMV's)."""

    def __init__(self, window: int):
        self.window = _check_window(window)
        self._frames: list[torch.Tensor] = []
        self._sum = self._sum_sq = None

    def push(self, outputs: torch.Tensor) -> np.ndarray:
        """Add one step's outputs (N×C×H×W); return the variance per image (N)."""
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


def es_wmv_stop(variance, patience: int) -> Stop:
    """ES-WMV: stop once the moving variance has not reached a new minimum for
    ``patience`` iterations; return the iteration of that minimum."""
    return _last_minimum_stop(variance, patience, "variance")


def guided_stop(stage_residual, stage_absorbed, sigma: float, stage_iterations: int) -> Stop:
    """The guided rule over completed stages: stop at the end of the first stage ``k ≥ 1``
    with ``R_{k−1} − R_k ≤ 2 σ² a_k``, where ``R`` is the output's MSE to the observation at
    each stage end and ``a`` the share of the stage's injected noise the output absorbed
    (NaN for the final, noiseless stage). ``sigma`` is on the 0-255 scale."""
    r, a = _paired(stage_residual, stage_absorbed, "stage_residual", "stage_absorbed")
    stage_iterations = check_positive_int("stage_iterations", stage_iterations)
    drop = r[:-1] - r[1:]
    noise_gain = 2.0 * (check_sigma(sigma) / 255.0) ** 2 * a[1:]
    hit = np.flatnonzero(np.isfinite(noise_gain) & (drop <= noise_gain))
    it = (int(hit[0]) + 2 if hit.size else len(r)) * stage_iterations
    return Stop(it, it, bool(hit.size))


def absorbed_fraction(output: torch.Tensor, output_before: torch.Tensor, noise: torch.Tensor,
                      noise_std: torch.Tensor) -> torch.Tensor:
    """Share of an injected noise ``noise_std · noise`` (noise ~ N(0, 1)) that the output
    took up since ``output_before``: ⟨Δoutput, noise⟩ / (N · noise_std), per image."""
    gain = ((output - output_before) * noise).flatten(1).mean(1)
    return gain / noise_std.clamp_min(1e-12)


def _check_window(window) -> int:
    window = check_positive_int("window", window)
    if window < 2:
        raise ValueError(f"window must be at least 2 outputs, got {window}")
    return window


def _last_minimum_stop(values, patience: int, what: str) -> Stop:
    """The "no new minimum for ``patience`` iterations" rule shared by ES-WMV, ES-EMV, SURE
    and the prior-distance rule (NaN entries are not yet defined and never a minimum)."""
    patience = check_positive_int("patience", patience)
    v = _history(values, what)
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


# --------------------------------------------------------------------------- ES-EMV
class ExpMovingVariance:
    """ES-EMV's online statistic (Wang et al., 2021, the authors' ``EWMVar``): with ``α`` the
    smoothing weight, the exponential moving average starts at the first output, and each
    later output ``x`` updates ``δ = x − ema``, ``ema ← clip(ema + α δ, 0, 1)``,
    ``emv ← (1 − α)(emv + α ‖δ‖²/P)`` (``P`` pixels: a per-pixel mean, where the authors sum;
    the rule only compares values of one image). ``push`` returns the EMV per image, NaN for
    the first output (nothing has varied yet)."""

    def __init__(self, alpha: float = 0.1):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.ema: torch.Tensor | None = None
        self.emv: torch.Tensor | None = None

    def push(self, outputs: torch.Tensor) -> np.ndarray:
        """Add one step's outputs (N×C×H×W); return the EMV per image (N)."""
        x = outputs.detach().cpu().double()
        if self.ema is None:
            self.ema, self.emv = x.clone(), torch.zeros(x.shape[0], dtype=torch.float64)
            return np.full(x.shape[0], np.nan)
        delta = x - self.ema
        self.ema = (self.ema + self.alpha * delta).clamp(0.0, 1.0)
        self.emv = (1.0 - self.alpha) * (self.emv + self.alpha * delta.pow(2).flatten(1).mean(1))
        return self.emv.numpy().copy()


def es_emv_stop(emv, patience: int) -> Stop:
    """ES-EMV: stop once the exponential moving variance has not reached a new minimum for
    ``patience`` iterations; return the iteration of that minimum."""
    return _last_minimum_stop(emv, patience, "emv")


# --------------------------------------------------------------------------- SURE
def mc_divergence(f: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, eps: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A one-probe Monte-Carlo estimate of ``div f(y) / P`` per image (Ramani et al., 2008):
    ``bᵀ (f(y + ε b) − f(y)) / (ε P)`` with ``b ~ N(0, I)``; ``P`` pixels per image. Two calls of
    ``f``; exact in expectation for a linear ``f`` (``f = a·y`` gives ``a``)."""
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    b = torch.randn(y.shape, generator=generator, dtype=y.dtype)
    with torch.no_grad():
        diff = f(y + eps * b) - f(y)
    return (b * diff).flatten(1).sum(1) / (eps * y[0].numel())


def sure_mse(residual, divergence, sigma: float) -> np.ndarray:
    """SURE's estimate of the MSE to the clean image, per iteration: ``R − σ² + 2σ² d`` with
    ``R`` the output's MSE to the observation and ``d = div f / P`` (``sigma`` on the 0-255
    scale, images in [0, 1]). Unbiased for Gaussian noise of that σ; no clean image."""
    r, d = _paired(residual, divergence, "residual", "divergence")
    s2 = (check_sigma(sigma) / 255.0) ** 2
    return r - s2 + 2.0 * s2 * d


def sure_stop(sure, patience: int) -> Stop:
    """Stop once SURE's MSE estimate has not reached a new minimum for ``patience``
    iterations (NaN where no divergence probe ran); return that minimum."""
    return _last_minimum_stop(sure, patience, "sure")


# --------------------------------------------------------------------------- learned prior
def prior_distance_stop(distance, patience: int) -> Stop:
    """The learned-prior rule: ``distance`` is the output's MSE to a trained denoiser's
    estimate of the clean image (e.g. the photo DDPM's one-step x̂0 at t_σ, computed once from
    the observation). DIP first approaches the image that estimate approximates, then drifts
    towards the noise: stop once the distance has not reached a new minimum for ``patience``
    iterations and return that minimum. With a perfect denoiser this is the oracle."""
    return _last_minimum_stop(distance, patience, "distance")


# --------------------------------------------------------------------------- σ lookup
@dataclass
class SigmaLookup:
    """``sigma_lookup``: the iteration count as a function of σ, fitted on oracle peaks of
    the tune photographs (never the eval ones) by least squares on
    ``log(iterations) = a + b·log(σ)``: one line through every (σ, peak) pair. With a single
    σ the slope is 0 (the median count). ``predict`` rounds to a whole iteration ≥ 1."""

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


# --------------------------------------------------------------------------- online recorders
class ReferenceRecorder:
    """``dip.fit`` callback on a plain DIP run: records what each criterion reads (fit error
    to the observation, ES-WMV's and ES-EMV's variances of the raw outputs, the distance to a
    learned prior's estimate, clean PSNR of the EMA and raw outputs for the two oracles) and
    keeps each criterion's output (EMA, or raw for :data:`RAW`) at its current candidate
    stop, so no full trajectory is stored.

    ``lookup`` (a :class:`~dipddpm_lib.stopping.SigmaLookup` fitted on other photographs)
    adds ``sigma_lookup``; ``prior_x0`` (N×C×H×W, a trained denoiser's estimate of each clean
    image from its observation) adds ``prior_distance``. ``until_fired`` (criterion names)
    ends the fit once each of them has fired on every image (the ES authors' runs end there);
    criteria that have not fired by then report ``fired = False``."""

    def __init__(self, noisy: torch.Tensor, clean: torch.Tensor, sigmas, setup,
                 lookup: SigmaLookup | None = None, prior_x0: torch.Tensor | None = None,
                 until_fired: tuple[str, ...] = ()):
        self.noisy, self.clean, self.sigmas, self.setup = noisy, clean, np.asarray(sigmas), setup
        self.lookup, self.prior_x0 = lookup, prior_x0
        if prior_x0 is not None and tuple(prior_x0.shape) != tuple(noisy.shape):
            raise ValueError(f"prior_x0 {tuple(prior_x0.shape)} must match the observations "
                             f"{tuple(noisy.shape)}")
        self.variance_of = {w: MovingVariance(w) for w in setup.wmv_windows}
        self.emv = ExpMovingVariance(EMV_ALPHA)
        keys = ["residual", "variance", "emv", "psnr_clean", "psnr_clean_raw"]
        keys += [f"variance_w{w}" for w in setup.wmv_windows if w != setup.window]
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
        """The criteria a plain run reports, in :data:`CRITERIA`'s order."""
        skip = {"guided", "sure", *(() if lookup else ("sigma_lookup",)),
                *(() if prior else ("prior_distance",))}
        return [c for c in CRITERIA if c not in skip]

    def stops_for(self, n: int) -> dict[str, Stop]:
        """Each criterion's stop for image ``n`` on the history so far."""
        h = {k: v[:self.length, n] for k, v in self.rows.items()}
        wmv = es_wmv_stop(h["variance"], self.setup.patience)
        out = {"oracle": oracle_stop(h["psnr_clean"]),
               "oracle_raw": oracle_stop(h["psnr_clean_raw"]),
               "fixed": fixed_stop(self.length, self.setup.fixed_iterations),
               "ulyanov": fixed_stop(self.length, self.setup.ulyanov_iterations),
               "discrepancy": discrepancy_stop(h["residual"], self.sigmas[n]),
               "es_wmv": wmv, "es_wmv_raw": wmv,
               "es_emv": es_emv_stop(h["emv"], self.setup.patience)}
        if self.lookup is not None:
            out["sigma_lookup"] = self.lookup.stop(self.sigmas[n], self.length)
        if self.prior_x0 is not None:
            out["prior_distance"] = prior_distance_stop(h["distance"], self.setup.patience)
        return out

    def __call__(self, i: int, out: torch.Tensor, out_ema: torch.Tensor, hist) -> bool:
        ema, raw = out_ema.detach().cpu(), out.detach().cpu()
        self.rows["residual"][i - 1] = (ema - self.noisy).pow(2).flatten(1).mean(1).double().numpy()
        for w, mv in self.variance_of.items():
            key = "variance" if w == self.setup.window else f"variance_w{w}"
            self.rows[key][i - 1] = mv.push(raw)
        self.rows["emv"][i - 1] = self.emv.push(raw)
        if self.prior_x0 is not None:
            self.rows["distance"][i - 1] = (ema - self.prior_x0).pow(2).flatten(1).mean(1).double().numpy()
        self.rows["psnr_clean"][i - 1] = psnr(ema, self.clean).double().numpy()
        self.rows["psnr_clean_raw"][i - 1] = psnr(raw, self.clean).double().numpy()
        self.length = i
        done = True
        for n in range(len(self.sigmas)):
            stops = self.stops_for(n)
            for name, stop in stops.items():
                if stop.iteration == i:
                    self.outputs[name][n] = (raw if name in RAW else ema)[n]
            done &= all(stops[c].fired for c in self.until_fired)
        return bool(self.until_fired) and done
