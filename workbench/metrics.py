"""Aggregate metrics with 95% bootstrap confidence intervals, vectorized and seedable.

Conventions (shared by replay, baselines, tune and the app):
- `quality` is the mean over *scored* items: an answer whose quality is null (unscored, e.g. a
  blank RouterBench cell) is left out; a refused item or a provider error counts as 0.
- `cost_per_request` is the mean over all items (refused items cost 0).
- `cost_per_success` = cost_per_request / quality (expected spend per successful task).
- latency percentiles (p50, p95, p99) are over items that were not refused.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

N_BOOT = 1000
# Above this many resampled values an index bootstrap costs too much; for such n the bootstrap
# distribution of a mean is normal to within far less than its own Monte Carlo noise.
MAX_BOOT_CELLS = 20_000_000
MAX_EXACT_UNIQUE = 512


def bootstrap_mean_ci(
    values: np.ndarray, *, n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (NaN ignored).

    0/1 values: exact resampling (a replicate's mean is Binomial(n, mean) / n). Otherwise, while
    n x n_boot stays small: a multinomial draw over the distinct values (few of them) or index
    resampling; beyond that the normal approximation (mean +- z sd / sqrt(n)), which for such n
    differs from the bootstrap by less than the bootstrap's own Monte Carlo noise.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return (math.nan, math.nan)
    if n == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    alpha = (1.0 - level) / 2.0
    binary = bool(np.all((x == 0.0) | (x == 1.0)))
    if binary:  # exact: a replicate's mean is Binomial(n, p) / n
        means = rng.binomial(n, float(x.mean()), size=n_boot) / n
    elif n * n_boot <= MAX_BOOT_CELLS:
        uniq, counts = np.unique(x, return_counts=True)
        if uniq.size <= MAX_EXACT_UNIQUE:
            means = rng.multinomial(n, counts / n, size=n_boot) @ uniq / n
        else:
            means = x[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    else:
        z = _normal_quantile(1.0 - alpha)
        half = z * float(x.std(ddof=1)) / math.sqrt(n)
        m = float(x.mean())
        return (m - half, m + half)
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def _normal_quantile(p: float) -> float:
    """Standard normal quantile."""
    return NormalDist().inv_cdf(p)


@dataclass(frozen=True)
class Metrics:
    """Aggregates of one policy (or baseline) over a workload; treat as immutable."""

    n: int
    n_scored: int
    quality: float
    quality_ci: tuple[float, float]
    cost_per_request: float
    cost_per_request_ci: tuple[float, float]
    cost_per_success: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    escalation_rate: float
    refusal_rate: float
    error_rate: float
    strong_share: float
    answered_by: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists, NaN becomes None)."""
        out = json_ready(self)
        out["answered_by"] = dict(self.answered_by)
        return out


def json_ready(record: Any) -> dict[str, Any]:
    """A dataclass of figures as a JSON-ready dict: tuples become lists, NaN and infinity
    become None (JSON has neither)."""
    out = asdict(record)
    for key, value in out.items():
        if isinstance(value, tuple):
            out[key] = [_clean(v) for v in value]
        elif isinstance(value, float):
            out[key] = _clean(value)
    return out


def _clean(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def aggregate(
    quality: np.ndarray,
    cost: np.ndarray,
    latency: np.ndarray | None = None,
    *,
    refused: np.ndarray | None = None,
    escalated: np.ndarray | None = None,
    errored: np.ndarray | None = None,
    strong: np.ndarray | None = None,
    answered_codes: np.ndarray | None = None,
    answered_names: tuple[str, ...] = (),
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Metrics:
    """Metrics from per-item arrays. `quality` may hold NaN (unscored); `answered_codes` index
    `answered_names` (-1 = nobody answered)."""
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    n = q.size
    if n == 0:
        raise ValueError("no items to aggregate")
    scored = ~np.isnan(q)
    n_scored = int(scored.sum())
    mean_q = float(q[scored].mean()) if n_scored else math.nan
    mean_c = float(c.mean())
    ref = np.zeros(n, dtype=bool) if refused is None else np.asarray(refused, dtype=bool)
    if latency is not None:
        served = np.asarray(latency, dtype=np.float64)[~ref]
        served = served[~np.isnan(served)]
        p50, p95, p99 = (np.percentile(served, [50, 95, 99]) if served.size
                         else (math.nan, math.nan, math.nan))
    else:
        p50 = p95 = p99 = math.nan
    shares: dict[str, float] = {}
    if answered_codes is not None and answered_names:
        counts = np.bincount(answered_codes[answered_codes >= 0], minlength=len(answered_names))
        shares = {name: float(cnt) / n for name, cnt in zip(answered_names, counts, strict=True)
                  if cnt > 0}

    def rate(mask: np.ndarray | None) -> float:
        return float(np.count_nonzero(mask)) / n if mask is not None else 0.0

    return Metrics(
        n=n,
        n_scored=n_scored,
        quality=mean_q,
        quality_ci=bootstrap_mean_ci(q, n_boot=n_boot, seed=seed),
        cost_per_request=mean_c,
        cost_per_request_ci=bootstrap_mean_ci(c, n_boot=n_boot, seed=seed + 1),
        cost_per_success=(mean_c / mean_q) if mean_q and mean_q > 0 else math.inf,
        latency_p50_ms=float(p50),
        latency_p95_ms=float(p95),
        latency_p99_ms=float(p99),
        escalation_rate=rate(escalated),
        refusal_rate=rate(ref),
        error_rate=rate(errored),
        strong_share=rate(strong),
        answered_by=shares,
    )
