"""Policy composer used by the Route page and the first-run journey."""

from __future__ import annotations

import polars as pl
import pytest

from workbench import compose
from workbench.errors import PolicyError
from workbench.models import ModelSpec
from workbench.policy import Policy
from workbench.store import Store


def _outcomes() -> pl.DataFrame:
    return pl.DataFrame({
        "item_id": ["1", "2", "1", "2", "1", "2"],
        "model": ["small", "small", "mid", "mid", "big", "big"],
        "quality": [1.0, 0.0, 1.0, None, 1.0, 1.0],
        "cost_usd": [0.001, 0.001, 0.01, 0.01, 0.1, 0.1],
    })


def test_summaries_sorted_by_cost_and_default_tiers() -> None:
    summaries = compose.summarize(_outcomes())
    assert [s.name for s in summaries] == ["small", "mid", "big"]
    assert summaries[1].quality == pytest.approx(0.5)  # a missing quality counts as 0
    assert compose.default_tiers(summaries) == ["small", "big"]
    assert compose.default_tiers([]) == []


def test_compose_builds_a_valid_round_tripping_policy() -> None:
    specs = {"small": ModelSpec(name="small", model="s", tags=("local",)),
             "big": ModelSpec(name="big", model="b"), "unused": ModelSpec(name="unused", model="u")}
    policy = compose.compose(specs, ["small", "big"], [0.8], pii_allowed_tags=["local"],
                             fallback="big", max_strong_share=0.4, verifier="valid_label")
    assert [t.model for t in policy.tiers] == ["small", "big"]
    assert policy.tiers[0].accept_above == 0.8 and policy.tiers[1].accept_above == 0.0
    assert set(policy.models) == {"small", "big"}
    assert policy.allowed_for(policy.governance.rules[0]) == frozenset({"small"})
    assert policy.budgets.max_strong_share == 0.4
    assert Policy.from_yaml(policy.to_yaml()) == policy


def test_compose_rejects_bad_choices() -> None:
    specs = {"a": ModelSpec(name="a", model="a")}
    with pytest.raises(PolicyError, match="at least one tier"):
        compose.compose(specs, [], [])
    with pytest.raises(PolicyError):
        compose.compose(specs, ["a", "nope"], [0.5])
    with pytest.raises(PolicyError):
        compose.compose({**specs, "b": ModelSpec(name="b", model="b")}, ["a", "b"], [1.5])


def test_model_specs_prefer_catalog_entries(store: Store) -> None:
    store.add_workload_frame("w", pl.DataFrame({"item_id": ["1", "2"], "input": ["x", "y"]}),
                             task_type="qa", source="t")
    store.write_outcomes("w", _outcomes())
    local = ModelSpec(name="small", kind="local-gguf", model="/models/s.gguf",
                      tags=("local",), max_tokens=16, hardware_usd_per_hour=0.2)
    specs = compose.model_specs(store, "w", [local])
    assert specs["small"] == local  # the catalog's description itself, nothing mapped
    assert specs["big"] == ModelSpec(name="big", model="big")
