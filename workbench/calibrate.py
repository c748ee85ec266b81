"""Calibrate a cascade to a target share: "send at most P% of requests to the strong model".

As RouteLLM calibrates its threshold: the cheap tier's confidence threshold is the quantile of
its confidences on the recorded items such that at most P% fall below it. Items the cheap tier
cannot keep for other reasons (errors, a failed verifier, governance, middle tiers) also reach
the strong tier, so the threshold is then checked by replaying the policy with the kernel
(`workbench.replay`): among the recorded confidences, the highest threshold whose replayed
strong share stays within P is chosen (the share only grows with the threshold, so a binary
search over the distinct confidences finds it). The result carries the quality, cost and the
share actually reached, with intervals, and the threshold the plain quantile would have given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.metrics import N_BOOT, Metrics
from workbench.policy import Policy

PARAM = "tiers.0.accept_above"


@dataclass(frozen=True)
class Calibration:
    """A policy whose cheap tier accepts at `threshold`, so that `n_strong` of `n` items
    (`strong_share`) reach the strong tier, at most `target_share`. `quantile_threshold`: the
    plain quantile of the cheap tier's confidence (before checking by replay);
    `confidence_source`: 'recorded' or 'router' (the learned router's predicted success)."""

    policy: Policy
    workload: str
    target_share: float
    threshold: float
    quantile_threshold: float
    n: int
    n_strong: int
    limit: int
    metrics: Metrics
    cheap: str
    strong: str
    confidence_source: str
    n_without_confidence: int
    message: str

    @property
    def strong_share(self) -> float:
        """Share of items that reach the strong tier under the calibrated policy."""
        return self.n_strong / self.n

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (metrics as `workbench evaluate --json` prints them)."""
        return {
            "workload": self.workload, "policy": self.policy.name,
            "target_share": self.target_share, "threshold": self.threshold,
            "quantile_threshold": self.quantile_threshold, "n": self.n,
            "n_strong": self.n_strong, "strong_share": self.strong_share, "limit": self.limit,
            "cheap": self.cheap, "strong": self.strong,
            "confidence_source": self.confidence_source,
            "n_without_confidence": self.n_without_confidence, "message": self.message,
            "metrics": self.metrics.as_dict(),
        }


def check_share(share: Any) -> float:
    """The target share as a float in [0, 1], or a clear error."""
    try:
        value = float(share)
    except (TypeError, ValueError):
        raise WorkbenchError(f"the strong share must be a number between 0 and 1 (0.2 = 20%), "
                             f"got {share!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise WorkbenchError(f"the strong share must be a number between 0 and 1 (0.2 = "
                             f"20%), got {share!r}")
    return value


def _confidences(policy: Policy, wl: Any, workload: str) -> tuple[np.ndarray, str, int]:
    """(the cheap tier's confidence per item as the kernel gates on it, its source, items
    without one); a clear error when the cheap tier has none to calibrate on."""
    from workbench.pipeline import kernel
    from workbench.replay.workload import check_outcomes, predictions

    tier = policy.tiers[0]
    if tier.confidence == "verifier":
        raise WorkbenchError(f"the cheap tier {tier.model!r} gates on its verifier (pass or "
                             "fail), not on a confidence, so no threshold can set a share; use "
                             "confidence 'recorded' or 'auto'")
    check_outcomes(policy, wl)
    recorded = wl.col_of("confidence", tier.model)
    has_recorded = bool(np.isfinite(recorded).any())
    router = policy.router is not None and tier.confidence in ("router", "auto")
    needs_recorded = tier.confidence == "recorded" or (tier.confidence == "auto" and not router)
    if needs_recorded and not has_recorded:
        raise WorkbenchError(
            f"workload {workload!r} has no recorded confidence for the cheap tier "
            f"{tier.model!r}, so there is nothing to calibrate on; local models record "
            "one, imported outcomes need a confidence column, or give the policy a learned "
            "router (`router:` section) and the tier confidence 'router'")
    if tier.confidence == "router" and policy.router is None:
        raise WorkbenchError("the cheap tier's confidence is 'router' but the policy has no "
                             "`router:` section")
    preds = predictions(policy, wl) if policy.uses_router() else None
    conf, _ = kernel.tier_confidence(policy, wl, 0, preds)
    source = "recorded" if tier.confidence == "recorded" or (
        has_recorded and tier.confidence == "auto") else "router"
    if tier.confidence == "auto" and has_recorded and router and not np.isfinite(recorded).all():
        source = "recorded, else router"
    missing = int(np.count_nonzero(~np.isfinite(recorded))) if source == "recorded" else 0
    return np.asarray(conf, dtype=np.float64), source, missing


def quantile_threshold(confidence: np.ndarray, share: float) -> float:
    """The threshold t (accept at confidence >= t) with at most `share` of the items below it:
    the k-th smallest confidence, k = floor(share x n); items without a confidence count as
    below every threshold. 1.0 when every item may go to the strong tier."""
    c = np.where(np.isfinite(confidence), confidence, -np.inf)
    n = c.size
    k = int(math.floor(share * n + 1e-9))
    if k >= n:
        return 1.0
    return float(min(max(np.partition(c, k)[k], 0.0), 1.0))


def calibrate(policy: Policy, items: pl.DataFrame, outcomes: pl.DataFrame, share: float, *,
              workload: str = "workload", seed: int = 0, n_boot: int = N_BOOT) -> Calibration:
    """`policy` with the cheap tier's threshold set so that at most `share` of the recorded
    items reach the strong (last) tier, replayed for its quality, cost and actual share."""
    from workbench.replay import prepare, replay

    share = check_share(share)
    if len(policy.tiers) < 2:
        raise WorkbenchError("calibrating a strong share needs a cascade of at least two tiers "
                             f"(cheap first); policy {policy.name!r} has {len(policy.tiers)}")
    if items.height == 0:
        raise WorkbenchError(f"workload {workload!r} has no items with recorded outcomes")
    wl = prepare(items, outcomes)
    conf, source, missing = _confidences(policy, wl, workload)
    n = wl.n
    limit = int(math.floor(share * n + 1e-9))
    q_thr = quantile_threshold(conf, share)

    def strong_count(threshold: float) -> int:
        m = replay(policy.with_value(PARAM, threshold), items, outcomes, seed=seed,
                   n_boot=1).metrics
        return int(round(m.strong_share * n))

    finite = conf[np.isfinite(conf)]
    candidates = np.unique(np.clip(np.concatenate([finite, [0.0, 1.0, q_thr]]), 0.0, 1.0))
    # the strong count never falls as the threshold rises: find the highest candidate within
    # the limit, starting from the quantile (usually right, or a few values off)
    hi_idx = int(np.searchsorted(candidates, q_thr))
    q_count = strong_count(float(candidates[hi_idx]))
    if q_count <= limit:
        lo, hi = hi_idx, candidates.size  # answer in [lo, hi)
    else:
        lo, hi = -1, hi_idx
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if strong_count(float(candidates[mid])) <= limit:
            lo = mid
        else:
            hi = mid
    strong, cheap = policy.tiers[-1].model, policy.tiers[0].model
    if lo < 0:
        floor_n = strong_count(0.0)
        raise WorkbenchError(
            f"cannot send at most {share:.1%} ({limit} of {n} items) to {strong}: even when "
            f"{cheap} keeps every answer it can, {floor_n} items ({floor_n / n:.1%}) reach "
            f"{strong} (errors, failed verifier checks, governance or middle tiers); nothing "
            "was written")
    threshold = float(candidates[lo])
    calibrated = policy.with_value(PARAM, threshold)
    result = replay(calibrated, items, outcomes, seed=seed, n_boot=n_boot)
    m = result.metrics
    n_strong = int(round(m.strong_share * n))
    q_lo, q_hi = m.quality_ci
    message = (
        f"at confidence >= {threshold:.4g} {cheap} keeps its answer: {n_strong} of {n} items "
        f"({n_strong / n:.1%}) go to {strong}, target at most {share:.1%} ({limit} items); "
        f"quality {m.quality:.3f} (95% CI {q_lo:.3f}-{q_hi:.3f}, n={m.n_scored}), "
        f"${m.cost_per_request:.6f} per request")
    if not math.isclose(threshold, q_thr):
        message += (f" (the plain {share:.0%} quantile of {cheap}'s confidence, {q_thr:.4g}, "
                    f"sends {q_count} items: errors, failed checks, governance or middle tiers "
                    "also decide who escalates)")
    if missing:
        fate = ("always escalate" if policy.tiers[0].confidence == "recorded"
                else "its verifier's pass or fail stands in")
        message += f"; {missing} items have no recorded confidence ({fate})"
    return Calibration(
        policy=calibrated, workload=workload, target_share=share, threshold=threshold,
        quantile_threshold=q_thr, n=n, n_strong=n_strong, limit=limit, metrics=m, cheap=cheap,
        strong=strong, confidence_source=source, n_without_confidence=missing, message=message)


def calibrate_workload(store: Any, workload: str, policy: Policy, share: float, *,
                       seed: int = 0, n_boot: int = N_BOOT) -> Calibration:
    """`calibrate` over a stored workload's recorded items and outcomes."""
    share = check_share(share)
    return calibrate(policy, store.recorded_items(workload), store.outcomes(workload), share,
                     workload=workload, seed=seed, n_boot=n_boot)


__all__ = ["PARAM", "Calibration", "calibrate", "calibrate_workload", "check_share",
           "quantile_threshold"]
