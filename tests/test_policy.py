"""Policy model: YAML/JSON round trips, validation errors, schema, dotted-path edits, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from workbench.cli import main
from workbench.errors import PolicyError
from workbench.policy import Policy, json_schema

POLICY_YAML = """
name: support-cascade
models:
  local: {provider: local, model: gemma-270m, tags: [local, cheap]}
  strong: {model: openai/gpt-4o, api_key_env: OPENAI_API_KEY, tags: [hosted],
           input_price_per_mtok: 2.5, output_price_per_mtok: 10}
governance:
  rules:
    - {data_class: pii, detectors: [email, payment_card, iban], item_tags: [pii],
       allowed_tags: [local]}
refusal: {deny_patterns: ["(?i)ignore previous instructions"], max_input_tokens: 4000}
preroute: {kind: rules, preroute_below: 0.3, keyword_scores: {prove: -0.8}}
tiers:
  - {model: local, accept_above: 0.7, verifier: valid_label}
  - {model: strong}
fallback: strong
budgets: {max_cost_per_request: 0.01, max_strong_share: 0.4}
"""


def test_yaml_and_json_round_trip(tmp_path: Path):
    policy = Policy.from_yaml(POLICY_YAML)
    assert Policy.from_yaml(policy.to_yaml()) == policy
    assert Policy.from_json(policy.to_json()) == policy
    for name in ("p.yaml", "p.json"):
        assert Policy.from_file(policy.to_file(tmp_path / name)) == policy
    assert policy.used_models == ("local", "strong")
    assert policy.allowed_for(policy.governance.rules[0]) == {"local"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("model: strong}", "model: stronk}"), "unknown model 'stronk'; known models: local, "),
        (("accept_above: 0.7", "accept_above: 1.5"), "tiers.0.accept_above"),
        (("preroute_below: 0.3", "preroute_below: -0.1"), "preroute.rules.preroute_below"),
        (("fallback: strong", "fallback: nope"), "fallback: unknown model 'nope'"),
        (("max_strong_share: 0.4", "max_strong_share: 2"), "max_strong_share"),
        (("  - {model: strong}", "  - {model: local}"), "appears in two tiers"),
        (("[email, payment_card, iban]", "[email, passport]"), "detectors"),
        (("(?i)ignore previous instructions", "(unclosed"), "invalid regular expression"),
        (("api_key_env: OPENAI_API_KEY", "api_key_env: sk-abc123"), "NAME of an environment"),
        (("name: support-cascade", "schema_version: 9"), "unknown schema_version 9"),
        (("name: support-cascade", "colour: blue"), "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_policies_give_clear_errors(change: tuple[str, str], message: str):
    text = POLICY_YAML.replace(*change)
    assert text != POLICY_YAML
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace("?", r"\?")):
        Policy.from_yaml(text)


def test_empty_tiers_and_yaml_bombs_and_size(tmp_path: Path):
    with pytest.raises(PolicyError, match="at least one cascade tier"):
        Policy.from_yaml("models: {a: {model: a}}\ntiers: []")
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\nmodels: {}\ntiers: []\n"
    with pytest.raises(PolicyError, match="anchors and aliases"):
        Policy.from_yaml(bomb)
    big = tmp_path / "big.yaml"
    big.write_text("#" * 1_000_001)
    with pytest.raises(PolicyError, match="over the 1000000"):
        Policy.from_file(big)
    with pytest.raises(PolicyError, match="does not exist"):
        Policy.from_file(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match="must be a mapping"):
        Policy.from_yaml("- 1\n- 2")


def test_with_value_and_schema():
    policy = Policy.from_yaml(POLICY_YAML)
    changed = policy.with_value("tiers.0.accept_above", 0.25)
    assert changed.tiers[0].accept_above == 0.25 and policy.tiers[0].accept_above == 0.7
    with pytest.raises(PolicyError, match="no field 'tiers.0.nope'"):
        policy.with_value("tiers.0.nope", 1)
    with pytest.raises(PolicyError, match="accept_above"):
        policy.with_value("tiers.0.accept_above", 3)
    schema = json_schema()
    assert schema["$id"].startswith("workbench-policy-v")
    assert {"models", "tiers"} <= set(schema["required"])


def _store_workload(home: Path) -> None:
    from workbench.store import open_store

    store = open_store(home)
    items = pl.DataFrame({"item_id": ["a", "b", "c", "d"],
                          "input": ["hi", "mail me x@y.org", "prove it", "hello"]})
    store.add_workload_frame("w", items, task_type="generation", source="test")
    store.write_outcomes("w", pl.DataFrame({
        "item_id": ["a", "b", "c", "d"] * 2,
        "model": ["local"] * 4 + ["strong"] * 4,
        "quality": [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0],
        "cost_usd": [0.0] * 4 + [0.01] * 4,
        "confidence": [0.9, 0.9, 0.2, 0.8, None, None, None, None],
        "output": ["A", "B", "A", "Z", "A", "A", "A", "A"],
    }))
    store.close()


def test_cli_evaluate_schema_check(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    _store_workload(home)
    path = tmp_path / "p.yaml"
    Policy.from_yaml(POLICY_YAML.replace("verifier: valid_label", "verifier: none")).to_file(path)
    assert main(["evaluate", "--workload", "w", "--policy", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("quality", "quality_ci", "cost_per_request", "cost_per_success",
                "latency_p95_ms", "escalation_rate", "refusal_rate", "answered_by", "n"):
        assert key in out
    assert out["n"] == 4 and "oracle" in out["baselines"]
    assert main(["evaluate", "--workload", "w", "--single", "strong", "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert single["quality"] == 1.0 and single["answered_by"] == {"strong": 1.0}
    assert main(["evaluate", "--workload", "w", "--single", "strong"]) == 0
    assert "baselines" in capsys.readouterr().out
    assert main(["evaluate", "--workload", "w", "--single", "ghost"]) == 2
    assert "no outcomes" in capsys.readouterr().err
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Policy"
    assert main(["check", "--policy", str(path), "--workload", "w",
                 "--quality-floor", "0.5", "--max-cost", "1"]) == 0
    assert capsys.readouterr().out.startswith("OK")
    assert main(["check", "--policy", str(path), "--workload", "w",
                 "--quality-floor", "0.999"]) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith("FAIL: quality") and "\n" not in line
    assert main(["check", "--policy", str(path), "--workload", "w", "--max-cost", "0"]) == 1
    assert "cost per request" in capsys.readouterr().out
