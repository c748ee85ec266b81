"""The specification run item by item over recorded outcomes: the oracle that replay's kernel is
tested against and the baseline the replay benchmark times (a Python loop, no vectorization).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import polars as pl

from workbench.pipeline import spec
from workbench.pipeline.facts import TextFacts
from workbench.policy import Policy


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def decide_recorded(
    policy: Policy,
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    predictions: Mapping[str, Mapping[str, float]] | None = None,
    mean_cost: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Per-item decisions of `policy` over recorded `outcomes` by the specification: item_id,
    models_tried (list), answered_by, refusal_reason, governance_block, quality (None =
    unscored), cost_usd, latency_ms (None when unrecorded). `predictions` (item id -> model ->
    predicted success) and `mean_cost` stand in for a learned router."""
    rec: dict[tuple[str, str], dict[str, Any]] = {
        (str(r["item_id"]), r["model"]): r for r in outcomes.iter_rows(named=True)
    }
    tier_of = {t.model: t for t in policy.tiers}
    facts: list[TextFacts] = []
    calls: list[spec.Call] = []
    costs: list[spec.CostOf] = []
    made: dict[tuple[str, str], spec.Attempt] = {}
    labels_of: dict[str, Any] = {}

    def attempt(iid: str, model: str) -> spec.Attempt:
        key = (iid, model)
        if key not in made:
            r = rec[key]  # KeyError: the policy called a model without a recorded outcome
            tier = tier_of.get(model)
            made[key] = spec.Attempt(
                error=r.get("error") is not None,
                verifier_pass=True if tier is None else spec.verify(
                    tier, r.get("output"), labels_of[iid]),
                confidence=_num(r.get("confidence")),
                cost=r.get("cost_usd") or 0.0,
                quality=_num(r.get("quality")),
                latency_ms=_num(r.get("latency_ms")),
                output=r.get("output"),
            )
        return made[key]

    ids: list[str] = []
    for item in items.iter_rows(named=True):
        iid = str(item["item_id"])
        ids.append(iid)
        labels_of[iid] = item.get("labels")
        facts.append(TextFacts(
            policy, item.get("input") or "", item.get("data_class"), item.get("difficulty"),
            item.get("tags"), None if predictions is None else predictions[iid], mean_cost))
        calls.append(lambda m, iid=iid: attempt(iid, m))
        costs.append(lambda m, iid=iid: rec[(iid, m)].get("cost_usd") or 0.0)
    decisions = spec.decide_all(policy, facts, calls, costs)
    out: list[dict[str, Any]] = []
    for iid, d in zip(ids, decisions, strict=True):
        calls_made = []
        for t, paired in zip(d.tried, d.paired, strict=True):
            calls_made.append(attempt(iid, policy.tiers[t].model))
            if paired:
                calls_made.append(attempt(iid, str(policy.tiers[t].agree_with)))
        if d.fallback:
            assert policy.fallback is not None
            calls_made.append(attempt(iid, policy.fallback))
        o = spec.account(policy, d, calls_made)
        out.append({
            "item_id": iid,
            "models_tried": list(o.models_tried),
            "answered_by": o.answered_by,
            "refusal_reason": d.refusal,
            "governance_block": ",".join(
                policy.governance.rules[r].data_class for r in d.classes) or None,
            "quality": o.quality,
            "cost_usd": o.cost,
            "latency_ms": o.latency_ms,
        })
    return out


__all__ = ["decide_recorded"]
