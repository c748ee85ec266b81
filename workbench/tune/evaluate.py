"""Per-trial evaluation: the policy kernel's decisions summed into the few metrics a trial needs, and the learned router's train-only predictions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from workbench import replay as rp
from workbench.pipeline import kernel
from workbench.policy import (
    Policy,
)


@dataclass(frozen=True)
class FastMetrics:
    """What a trial needs: means over the train items (no CIs, no trace)."""

    quality: float
    cost_per_request: float
    latency_p95_ms: float
    strong_share: float
    escalation_rate: float
    refusal_rate: float

    def as_json(self) -> dict[str, float | None]:
        """JSON-ready dict (NaN -> None)."""
        return {k: (v if math.isfinite(v) else None) for k, v in self.__dict__.items()}


class FastEvaluator:
    """Evaluates many variants of a policy over one (items, outcomes) pair with the policy
    kernel; the workload's facts and threshold-independent arrays are memoised across
    calls, so a trial costs a few vectorized passes per tier."""

    def __init__(self, items: pl.DataFrame, outcomes: pl.DataFrame,
                 router: Any = None) -> None:
        """`router`: None (cross-fit on these items when a policy needs it), a predictions
        frame, or a fitted LearnedRouter, exactly as `replay` takes it."""
        self.wl = rp.prepare(items, outcomes)
        self.router = router

    def evaluate(self, policy: Policy, *, latency: bool = True) -> FastMetrics:
        """Quality, cost, p95 latency... of `policy`: the same numbers as `replay`, without
        confidence intervals or a trace."""
        d = rp.decide(policy, self.wl, self.router)
        n = self.wl.n
        if not latency:  # sums by reductions, no per-item arrays
            tot = kernel.totals(policy, self.wl, d)
            return FastMetrics(
                quality=tot.quality, cost_per_request=tot.cost_sum / n,
                latency_p95_ms=math.nan, strong_share=tot.n_strong / n,
                escalation_rate=tot.n_escalated / n, refusal_rate=tot.n_refused / n,
            )
        a = kernel.account(policy, self.wl, d)  # p95 needs per-item latencies
        assert a.latency is not None
        served = a.latency[~a.refused]
        served = served[~np.isnan(served)]
        scored = ~np.isnan(a.quality)
        n_scored = int(np.count_nonzero(scored))
        return FastMetrics(
            quality=float(a.quality[scored].sum()) / n_scored if n_scored else math.nan,
            cost_per_request=float(a.cost.sum()) / n,
            latency_p95_ms=float(np.percentile(served, 95)) if served.size else math.nan,
            strong_share=float(np.count_nonzero(a.strong)) / n,
            escalation_rate=float(np.count_nonzero(a.escalated)) / n,
            refusal_rate=float(np.count_nonzero(a.refused)) / n,
        )


def _router_models(policy: Policy, candidates: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*policy.tier_models, *candidates]))


def _train_predictions(items: pl.DataFrame, outcomes: pl.DataFrame, models: Sequence[str],
                       spec: Any) -> pl.DataFrame:
    """Out-of-fold predicted success of every model for the train items (never in-sample)."""
    from workbench.learned import cross_fit_predict

    return cross_fit_predict(items, outcomes, list(models), spec)


def _fit_router(items: pl.DataFrame, outcomes: pl.DataFrame, models: Sequence[str],
                spec: Any) -> Any:
    """A LearnedRouter fitted on train items only (used to score the holdout)."""
    from workbench.learned import LearnedRouter

    return LearnedRouter.fit(items, outcomes, list(models), spec)
