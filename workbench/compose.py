"""Build policies from a few choices (the Route page's widgets, the first-run journey):
model specs from recorded outcomes plus the catalog, sensible default tiers, and a cascade."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from workbench.errors import PolicyError
from workbench.models import ModelSpec
from workbench.policy import BUILTIN_DETECTORS, Policy
from workbench.store import Store

PII_CLASS = "pii"


@dataclass(frozen=True)
class ModelSummary:
    """Recorded quality and cost of one model on a workload, to order tiers."""

    name: str
    quality: float
    cost_per_request: float
    n: int


def summarize(outcomes: pl.DataFrame) -> list[ModelSummary]:
    """Mean quality (errors and gaps as 0) and mean cost per model, cheapest first."""
    if outcomes.height == 0:
        return []
    agg = (
        outcomes.group_by("model")
        .agg(pl.col("quality").fill_null(0).mean().alias("q"),
             pl.col("cost_usd").fill_null(0).mean().alias("c"), pl.len().alias("n"))
        .sort(["c", "model"])
    )
    return [ModelSummary(r["model"], float(r["q"]), float(r["c"]), int(r["n"]))
            for r in agg.iter_rows(named=True)]


def model_specs(store: Store, workload: str,
                catalog: Sequence[ModelSpec] = ()) -> dict[str, ModelSpec]:
    """A ModelSpec for every model with outcomes on the workload: the catalog's when it knows
    the name (as recorded: endpoint, prompts, prices), else a bare LiteLLM spec of that name."""
    known = {m.name: m for m in catalog}
    return {name: known.get(name) or ModelSpec(name=name, model=name)
            for name in store.models_of(workload)}


def default_tiers(summaries: Sequence[ModelSummary]) -> list[str]:
    """Cheapest model first, then the best-quality model (when it is another one)."""
    if not summaries:
        return []
    cheap = summaries[0].name
    best = max(summaries, key=lambda s: (s.quality, -s.cost_per_request)).name
    return [cheap] if best == cheap else [cheap, best]


def pii_rule(allowed_tags: Sequence[str] = ("local",),
             allowed_models: Sequence[str] = ()) -> dict:
    """Governance rule: anything detected as PII (built-in detectors or the item's data_class)
    only reaches models carrying one of `allowed_tags` or named in `allowed_models`."""
    return {"data_class": PII_CLASS, "detectors": list(BUILTIN_DETECTORS),
            "item_tags": [PII_CLASS], "allowed_tags": list(allowed_tags),
            "allowed_models": list(allowed_models)}


def compose(
    models: dict[str, ModelSpec],
    tiers: Sequence[str],
    accept_above: Sequence[float],
    *,
    name: str = "policy",
    pii_allowed_tags: Sequence[str] | None = None,
    pii_allowed_models: Sequence[str] = (),
    verifier: str = "none",
    fallback: str | None = None,
    max_strong_share: float | None = None,
    max_cost_per_request: float | None = None,
    max_input_tokens: int | None = None,
    deny_patterns: Sequence[str] = (),
    learned_cost_weight: float | None = None,
) -> Policy:
    """A validated cascade policy from widget values. `accept_above` has one value per tier
    (the last tier's is ignored: it always answers). `learned_cost_weight` adds the learned
    multi-model router as pre-routing."""
    if not tiers:
        raise PolicyError("choose at least one tier model")
    if len(accept_above) < len(tiers) - 1:
        raise PolicyError("give an accept_above threshold for every tier but the last")
    tier_rows = []
    for i, model in enumerate(tiers):
        last = i == len(tiers) - 1
        tier_rows.append({"model": model,
                          "accept_above": 0.0 if last else float(accept_above[i]),
                          "verifier": verifier})
    data: dict = {
        "name": name,
        "models": {m: s.model_dump(mode="json") for m, s in models.items()
                   if m in set(tiers) | {fallback}},
        "tiers": tier_rows,
        "fallback": fallback,
        "budgets": {"max_strong_share": max_strong_share,
                    "max_cost_per_request": max_cost_per_request},
        "refusal": {"deny_patterns": list(deny_patterns), "max_input_tokens": max_input_tokens},
    }
    if pii_allowed_tags is not None:
        data["governance"] = {"rules": [pii_rule(pii_allowed_tags, pii_allowed_models)]}
    if learned_cost_weight is not None:
        data["preroute"] = {"kind": "learned", "cost_weight": float(learned_cost_weight)}
        data["router"] = {"method": "logistic"}
    return Policy.validate_data(data, source=f"policy {name!r}")
