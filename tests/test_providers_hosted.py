"""Hosted provider: LiteLLM against a real llama_cpp.server on loopback, plus a real stdlib HTTP
server that answers 429/500/400 to exercise retries and error mapping."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import JsonHandler, LlamaServer, http_server, llama_server_fixture
from workbench.providers import ModelSpec, Request, UnknownModelError, get_provider
from workbench.providers.hosted import HostedProvider, key_status, read_secrets

LABELS = ("billing", "shipping", "refund")


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    yield from llama_server_fixture(n_threads=1)


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[LlamaServer]:
    yield from llama_server_fixture(n_threads=1, api_key="sk-test-good-0123456789")


def _config(server: LlamaServer, **kw: object) -> ModelSpec:
    return ModelSpec(name="srv", kind="litellm", model=server.litellm_model,
                     api_base=server.api_base, max_tokens=8, timeout_s=60, **kw)


@pytest.mark.slow
def test_classification_and_generation_through_litellm(server: LlamaServer) -> None:
    provider = get_provider(_config(server, input_price_per_mtok=1.0, output_price_per_mtok=2.0))
    provider.check()
    reqs = [Request("a", "classification", "I was charged twice on my card", LABELS),
            Request("b", "qa", "What is 2 + 3?")]
    out = provider.complete_many(reqs)
    for r in out:
        assert r is not None and r.error is None, r
        assert r.prompt_tokens > 0 and r.completion_tokens > 0
        assert r.cost_usd == pytest.approx((r.prompt_tokens + 2 * r.completion_tokens) / 1e6)
        assert r.confidence is None or 0.0 <= r.confidence <= 1.0
    assert out[0] is not None and out[0].output in LABELS
    assert out[0].signals["raw_output"]
    assert out[1] is not None and out[1].output is not None


@pytest.mark.slow
def test_unknown_models_are_clear_errors(server: LlamaServer) -> None:
    with pytest.raises(UnknownModelError, match="provider/model"):
        get_provider(ModelSpec(name="x", model="no-such-model-anywhere-123")).check()
    wrong = ModelSpec(name="y", kind="litellm", model="openai/not-served", api_base=server.api_base)
    with pytest.raises(UnknownModelError, match=server.alias):
        get_provider(wrong).complete_many([Request("1", "qa", "1+1?")])


@pytest.mark.slow
def test_bad_key_is_an_auth_row_and_never_leaks(keyed_server: LlamaServer,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "sk-wrong-key-abcdef987654"
    monkeypatch.setenv("WB_TEST_SERVER_KEY", bad)
    provider = get_provider(_config(keyed_server, api_key_env="WB_TEST_SERVER_KEY"))
    out = provider.complete_many([Request("1", "classification", "refund please", LABELS)])
    r = out[0]
    assert r is not None and r.error == "auth" and r.output is None
    assert "key" in (r.error_message or "").lower()
    assert bad not in repr(r) and bad not in json.dumps(r.signals)
    assert bad not in caplog.text
    assert all(bad not in rec.getMessage() for rec in caplog.records)
    # The right key works through the same config.
    monkeypatch.setenv("WB_TEST_SERVER_KEY", str(keyed_server.api_key))
    ok = provider.complete(Request("2", "qa", "What is 1 + 1?"))
    assert ok.error is None, ok.error_message
    assert str(keyed_server.api_key) not in caplog.text


@pytest.mark.slow
def test_server_killed_mid_run_gives_connection_rows() -> None:
    with LlamaServer(n_threads=1) as own:
        provider = HostedProvider(_config(own), concurrency=1)
        reqs = [Request(str(i), "qa", f"What is {i} + 1?") for i in range(4)]

        def kill_after_first(i: int, r: object) -> None:
            if i == 0:
                own.kill()

        out = provider.complete_many(reqs, on_result=kill_after_first)
        assert out[0] is not None and out[0].error is None
        assert [r.error for r in out[1:] if r is not None] == ["connection"] * 3
        own.restart()
        again = provider.complete(reqs[1])
        assert again.error is None, again.error_message


# -- retries against a scripted real HTTP server ---------------------------------------------------

OK_BODY = {
    "id": "c1", "object": "chat.completion", "created": 0, "model": "scripted",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "refund"}}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
}


class _Scripted(JsonHandler):
    script: list[int] = []
    hits: list[int] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = self.script.pop(0) if self.script else 200
        self.hits.append(status)
        body = OK_BODY if status == 200 else {"error": {"message": f"scripted {status}",
                                                         "type": "x", "code": status}}
        self.send_json(status, body)


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[_Scripted]]]:
    handler = type("Handler", (_Scripted,), {"script": [], "hits": []})
    with http_server(handler) as url:
        yield url, handler


@pytest.mark.parametrize(
    ("script", "error", "calls"),
    [([429, 500], None, 3), ([503, 503, 503], "other", 3), ([400], "other", 1),
     ([429, 429, 429], "rate_limit", 3), ([401], "auth", 1)],
)
def test_retries_only_on_rate_limits_and_5xx(scripted: tuple[str, type[_Scripted]],
                                             script: list[int], error: str | None,
                                             calls: int) -> None:
    base, handler = scripted
    handler.script.extend(script)
    provider = HostedProvider(ModelSpec(name="s", kind="litellm", model="openai/scripted",
                                        api_base=base, max_retries=2, timeout_s=10))
    provider.backoff_base_s = 0.01
    r = provider.complete(Request("1", "classification", "money back", LABELS))
    assert r.error == error, r.error_message
    assert len(handler.hits) == calls
    if error is None:
        assert r.output == "refund" and r.prompt_tokens == 7 and r.completion_tokens == 1


def test_key_status_reads_env_and_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        'MISTRAL_API_KEY = "mist-secret-value-123"\n[keys]\nGROQ_API_KEY = "gsk_abcdefghijklmnop"\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    monkeypatch.setenv("OPENROUTER_API_KEY", "or-key-value-456")
    status = key_status()
    assert status["mistral"] is True and status["groq"] is True and status["openrouter"]
    assert all(isinstance(v, bool) for v in status.values())
    assert "mist-secret-value-123" not in json.dumps(status)
    assert read_secrets()["MISTRAL_API_KEY"] == "mist-secret-value-123"
    from workbench.providers.base import redact

    assert "mist-secret-value-123" not in redact("oops mist-secret-value-123 leaked")
