"""The search space: which policy fields a study tunes, their ranges, and applying sampled values to a policy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from workbench.errors import PolicyError, WorkbenchError
from workbench.models import ModelSpec
from workbench.policy import (
    LearnedPreroute,
    Policy,
    RulesPreroute,
)


@dataclass(frozen=True)
class Param:
    """One searched policy field: dotted path, kind and range (or choices)."""

    path: str
    kind: Literal["float", "log", "categorical"]
    low: float = 0.0
    high: float = 1.0
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter on an Optuna trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.path, list(self.choices))
        return trial.suggest_float(self.path, self.low, self.high, log=self.kind == "log")


def _mean_costs(outcomes: pl.DataFrame) -> dict[str, float]:
    agg = outcomes.group_by("model").agg(pl.col("cost_usd").fill_null(0.0).mean())
    return {r[0]: float(r[1]) for r in agg.iter_rows()}


def cost_weight_range(costs: Sequence[float]) -> tuple[float, float]:
    """Log range of the learned router's cost_weight (quality points per $) where it matters:
    from a penalty of 0.01 on the dearest model to one of 10 on the cheapest."""
    pos = [c for c in costs if c > 0]
    if not pos:
        return (1e-3, 1e3)
    low, high = 0.01 / max(pos), 10.0 / min(pos)
    return (low, max(high, low * 10))


def search_space(
    policy: Policy,
    *,
    candidates: Sequence[str] | None = None,
    fixed: Mapping[str, Any] | None = None,
    mean_cost: Mapping[str, float] | None = None,
    router_methods: Sequence[str] | None = None,
    partners: Sequence[str] | None = None,
) -> tuple[Param, ...]:
    """The parameters a study searches for `policy`: every non-final tier's `accept_above`,
    the rule pre-route's `preroute_below` or the learned router's `cost_weight`, each tier's
    model among `candidates` (when given), the agreement partner (none or one of `partners`)
    of every non-final tier that has an agreement gate, and the router `method` (when several
    are given); any path in `fixed` is left out."""
    fixed = dict(fixed or {})
    params: list[Param] = []
    k = len(policy.tiers)
    cands = tuple(dict.fromkeys(candidates or ()))
    if cands and len(cands) < k:
        raise WorkbenchError(
            f"{len(cands)} candidate model(s) cannot fill {k} distinct tiers; give more "
            "candidates or fewer tiers"
        )
    for i in range(k):
        if cands:
            params.append(Param(f"tiers.{i}.model", "categorical", choices=cands))
        if i < k - 1:
            params.append(Param(f"tiers.{i}.accept_above", "float", 0.0, 1.0))
        if i < k - 1 and policy.tiers[i].agree_with is not None:
            pool = tuple(dict.fromkeys(partners or (policy.tiers[i].agree_with,)))
            params.append(Param(f"tiers.{i}.agree_with", "categorical",
                                choices=(None, *pool)))
    if isinstance(policy.preroute, RulesPreroute):
        params.append(Param("preroute.preroute_below", "float", 0.0, 1.0))
    elif isinstance(policy.preroute, LearnedPreroute):
        names = cands or policy.tier_models
        costs = [float((mean_cost or {}).get(m, 0.0)) for m in names]
        low, high = cost_weight_range(costs)
        params.append(Param("preroute.cost_weight", "log", low, high))
    if policy.router is not None and router_methods and len(set(router_methods)) > 1:
        params.append(Param("router.method", "categorical",
                            choices=tuple(dict.fromkeys(router_methods))))
    unknown = [p for p in fixed if not _has_path(policy, p)]
    if unknown:
        raise WorkbenchError(
            f"cannot fix unknown policy field(s) {', '.join(unknown)}; searchable fields: "
            f"{', '.join(p.path for p in params) or 'none'}"
        )
    return tuple(p for p in params if p.path not in fixed)


def _has_path(policy: Policy, path: str) -> bool:
    try:
        policy.with_value(path, _get_path(policy, path))
    except (PolicyError, KeyError, IndexError, ValueError, TypeError):
        return False
    return True


def _get_path(policy: Policy, path: str) -> Any:
    node: Any = policy.model_dump(mode="json")
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def apply_params(policy: Policy, values: Mapping[str, Any],
                 specs: Mapping[str, ModelSpec] | None = None) -> Policy:
    """`policy` with every dotted path in `values` set (one validation); tier models missing
    from `policy.models` are added from `specs` (or as bare specs)."""
    data = policy.model_dump(mode="json")
    for path, value in values.items():
        node: Any = data
        parts = path.split(".")
        try:
            for part in parts[:-1]:
                node = node[int(part)] if isinstance(node, list) else node[part]
            if node is None:
                raise KeyError(path)
            if isinstance(node, list):
                node[int(parts[-1])] = value
            else:
                node[parts[-1]] = value
        except (KeyError, IndexError, ValueError, TypeError):
            raise PolicyError(f"policy has no field {path!r}") from None
    tiers = data["tiers"]
    for i, tier in enumerate(tiers):
        # a sampled partner that is the tier itself or a later tier means "no gate"
        if (f"tiers.{i}.agree_with" in values or f"tiers.{i}.model" in values) and \
                tier.get("agree_with") in {t["model"] for t in tiers[i:]}:
            tier["agree_with"] = None
        for name in (tier["model"], tier.get("agree_with")):
            if name is not None and name not in data["models"]:
                spec = (specs or {}).get(name) or ModelSpec(name=name, model=name)
                data["models"][name] = spec.file_data()
    return Policy.validate_data(data, source="tuned policy")


def _in_range(space: Sequence[Param], path: str, value: Any) -> bool:
    for p in space:
        if p.path == path:
            if p.kind == "categorical":
                return value in p.choices
            return isinstance(value, int | float) and p.low <= value <= p.high
    return False


def _single_like(base: Policy, model: str, specs: Mapping[str, ModelSpec]) -> Policy:
    from workbench.policy import single

    return single(model, specs.get(model) or base.models.get(model))
