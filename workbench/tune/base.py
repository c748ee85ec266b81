"""A sensible base policy for a workload: the quality/cost frontier models as cascade tiers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.policy import (
    Policy,
)
from workbench.tune.space import cost_weight_range


def frontier(outcomes: pl.DataFrame) -> list[tuple[str, float, float]]:
    """Models not dominated in (quality up, cost down), cheapest first: (name, q, cost)."""
    from workbench.compose import summarize

    rows = sorted(((s.name, s.quality, s.cost_per_request) for s in summarize(outcomes)),
                  key=lambda r: (r[2], -r[1], r[0]))
    out: list[tuple[str, float, float]] = []
    for name, q, c in rows:
        if not out or q > out[-1][1]:
            out.append((name, q, c))
    return out


def upper_hull(front: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Frontier models on the upper convex hull of (cost, quality): a model below the line
    joining its neighbours is beaten by routing between them, so it makes a poor tier."""
    hull: list[tuple[str, float, float]] = []
    for point in front:
        while len(hull) >= 2:
            (_, q1, c1), (_, q2, c2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or below the chord to the new point
            if (q2 - q1) * (point[2] - c1) <= (point[1] - q1) * (c2 - c1):
                hull.pop()
            else:
                break
        hull.append(point)
    return hull


def answering_models(outcomes: pl.DataFrame, share: float = 0.5) -> list[str]:
    """Models whose recorded answers (outputs) cover at least `share` of their outcomes: the
    ones an agreement gate can compare, sorted by name."""
    if "output" not in outcomes.columns or outcomes.height == 0:
        return []
    cov = outcomes.group_by("model").agg(pl.col("output").is_not_null().mean().alias("c"))
    return sorted(r[0] for r in cov.iter_rows() if (r[1] or 0.0) >= share)


def default_base_policy(store: Any, workload: str, *, max_tiers: int = 4,
                        home: Any = None, agreement: bool = True) -> Policy:
    """A sensible starting policy: the quality/cost frontier models as tiers, cheapest first;
    a plain cascade on recorded confidence when outcomes have it. Without recorded confidence,
    when two or more models' answers are recorded (e.g. RouterBench) and `agreement` is on, an
    agreement cascade: a cheaper frontier model answers when a partner model agrees, else the
    strongest answers (the tuner searches which models and partner). Otherwise the learned
    router picks the entry tier and its predicted success is the tiers' confidence."""
    from workbench.compose import model_specs

    outcomes = store.outcomes(workload)
    if outcomes.height == 0:
        raise WorkbenchError(f"workload {workload!r} has no recorded outcomes to tune on")
    front = upper_hull(frontier(outcomes))
    conf_all = (outcomes["confidence"].is_not_null().mean()
                if "confidence" in outcomes.columns else 0.0)
    answering = answering_models(outcomes) if agreement else []
    if (conf_all or 0.0) < 0.5 and len(answering) >= 2 and len(front) >= 2:
        return _agreement_base(store, workload, outcomes, front, answering, home)
    if len(front) > max_tiers:  # keep the cheapest, the best and evenly spaced ones between
        idx = np.unique(np.round(np.linspace(0, len(front) - 1, max_tiers)).astype(int))
        front = [front[i] for i in idx]
    names = [f[0] for f in front]
    specs = model_specs(store, workload, _known_models(home))
    conf_share = (outcomes.filter(pl.col("model").is_in(names))["confidence"]
                  .is_not_null().mean()) if "confidence" in outcomes.columns else 0.0
    data: dict[str, Any] = {
        "name": f"tuned-{workload}",
        "description": f"cascade over the quality/cost frontier of {workload}",
        "models": {m: specs[m].model_dump(mode="json") for m in names},
        "tiers": [{"model": m, "accept_above": 0.5 if i < len(names) - 1 else 0.0}
                  for i, m in enumerate(names)],
    }
    if (conf_share or 0.0) < 0.5 and len(names) > 1:
        costs = [f[2] for f in front]
        low, high = cost_weight_range(costs)
        data["preroute"] = {"kind": "learned", "cost_weight": math.sqrt(low * high)}
        data["router"] = {"method": "logistic"}
        data["description"] = (f"learned router over the quality/cost frontier of {workload}; "
                               "its predicted success is each tier's confidence")
    return Policy.validate_data(data, source=f"default policy for {workload}")


def _known_models(home: Any) -> list[Any]:
    try:
        from workbench.catalog import Catalog

        return Catalog(home).list_models()
    except Exception:  # no catalog yet: bare specs named after the models
        return []


def _agreement_base(store: Any, workload: str, outcomes: pl.DataFrame,
                    front: list[tuple[str, float, float]], answering: list[str],
                    home: Any) -> Policy:
    """[cheaper frontier model, accepted when a partner agrees] -> the strongest model; the
    partner is the next cheaper answering frontier model (or any other answering model)."""
    from workbench.agreement import infer_kind
    from workbench.compose import model_specs

    strong = front[-1][0]
    cheap = next((f[0] for f in reversed(front[:-1]) if f[0] in answering), answering[0])
    if cheap == strong:
        cheap = next(m for m in answering if m != strong)
    partner = next((f[0] for f in reversed(front) if f[0] in answering
                    and f[0] not in (cheap, strong)),
                   next((m for m in answering if m not in (cheap, strong)), None))
    kind = infer_kind(outcomes.filter(pl.col("model").is_in(answering))["output"],
                      store.workload(workload).task_type)
    names = [m for m in (cheap, partner, strong) if m is not None]
    specs = model_specs(store, workload, _known_models(home))
    tier0: dict[str, Any] = {"model": cheap, "accept_above": 0.0}
    if partner is not None:
        tier0 |= {"agree_with": partner, "agree_on": kind}
    data: dict[str, Any] = {
        "name": f"tuned-{workload}",
        "description": (f"agreement cascade on {workload}: a cheaper model answers when its "
                        f"partner's answer agrees ({kind}), else the strongest model"),
        "models": {m: specs[m].model_dump(mode="json") for m in names},
        "tiers": [tier0, {"model": strong}],
    }
    return Policy.validate_data(data, source=f"default policy for {workload}")
