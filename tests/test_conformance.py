"""One policy core, every runner: the vectorized kernel (replay), the per-item specification
(the oracle over recorded outcomes), the live router (with a provider that serves the recorded
outcomes) and the tuner's per-trial evaluator must agree on every item of random workloads
under random policies. A rule added to `workbench.pipeline` is checked here for all at once."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.replay_data import MODELS, compare, make_items, make_outcomes, random_policy
from workbench.models import ModelSpec
from workbench.pipeline.oracle import decide_recorded
from workbench.policy import Policy
from workbench.providers.base import Request, Response
from workbench.replay import prepare, replay
from workbench.router import PolicyRouter
from workbench.tune import FastEvaluator


class RecordedProvider:
    """A provider whose answers are the recorded outcomes of one model (by request id)."""

    def __init__(self, config: ModelSpec, rows: dict[tuple[str, str], dict[str, Any]],
                 model: str) -> None:
        self.config = config
        self._rows = rows
        self._model = model

    def check(self) -> None:
        """Always usable."""

    def complete(self, request: Request) -> Response:
        """The recorded outcome of this model on the request's item."""
        r = self._rows[(request.item_id, self._model)]
        lat = r.get("latency_ms")
        return Response(
            output=r.get("output"), confidence=r.get("confidence"), label_probs=None,
            signals={}, prompt_tokens=0, completion_tokens=0,
            latency_ms=math.nan if lat is None else lat, cost_usd=r.get("cost_usd") or 0.0,
            error=r.get("error"), error_message=r.get("error"),
        )

    def complete_many(self, requests: Sequence[Request], on_result: Any = None,
                      should_stop: Any = None) -> list[Response | None]:
        """Each request in turn."""
        return [self.complete(r) for r in requests]


class RecordedRouter:
    """A learned router whose predictions are a fixed table (the one replay is given)."""

    def __init__(self, frame: pl.DataFrame, mean_cost: dict[str, float]) -> None:
        self.models = tuple(c for c in frame.columns if c != "item_id")
        self.mean_cost = mean_cost
        self._by_id = {r["item_id"]: r for r in frame.to_dicts()}

    def predict(self, items: pl.DataFrame) -> pl.DataFrame:
        """The table's rows for these item ids."""
        rows = [self._by_id[i] for i in items["item_id"].to_list()]
        return pl.DataFrame(rows).select("item_id", *self.models)


def live_decisions(policy: Policy, items: pl.DataFrame, outcomes: pl.DataFrame,
                   capped: set[str], learned: RecordedRouter | None) -> list[dict[str, Any]]:
    """Route every item live through PolicyRouter; the strong tier is closed to the items
    replay's strong-share cap closed it to (the online counter is the router's own rule)."""
    rows = {(str(r["item_id"]), r["model"]): r for r in outcomes.iter_rows(named=True)}
    policy_models = set(policy.models)

    def factory(config: ModelSpec) -> RecordedProvider:
        assert config.name in policy_models
        return RecordedProvider(config, rows, config.name)

    router = PolicyRouter(
        policy, log=False, provider_factory=factory, learned_router=learned,
        strong_gate=lambda rid: rid not in capped,
        cost_estimator=lambda model, req: rows[(req.item_id, model)].get("cost_usd") or 0.0,
    )
    out = []
    for item in items.iter_rows(named=True):
        res = router.complete(item["input"], labels=item["labels"], tags=item["tags"],
                              data_class=item["data_class"], difficulty=item["difficulty"],
                              request_id=item["item_id"])
        quality = 0.0
        if res.refused:
            quality = 0.0
        elif res.model is not None:
            q = rows[(item["item_id"], res.model)].get("quality")
            quality = q
        latency = None if math.isnan(res.latency_ms) else res.latency_ms
        out.append({
            "item_id": item["item_id"], "models_tried": list(res.models_tried),
            "answered_by": res.model, "refusal_reason": res.refusal_reason,
            "governance_block": ",".join(res.data_classes) or None, "quality": quality,
            "cost_usd": res.cost_usd, "latency_ms": 0.0 if res.refused else latency,
        })
    router.close()
    return out


GRID = (0.0, 0.1, 0.2, 0.5, 0.7, 0.8, 0.9, 1.0)


def _on_grid(policy: Policy, rng: np.random.Generator) -> Policy:
    """Thresholds on a coarse grid, so that confidences and scores often equal them and
    every comparison's boundary (>= vs >) is tested."""
    values: dict[str, float] = {}
    for t in range(len(policy.tiers)):
        if rng.random() < 0.7:
            values[f"tiers.{t}.accept_above"] = float(rng.choice(GRID))
    if policy.preroute is not None and policy.preroute.kind == "rules":
        values["preroute.preroute_below"] = float(rng.choice(GRID))
    for path, value in values.items():
        policy = policy.with_value(path, value)
    return policy


def _check(seed: int, with_router: bool) -> None:
    rng = np.random.default_rng(seed)
    items = make_items(int(rng.integers(20, 70)), rng)
    outcomes = make_outcomes(items, rng, error_rate=float(rng.choice([0.0, 0.05, 0.3])))
    outcomes = outcomes.with_columns(pl.col("confidence").round(1))  # ties with thresholds
    if rng.random() < 0.5:  # costs on a grid: sums that meet the cost cap exactly
        outcomes = outcomes.with_columns(pl.col("cost_usd").round(4))
    policy = _on_grid(random_policy(rng, allow_router=with_router), rng)
    preds = by_item = mean_cost = learned = None
    if policy.uses_router():
        preds = pl.DataFrame({"item_id": items["item_id"],
                              **{m: np.round(rng.random(items.height), 1) for m in MODELS}})
        by_item = {r["item_id"]: r for r in preds.to_dicts()}
        wl = prepare(items, outcomes)
        mean_cost = {m: wl.mean_cost(m) for m in MODELS}
        learned = RecordedRouter(preds, mean_cost)
    result = replay(policy, items, outcomes, router=preds, n_boot=10)
    trace = result.trace
    spec_rows = decide_recorded(policy, items, outcomes, by_item, mean_cost)
    problems = compare(trace, spec_rows)
    assert not problems, "kernel vs specification\n" + policy.to_yaml() + "\n".join(problems[:5])
    capped = set(trace.filter(pl.col("strong_capped"))["item_id"].to_list())
    live = live_decisions(policy, items, outcomes, capped, learned)
    problems = compare(trace, live)
    assert not problems, "kernel vs live router\n" + policy.to_yaml() + "\n".join(problems[:5])
    # the tuner's per-trial metrics (sums by reduction, or per-item with latency) are replay's
    ev = FastEvaluator(items, outcomes, preds)
    want = result.metrics
    for latency in (False, True):
        got = ev.evaluate(policy, latency=latency)
        names = ["quality", "cost_per_request", "strong_share", "escalation_rate",
                 "refusal_rate"] + (["latency_p95_ms"] if latency else [])
        for name in names:
            a, b = getattr(want, name), getattr(got, name)
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9,
                                                                           abs=1e-12), name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_kernel_spec_and_live_router_agree(seed: int) -> None:
    _check(seed, with_router=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_kernel_spec_and_live_router_agree_with_a_learned_router(seed: int) -> None:
    _check(seed, with_router=True)


@pytest.mark.parametrize("seed", [3, 17])
def test_strong_share_cap_is_exercised(seed: int) -> None:
    """The random policies do reach the cap, so the agreement above covers it."""
    rng = np.random.default_rng(seed)
    items = make_items(60, rng)
    outcomes = make_outcomes(items, rng)
    policy = Policy.validate_data({
        "models": {m: {"model": f"prov/{m}"} for m in MODELS},
        "tiers": [{"model": "tiny", "accept_above": 0.9},
                  {"model": "medium", "accept_above": 0.95}, {"model": "large"}],
        "budgets": {"max_strong_share": 0.1},
    })
    trace = replay(policy, items, outcomes, n_boot=10).trace
    capped = set(trace.filter(pl.col("strong_capped"))["item_id"].to_list())
    assert capped and trace["reached_strong"].sum() <= 6
    live = live_decisions(policy, items, outcomes, capped, None)
    assert not compare(trace, live)
    assert not compare(trace, decide_recorded(policy, items, outcomes))


def test_random_policies_exercise_every_rule() -> None:
    """The random workloads and policies above reach every refusal reason, the fallback,
    escalation, final errors, the strong-share cap and learned entry tiers (so agreement on
    them is not vacuous)."""
    seen: set[str] = set()
    for seed in range(200):
        rng = np.random.default_rng(seed)
        items = make_items(60, rng)
        outcomes = make_outcomes(items, rng, error_rate=0.2)
        policy = random_policy(rng, allow_router=seed % 2 == 1)
        preds = None
        if policy.uses_router():
            preds = pl.DataFrame({"item_id": items["item_id"],
                                  **{m: np.round(rng.random(items.height), 2) for m in MODELS}})
        trace = replay(policy, items, outcomes, router=preds, n_boot=10).trace
        seen |= {str(r) for r in trace["refusal_reason"].drop_nulls().unique().to_list()}
        tried = trace["models_tried"].cast(pl.String).drop_nulls()
        if tried.str.contains("fallback:").any():
            seen.add("fallback")
        if trace["escalated"].any():
            seen.add("escalated")
        if trace["error"].any():
            seen.add("final_error")
        if trace["strong_capped"].any():
            seen.add("strong_capped")
        first = tried.str.split(">").list.first()
        if (policy.preroute is not None and policy.preroute.kind == "learned"
                and (first != policy.tiers[0].model).any()):
            seen.add("learned_entry")  # the router sent some items past the cheap tier
    want = {"governance", "deny_pattern", "max_input_tokens", "max_cost_per_request",
            "max_strong_share", "fallback", "escalated", "final_error", "strong_capped",
            "learned_entry"}
    assert want <= seen, f"never exercised: {sorted(want - seen)}"
