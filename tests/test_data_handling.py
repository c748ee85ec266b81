"""Data handling as settings: the policy's `data_handling` section (what the decision log keeps,
for how long, for which data classes), enforced by the live router and `serve`, and the
governance guarantee beside it. Property tests (hypothesis) mix PII of every detector kind
with ordinary text and check, in replay and live (a real PolicyRouter calling real loopback
HTTP model servers through LiteLLM), that no detected PII reaches a model the governance
rules forbid, and none reaches the log when the settings say so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.servers import JsonHandler, http_server
from workbench import governance as gov
from workbench.cli import main
from workbench.data_handling import KEY_SUFFIX, DataHandling, keyed_hash
from workbench.decision_log import DecisionLog, prune_log, read_log, redact_pii
from workbench.errors import PolicyError, WorkbenchError
from workbench.export import export_policy
from workbench.policy import BUILTIN_DETECTORS, Policy, json_schema
from workbench.replay import replay
from workbench.router import PolicyRouter
from workbench.serve import PolicyServer

DETECTORS = BUILTIN_DETECTORS
RULES = {  # data class -> (detectors, item tags, models allowed)
    "contact": (("email", "phone"), (), ("vault",)),
    "money": (("payment_card", "iban"), (), ("vault",)),
    "identity": (("national_id",), (), ()),  # no model may see it: refused
    "restricted": ((), ("secret",), ("vault",)),
}
TEXT_KEYS = ("input", "output", "input_hash", "output_hash")
MODES = ("none", "redacted", "hashed", "full")


# -- generators: PII of every detector kind, ordinary text ------------------------------------
def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _iban(country: str, bban: str) -> str:
    moved = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in moved)) % 97
    return f"{country}{check:02d}{bban}"


digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


@st.composite
def email(draw: st.DrawFn) -> str:
    local = draw(st.from_regex(r"[a-z][a-z0-9._]{0,7}", fullmatch=True))
    domain = draw(st.from_regex(r"[a-z]{2,8}", fullmatch=True))
    return f"{local}@{domain}.{draw(st.sampled_from(['com', 'org', 'example', 'io']))}"


@st.composite
def phone(draw: st.DrawFn) -> str:
    n = draw(st.lists(digits, min_size=10, max_size=10)).copy()
    n[0] = str(draw(st.integers(2, 9)))
    s = "".join(n)
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return f"+44 20 {s[2:6]} {s[6:10]}"
    if kind == 1:
        return f"({s[:3]}) {s[3:6]}-{s[6:]}"
    return f"{s[:3]}-{s[3:6]}-{s[6:]}"


@st.composite
def payment_card(draw: st.DrawFn) -> str:
    body = draw(st.sampled_from(["4", "51", "37"])) + "".join(
        draw(st.lists(digits, min_size=13, max_size=13)))
    body = body[:15]
    number = body + _luhn_digit(body)
    sep = draw(st.sampled_from([" ", "-", ""]))
    return sep.join(number[i:i + 4] for i in range(0, 16, 4))


@st.composite
def iban(draw: st.DrawFn) -> str:
    bank = draw(st.from_regex(r"[A-Z]{4}", fullmatch=True))
    number = _iban("GB", bank + "".join(draw(st.lists(digits, min_size=14, max_size=14))))
    if draw(st.booleans()):
        return " ".join(number[i:i + 4] for i in range(0, len(number), 4))
    return number


@st.composite
def national_id(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        area = draw(st.integers(1, 899).filter(lambda a: a != 666))
        group, serial = draw(st.integers(1, 99)), draw(st.integers(1, 9999))
        return f"{area:03d}-{group:02d}-{serial:04d}"
    letters = draw(st.from_regex(r"[A-CEGHJ-PR-TW-Z]{2}", fullmatch=True))
    six = "".join(draw(st.lists(digits, min_size=6, max_size=6)))
    return f"{letters}{six}{draw(st.sampled_from('ABCD'))}"


PII_KINDS = {"email": email(), "phone": phone(), "payment_card": payment_card(),
             "iban": iban(), "national_id": national_id()}
WORDS = ["please", "refund", "my", "order", "arrived", "broken", "thanks", "café", "über",
         "invoice", "call", "me", "at", "or", "send", "to", "the", "account"]
ordinary = st.one_of(st.sampled_from(WORDS),
                     st.text(alphabet="abcdefghijklmnopqrstuvwxyzéü", min_size=1, max_size=10))
pii_value = st.sampled_from(sorted(PII_KINDS)).flatmap(
    lambda k: PII_KINDS[k].map(lambda v: (k, v)))


@st.composite
def request_text(draw: st.DrawFn, seps: tuple[str, ...] = (", ", " and ", "; ")
                 ) -> tuple[str, list[tuple[str, str]]]:
    """Ordinary words and PII values of random kinds, in random order, joined by one of
    `seps` (by default never a lone space, so a value is not glued to a neighbouring one)."""
    tokens: list[tuple[str | None, str]] = [(None, w) for w in draw(
        st.lists(ordinary, min_size=0, max_size=8))]
    planted = draw(st.lists(pii_value, min_size=0, max_size=4))
    for kind, value in planted:
        tokens.insert(draw(st.integers(0, len(tokens))), (kind, value))
    if not tokens:
        tokens = [(None, "hello")]
    parts = [tokens[0][1]]
    for _, tok in tokens[1:]:
        parts.append(draw(st.sampled_from(seps)) + tok)
    return "".join(parts), planted


def _classes_of(text: str, tags: list[str]) -> set[str]:
    """The data classes the governance rules give a request (by the per-text detectors)."""
    out = set()
    for name, (detectors, item_tags, _) in RULES.items():
        if any(gov.detect_one(text, d) for d in detectors) or set(item_tags) & set(tags):
            out.add(name)
    return out


def _allowed(classes: set[str]) -> set[str]:
    allowed = {"cloud", "vault"}
    for c in classes:
        allowed &= set(RULES[c][2])
    return allowed


def make_policy(base: dict[str, str], handling: dict[str, Any] | None = None) -> Policy:
    """Cheap hosted tier `cloud` (sees no PII), strong tier `vault` (sees contact, money
    and restricted data); national ids go nowhere."""
    data: dict[str, Any] = {
        "name": "data-handling",
        "models": {name: {"kind": "litellm", "model": f"openai/{name}", "api_base": url,
                          "max_retries": 0, "timeout_s": 30, "tags": [name]}
                   for name, url in base.items()},
        "governance": {"rules": [
            {"data_class": name, "detectors": list(d), "item_tags": list(t),
             "allowed_models": list(a)} for name, (d, t, a) in RULES.items()]},
        "tiers": [{"model": "cloud", "accept_above": 0.0}, {"model": "vault"}],
    }
    if handling is not None:
        data["data_handling"] = handling
    return Policy.validate_data(data)


# -- real model servers on loopback: they echo the user's text and record what they got ---------
class _Echo(JsonHandler):
    received: list[dict[str, Any]] = []
    name = "echo"

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.send_json(200, {"object": "list", "data": [{"id": self.name, "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.received.append(body)
        user = [m.get("content") or "" for m in body.get("messages", [])
                if m.get("role") == "user"]
        self.send_json(200, {
            "id": "c", "object": "chat.completion", "created": 0, "model": self.name,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant",
                                     "content": f"you said: {user[-1] if user else ''}"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        })


@pytest.fixture(scope="module")
def models() -> Iterator[dict[str, type[_Echo]]]:
    """Two real HTTP model servers: name -> handler class (its `received` request bodies)."""
    handlers = {n: type(f"Echo_{n}", (_Echo,), {"received": [], "name": n})
                for n in ("cloud", "vault")}
    with http_server(handlers["cloud"]) as cloud, http_server(handlers["vault"]) as vault:
        handlers["cloud"].base = cloud  # type: ignore[attr-defined]
        handlers["vault"].base = vault  # type: ignore[attr-defined]
        yield handlers


def _bases(models: dict[str, type[_Echo]]) -> dict[str, str]:
    return {n: h.base for n, h in models.items()}  # type: ignore[attr-defined]


def _sent_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body.get("messages", []))


handling_settings = st.fixed_dictionaries({
    "log_inputs": st.sampled_from(MODES),
    "log_outputs": st.sampled_from(MODES),
    "log_classes": st.one_of(st.none(), st.lists(st.sampled_from(sorted(RULES)), unique=True)),
})


def check_received(models: dict[str, type[_Echo]], text: str, tags: list[str],
                   planted: list[tuple[str, str]]) -> set[str]:
    """What each model server received for one request holds no PII its rules forbid;
    returns the names of the models that were called."""
    classes = _classes_of(text, tags)
    allowed = _allowed(classes)
    called = set()
    for name, handler in models.items():
        for body in handler.received:
            called.add(name)
            sent = _sent_text(body)
            assert name in allowed, (name, classes, text)
            for cls, (detectors, _, ok) in RULES.items():
                if name not in ok:
                    assert not any(gov.detect_one(sent, d) for d in detectors), (name, cls, sent)
            for kind, value in planted:
                forbidden = not any(name in RULES[c][2] for c in RULES if kind in RULES[c][0])
                if forbidden:
                    assert value not in sent, (name, kind, value)
    return called


def check_log_line(rec: dict[str, Any], raw_line: str, handling: dict[str, Any], text: str,
                   output: str | None, classes: set[str], planted: list[tuple[str, str]],
                   key: bytes | None) -> None:
    """A log line keeps exactly what the settings allow (worked out here from the settings,
    not by the code under test), and no PII they forbid."""
    assert set(rec["data_classes"]) == classes
    allowed_classes = handling.get("log_classes")
    withheld = allowed_classes is not None and bool(classes - set(allowed_classes))
    inputs, outputs = handling.get("log_inputs", "redacted"), handling.get("log_outputs", "none")
    if withheld:
        assert not any(k in rec for k in TEXT_KEYS), rec
    for name, mode, value in (("input", inputs, text), ("output", outputs, output)):
        if withheld or value is None or mode == "none":
            assert name not in rec and f"{name}_hash" not in rec
        elif mode == "redacted":
            assert f"{name}_hash" not in rec
            assert not any(gov.detect_one(rec[name], d) for d in DETECTORS), rec[name]
            assert rec[name] == redact_pii(value)
        elif mode == "hashed":
            assert key is not None and name not in rec
            assert rec[f"{name}_hash"] == keyed_hash(key, value)
        else:
            assert rec[name] == value
    if withheld or "full" not in (inputs, outputs):  # no planted PII anywhere in the line
        for _, value in planted:
            assert value not in raw_line, (value, raw_line)
            assert json.dumps(value)[1:-1] not in raw_line
    if key is not None:
        assert key.decode() not in raw_line


# -- the property tests --------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(req=request_text(), secret=st.booleans(), handling=handling_settings)
def test_live_router_keeps_pii_from_forbidden_models_and_from_the_log(
        models: dict[str, type[_Echo]], req: tuple[str, list[tuple[str, str]]], secret: bool,
        handling: dict[str, Any]) -> None:
    text, planted = req
    for kind, value in planted:  # the generator makes values the detectors find, in context
        assert gov.detect_one(value, kind) and gov.detect_one(text, kind), (kind, value)
    tags = ["secret"] if secret else []
    policy = make_policy(_bases(models), handling)
    for h in models.values():
        h.received.clear()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "decisions.jsonl"
        router = PolicyRouter(policy, log_path=log)
        try:
            res = router.complete(text, tags=tags)
        finally:
            router.close()
        classes = _classes_of(text, tags)
        assert set(res.data_classes) == classes
        called = check_received(models, text, tags, planted)
        event(f"answered by {res.model or 'nobody (refused)'}")
        withheld = handling["log_classes"] is not None and classes - set(handling["log_classes"])
        event(f"{len(classes)} data class(es), {'some' if withheld else 'no'} text withheld")
        if "identity" in classes:
            assert res.refused and res.refusal_reason == "governance" and not called
        else:
            assert res.error is None and res.model in _allowed(classes)
            assert res.text == f"you said: {text}"  # the model really answered
        raw = log.read_text(encoding="utf-8")
        assert raw.count("\n") == 1
        key_file = Path(str(log) + KEY_SUFFIX)
        key = key_file.read_bytes().strip() if key_file.exists() else None
        assert (key is not None) == ("hashed" in (handling["log_inputs"],
                                                  handling["log_outputs"]))
        check_log_line(json.loads(raw), raw, handling, text, res.text, classes, planted, key)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(reqs=st.lists(st.tuples(request_text(), st.booleans()), min_size=1, max_size=25))
def test_replay_keeps_pii_from_forbidden_models(
        reqs: list[tuple[tuple[str, list[tuple[str, str]]], bool]]) -> None:
    policy = make_policy({"cloud": "http://127.0.0.1:9/v1", "vault": "http://127.0.0.1:9/v1"})
    items = pl.DataFrame([{"item_id": f"i{i}", "input": text,
                           "tags": json.dumps(["secret"]) if secret else None}
                          for i, ((text, _), secret) in enumerate(reqs)])
    outcomes = pl.DataFrame([{"item_id": f"i{i}", "model": m, "output": "ok", "quality": 1.0,
                              "cost_usd": 0.001 * (j + 1), "latency_ms": 10.0, "error": None,
                              "confidence": 0.9}
                             for i in range(len(reqs)) for j, m in enumerate(("cloud", "vault"))],
                            schema_overrides={"error": pl.String})
    trace = replay(policy, items, outcomes, n_boot=10).trace
    for row, ((text, planted), secret) in zip(trace.iter_rows(named=True), reqs, strict=True):
        classes = _classes_of(text, ["secret"] if secret else [])
        tried = [m for step in (row["models_tried"] or "").split(">") if step
                 for m in step.removeprefix("fallback:").split("+")]
        assert set(tried) <= _allowed(classes), (text, classes, tried)
        if "identity" in classes:
            assert row["refused"] and row["refusal_reason"] == "governance" and not tried
        for model in tried:
            for cls, (detectors, _, ok) in RULES.items():
                if model not in ok:
                    assert not any(gov.detect_one(text, d) for d in detectors), (model, cls)
        for kind, _ in planted:
            assert gov.detect_one(text, kind)


# -- serve: the same settings through the HTTP endpoint -------------------------------------------
@pytest.mark.parametrize("handling", [
    {"log_inputs": "hashed", "log_outputs": "none", "log_classes": ["contact"]},
    {"log_inputs": "redacted", "log_outputs": "redacted"},
    {"log_inputs": "none", "log_outputs": "none"},
])
def test_serve_honours_the_policy_data_handling(models: dict[str, type[_Echo]],
                                                tmp_path: Path,
                                                handling: dict[str, Any]) -> None:
    policy = make_policy(_bases(models), handling)
    log = tmp_path / "serve.jsonl"
    router = PolicyRouter(policy, log_path=log)
    requests = [
        ("Refund to 4111 1111 1111 1111, thanks", [], {"money"}),
        ("write to ann.lee@example.com or call (555) 123-4567", [], {"contact"}),
        ("my ssn is 123-45-6789", [], {"identity"}),
        ("where is my parcel", ["secret"], {"restricted"}),
        ("where is my parcel", [], set()),
    ]
    for h in models.values():
        h.received.clear()
    with PolicyServer(router, "127.0.0.1", 0) as server:
        for text, tags, _ in requests:
            r = httpx.post(f"{server.base_url}/chat/completions", timeout=60, json={
                "model": "data-handling", "tags": tags,
                "messages": [{"role": "user", "content": text}]})
            assert r.status_code == 200, r.text
    router.close()
    received = {n: [_sent_text(b) for b in h.received] for n, h in models.items()}
    assert len(received["cloud"]) == 1 and "where is my parcel" in received["cloud"][0]
    assert not any("123-45-6789" in t for texts in received.values() for t in texts)
    assert len(received["vault"]) == 3
    raw_lines = log.read_text(encoding="utf-8").splitlines()
    assert len(raw_lines) == len(requests)
    key_file = Path(str(log) + KEY_SUFFIX)
    key = key_file.read_bytes().strip() if key_file.exists() else None
    planted = [("payment_card", "4111 1111 1111 1111"), ("email", "ann.lee@example.com"),
               ("phone", "(555) 123-4567"), ("national_id", "123-45-6789")]
    for raw, (text, _tags, classes) in zip(raw_lines, requests, strict=True):
        rec = json.loads(raw)
        output = None if "identity" in classes else f"you said: {text}"
        check_log_line(rec, raw, handling, text, output, classes,
                       [p for p in planted if p[1] in text], key)


# -- the policy file: defaults, validation, schema -----------------------------------------------
BASE = {"name": "p", "models": {"a": {"model": "x/a"}}, "tiers": [{"model": "a"}]}


def test_old_policy_files_load_with_safe_defaults_and_keep_their_text() -> None:
    p = Policy.validate_data(dict(BASE))
    assert p.data_handling == DataHandling()
    assert (p.data_handling.log_inputs, p.data_handling.log_outputs) == ("redacted", "none")
    assert p.data_handling.retention_days is None and p.data_handling.log_classes is None
    assert "data_handling" not in p.to_yaml() and "data_handling" not in p.to_json()
    v1 = Policy.validate_data({"schema_version": 1, "models": {"a": {"provider": "litellm",
                                                                    "model": "x/a"}},
                               "tiers": [{"model": "a"}]})
    assert v1.data_handling == DataHandling()
    set_ = Policy.validate_data({**BASE, "data_handling": {"retention_days": 7,
                                                           "log_outputs": "hashed"}})
    assert Policy.from_yaml(set_.to_yaml()) == set_
    assert "retention_days: 7" in set_.to_yaml()
    assert p.with_value("data_handling.retention_days", 3).data_handling.retention_days == 3
    with pytest.raises(PolicyError, match="data_handling.retention_days: a retention of -1"):
        p.with_value("data_handling.retention_days", -1)
    schema = json_schema()
    assert schema["properties"]["data_handling"]
    props = schema["$defs"]["DataHandling"]["properties"]
    assert set(props) == {"log_inputs", "log_outputs", "retention_days", "log_classes",
                          "hash_key_env"}


@pytest.mark.parametrize(("handling", "message"), [
    ({"retention_days": -1}, "data_handling.retention_days: a retention of -1 days is below 0"),
    ({"retention_days": 1.5}, "data_handling.retention_days: must be a whole number of days"),
    ({"retention_days": "30"}, "data_handling.retention_days: must be a whole number"),
    ({"log_inputs": "hash"}, "data_handling.log_inputs: unknown choice 'hash'"),
    ({"log_outputs": "all"}, "data_handling.log_outputs: unknown choice 'all'"),
    ({"log_classes": ["pii"]}, "data_handling.log_classes: 'pii' is not a governance data "
                               "class"),
    ({"hash_key_env": "my secret key"}, "data_handling.hash_key_env: must be the NAME"),
    ({"keep": "all"}, "data_handling.keep: Extra inputs are not permitted"),
])
def test_bad_settings_are_rejected_naming_the_field_and_nothing_is_written(
        tmp_path: Path, handling: dict[str, Any], message: str) -> None:
    path = tmp_path / "bad.yaml"
    import yaml

    path.write_text(yaml.safe_dump({**BASE, "schema_version": 2, "data_handling": handling}))
    with pytest.raises(PolicyError) as info:
        PolicyRouter.from_file(path, log_path=tmp_path / "log.jsonl")
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)
    log = tmp_path / "log.jsonl"
    log.write_text('{"ts": "2000-01-01T00:00:00+00:00", "request_id": "kept"}\n')
    before = log.read_bytes()
    assert main(["route", "--policy", str(path), "--log", str(tmp_path / "route.jsonl"),
                 "--home", str(tmp_path / "home"), "hello"]) == 2
    assert main(["log", "prune", "--policy", str(path), "--log", str(log),
                 "--home", str(tmp_path / "home")]) == 2
    assert log.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "log.jsonl"]


def test_hash_key_from_the_environment_never_reaches_the_log_or_policy(
        models: dict[str, type[_Echo]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "k3y-for-hashing-0123456789abcdef"
    policy = make_policy(_bases(models), {"log_inputs": "hashed", "log_outputs": "hashed",
                                          "hash_key_env": "DH_TEST_KEY"})
    log = tmp_path / "d.jsonl"
    monkeypatch.delenv("DH_TEST_KEY", raising=False)
    with pytest.raises(WorkbenchError, match=r"\$DH_TEST_KEY is unset"):
        PolicyRouter(policy, log_path=log)
    assert not log.exists()
    monkeypatch.setenv("DH_TEST_KEY", key)
    router = PolicyRouter(policy, log_path=log)
    a = router.complete("where is my parcel")
    b = router.complete("where is my parcel")
    router.close()
    first, second = read_log(log)
    assert first["input_hash"] == second["input_hash"] == keyed_hash(key.encode(),
                                                                     "where is my parcel")
    assert first["output_hash"] == keyed_hash(key.encode(), a.text) == second["output_hash"]
    assert b.text == a.text and "parcel" not in log.read_text()
    assert key not in log.read_text() and key not in policy.to_yaml()
    assert not Path(str(log) + KEY_SUFFIX).exists()  # the env key is used, no key file


def test_per_log_key_file_is_private_and_stable(models: dict[str, type[_Echo]],
                                                tmp_path: Path) -> None:
    policy = make_policy(_bases(models), {"log_inputs": "hashed"})
    log = tmp_path / "d.jsonl"
    for _ in range(2):  # a second router on the same log reuses the key: hashes still match
        router = PolicyRouter(policy, log_path=log)
        router.complete("same text")
        router.close()
    key_file = Path(str(log) + KEY_SUFFIX)
    assert key_file.stat().st_mode & 0o777 == 0o600
    one, two = read_log(log)
    assert one["input_hash"] == two["input_hash"]
    assert key_file.read_text().strip() not in log.read_text()
    other = PolicyRouter(policy, log_path=tmp_path / "other.jsonl")  # another log, another key
    other.complete("same text")
    other.close()
    assert read_log(tmp_path / "other.jsonl")[0]["input_hash"] != one["input_hash"]


def test_log_text_override_is_shown_in_the_summary(models: dict[str, type[_Echo]],
                                                   tmp_path: Path) -> None:
    policy = make_policy(_bases(models), {"log_inputs": "redacted", "retention_days": 30,
                                          "log_classes": ["contact"]})
    router = PolicyRouter(policy, log_path=tmp_path / "d.jsonl", log_text="hashed")
    text = router.data_handling_summary()
    router.close()
    assert "(set by --log-text)" in text and "hash" in text.split("inputs:")[1].split("\n")[0]
    # the policy is the final word: an override may keep less, never more
    for looser in ("full",):
        with pytest.raises(PolicyError, match=f"--log-text {looser} would keep more request "
                                              "text than policy .* allows .*log_inputs: "
                                              "redacted.*none or hashed or redacted"):
            PolicyRouter(policy, log_path=tmp_path / "x.jsonl", log_text=looser)
    assert not (tmp_path / "x.jsonl").exists()
    strict = make_policy(_bases(models), {"log_inputs": "none"})
    for looser in ("hashed", "redacted", "full"):
        with pytest.raises(PolicyError, match="would keep more"):
            PolicyRouter(strict, log=False, log_text=looser)
    assert "retention: 30 days" in text and "logged only for: contact" in text
    off = PolicyRouter(policy, log=False)
    assert off.data_handling_summary().startswith("decision log: off")
    off.close()
    with pytest.raises(PolicyError, match="log_text: unknown choice 'some'"):
        PolicyRouter(policy, log=False, log_text="some")  # type: ignore[arg-type]


def test_route_cli_prints_the_data_handling_summary(models: dict[str, type[_Echo]],
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = export_policy(make_policy(_bases(models), {"retention_days": 14,
                                                      "log_outputs": "redacted"}),
                         tmp_path / "p.yaml")
    log = tmp_path / "d.jsonl"
    code = main(["route", "--policy", str(path), "--log", str(log), "--home",
                 str(tmp_path / "home"), "mail ann.lee@example.com please"])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("answer (vault): you said:")
    assert f"decision log: {log}" in err and "retention: 14 days, older lines pruned" in err
    assert "outputs: kept with PII replaced" in err
    rec = read_log(log)[0]
    assert rec["input"] == "mail [EMAIL] please" and "[EMAIL]" in rec["output"]


# -- retention and pruning -----------------------------------------------------------------------
def _line(rid: str, when: datetime) -> str:
    return json.dumps({"ts": when.isoformat(timespec="milliseconds"), "request_id": rid}) + "\n"


def test_prune_keeps_lines_within_retention_and_lines_of_unknown_age(tmp_path: Path) -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    log = tmp_path / "d.jsonl"
    log.write_text(_line("old", now - timedelta(days=31)) + _line("edge", now - timedelta(days=29))
                   + "not json at all\n" + _line("new", now)
                   + '{"ts": "2026-04-01T00:00:00", "request_id": "naive-old"}\n'
                   + '{"request_id": "no-time"}')
    log.chmod(0o640)
    result = prune_log(log, 30, now=now)
    assert (result.removed, result.kept) == (2, 4)
    assert "removed 2 line(s)" in result.summary()
    text = log.read_text()
    assert "old" not in text.replace("naive", "") and "edge" in text and "no-time" in text
    assert "not json at all" in text and text.endswith("\n")
    assert log.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "d.jsonl.lock"]
    assert prune_log(log, 30, now=now).removed == 0
    with pytest.raises(WorkbenchError, match="does not exist"):
        prune_log(tmp_path / "missing.jsonl", 3)


def test_a_prune_that_dies_before_the_replace_leaves_the_log_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    log = tmp_path / "d.jsonl"
    log.write_text(_line("old", now - timedelta(days=9)) + _line("new", now))
    before = log.read_bytes()

    def crash(*args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        prune_log(log, 1)
    assert log.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "d.jsonl.lock"]


_WRITER = """
import sys
from workbench.decision_log import DecisionLog
from datetime import UTC, datetime
log = DecisionLog(sys.argv[1])
for i in range(int(sys.argv[2])):
    log.write({"ts": datetime.now(UTC).isoformat(), "request_id": f"w{i}"})
log.close()
"""


def test_pruning_while_another_process_writes_loses_no_line(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    log = tmp_path / "d.jsonl"
    log.write_text("".join(_line(f"old{i}", now - timedelta(days=5)) for i in range(300)))
    n = 400
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(log), str(n)],
                              cwd=Path(__file__).resolve().parents[1])
    prunes = 0
    while writer.poll() is None:  # prune over and over while the other process appends
        prune_log(log, 1)
        prunes += 1
    assert writer.wait(timeout=120) == 0
    prune_log(log, 1)
    ids = [r["request_id"] for r in read_log(log)]
    assert sorted(ids) == sorted(f"w{i}" for i in range(n)), (prunes, len(ids))


def test_router_prunes_on_open_and_while_writing(models: dict[str, type[_Echo]],
                                                 tmp_path: Path) -> None:
    policy = make_policy(_bases(models), {"retention_days": 2})
    log = tmp_path / "d.jsonl"
    now = datetime.now(UTC)
    log.write_text(_line("stale", now - timedelta(days=3)) + _line("recent", now))
    router = PolicyRouter(policy, log_path=log)
    assert [r["request_id"] for r in read_log(log)] == ["recent"]  # pruned when opened
    assert router.log is not None and router.log.pruned is not None
    router.log.prune_every_s = 0.0  # prune before every write from now on
    with log.open("a") as fh:  # a line that aged out meanwhile (written by someone else)
        fh.write(_line("aged", now - timedelta(days=10)))
    res = router.complete("where is my parcel")
    router.close()
    assert [r["request_id"] for r in read_log(log)] == ["recent", res.request_id]


def test_threads_writing_while_pruning_lose_nothing(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.jsonl", retention_days=1, prune_every_s=0.0)
    now = datetime.now(UTC)

    def write(t: int) -> None:
        for i in range(100):
            log.write({"ts": now.isoformat(), "request_id": f"{t}-{i}"})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    log.close()
    assert len(read_log(tmp_path / "d.jsonl")) == 400


def test_log_prune_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    home = tmp_path / "home"
    home.mkdir()
    log = home / "decisions.jsonl"
    log.write_text(_line("old", now - timedelta(days=40)) + _line("new", now))
    path = make_policy({"cloud": "http://127.0.0.1:9/v1", "vault": "http://127.0.0.1:9/v1"},
                       {"retention_days": 30}).to_file(tmp_path / "p.yaml")
    assert main(["log", "prune", "--policy", str(path), "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "removed 1 line(s)" in out and "kept 1" in out
    assert [r["request_id"] for r in read_log(log)] == ["new"]
    forever = Policy.validate_data(dict(BASE)).to_file(tmp_path / "forever.yaml")
    assert main(["log", "prune", "--policy", str(forever), "--home", str(home)]) == 2
    assert "keeps decision-log lines forever" in capsys.readouterr().err
    assert main(["log", "prune", "--days", "-2", "--home", str(home)]) == 2
    assert "below 0" in capsys.readouterr().err
    assert main(["log", "prune", "--days", "0", "--log", str(log)]) == 0
    assert read_log(log) == []


# -- redaction -------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None, derandomize=True)
@given(req=request_text(), glued=request_text(seps=(" ", "\n", ", ")))
def test_redaction_removes_everything_the_detectors_find(
        req: tuple[str, list[tuple[str, str]]], glued: tuple[str, list[tuple[str, str]]]) -> None:
    text, planted = req
    out = redact_pii(text)
    assert not any(gov.detect_one(out, d) for d in DETECTORS), out
    for _, value in planted:
        assert value not in out
    # values one space apart: a match consumes the boundary its neighbour needs
    out = redact_pii(glued[0])
    assert not any(gov.detect_one(out, d) for d in DETECTORS), (glued[0], out)


def test_adjacent_values_are_all_redacted() -> None:
    assert redact_pii("ids 123-45-6789 234-56-7890 x") == "ids [NATIONAL_ID] [NATIONAL_ID] x"


def test_serve_command_prints_the_summary_and_applies_it(models: dict[str, type[_Echo]],
                                                         tmp_path: Path) -> None:
    import signal
    import time

    from tests.servers import free_port

    handling = {"log_inputs": "hashed", "log_outputs": "redacted", "retention_days": 7,
                "log_classes": ["contact"]}
    path = export_policy(make_policy(_bases(models), handling), tmp_path / "p.yaml")
    port, log = free_port(), tmp_path / "serve.jsonl"
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "serve", "--policy", str(path), "--port", str(port),
         "--log", str(log)], cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    text = "call me at (555) 123-4567 please"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60, json={
            "model": "data-handling", "messages": [{"role": "user", "content": text}]})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == f"you said: {text}"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert f"decision log: {log}" in out and "inputs: kept only as a keyed hash" in out
    assert "retention: 7 days" in out and "logged only for: contact" in out
    assert "hash key: serve.jsonl.key beside the log" in out
    raw = log.read_text()
    key = Path(str(log) + KEY_SUFFIX).read_bytes().strip()
    check_log_line(json.loads(raw), raw, handling, text, f"you said: {text}", {"contact"},
                   [("phone", "(555) 123-4567")], key)
