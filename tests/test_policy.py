"""Policy model: YAML/JSON round trips, validation errors, schema, dotted-path edits, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from workbench.cli import main
from workbench.errors import PolicyError
from workbench.models import ModelSpec
from workbench.policy import SCHEMA_VERSION, Policy, json_schema, migrate, single

POLICY_YAML = """
name: support-cascade
models:
  local: {kind: local-gguf, model: gemma-270m, tags: [local, cheap]}
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
    printed = json.loads(capsys.readouterr().out)
    assert printed["title"] == "Policy" and printed["$id"] == "workbench-policy-v2"
    model = printed["$defs"]["ModelSpec"]
    assert "name" not in model["properties"] and model["required"] == ["model"]  # name = key
    assert model["properties"]["kind"]["enum"] == ["local-gguf", "litellm"]
    assert main(["check", "--policy", str(path), "--workload", "w",
                 "--quality-floor", "0.5", "--max-cost", "1"]) == 0
    assert capsys.readouterr().out.startswith("OK")
    assert main(["check", "--policy", str(path), "--workload", "w",
                 "--quality-floor", "0.999"]) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith("FAIL: quality") and "\n" not in line
    assert main(["check", "--policy", str(path), "--workload", "w", "--max-cost", "0"]) == 1
    assert "cost per request" in capsys.readouterr().out


# -- schema versions: a file written by the version 1 code -----------------------------------------
DATA = Path(__file__).parent / "data"
V1_FILE = DATA / "policy_v1.yaml"  # exported by the schema_version 1 code (provider: ...)
# what that code derived from it: provider configs, LiteLLM config, replay and live decisions
V1_EXPECTED = json.loads((DATA / "policy_v1_expected.json").read_text())
V1_RENAMED = {"input_price_per_m": "input_price_per_mtok",
              "output_price_per_m": "output_price_per_mtok"}


def _v1_items_outcomes() -> tuple[pl.DataFrame, pl.DataFrame]:
    """The recorded workload the version 1 code replayed and routed (items, outcomes)."""
    items = pl.DataFrame(V1_EXPECTED["items"],
                         schema_overrides={"labels": pl.List(pl.String), "tags": pl.String,
                                           "data_class": pl.String})
    outcomes = pl.DataFrame(V1_EXPECTED["outcomes"], schema_overrides={
        "quality": pl.Float64, "latency_ms": pl.Float64, "confidence": pl.Float64,
        "output": pl.String, "error": pl.String, "cost_usd": pl.Float64})
    return items, outcomes


def test_v1_file_migrates_field_by_field() -> None:
    import yaml

    raw = yaml.safe_load(V1_FILE.read_text())
    assert raw["schema_version"] == 1 and raw["models"]["medium"]["provider"] == "openai_compatible"
    policy = Policy.from_file(V1_FILE)
    assert policy.schema_version == SCHEMA_VERSION == 2
    # every model equals what the v1 code handed the providers, under today's field names
    assert set(policy.models) == set(V1_EXPECTED["configs"])
    for name, config in V1_EXPECTED["configs"].items():
        expected = {V1_RENAMED.get(k, k): v for k, v in config.items()}
        got = policy.models[name].model_dump(mode="json")
        assert {k: got[k] for k in expected} == expected, name
        # fields added since v1 (self-consistency, few-shot sources) keep their defaults
        defaults = {k: f.get_default(call_default_factory=True)
                    for k, f in ModelSpec.model_fields.items()}
        assert all(got[k] == defaults[k] for k in set(got) - set(expected)), name
    tiny, medium = policy.models["tiny"], policy.models["medium"]
    assert (tiny.kind, tiny.model, tiny.tags) == ("local-gguf", "/models/tiny-q4.gguf",
                                                  ("local", "cheap"))
    assert (tiny.input_price_per_mtok, tiny.output_price_per_mtok) == (0.0, 0.0)
    assert (medium.kind, medium.model, medium.api_base, medium.api_key_env) == (
        "litellm", "openai/medium-served", "http://127.0.0.1:8011/v1", "INHOUSE_API_KEY")
    assert (medium.input_price_per_mtok, medium.output_price_per_mtok) == (0.2, 0.6)
    # everything but the models is read as written
    same = Policy.validate_data({**raw, "schema_version": 2, "models": policy.models})
    assert same == policy
    assert policy.provenance is not None and policy.provenance.trial == 17
    assert policy.provenance.holdout_metrics == raw["provenance"]["holdout_metrics"]


def test_v1_file_routes_and_replays_as_before() -> None:
    from tests.test_conformance import RecordedProvider
    from workbench.export import litellm_config, load_policy_file
    from workbench.providers.base import Request
    from workbench.replay import replay
    from workbench.router import PolicyRouter

    policy = load_policy_file(V1_FILE)  # the production loader reads version 1 too
    items, outcomes = _v1_items_outcomes()
    trace = replay(policy, items, outcomes).trace.select(
        "item_id", "models_tried", "answered_by", "refused", "refusal_reason", "cost_usd"
    ).with_columns(pl.all().cast(pl.String)).to_dicts()
    assert trace == V1_EXPECTED["replay_trace"]

    rows = {(str(r["item_id"]), r["model"]): r for r in outcomes.iter_rows(named=True)}
    router = PolicyRouter(policy, log=False,
                          provider_factory=lambda spec: RecordedProvider(spec, rows, spec.name))
    for item, before in zip(items.iter_rows(named=True), V1_EXPECTED["router"], strict=True):
        res = router.complete(item["input"], labels=item["labels"], tags=item["tags"],
                              data_class=item["data_class"], difficulty=item["difficulty"],
                              request_id=item["item_id"])
        assert (res.model, list(res.models_tried), res.refusal_reason) == (
            before["answered_by"], before["models_tried"], before["refusal_reason"]), item
        request = Request(item["item_id"], "classification", item["input"])
        for model, estimate in before["estimates"].items():  # prices x tokens, as before
            assert router.estimate_cost(model, request) == pytest.approx(estimate, rel=1e-12)
    router.close()

    config = litellm_config(policy)
    old = V1_EXPECTED["litellm_config"]
    assert config["router_settings"] == old["router_settings"]
    assert [m["litellm_params"] for m in config["model_list"]] == [
        m["litellm_params"] for m in old["model_list"]]


def test_v1_file_resaves_as_version_2_and_round_trips(tmp_path: Path) -> None:
    from workbench.export import export_policy, load_policy_file

    policy = Policy.from_file(V1_FILE)
    text = policy.to_yaml()
    assert text.startswith("schema_version: 2\n")
    assert "provider:" not in text and "\n    name:" not in text  # a model's name is its key
    assert "kind: local-gguf" in text and "model: openai/medium-served" in text
    assert Policy.from_yaml(text) == policy and Policy.from_json(policy.to_json()) == policy
    path = export_policy(policy, tmp_path / "v2.yaml", provenance=False)
    assert load_policy_file(path) == policy


def test_migrate_v1_models() -> None:
    data = {"schema_version": 1, "name": "p", "models": {
        "bare": {"model": "openai/gpt-4o-mini"},
        "local": {"provider": "local", "model": "/m.gguf", "tags": ["local"]},
        "served": {"provider": "openai_compatible", "model": "served", "api_base": "http://h/v1",
                   "output_price_per_mtok": 2.0},
        "prefixed": {"provider": "openai_compatible", "model": "openai/x",
                     "api_base": "http://h/v1"},
    }, "tiers": [{"model": "bare"}]}
    out = migrate(data)
    assert data["schema_version"] == 1 and "provider" in data["models"]["local"]  # untouched
    assert out["schema_version"] == 2
    # v1's default price was 0.0: written out, so an unpriced v1 model stays free
    assert out["models"]["bare"] == {"kind": "litellm", "model": "openai/gpt-4o-mini",
                                     "input_price_per_mtok": 0.0, "output_price_per_mtok": 0.0}
    assert out["models"]["local"]["kind"] == "local-gguf"
    assert out["models"]["served"]["model"] == "openai/served"
    assert out["models"]["served"]["output_price_per_mtok"] == 2.0
    assert out["models"]["prefixed"]["model"] == "openai/x"
    policy = Policy.validate_data(data)
    assert policy.models["bare"] == ModelSpec(name="bare", model="openai/gpt-4o-mini",
                                              input_price_per_mtok=0.0, output_price_per_mtok=0.0)
    # a version 2 model without prices means LiteLLM's table (hosted) / hardware time (local)
    v2 = Policy.validate_data({"models": {"bare": {"model": "openai/gpt-4o-mini"}},
                               "tiers": [{"model": "bare"}]})
    assert v2.models["bare"].input_price_per_mtok is None
    with pytest.raises(PolicyError, match="unknown provider 'vllm'"):
        Policy.validate_data({"schema_version": 1, "models": {"a": {"provider": "vllm",
                              "model": "x"}}, "tiers": [{"model": "a"}]})


@pytest.mark.parametrize(("version", "message"), [
    (3, "unknown schema_version 3; this workbench reads versions 1 to 2"),
    (0, "unknown schema_version 0"),
    ("two", "schema_version: Input should be a valid integer"),
])
def test_unknown_versions_are_refused(version: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.validate_data({"schema_version": version, "models": {"a": {"model": "a"}},
                              "tiers": [{"model": "a"}]})


def test_model_name_is_its_key() -> None:
    base = {"tiers": [{"model": "a"}]}
    named = Policy.validate_data({**base, "models": {"a": {"name": "a", "model": "x"}}})
    assert named.models["a"].name == "a"
    assert Policy.validate_data({**base, "models": {"a": {"model": "x"}}}) == named
    with pytest.raises(PolicyError, match="model 'a' is named 'b'; a model's name is its key"):
        Policy.validate_data({**base, "models": {"a": {"name": "b", "model": "x"}}})
    with pytest.raises(PolicyError, match="is named 'b'"):
        single("a", ModelSpec(name="b", model="x"))
    with pytest.raises(PolicyError, match="'provider' is a schema_version 1 field"):
        Policy.validate_data({**base, "models": {"a": {"provider": "local", "model": "x"}}})
    assert "name" not in named.model_dump(mode="json")["models"]["a"]
    # a model's fields at their defaults are left out of files; kind and model never are
    assert named.model_dump(mode="json")["models"]["a"] == {"kind": "litellm", "model": "x"}
