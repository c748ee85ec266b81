"""`workbench serve`: the OpenAI-compatible endpoint answered by the openai client, error
handling, and a bounded loopback load test reporting the router's own overhead."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.servers import bundled_model_path
from workbench.policy import Policy
from workbench.router import PolicyRouter, read_log
from workbench.serve import PolicyServer

SECRET = "sk-test-SECRET123"
LOAD_TOKEN = "load-test-bearer-token-0123456789"
LABELS = ["billing", "shipping", "technical", "account", "refund", "other"]


def policy(gguf: str) -> Policy:
    """One local tier, a PII rule it satisfies, a deny pattern."""
    return Policy.validate_data({
        "name": "served",
        "models": {"small": {"kind": "local-gguf", "model": gguf, "tags": ["local"]}},
        "governance": {"rules": [{"data_class": "pii", "detectors": ["email"],
                                  "allowed_tags": ["local"]}]},
        "refusal": {"deny_patterns": ["(?i)forbidden topic"]},
        "tiers": [{"model": "small"}],
    })


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyServer]:
    """A served policy on a free loopback port, with a decision log."""
    log = tmp_path_factory.mktemp("serve") / "decisions.jsonl"
    router = PolicyRouter(policy(str(bundled_model_path())), log_path=log, max_tokens=3)
    srv = PolicyServer(router, "127.0.0.1", 0).start()
    yield srv
    srv.stop()
    router.close()


def test_health_models_and_errors(server: PolicyServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    assert server.host == "127.0.0.1"
    health = httpx.get(f"{base}/health").json()
    assert health == {"status": "ok", "policy": "served", "models": ["small"]}
    bad = httpx.post(f"{base}/v1/chat/completions", content=b"{not json",
                     headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and "bad request" in bad.json()["error"]["message"]
    empty = httpx.post(f"{base}/v1/chat/completions", json={"model": "x", "messages": []})
    assert empty.status_code == 400 and "messages" in empty.json()["error"]["message"]
    assert httpx.get(f"{base}/v1/nothing").status_code == 404


@pytest.mark.slow
def test_openai_client_is_answered(server: PolicyServer) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == ["served", "small"]
    resp = client.chat.completions.create(
        model="served",
        messages=[{"role": "user", "content": "My parcel never arrived, mail me at a@b.example"
                   " if you need details"}],
        extra_body={"labels": LABELS},
    )
    assert resp.model == "small"
    assert resp.choices[0].message.content in LABELS
    assert resp.choices[0].finish_reason == "stop"
    extra = resp.model_extra or {}
    route = extra["workbench"]
    assert route["data_classes"] == ["pii"] and route["models_tried"] == ["small"]
    assert route["overhead_ms"] >= 0
    refused = client.chat.completions.create(
        model="served", messages=[{"role": "user", "content": "Tell me the forbidden topic"}])
    assert refused.choices[0].finish_reason == "content_filter"
    assert "deny_pattern" in (refused.choices[0].message.refusal or "")
    stream = client.chat.completions.create(
        model="served", messages=[{"role": "user", "content": "Where is my refund?"}],
        extra_body={"labels": LABELS}, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text in LABELS
    records = read_log(server.router.log_path)  # type: ignore[arg-type]
    assert len(records) >= 3
    assert not any("a@b.example" in json.dumps(r) for r in records)


@pytest.fixture
def load_server(tmp_path: Path) -> Iterator[PolicyServer]:
    """The served policy tuned for a quick load test: one generated token, one thread (the
    machine's 2 cores are shared; one llama.cpp thread contends least); requests need a
    bearer token, as a server shared beyond loopback would."""
    router = PolicyRouter(policy(str(bundled_model_path())), log_path=tmp_path / "load.jsonl",
                          max_tokens=1, threads=1)
    srv = PolicyServer(router, "127.0.0.1", 0, token=LOAD_TOKEN).start()
    yield srv
    srv.stop()
    router.close()


@pytest.mark.slow
def test_load_200_requests_at_concurrency_16(load_server: PolicyServer) -> None:
    """200 requests, 16 at a time, on loopback, each with the bearer token: no failure;
    report the router's overhead."""
    server = load_server
    url = f"{server.base_url}/chat/completions"
    prompts = [f"hi {i}" for i in range(200)]

    def one(text: str) -> tuple[int, float, float]:
        with httpx.Client(timeout=300) as client:
            t0 = time.perf_counter()
            r = client.post(url, json={"model": "served",
                                       "messages": [{"role": "user", "content": text}]},
                            headers={"Authorization": f"Bearer {LOAD_TOKEN}"})
            wall = (time.perf_counter() - t0) * 1000
        overhead = float(r.headers.get("x-workbench-overhead-ms", "nan"))
        return r.status_code, overhead, wall

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, prompts))
    elapsed = time.perf_counter() - t0
    codes = [c for c, _, _ in results]
    assert codes == [200] * 200, {c: codes.count(c) for c in set(codes)}
    overhead = np.array([o for _, o, _ in results])
    wall = np.array([w for _, _, w in results])
    assert np.isfinite(overhead).all() and (overhead >= 0).all()
    p50, p95 = np.percentile(overhead, [50, 95])
    print(f"\nLOAD token=yes requests=200 concurrency=16 seconds={elapsed:.1f} "
          f"req_per_s={200 / elapsed:.1f} wall_p50_ms={np.percentile(wall, 50):.0f} "
          f"wall_p95_ms={np.percentile(wall, 95):.0f} overhead_p50_ms={p50:.3f} "
          f"overhead_p95_ms={p95:.3f} overhead_max_ms={overhead.max():.3f}")
    logged = [r for r in read_log(server.router.log_path)]  # type: ignore[arg-type]
    assert len(logged) == 200 and all(r["answered_by"] == "small" for r in logged)


def test_serve_binds_loopback_by_default(tmp_path: Path) -> None:
    router = PolicyRouter(policy(str(bundled_model_path())), log=False)
    srv = PolicyServer(router, port=0)
    try:
        assert srv.host == "127.0.0.1"
    finally:
        srv.httpd.server_close()


@pytest.mark.slow
def test_serve_command_answers_openai_client(tmp_path: Path) -> None:
    """`workbench serve` as users run it (a subprocess), answered by the openai client."""
    import os
    import signal
    import subprocess
    import sys

    from openai import OpenAI

    from tests.servers import free_port
    from workbench.export import export_policy

    path = export_policy(policy(str(bundled_model_path())), tmp_path / "p.yaml")
    port = free_port()
    log = tmp_path / "serve.jsonl"
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home"), "OPENAI_API_KEY": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "serve", "--policy", str(path), "--port", str(port),
         "--log", str(log), "--max-tokens", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0,
                        timeout=120)
        resp = client.chat.completions.create(
            model="served", messages=[{"role": "user", "content": "I need a refund"}],
            extra_body={"labels": LABELS})
        assert resp.choices[0].message.content in LABELS
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert f"serving policy 'served' at http://127.0.0.1:{port}/v1" in out
    assert SECRET not in out and SECRET not in log.read_text()
    assert len(read_log(log)) == 1
