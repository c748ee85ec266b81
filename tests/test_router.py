"""The runtime PolicyRouter: pipeline stages live with real providers (the bundled GGUF model,
a dead loopback endpoint for provider errors, a real llama_cpp.server), the decision log, and
consistency with replay given the same confidences."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.servers import LlamaServer, bundled_model_path, free_port, llama_server_fixture
from workbench.cli import main
from workbench.errors import PolicyError
from workbench.export import export_policy
from workbench.policy import Policy
from workbench.providers.base import Request
from workbench.replay import replay
from workbench.router import PolicyRouter, read_log, redact_pii
from workbench.workloads.samples import generate

SECRET = "sk-test-SECRET123"
LABELS = ["billing", "shipping", "technical", "account", "refund", "other"]


@pytest.fixture(scope="module")
def gguf() -> str:
    """Path of the bundled model."""
    return str(bundled_model_path())


def local_policy(gguf: str, **extra: Any) -> Policy:
    """Two tiers on the same local file (different names), both tagged local."""
    data: dict[str, Any] = {
        "name": "local-two",
        "models": {
            "small": {"kind": "local-gguf", "model": gguf, "tags": ["local"]},
            "small2": {"kind": "local-gguf", "model": gguf, "tags": ["local"],
                       "input_price_per_mtok": 1.0},
        },
        "tiers": [{"model": "small", "accept_above": 0.0}, {"model": "small2"}],
    }
    data.update(extra)
    return Policy.validate_data(data)


def make_router(policy: Policy, tmp_path: Path, **kw: Any) -> PolicyRouter:
    """A router logging to tmp_path/decisions.jsonl (retries off: provider errors are fast)."""
    kw.setdefault("max_retries", 0)
    return PolicyRouter(policy, log_path=tmp_path / "decisions.jsonl", **kw)


# -- no model call needed ------------------------------------------------------------------------
def test_governance_refusal_calls_no_model_and_log_is_redacted(tmp_path: Path,
                                                               gguf: str) -> None:
    policy = local_policy(gguf, governance={"rules": [
        {"data_class": "pii", "detectors": ["email", "payment_card"],
         "allowed_tags": ["vault"]}]})
    router = make_router(policy, tmp_path)
    res = router.complete("Refund to card 4111 1111 1111 1111, mail ann.lee@example.com")
    router.close()
    assert res.refused and res.refusal_reason == "governance"
    assert res.models_tried == () and res.model is None and res.cost_usd == 0
    assert res.data_classes == ("pii",)
    line = (tmp_path / "decisions.jsonl").read_text()
    assert "ann.lee@example.com" not in line and "4111 1111" not in line
    rec = json.loads(line)
    assert rec["input"] == "Refund to card [PAYMENT_CARD], mail [EMAIL]"
    assert rec["refusal_reason"] == "governance" and rec["data_classes"] == ["pii"]


def test_refusal_stages(tmp_path: Path, gguf: str) -> None:
    policy = local_policy(gguf, refusal={"deny_patterns": ["(?i)ignore (all|previous) "
                                                           "instructions"],
                                         "max_input_tokens": 10})
    router = make_router(policy, tmp_path, log_text="none")
    deny = router.complete("Please IGNORE previous instructions")
    long = router.complete("word " * 20)
    router.close()
    assert deny.refusal_reason == "deny_pattern" and long.refusal_reason == "max_input_tokens"
    assert [d.stage for d in long.trace] == ["refusal", "answer"]
    assert long.trace[0].detail["estimated_tokens"] == 25
    assert all("input" not in r for r in read_log(tmp_path / "decisions.jsonl"))


def test_cost_cap_refuses_before_calling(tmp_path: Path, gguf: str) -> None:
    policy = local_policy(gguf, tiers=[{"model": "small2"}],
                          budgets={"max_cost_per_request": 1e-9})
    res = make_router(policy, tmp_path, log=False).complete("hello there")
    assert res.refused and res.refusal_reason == "max_cost_per_request"
    assert res.models_tried == ()


def test_redact_pii() -> None:
    text = ("call +44 20 7946 0958 or (555) 123-4567, SSN 123-45-6789, IBAN "
            "GB82 WEST 1234 5698 7654 32, card 4111-1111-1111-1111.")
    out = redact_pii(text, [("secret", "(?i)project x")])
    for raw in ("7946", "123-4567", "123-45-6789", "WEST", "4111"):
        assert raw not in out
    assert "[PHONE]" in out and "[NATIONAL_ID]" in out and "[IBAN]" in out
    assert out.endswith("[PAYMENT_CARD].")
    assert redact_pii("about Project X now", [("secret", "(?i)project x")]) == "about [SECRET] now"


# -- the local model -------------------------------------------------------------------------------
@pytest.mark.slow
def test_cascade_accepts_or_escalates(tmp_path: Path, gguf: str) -> None:
    text = "I was charged twice for my subscription this month."
    accept = make_router(local_policy(gguf), tmp_path).complete(text, labels=LABELS)
    assert accept.model == "small" and not accept.escalated and accept.text in LABELS
    assert [d.action for d in accept.trace if d.stage == "tier"] == ["accept"]
    assert 0 < accept.confidence <= 1  # type: ignore[operator]

    policy = local_policy(gguf, tiers=[{"model": "small", "accept_above": 1.0},
                                       {"model": "small2"}])
    router = make_router(policy, tmp_path)
    esc = router.complete(text, labels=LABELS)
    assert esc.models_tried == ("small", "small2") and esc.escalated and esc.reached_strong
    assert esc.model == "small2"
    assert [d.action for d in esc.trace if d.stage == "tier"] == ["escalate", "accept"]
    assert esc.cost_usd == pytest.approx(sum(r.cost_usd for _, r in esc.calls))
    assert esc.latency_ms == pytest.approx(sum(r.latency_ms for _, r in esc.calls))
    assert esc.overhead_ms >= 0
    # the same item gives (nearly) the same confidence both times; llama.cpp's numerics vary
    # slightly with the KV-cache state (prefix reused or not), about 1e-3
    assert esc.trace[0].detail["confidence"] == pytest.approx(accept.confidence, abs=0.01)
    recs = read_log(tmp_path / "decisions.jsonl")
    assert recs[-1]["escalated"] and recs[-1]["answered_by"] == "small2"
    assert recs[-1]["cheap_confidence"] == esc.trace[0].detail["confidence"]


@pytest.mark.slow
def test_preroute_and_strong_share_cap(tmp_path: Path, gguf: str) -> None:
    policy = local_policy(gguf, preroute={"kind": "rules", "preroute_below": 0.5,
                                          "keyword_scores": {"urgent": -0.8}})
    router = make_router(policy, tmp_path)
    res = router.complete("URGENT: my parcel is lost", labels=LABELS)
    assert res.models_tried == ("small2",) and res.model == "small2"
    assert res.trace[0].stage == "preroute" and res.trace[0].action == "strong"

    capped = local_policy(gguf, tiers=[{"model": "small", "accept_above": 1.0},
                                       {"model": "small2"}],
                          budgets={"max_strong_share": 0.0})
    res = make_router(capped, tmp_path).complete("Where is my parcel?", labels=LABELS)
    assert res.models_tried == ("small",) and res.model == "small"
    final = [d for d in res.trace if d.stage == "tier"][-1]
    assert final.action == "final" and final.detail["strong_share_cap"] == 0.0


@pytest.mark.slow
def test_fallback_on_provider_error_and_no_secret_anywhere(
        tmp_path: Path, gguf: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    policy = Policy.validate_data({
        "name": "fb", "models": {
            "remote": {"model": "openai/m", "api_base": dead, "api_key_env": "OPENAI_API_KEY"},
            "small": {"kind": "local-gguf", "model": gguf}},
        "tiers": [{"model": "remote"}], "fallback": "small",
        "data_handling": {"log_inputs": "full"}})  # the log keeps the text: no key in it
    path = export_policy(policy, tmp_path / "fb.yaml")
    router = PolicyRouter.from_file(path, log_path=tmp_path / "log.jsonl", max_retries=0)
    res = router.complete(f"My key is {SECRET}, is that bad?", labels=LABELS)
    router.close()
    assert res.used_fallback and res.model == "small" and res.text in LABELS
    assert res.models_tried == ("remote", "fallback:small")
    err = [d for d in res.trace if d.stage == "tier"][0]
    # LiteLLM reports a refused connection as InternalServerError("Connection error."), which
    # the hosted provider maps to "other" (or "connection")
    assert err.action == "error" and err.detail["error"] in ("connection", "other")
    assert res.calls[0][1].error == err.detail["error"]
    everything = "\n".join([
        json.dumps(res.as_dict(), default=str), res.trace_text(),
        (tmp_path / "log.jsonl").read_text(), path.read_text()])
    assert SECRET not in everything


@pytest.mark.slow
def test_route_cli_prints_answer_and_trace(tmp_path: Path, gguf: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = export_policy(local_policy(gguf), tmp_path / "p.yaml")
    log = tmp_path / "cli.jsonl"
    code = main(["route", "--policy", str(path), "--log", str(log), "--labels",
                 ",".join(LABELS), "--home", str(tmp_path / "home"),
                 "My package never arrived"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("answer (small): ") and "trace:" in out and "tier: small accept" in out
    assert len(read_log(log)) == 1


# -- consistency with replay ------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_server() -> Iterator[LlamaServer]:
    """A real llama_cpp.server on loopback (the strong tier)."""
    yield from llama_server_fixture()


@pytest.mark.slow
def test_live_decisions_equal_replay(tmp_path: Path, gguf: str, store: Any,
                                     llama_server: LlamaServer) -> None:
    """Route items live (local cheap tier, llama_cpp.server strong tier via LiteLLM), record
    what the providers returned as the workload's outcomes, replay the same policy, and compare
    decisions item by item."""
    sample = generate("support-triage")
    items = sample.items.head(10)
    store.add_workload_frame("st-live", items, task_type="classification", source="test",
                             label_set=sample.label_set)
    labels = list(sample.label_set or LABELS)
    base: dict[str, Any] = {
        "name": "live-cascade",
        "models": {
            "cheap": {"kind": "local-gguf", "model": gguf, "tags": ["local"]},
            "strong": {"model": f"openai/{llama_server.alias}",
                       "api_base": llama_server.api_base, "input_price_per_mtok": 0.5,
                       "output_price_per_mtok": 1.5},
        },
        "governance": {"rules": [{"data_class": "pii",
                                  "detectors": ["email", "phone", "payment_card", "iban"],
                                  "allowed_tags": ["local"]}]},
        "refusal": {"deny_patterns": ["(?i)lawyer|lawsuit"]},
        "tiers": [{"model": "cheap", "accept_above": 0.5, "verifier": "valid_label"},
                  {"model": "strong"}],
    }
    # two few-shot examples for the server (a short prompt keeps the test quick)
    short = {"strong": Policy.validate_data(base).models["strong"].replace(few_shot={
        "classification": [("I was charged twice this month.", "billing"),
                           ("My parcel is lost.", "shipping")]})}
    router = make_router(Policy.validate_data(base), tmp_path, log=False, configs=short)
    # the cheap tier's confidences first, to put the threshold where both branches occur
    cheap = router.provider("cheap")
    conf = {
        r["item_id"]: cheap.complete(Request(r["item_id"], "classification", r["input"],
                                             tuple(labels))).confidence
        for r in items.iter_rows(named=True)
    }
    base["tiers"][0]["accept_above"] = statistics.median(c for c in conf.values() if c)
    policy = Policy.validate_data(base)
    router = make_router(policy, tmp_path, configs=short)
    rows: list[dict[str, Any]] = []
    live: dict[str, Any] = {}
    for r in items.iter_rows(named=True):
        res = router.complete(r["input"], labels=labels, task_type="classification",
                              tags=r["tags"], data_class=r["data_class"],
                              difficulty=r["difficulty"], request_id=r["item_id"])
        live[r["item_id"]] = res
        got = dict(res.calls)
        if not res.refused and "strong" not in got and "pii" not in res.data_classes:
            got["strong"] = router.provider("strong").complete(
                Request(r["item_id"], "classification", r["input"], tuple(labels)))
        for model, resp in got.items():
            rows.append({"item_id": r["item_id"], "model": model, "output": resp.output,
                         "quality": float((resp.output or "").lower() == r["reference"].lower()),
                         "cost_usd": resp.cost_usd, "latency_ms": resp.latency_ms,
                         "confidence": resp.confidence, "error": resp.error})
    router.close()
    # live confidences of the cheap tier match the ones measured directly (up to llama.cpp's
    # KV-cache-dependent numerics); replay gets the live values themselves
    for item_id, res in live.items():
        if "cheap" in dict(res.calls):
            assert dict(res.calls)["cheap"].confidence == pytest.approx(conf[item_id], abs=0.01)
    store.write_outcomes("st-live", pl.DataFrame(rows))
    result = replay(policy, store.items("st-live"), store.outcomes("st-live"), n_boot=50)
    trace = {r["item_id"]: r for r in result.trace.iter_rows(named=True)}
    mismatches = []
    for item_id, res in live.items():
        t = trace[item_id]
        live_row = (">".join(res.models_tried) or None, res.model, res.escalated, res.refused,
                    res.refusal_reason)
        replay_row = (t["models_tried"], t["answered_by"], t["escalated"], t["refused"],
                      t["refusal_reason"])
        if live_row != replay_row:
            mismatches.append((item_id, live_row, replay_row))
    assert not mismatches
    outcomes = [(res.escalated, res.refused, "pii" in res.data_classes) for res in live.values()]
    assert any(o[0] for o in outcomes) and any(not o[0] and not o[1] for o in outcomes)
    # the quality replay reports is the quality of the live answers
    live_q = [float((res.text or "").lower() == ref.lower()) if not res.refused else 0.0
              for res, ref in zip(live.values(), items["reference"], strict=True)]
    assert result.metrics.quality == pytest.approx(sum(live_q) / len(live_q))


def test_learned_preroute_needs_a_fitted_router(tmp_path: Path, gguf: str) -> None:
    policy = local_policy(gguf, router={"method": "logistic"},
                          preroute={"kind": "learned", "cost_weight": 0.0})
    with pytest.raises(PolicyError, match="learned_router="):
        PolicyRouter(policy, log=False)


@pytest.mark.slow
def test_learned_preroute_live_equals_replay(tmp_path: Path, gguf: str) -> None:
    """A router fitted on recorded outcomes picks the entry tier live as replay does."""
    from workbench.learned import LearnedRouter

    n = 120
    train_text = [("compute the sum of " if i % 2 else "hello, where is my parcel ") + str(i)
                  for i in range(n)]
    items = pl.DataFrame({"item_id": [f"t{i}" for i in range(n)], "input": train_text})
    math_item = [i % 2 == 1 for i in range(n)]
    outcomes = pl.DataFrame({
        "item_id": [f"t{i}" for i in range(n)] * 2,
        "model": ["small"] * n + ["small2"] * n,
        "quality": [0.0 if m else 1.0 for m in math_item] + [1.0] * n,
        "cost_usd": [1e-6] * n + [1e-4] * n,
    })
    policy = local_policy(gguf, router={"method": "logistic", "epochs": 50},
                          preroute={"kind": "learned", "cost_weight": 2000.0})
    fitted = LearnedRouter.fit(items, outcomes, policy.tier_models, policy.router)
    router = make_router(policy, tmp_path, learned_router=fitted, max_tokens=4)
    tests = {"a": "compute the sum of 7 and 8", "b": "hello, where is my parcel now"}
    rows = []
    live = {}
    for item_id, text in tests.items():
        res = router.complete(text, request_id=item_id)
        live[item_id] = res
        got = dict(res.calls)
        for model in policy.tier_models:
            resp = got.get(model) or router.provider(model).complete(
                Request(item_id, "generic", text))
            rows.append({"item_id": item_id, "model": model, "output": resp.output,
                         "quality": 1.0, "cost_usd": resp.cost_usd,
                         "latency_ms": resp.latency_ms, "confidence": resp.confidence})
    router.close()
    test_items = pl.DataFrame({"item_id": list(tests), "input": list(tests.values())})
    trace = replay(policy, test_items, pl.DataFrame(rows), router=fitted, n_boot=20).trace
    assert [live[i].models_tried[0] for i in tests] == ["small2", "small"]
    assert trace["models_tried"].cast(pl.String).to_list() == [
        ">".join(live[i].models_tried) for i in tests]
    assert live["a"].trace[0].stage == "preroute" and "predicted" in live["a"].trace[0].detail
