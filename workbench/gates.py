"""Gate a slice: turn a slice where the cheap model is significantly worse (workbench.report's
flagged slices) into a pre-routing rule that sends that slice straight to the strong tier, and
replay the policy before and after so the effect is measured, not assumed.

The rule is an ordinary rules pre-route (RulesPreroute): a tag, data class or difficulty value
gets a tag score of -1 (score 0, below any `preroute_below` > 0, so the strong tier answers);
the longest input-length bucket sets `long_input_chars` with a length penalty of 1. A label
slice is the reference answer, unknown when a request arrives, so it cannot be a routing rule;
nor can a policy with a learned pre-router take rules. Both are refused with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.metrics import Metrics
from workbench.policy import LearnedPreroute, Policy, RulesPreroute

GATE_COLUMNS = ("tag", "data_class", "difficulty", "input_length")
_LONGEST = re.compile(r"^>(\d+) chars$")


@dataclass(frozen=True)
class GateEffect:
    """A gated policy with its rule in words, how many items the rule newly sends to the strong
    tier (against the slice's own size: a tag rule also matches a data class or difficulty of
    the same name), and replay metrics before and after on the workload."""

    policy: Policy
    rule: str
    slice_items: int
    gated_items: int
    before: Metrics
    after: Metrics

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (`workbench gate add --json`)."""
        return {"rule": self.rule, "slice_items": self.slice_items,
                "gated_items": self.gated_items, "before": self.before.as_dict(),
                "after": self.after.as_dict()}


def add_gate(policy: Policy, column: str, value: str) -> tuple[Policy, str]:
    """A copy of `policy` whose pre-routing sends the slice (`column` = `value`) to the strong
    tier, and the rule in words. Raises WorkbenchError naming why a slice cannot be gated."""
    if column == "label":
        raise WorkbenchError(
            "a label slice groups items by their reference answer, which is unknown when a "
            "request arrives; gate on a tag, data class, difficulty or input length instead")
    if column not in GATE_COLUMNS:
        raise WorkbenchError(f"unknown slice column {column!r}; choose one of "
                             f"{', '.join(GATE_COLUMNS)}")
    if len(policy.tiers) < 2:
        raise WorkbenchError(f"policy {policy.name!r} has one tier; a gate needs a stronger tier "
                             "to send the slice to")
    if isinstance(policy.preroute, LearnedPreroute):
        raise WorkbenchError(f"policy {policy.name!r} pre-routes with a learned router; a slice "
                             "gate is a rules pre-route, so remove the learned one first")
    value = str(value).strip()
    if not value or value == "(none)":
        raise WorkbenchError("choose a slice with a value: items without one cannot be matched "
                             "by a rule")
    pre = policy.preroute or RulesPreroute(preroute_below=0.5)
    strong = policy.tiers[-1].model
    if column == "input_length":
        m = _LONGEST.match(value)
        if m is None:
            raise WorkbenchError(
                f"input-length slice {value!r} cannot be a rule: a rule can send only inputs "
                "longer than a length to the strong tier (the '>N chars' slice)")
        chars = int(m.group(1))
        pre = pre.model_copy(update={"long_input_chars": chars, "length_penalty": 1.0})
        rule = f"inputs longer than {chars} characters go straight to {strong}"
    else:
        scores = {**pre.tag_scores, value: -1.0}
        pre = pre.model_copy(update={"tag_scores": scores})
        rule = f"items with {column} {value!r} go straight to {strong}"
    if pre.preroute_below <= 0.0:
        pre = pre.model_copy(update={"preroute_below": 0.5})
    gated = Policy.model_validate({**policy.model_dump(mode="json"),
                                   "preroute": pre.model_dump(mode="json")})
    return gated, rule


def gate_effect(store: Any, workload: str, policy: Policy, column: str, value: str,
                *, seed: int = 0) -> GateEffect:
    """Gate the slice and replay the policy before and after on the workload's recorded items."""
    from workbench.replay import evaluate_workload
    from workbench.slicing_stats import check_column, slice_keys

    check_column(column)
    gated, rule = add_gate(policy, column, value)
    items = store.recorded_items(workload)
    in_slice = slice_keys(items, column).filter(pl.col("slice") == value)["item_id"].unique()
    if in_slice.len() == 0:
        raise WorkbenchError(f"no recorded item of workload {workload!r} has {column} "
                             f"{value!r}")
    before = evaluate_workload(store, workload, policy, seed=seed)
    after = evaluate_workload(store, workload, gated, seed=seed)
    strong = policy.tiers[-1].model

    def starts_strong(result: Any) -> np.ndarray:
        first = result.trace["models_tried"].cast(pl.String).str.split(">").list.first()
        return (first == strong).fill_null(False).to_numpy()

    newly = starts_strong(after) & ~starts_strong(before)
    return GateEffect(gated, rule, int(in_slice.len()), int(newly.sum()), before.metrics,
                      after.metrics)
