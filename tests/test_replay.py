"""Replay: equality with the per-item reference, cascade properties, errors, RouterBench."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import shared_file
from tests.replay_data import (
    MODELS,
    make_items,
    make_outcomes,
    random_policy,
)
from workbench.policy import Policy
from workbench.replay import (
    MissingOutcomesError,
    evaluate_single,
    evaluate_workload,
    replay,
    split_items,
    sweep,
)

SPECS = {m: {"model": f"prov/{m}", "tags": (["local"] if m in ("tiny", "small") else [])}
         for m in MODELS}


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(7)
    items = make_items(250, rng)
    return items, make_outcomes(items, rng)


def cascade(tier_models: list[str], accept: list[float], **extra: object) -> Policy:
    tiers = [{"model": m, "accept_above": a, **extra} for m, a in zip(tier_models, accept,
                                                                        strict=True)]
    return Policy.validate_data({"models": SPECS, "tiers": tiers})


def _frames(seed: int, errors: float = 0.0, max_conf: float = 1.0):
    rng = np.random.default_rng(seed)
    items = make_items(60, rng)
    outcomes = make_outcomes(items, rng, error_rate=errors)
    outcomes = outcomes.with_columns(
        (pl.col("confidence") * max_conf).alias("confidence")
    )
    return items, outcomes


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0, 1), st.floats(0, 1), st.booleans())
def test_cost_never_falls_as_accept_above_rises(seed, a, b, three):
    items, outcomes = _frames(seed, errors=0.05)
    lo, hi = sorted((a, b))
    tiers = ["tiny", "medium", "large"] if three else ["small", "large"]
    costs = []
    for threshold in (lo, hi):
        policy = cascade(tiers, [threshold] * (len(tiers) - 1) + [0.0])
        costs.append(replay(policy, items, outcomes, n_boot=10).trace["cost_usd"].to_numpy())
    assert (costs[1] >= costs[0] - 1e-15).all()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_accept_above_zero_equals_the_cheap_tier_alone(seed):
    items, outcomes = _frames(seed, errors=0.0)
    res = replay(cascade(["small", "large"], [0.0, 0.0]), items, outcomes, n_boot=10)
    alone = evaluate_single("small", items, outcomes)
    assert res.metrics.quality == pytest.approx(alone.metrics.quality, nan_ok=True)
    assert res.metrics.cost_per_request == pytest.approx(alone.metrics.cost_per_request)
    assert res.metrics.escalation_rate == 0.0


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_escalating_everything_equals_last_tier_quality_plus_cheap_cost(seed):
    items, outcomes = _frames(seed, errors=0.0, max_conf=0.999)
    policy = cascade(["tiny", "large"], [1.0, 0.0], confidence="recorded")
    res = replay(policy, items, outcomes, n_boot=10)
    cheap = evaluate_single("tiny", items, outcomes).metrics
    strong = evaluate_single("large", items, outcomes).metrics
    assert res.metrics.quality == pytest.approx(strong.quality, nan_ok=True)
    assert res.metrics.cost_per_request == pytest.approx(
        cheap.cost_per_request + strong.cost_per_request)
    assert res.metrics.escalation_rate == 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_governance_never_lets_a_detected_class_reach_a_disallowed_model(seed):
    rng = np.random.default_rng(seed)
    items = make_items(80, rng)
    outcomes = make_outcomes(items, rng)
    policy = random_policy(rng)
    trace = replay(policy, items, outcomes, n_boot=10).trace
    rules = {r.data_class: policy.allowed_for(r) for r in policy.governance.rules}
    for row in trace.filter(pl.col("governance_block").is_not_null()).iter_rows(named=True):
        allowed = set(policy.models)
        for cls in row["governance_block"].split(","):
            allowed &= rules[cls]
        tried = [name for m in (row["models_tried"] or "").split(">") if m
                 for name in m.removeprefix("fallback:").split("+")]  # partners too
        assert set(tried) <= allowed
        assert row["answered_by"] is None or row["answered_by"] in allowed


def test_missing_outcomes_are_listed(data):
    items, outcomes = data
    cut = outcomes.filter(~((pl.col("model") == "large") & pl.col("item_id").is_in(["it0003",
                                                                                     "it0009"])))
    with pytest.raises(MissingOutcomesError, match=r"2 item/model pairs.*large: 2.*it0003"):
        replay(cascade(["small", "large"], [0.5, 0.0]), items, cut)
    with pytest.raises(MissingOutcomesError, match="no recorded outcomes at all for model"):
        replay(cascade(["small", "large"], [0.5, 0.0]), items, cut.filter(pl.col("model") !=
                                                                         "large"))


def test_items_governance_keeps_off_hosted_models_need_no_hosted_outcomes():
    items = pl.DataFrame({"item_id": ["a", "b"], "input": ["mail x@y.org", "hello"]})
    outcomes = pl.DataFrame({
        "item_id": ["a", "b", "b"], "model": ["small", "small", "large"],
        "quality": [1.0, 0.0, 1.0], "cost_usd": [0.0, 0.0, 0.01],
        "confidence": [0.9, 0.1, 0.9],
    })
    policy = Policy.validate_data({
        "models": SPECS, "tiers": [{"model": "small", "accept_above": 0.5}, {"model": "large"}],
        "governance": {"rules": [{"data_class": "pii", "detectors": ["email"],
                                  "allowed_tags": ["local"]}]},
    })
    trace = replay(policy, items, outcomes).trace
    assert trace["answered_by"].to_list() == ["small", "large"]
    assert trace["governance_block"].to_list() == ["pii", None]


def test_strong_share_cap_keeps_lowest_cheap_confidence():
    n = 10
    items = pl.DataFrame({"item_id": [f"i{i}" for i in range(n)], "input": ["x"] * n})
    conf = [0.05 * i for i in range(n)]
    outcomes = pl.concat([
        pl.DataFrame({"item_id": items["item_id"], "model": "small", "quality": 0.0,
                      "cost_usd": 1.0, "confidence": conf}),
        pl.DataFrame({"item_id": items["item_id"], "model": "large", "quality": 1.0,
                      "cost_usd": 10.0, "confidence": 1.0}),
    ])
    policy = Policy.validate_data({
        "models": SPECS, "tiers": [{"model": "small", "accept_above": 0.9}, {"model": "large"}],
        "budgets": {"max_strong_share": 0.3},
    })
    res = replay(policy, items, outcomes)
    assert res.trace["reached_strong"].to_list() == [True] * 3 + [False] * 7
    assert res.metrics.strong_share == pytest.approx(0.3)
    assert res.metrics.quality == pytest.approx(0.3)


def test_trace_metrics_and_cache(data):
    items, outcomes = data
    policy = cascade(["small", "large"], [0.6, 0.0])
    first = replay(policy, items, outcomes)
    again = replay(policy.with_value("tiers.0.accept_above", 0.2), items, outcomes)
    assert first._workload is again._workload  # detections and matrices reused
    assert first.trace.columns[:3] == ["item_id", "models_tried", "answered_by"]
    m = first.metrics
    assert m.n == items.height and 0 <= m.quality_ci[0] <= m.quality <= m.quality_ci[1] <= 1
    assert sum(m.answered_by.values()) <= 1 + 1e-9
    assert again.metrics.escalation_rate <= m.escalation_rate
    # bootstrap is seeded
    assert replay(policy, items, outcomes, seed=5).metrics == replay(
        policy, items, outcomes, seed=5).metrics
    base = first.baselines
    assert {"oracle", "random", "single:large", "single:tiny"} <= set(base)
    assert base["oracle"].quality >= max(v.quality for k, v in base.items() if
                                         k.startswith("single:"))
    assert base["random"].strong_share == pytest.approx(m.strong_share, abs=0.01)


def test_sweep_and_split(data):
    items, outcomes = data
    policy = cascade(["small", "large"], [0.5, 0.0])
    frame = sweep(policy, items, outcomes, "tiers.0.accept_above", [0.0, 0.5, 1.0])
    assert frame["value"].to_list() == [0.0, 0.5, 1.0]
    assert frame["cost_per_request"].is_sorted()
    train, hold = split_items(items, holdout=0.3, seed=1)
    assert not set(train) & set(hold) and len(train) + len(hold) == items.height
    assert split_items(items, holdout=0.3, seed=1) == (train, hold)
    assert split_items(items, holdout=0.3, seed=2) != (train, hold)
    by_diff = items.filter(pl.col("item_id").is_in(hold))["difficulty"].value_counts()
    totals = items["difficulty"].value_counts()
    for row in by_diff.join(totals, on="difficulty").iter_rows():
        assert row[1] == round(row[2] * 0.3)


def test_routerbench_arc_single_model_and_oracle(store):
    from workbench.workloads.importers import import_file

    path = shared_file("routerbench", "arc_challenge_test.csv")
    import_file(store, path, "arc_test", format="routerbench")
    gpt4 = Policy.validate_data({"models": {"gpt-4-1106-preview": {"model": "gpt-4"}},
                                 "tiers": [{"model": "gpt-4-1106-preview"}]})
    res = evaluate_workload(store, "arc_test", gpt4)
    # blank correctness cells are unscored: left out of quality, their cost counted
    assert round(res.metrics.quality, 3) == 0.957
    assert round(res.metrics.cost_per_request, 6) == 0.005065
    oracle = res.baselines["oracle"]
    assert round(oracle.quality, 3) == 0.984
    assert round(oracle.cost_per_request, 6) == 0.000222
    assert round(res.baselines["single:zero-one-ai/Yi-34B-Chat"].quality, 3) == 0.918


def test_live_verifier_agrees_with_replay_on_routerbench_style_outputs() -> None:
    """The router and the reference verify one answer with the rule replay vectorizes:
    RouterBench's list-literal cells with escaped newlines are valid labels."""
    from workbench.verifiers import verify_one

    labels = ["A", "B", "C", "D"]
    assert verify_one("valid_label", "['A\\n']", labels)
    assert verify_one("valid_label", " b. ", labels)
    assert not verify_one("valid_label", "E", labels)
    assert verify_one("json", '```json\n{"a": 1}\n```', [])
    assert not verify_one("json", "not json", [])
    assert verify_one("number", "it is 42", []) and not verify_one("number", "none", [])
