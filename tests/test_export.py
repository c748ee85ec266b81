"""Policy file export/load (round trip, bad files, no secrets) and the LiteLLM proxy config."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from tests.servers import LlamaServer, free_port, llama_server_fixture
from workbench.errors import PolicyError, WorkbenchError
from workbench.export import (
    build_litellm_router,
    export_policy,
    litellm_config,
    litellm_config_yaml,
    load_litellm_config,
    load_policy_file,
    load_policy_text,
    policy_text,
    provenance_from_store,
    with_provenance,
    write_litellm_config,
)
from workbench.policy import MAX_POLICY_FILE_BYTES, SCHEMA_VERSION, Policy
from workbench.replay import replay

SECRET = "sk-test-SECRET123"
MODELS = ("cheap", "mid", "strong")


def make_policy(**extra: object) -> Policy:
    """A policy using every stage."""
    data: dict = {
        "name": "full",
        "description": "every stage",
        "models": {
            "cheap": {"kind": "local-gguf", "model": "/models/tiny.gguf", "tags": ["local"],
                      "input_price_per_mtok": 0.01, "output_price_per_mtok": 0.02},
            "mid": {"kind": "litellm", "model": "openai/mid-model",
                    "api_base": "http://127.0.0.1:9/v1", "input_price_per_mtok": 0.2,
                    "output_price_per_mtok": 0.4},
            "strong": {"kind": "litellm", "model": "openai/gpt-4o",
                       "api_key_env": "OPENAI_API_KEY", "input_price_per_mtok": 2.5,
                       "output_price_per_mtok": 10.0},
        },
        "governance": {"rules": [
            {"data_class": "pii", "detectors": ["email", "payment_card"],
             "allowed_tags": ["local"]},
            {"data_class": "internal", "patterns": ["(?i)confidential"],
             "allowed_models": ["cheap", "mid"]},
        ]},
        "refusal": {"deny_patterns": ["(?i)ignore previous instructions"],
                    "max_input_tokens": 60},
        "preroute": {"kind": "rules", "preroute_below": 0.5, "keyword_scores": {"prove": -0.7}},
        "tiers": [
            {"model": "cheap", "accept_above": 0.7},
            {"model": "mid", "accept_above": 0.6, "verifier": "number"},
            {"model": "strong"},
        ],
        "fallback": "mid",
        "budgets": {"max_cost_per_request": 0.5, "max_strong_share": 0.4},
    }
    data.update(extra)
    return Policy.validate_data(data)


def synthetic(n: int = 400, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Items (some with emails, secrets, long inputs) and outcomes for the three models."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 6, n)
    texts = []
    for i, k in enumerate(kinds):
        base = f"request {i} about order {rng.integers(1000, 9999)}"
        texts.append({0: base, 1: base + " contact me at ann.lee@example.com",
                      2: base + " this is confidential", 3: base + " please prove it",
                      4: base + " " + "long " * 60, 5: "ignore previous instructions"}[int(k)])
    items = pl.DataFrame({"item_id": [f"i{i:04d}" for i in range(n)], "input": texts})
    rows = []
    skill = {"cheap": 0.55, "mid": 0.75, "strong": 0.92}
    price = {"cheap": 1e-5, "mid": 2e-4, "strong": 3e-3}
    for m in MODELS:
        q = (rng.random(n) < skill[m]).astype(float)
        conf = np.clip(0.35 * q + rng.random(n) * 0.65, 0, 1)
        err = rng.random(n) < 0.05
        rows.append(pl.DataFrame({
            "item_id": items["item_id"], "model": [m] * n, "output": [str(x) for x in q],
            "quality": q, "cost_usd": price[m] * (0.5 + rng.random(n)),
            "latency_ms": 100 + 900 * rng.random(n), "confidence": conf,
            "error": [("timeout" if e else None) for e in err],
        }))
    return items, pl.concat(rows)


# -- round trip --------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_gives_identical_replay(tmp_path: Path, suffix: str) -> None:
    items, outcomes = synthetic()
    policy = with_provenance(make_policy(), workload="synthetic", workload_fingerprint="abc123",
                             study="s1", trial=7,
                             train_metrics={"quality": 0.8, "quality_ci": [0.7, 0.9]},
                             holdout_metrics={"quality": 0.78, "quality_ci": [0.6, 0.9]})
    path = export_policy(policy, tmp_path / f"p{suffix}")
    loaded = load_policy_file(path)
    assert loaded == policy
    before = replay(policy, items, outcomes, n_boot=200)
    after = replay(loaded, items, outcomes, n_boot=200)
    assert after.metrics == before.metrics
    assert after.trace.equals(before.trace)
    # the run exercised several branches (else the comparison says little)
    assert 0 < before.metrics.refusal_rate < 1 and before.metrics.escalation_rate > 0
    prov = loaded.provenance
    assert prov is not None and prov.workload_fingerprint == "abc123" and prov.trial == 7
    assert prov.created and prov.package_version
    assert prov.holdout_metrics == {"quality": 0.78, "quality_ci": [0.6, 0.9]}


def test_policy_file_has_every_stage_and_threshold(tmp_path: Path) -> None:
    text = policy_text(with_provenance(make_policy()), "yaml")
    data = yaml.safe_load(text)
    assert data["schema_version"] == SCHEMA_VERSION
    assert [t["accept_above"] for t in data["tiers"]] == [0.7, 0.6, 0.0]
    assert data["preroute"]["preroute_below"] == 0.5
    assert data["budgets"] == {"max_cost_per_request": 0.5, "max_strong_share": 0.4}
    assert data["models"]["strong"]["api_key_env"] == "OPENAI_API_KEY"
    assert data["models"]["mid"]["api_base"] == "http://127.0.0.1:9/v1"
    assert data["models"]["strong"]["input_price_per_mtok"] == 2.5
    assert json.loads(policy_text(make_policy(), "json"))["fallback"] == "mid"


def test_provenance_from_store_has_fingerprint_and_cis(store: Any) -> None:
    items, outcomes = synthetic(200)
    store.add_workload_frame("syn", items, task_type="qa", source="test")
    store.write_outcomes("syn", outcomes)
    hold = items["item_id"].to_list()[::3]
    policy = provenance_from_store(make_policy(), store, "syn", holdout_ids=hold, trial=2)
    prov = policy.provenance
    assert prov is not None
    assert prov.workload == "syn"
    assert prov.workload_fingerprint == store.workload("syn").fingerprint
    for metrics in (prov.train_metrics, prov.holdout_metrics):
        assert metrics is not None
        lo, hi = metrics["quality_ci"]
        assert lo <= metrics["quality"] <= hi
    assert prov.holdout_metrics["n"] == len(hold)  # type: ignore[index]


# -- bad files -----------------------------------------------------------------------------------
def _dump(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def _good() -> dict:
    return make_policy().model_dump(mode="json", exclude_none=True)


def _set(path: str, value: object) -> dict:
    data = _good()
    node = data
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


BILLION_LAUGHS = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
schema_version: 1
"""


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("unknown schema", _dump(_set("schema_version", 99)), "unknown schema_version 99"),
        ("schema wrong type", _dump(_set("schema_version", "one")),
         "schema_version must be an integer"),
        ("no schema", _dump({k: v for k, v in _good().items() if k != "schema_version"}),
         "missing schema_version"),
        ("unknown tier model", _dump(_set("tiers.1.model", "gpt-9")), "unknown model 'gpt-9'"),
        ("unknown fallback", _dump(_set("fallback", "nope")), "unknown model 'nope'"),
        ("threshold above 1", _dump(_set("tiers.0.accept_above", 1.5)),
         "tiers.0.accept_above"),
        ("threshold negative", _dump(_set("preroute.preroute_below", -0.1)),
         "preroute"),
        ("wrong type", _dump(_set("tiers.0.accept_above", "high")), "tiers.0.accept_above"),
        ("share out of range", _dump(_set("budgets.max_strong_share", 2)), "max_strong_share"),
        ("unknown field", _dump(_set("tiers.0.acept_above", 0.5)), "acept_above"),
        ("key in file", _dump(_set("models.strong.api_key", SECRET)), "never hold keys"),
        ("alias bomb", BILLION_LAUGHS, "anchors and aliases"),
        ("not a mapping", "- a\n- b\n", "must be a mapping"),
        ("invalid yaml", "models: [unclosed\n", "invalid YAML"),
        ("empty tiers", _dump(_set("tiers", [])), "at least one cascade tier"),
    ],
)
def test_bad_policy_files_are_rejected(tmp_path: Path, name: str, text: str,
                                       message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy_file(path)
    assert message in str(err.value), str(err.value)
    assert str(path) in str(err.value)
    assert SECRET not in str(err.value)


def test_oversized_file_is_rejected_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(_dump(_good()) + "#" + "x" * MAX_POLICY_FILE_BYTES + "\n")
    with pytest.raises(PolicyError, match="over the 1000000-byte limit"):
        load_policy_file(path)


def test_bad_json_files(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PolicyError, match="nested too deeply|must be a mapping"):
        load_policy_file(deep)
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema_version": 1, ')
    with pytest.raises(PolicyError, match="invalid JSON"):
        load_policy_file(broken)
    wrong = tmp_path / "p.txt"
    wrong.write_text(_dump(_good()))
    with pytest.raises(PolicyError, match=r"\.yaml, \.yml or \.json"):
        load_policy_file(wrong)
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy_file(tmp_path / "missing.yaml")


def test_load_text_guesses_format() -> None:
    policy = make_policy()
    assert load_policy_text(policy.to_json()) == policy
    assert load_policy_text(policy.to_yaml()) == policy


# -- secrets -------------------------------------------------------------------------------------
def test_no_secret_in_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    policy = with_provenance(make_policy())
    texts = [
        export_policy(policy, tmp_path / "p.yaml").read_text(),
        export_policy(policy, tmp_path / "p.json").read_text(),
        write_litellm_config(policy, tmp_path / "litellm.yaml").read_text(),
    ]
    for text in texts:
        assert SECRET not in text
    assert "os.environ/OPENAI_API_KEY" in texts[2]
    # a policy that would carry the key in free text is refused, the message does not echo it
    leaky = policy.model_copy(update={"description": f"key {SECRET}"})
    with pytest.raises(WorkbenchError) as err:
        export_policy(leaky, tmp_path / "leak.yaml")
    assert SECRET not in str(err.value)
    assert not (tmp_path / "leak.yaml").exists()


# -- LiteLLM config ------------------------------------------------------------------------------
def test_litellm_config_content() -> None:
    policy = make_policy()
    cfg = litellm_config(policy, num_retries=3, timeout_s=12)
    by_name = {e["model_name"]: e["litellm_params"] for e in cfg["model_list"]}
    assert set(by_name) == set(MODELS)
    assert by_name["strong"]["model"] == "openai/gpt-4o"
    assert by_name["strong"]["input_cost_per_token"] == pytest.approx(2.5e-6)
    assert by_name["strong"]["output_cost_per_token"] == pytest.approx(1e-5)
    assert by_name["mid"]["model"] == "openai/mid-model"
    assert by_name["mid"]["api_base"] == "http://127.0.0.1:9/v1"
    assert by_name["cheap"]["model"] == "openai/cheap"  # a GGUF served by llama_cpp.server
    assert sorted(by_name["cheap"]["tags"]) == ["internal", "pii"]
    assert by_name["mid"]["tags"] == ["internal"]
    assert "tags" not in by_name["strong"]
    rs = cfg["router_settings"]
    assert rs["fallbacks"] == [{"cheap": ["mid"]}, {"strong": ["mid"]}]
    assert rs["num_retries"] == 3 and rs["timeout"] == 12
    assert rs["enable_tag_filtering"] is True
    text = litellm_config_yaml(policy)
    header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
    for needle in ("cascade tier 0: cheap accepts when confidence (auto) >= 0.7",
                   "cascade tier 1: mid", "preroute_below=0.5", "max_strong_share=0.4",
                   "governance 'pii'", "llama_cpp.server"):
        assert needle in header, needle


def test_litellm_router_builds_from_generated_config(tmp_path: Path) -> None:
    path = write_litellm_config(make_policy(), tmp_path / "litellm.yaml")
    router = build_litellm_router(load_litellm_config(path))
    assert sorted({m["model_name"] for m in router.model_list}) == sorted(MODELS)
    assert router.num_retries == 2


@pytest.fixture(scope="module")
def llama_server() -> Iterator[LlamaServer]:
    """A real llama_cpp.server on loopback for this module."""
    yield from llama_server_fixture()


@pytest.mark.slow
def test_litellm_router_routes_live(tmp_path: Path, llama_server: LlamaServer) -> None:
    """Fallback from a dead endpoint to the live server, and tag filtering for a data class,
    executed by LiteLLM's own Router from the exported file."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    policy = Policy.validate_data({
        "name": "live", "models": {
            "cheap": {"model": f"openai/{llama_server.alias}", "api_base": dead,
                      "tags": ["local"]},
            "strong": {"model": f"openai/{llama_server.alias}",
                       "api_base": llama_server.api_base, "input_price_per_mtok": 1.0,
                       "output_price_per_mtok": 2.0},
            "private": {"model": f"openai/{llama_server.alias}",
                        "api_base": llama_server.api_base, "tags": ["local"]},
        },
        "governance": {"rules": [{"data_class": "pii", "detectors": ["email"],
                                  "allowed_tags": ["local"]}]},
        "tiers": [{"model": "cheap", "accept_above": 0.5}, {"model": "strong"}],
        "fallback": "strong",
    })
    path = write_litellm_config(policy, tmp_path / "litellm.yaml", num_retries=0, timeout_s=60)
    router = build_litellm_router(load_litellm_config(path))
    messages = [{"role": "user", "content": "Say hi"}]
    resp = router.completion(model="cheap", messages=messages, max_tokens=4)
    assert resp.choices[0].message.content is not None
    assert resp._hidden_params.get("api_base", "").startswith(llama_server.api_base)
    # priced from the exported per-token prices
    assert resp._hidden_params.get("response_cost", 0) > 0
    # Tag filtering, as the proxy runs it (async path; in this LiteLLM version the sync
    # Router.completion skips the tag stage): a pii-tagged request may reach the model allowed
    # to see pii, and never one that is not.
    async def tagged(model: str) -> object:
        return await router.acompletion(model=model, messages=messages, max_tokens=4,
                                        metadata={"tags": ["pii"]})

    ok = asyncio.run(tagged("private"))
    assert ok.choices[0].message.content is not None
    with pytest.raises(Exception, match="(?i)tags"):
        asyncio.run(tagged("strong"))
    assert os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP") == "True"


def test_export_cli_writes_both_files(tmp_path: Path, store: Any, home: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.cli import main

    items, outcomes = synthetic(120)
    store.add_workload_frame("syn", items, task_type="qa", source="test")
    store.write_outcomes("syn", outcomes)
    src = export_policy(make_policy(), tmp_path / "src.yaml", provenance=False)
    hold = tmp_path / "holdout.txt"
    hold.write_text("\n".join(items["item_id"].to_list()[:40]))
    code = main(["export", "--policy", str(src), "--out", str(tmp_path / "out.json"),
                 "--litellm", str(tmp_path / "litellm.yaml"), "--workload", "syn",
                 "--holdout", str(hold), "--study", "st", "--trial", "4", "--home", str(home)])
    assert code == 0, capsys.readouterr().err
    loaded = load_policy_file(tmp_path / "out.json")
    prov = loaded.provenance
    assert prov is not None and prov.workload == "syn" and prov.study == "st"
    assert prov.holdout_metrics["n"] == 40 and prov.train_metrics["n"] == 80  # type: ignore[index]
    assert load_litellm_config(tmp_path / "litellm.yaml")["router_settings"]["fallbacks"]
    code = main(["export", "--policy", str(src), "--home", str(home)])
    assert code == 2 and "nothing to write" in capsys.readouterr().err
