"""Replay a routing policy over recorded outcomes: no model calls, no loop over items.

The rules are `workbench.pipeline.spec`'s; replay hands the workload's facts as columns
(`workload.Workload`) to `workbench.pipeline.kernel`, aggregates the per-item accounts into
metrics with bootstrap CIs, and builds the decision trace and baselines on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.metrics import N_BOOT, Metrics, aggregate
from workbench.pipeline import kernel
from workbench.pipeline.spec import REFUSAL_REASONS
from workbench.policy import Policy, single
from workbench.replay.baselines import baselines
from workbench.replay.workload import (
    _SLOTS,
    MissingOutcomesError,
    Workload,
    check_outcomes,
    clear_cache,
    predictions,
    prepare,
)

TRACE_COLUMNS = (
    "item_id", "models_tried", "answered_by", "refused", "refusal_reason", "governance_block",
    "quality", "cost_usd", "latency_ms", "escalated", "error", "reached_strong", "strong_capped",
)


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of replaying a policy: metrics now; decision trace and baselines on first use."""

    policy: Policy
    metrics: Metrics
    _workload: Workload = field(repr=False, compare=False)
    _decisions: kernel.Decisions = field(repr=False, compare=False)
    _accounts: kernel.Accounts = field(repr=False, compare=False)
    _context: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @functools.cached_property
    def trace(self) -> pl.DataFrame:
        """Per-item decisions: TRACE_COLUMNS (models_tried as 'a>b+partner>fallback:c')."""
        return _build_trace(self.policy, self._workload, self._decisions, self._accounts)

    @functools.cached_property
    def baselines(self) -> dict[str, Metrics]:
        """Each single model ('single:<model>'), 'random' at the same strong share, 'oracle'."""
        return baselines(
            self._workload,
            strong_share=self.metrics.strong_share,
            cheap=self.policy.tier_models[0],
            strong=self.policy.tier_models[-1],
            seed=self._context.get("seed", 0),
            n_boot=self._context.get("n_boot", N_BOOT),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready metrics dict (the `workbench evaluate --json` keys)."""
        return self.metrics.as_dict()


def decide(policy: Policy, wl: Workload, router: Any = None) -> kernel.Decisions:
    """Check the outcomes the policy needs, then decide every item with the kernel."""
    check_outcomes(policy, wl)
    preds = predictions(policy, wl, router) if policy.uses_router() else None
    return kernel.decide(policy, wl, preds)


def replay(
    policy: Policy,
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    *,
    router: Any = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> ReplayResult:
    """Evaluate `policy` over recorded `outcomes` of `items` (rules: workbench.pipeline.spec).

    `router`: a fitted `LearnedRouter` or a predictions frame (item_id + one column per model)
    for policies with a learned router; when None, out-of-fold predictions are cross-fitted on
    these items so no item is scored by a router trained on it. The decision trace is built
    on first access of `.trace`; metrics are computed from arrays straight away.
    """
    wl = prepare(items, outcomes)
    d = decide(policy, wl, router)
    a = kernel.account(policy, wl, d)
    metrics = aggregate(
        a.quality, a.cost, a.latency, refused=a.refused, escalated=a.escalated,
        errored=a.failed, strong=a.strong, answered_codes=a.answered,
        answered_names=tuple(policy.used_models), n_boot=n_boot, seed=seed,
    )
    return ReplayResult(policy=policy, metrics=metrics, _workload=wl, _decisions=d,
                        _accounts=a, _context={"seed": seed, "n_boot": n_boot})


# -- the trace --------------------------------------------------------------------------------
def _enum_column(name: str, codes: np.ndarray, labels: Sequence[str]) -> pl.Series:
    """Categorical column from integer codes into `labels` (-1 -> null), via one gather."""
    uniq = list(dict.fromkeys(labels))
    lookup = np.array([uniq.index(lab) for lab in labels], dtype=np.int64)
    idx = pl.Series(name, np.where(codes >= 0, lookup[np.maximum(codes, 0)], 0), pl.UInt32)
    series = pl.Series(name, uniq, dtype=pl.Enum(uniq)).gather(idx)
    if (codes < 0).any():
        series = series.scatter(np.flatnonzero(codes < 0), None)
    return series.alias(name)


def _bits_codes(bits: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(present codes, dense index per item) for small non-negative integer codes, O(n)."""
    counts = np.bincount(bits, minlength=1 << width)
    present = np.flatnonzero(counts)
    dense = np.zeros(counts.size, dtype=np.int64)
    dense[present] = np.arange(present.size)
    return present, dense[bits]


def _build_trace(policy: Policy, wl: Workload, d: kernel.Decisions,
                 a: kernel.Accounts) -> pl.DataFrame:
    """The per-item decision trace (small code tables, one gather each)."""
    used = policy.used_models
    k = len(d.attempted)
    partners = [t for t, tier in enumerate(policy.tiers) if tier.agree_with is not None]
    bits = np.zeros(wl.n, dtype=np.int64)
    for t in range(k):
        bits |= d.attempted[t].astype(np.int64) << t
    bits |= d.use_fb.astype(np.int64) << k
    for j, t in enumerate(partners):
        if d.paired:
            bits |= d.paired[t].astype(np.int64) << (k + 1 + j)
    present, inv = _bits_codes(bits, k + 1 + len(partners))

    def tier_name(b: int, t: int) -> str:
        j = partners.index(t) if t in partners else -1
        paired = j >= 0 and b >> (k + 1 + j) & 1
        return f"{used[t]}+{policy.tiers[t].agree_with}" if paired else used[t]

    names = [
        ">".join([tier_name(b, t) for t in range(k) if b >> t & 1]
                 + ([f"fallback:{policy.fallback}"] if b >> k & 1 else []))
        for b in present.tolist()
    ]
    tried = _enum_column("models_tried", np.where(a.refused, -1, inv), names)
    rules = policy.governance.rules
    cls_present, cls_inv = _bits_codes(d.class_bits, max(len(rules), 1))
    cls_names = [",".join(r.data_class for i, r in enumerate(rules) if b >> i & 1) or "-"
                 for b in cls_present.tolist()]
    cls_codes = np.where(d.class_bits == 0, -1, cls_inv)
    latency = a.latency if a.latency is not None else np.full(wl.n, np.nan)
    return pl.DataFrame([
        wl.item_ids.alias("item_id"),
        tried,
        _enum_column("answered_by", a.answered, list(used)),
        pl.Series("refused", a.refused),
        _enum_column("refusal_reason", d.reason.astype(np.int64) - 1, REFUSAL_REASONS),
        _enum_column("governance_block", cls_codes, cls_names),
        pl.Series("quality", a.quality, nan_to_null=True),
        pl.Series("cost_usd", a.cost),
        pl.Series("latency_ms", latency, nan_to_null=True),
        pl.Series("escalated", a.escalated),
        pl.Series("error", a.failed),
        pl.Series("reached_strong", a.strong),
        pl.Series("strong_capped", d.strong_closed),
    ])


# -- conveniences ------------------------------------------------------------------------
def evaluate_single(
    model: str, items: pl.DataFrame, outcomes: pl.DataFrame, *, seed: int = 0
) -> ReplayResult:
    """Replay the one-model policy `model` (every item answered by it)."""
    return replay(single(model), items, outcomes, seed=seed)


def evaluate_workload(
    store: Any, workload: str, policy: Policy, *, router: Any = None, seed: int = 0,
    silver: str | None = None, label_set: int | str | None = None,
) -> ReplayResult:
    """Replay `policy` over a stored workload's recorded items (those with any outcome); with
    `silver` (a reference model) and/or `label_set` (a reviewed version or 'latest'), quality
    comes from `workbench.label_quality.quality_outcomes` instead of the stored column."""
    outcomes = store.outcomes(workload)
    if silver is not None or label_set is not None:
        from workbench.label_quality import quality_outcomes

        outcomes = quality_outcomes(store, workload, silver=silver, label_set=label_set).outcomes
    return replay(policy, store.recorded_items(workload), outcomes, router=router, seed=seed)


def sweep(
    policy: Policy,
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    param: str,
    values: Sequence[float],
    *,
    router: Any = None,
    seed: int = 0,
    n_boot: int = 200,
) -> pl.DataFrame:
    """Quality and cost of `policy` with `param` (dotted path, e.g. 'tiers.0.accept_above')
    set to each value; detections and matrices are computed once."""
    rows = []
    for value in values:
        m = replay(policy.with_value(param, value), items, outcomes, router=router, seed=seed,
                   n_boot=n_boot).metrics
        rows.append({
            "value": float(value), "quality": m.quality, "quality_lo": m.quality_ci[0],
            "quality_hi": m.quality_ci[1], "cost_per_request": m.cost_per_request,
            "escalation_rate": m.escalation_rate, "refusal_rate": m.refusal_rate,
            "strong_share": m.strong_share,
        })
    return pl.DataFrame(rows)


def split_items(
    items: pl.DataFrame,
    holdout: float = 0.3,
    seed: int = 0,
    stratify: Sequence[str] = ("difficulty",),
) -> tuple[list[str], list[str]]:
    """Seeded stratified split of item ids into (train, holdout): within each stratum (the
    given columns that exist; tags JSON counts as text), round(holdout x size) go to holdout."""
    if not 0.0 < holdout < 1.0:
        raise WorkbenchError(f"holdout share must be strictly between 0 and 1, got {holdout}")
    unknown = [c for c in stratify if c not in items.columns]
    if unknown:
        raise WorkbenchError(
            f"cannot stratify by unknown column(s) {', '.join(unknown)}; "
            f"columns: {', '.join(items.columns)}"
        )
    n = items.height
    rng = np.random.default_rng(seed)
    frame = items.select(
        pl.col("item_id").cast(pl.String),
        *[pl.col(c).cast(pl.String).fill_null("") for c in stratify],
    ).with_columns(pl.Series("_r", rng.random(n)))
    keys = list(stratify) or [pl.lit(0).alias("_all")]
    frame = frame.with_columns(
        (pl.col("_r").rank("ordinal").over(keys) - 1).alias("_rank"),
        pl.len().over(keys).alias("_size"),
    )
    frame = frame.with_columns(
        (pl.col("_rank") < (pl.col("_size").cast(pl.Float64) * holdout).round(0)).alias("_hold")
    ).sort("_r")
    hold = frame.filter(pl.col("_hold"))["item_id"].to_list()
    train = frame.filter(~pl.col("_hold"))["item_id"].to_list()
    return train, hold


def to_json(result: ReplayResult, with_baselines: bool = True) -> dict[str, Any]:
    """JSON-ready dict of a replay: metrics keys at top level, baselines under 'baselines'."""
    out = result.metrics.as_dict()
    if with_baselines:
        out["baselines"] = {k: v.as_dict() for k, v in result.baselines.items()}
    return out


__all__ = [
    "REFUSAL_REASONS", "TRACE_COLUMNS", "_SLOTS", "MissingOutcomesError", "ReplayResult",
    "Workload", "baselines", "clear_cache", "evaluate_single", "evaluate_workload", "prepare",
    "decide", "replay", "split_items", "sweep", "to_json",
]
