"""Safe by default (issue 13): the SQL box sees the store's tables and nothing else; uploads and
model files stay inside the data directory; the app binds to localhost unless told otherwise.

Each escape attempt below is one way out a reviewer can read; each must fail with a clear
message, leave the store unchanged and leak nothing (a canary file's content never appears).
`ESCAPES` goes through `Store.read_only_query` (what the app and `workbench sql` call);
`RAW_SANDBOX` sends the statements the statement check would refuse straight to a sandbox
connection, to show that DuckDB's own configuration blocks them too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import httpx
import numpy as np
import polars as pl
import pytest

from tests.servers import bundled_model_path
from workbench.errors import ReadOnlyError, WorkbenchError
from workbench.policy import Policy
from workbench.providers.quantize import model_output_path
from workbench.router import PolicyRouter
from workbench.sandbox import SandboxLimits, open_sandbox, run_query
from workbench.serve import PolicyServer, authorized
from workbench.store import Store
from workbench.uploads import MAX_NAME_CHARS, MAX_UPLOAD_MB, save_upload

ROOT = Path(__file__).resolve().parents[1]
CANARY = "CANARY-sql-7f3a9c21"


@pytest.fixture
def loaded(store: Store, tmp_path: Path) -> Store:
    """A store with one small workload and recorded outcomes, plus a canary file outside it."""
    store.add_workload_frame("w", pl.DataFrame({
        "item_id": ["a", "b", "c"], "input": ["one", "two", "three"],
        "reference": ["x", "y", "x"]}), task_type="classification", source="test")
    store.write_outcomes("w", pl.DataFrame({
        "item_id": ["a", "b", "c"], "model": ["m"] * 3, "output": ["x", "x", "x"],
        "quality": [1.0, 0.0, 1.0]}))
    secret = tmp_path / "secret.csv"
    secret.write_text(f"key,value\napi,{CANARY}\n")
    (tmp_path / "secret.parquet").write_bytes(b"PAR1" + CANARY.encode() + b"PAR1")
    return store


def _secret(tmp_path: Path, name: str = "secret.csv") -> str:
    return str(tmp_path / name)


# (id, SQL template with {secret}/{dir}/{db}, fragment the error message must contain)
ESCAPES: list[tuple[str, str, str]] = [
    ("read_text outside", "SELECT * FROM read_text('{secret}')", "not allowed in the SQL box"),
    ("read_text /etc", "SELECT * FROM read_text('/etc/hostname')", "not allowed in the SQL box"),
    ("read_csv", "SELECT * FROM read_csv('{secret}')", "not allowed in the SQL box"),
    ("read_csv_auto", "SELECT * FROM read_csv_auto('{secret}')", "not allowed in the SQL box"),
    ("read_parquet", "SELECT * FROM read_parquet('{dir}/secret.parquet')",
     "not allowed in the SQL box"),
    ("read_json", "SELECT * FROM read_json('{secret}')", "not allowed in the SQL box"),
    ("read_blob", "SELECT * FROM read_blob('{secret}')", "not allowed in the SQL box"),
    ("glob", "SELECT * FROM glob('{dir}/*')", "not allowed in the SQL box"),
    ("file as table", "SELECT * FROM '{secret}'", "not allowed in the SQL box"),
    ("https as table", "SELECT * FROM read_csv('https://example.invalid/x.csv')",
     "not allowed in the SQL box"),
    ("read inside EXPLAIN ANALYZE", "EXPLAIN ANALYZE SELECT * FROM read_text('{secret}')",
     "not allowed in the SQL box"),
    ("read in a UNION", "SELECT 'ok' UNION ALL SELECT content FROM read_text('{secret}')",
     "not allowed in the SQL box"),
    ("query() wrapping a read", "SELECT * FROM query('SELECT * FROM read_text(''{secret}'')')",
     "not allowed in the SQL box"),
    ("COPY out", "COPY items TO '{dir}/leak.csv'", "only SELECT"),
    ("COPY query out", "COPY (SELECT * FROM items) TO '{dir}/leak.csv'", "only SELECT"),
    ("EXPORT DATABASE", "EXPORT DATABASE '{dir}/dump'", "only SELECT"),
    ("ATTACH the store", "ATTACH '{db}' AS s", "only SELECT"),
    ("ATTACH another file", "ATTACH '{dir}/other.duckdb' AS o", "only SELECT"),
    ("INSTALL", "INSTALL httpfs", "only SELECT"),
    ("LOAD", "LOAD httpfs", "only SELECT"),
    ("sqlite_scan needs an extension", "SELECT * FROM sqlite_scan('{db}', 'items')",
     "sees only the store's tables"),
    ("duckdb_extensions lists the disk", "SELECT * FROM duckdb_extensions()",
     "not allowed in the SQL box"),
    ("SET external access", "SET enable_external_access = true", "only SELECT"),
    ("PRAGMA", "PRAGMA threads = 64", "only SELECT"),
    ("RESET", "RESET lock_configuration", "only SELECT"),
    ("two statements", "SELECT 1; DELETE FROM items", "exactly one SQL statement"),
    ("comment hides a second statement", "SELECT 1 -- harmless?\n; DROP TABLE items",
     "exactly one SQL statement"),
    ("block comment then a statement", "SELECT 1 /* the end */; DELETE FROM outcomes",
     "exactly one SQL statement"),
    ("CTE wrapping a DELETE", "WITH x AS (DELETE FROM items RETURNING *) SELECT * FROM x",
     "SQL error"),
    ("CTE wrapping an INSERT",
     "WITH x AS (INSERT INTO items (item_id) VALUES ('z') RETURNING *) SELECT * FROM x",
     "SQL error"),
    ("CTE before a DELETE", "WITH x AS (SELECT 1) DELETE FROM items", "only SELECT"),
    ("getenv", "SELECT getenv('HOME')", "getenv"),
    ("Python variable by name", "SELECT * FROM loaded", "sees only the store's tables"),
    ("the meta table", "SELECT * FROM meta", "sees only the store's tables"),
    ("very long query", "SELECT 1 AS a" + " " * 30_000, "characters long"),
    ("deeply nested expression", "SELECT " + "(" * 5_000 + "1" + ")" * 5_000,
     "nested too deeply"),
    ("deeply nested subqueries",
     "SELECT * FROM " + "(SELECT * FROM " * 500 + "items" + ") t" * 500,
     "nested too deeply"),
    ("NUL byte", "SELECT 1\x00; DROP TABLE items", "NUL"),
]


@pytest.mark.parametrize(("sql", "message"), [(s, m) for _, s, m in ESCAPES],
                         ids=[i for i, _, _ in ESCAPES])
def test_escape_attempt_is_refused(loaded: Store, tmp_path: Path, sql: str,
                                   message: str) -> None:
    query = sql.replace("{secret}", _secret(tmp_path)).replace("{dir}", str(tmp_path)) \
        .replace("{db}", str(loaded.path))
    files_before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ReadOnlyError) as info:
        loaded.read_only_query(query)
    assert message in str(info.value)
    assert CANARY not in str(info.value)
    # nothing changed: the store, and no file appeared
    assert loaded.read_only_query("SELECT count(*) AS n FROM items")["n"].to_list() == [3]
    assert loaded.read_only_query("SELECT count(*) AS n FROM outcomes")["n"].to_list() == [3]
    assert sorted(p.name for p in tmp_path.rglob("*")) == files_before


# Statements the parser-level check refuses first, sent straight to a sandbox connection:
# DuckDB's configuration refuses each of them on its own.
RAW_SANDBOX: list[tuple[str, str]] = [
    ("COPY items TO '{dir}/leak.csv'", "disabled by configuration"),
    ("EXPORT DATABASE '{dir}/dump'", "disabled by configuration"),
    ("ATTACH '{db}' AS s", ""),  # already open in this process, or no file access
    ("ATTACH '{dir}/other.duckdb' AS o", "disabled by configuration"),
    ("INSTALL httpfs", "disabled by configuration"),
    ("LOAD httpfs", "disabled through configuration"),
    ("LOAD '{dir}/evil.duckdb_extension'", "disabled through configuration"),
    ("SET enable_external_access = true", "configuration has been locked"),
    ("SET threads = 64", "configuration has been locked"),
    ("PRAGMA threads = 64", "configuration has been locked"),
    ("RESET memory_limit", "configuration has been locked"),
    ("SET temp_directory = '{dir}'", "configuration has been locked"),
    ("SET allowed_directories = ['/']", "configuration has been locked"),
]


@pytest.mark.parametrize(("sql", "message"), RAW_SANDBOX, ids=[s for s, _ in RAW_SANDBOX])
def test_sandbox_configuration_blocks_without_the_statement_check(
        loaded: Store, tmp_path: Path, sql: str, message: str) -> None:
    query = sql.replace("{dir}", str(tmp_path)).replace("{db}", str(loaded.path))
    files_before = sorted(p.name for p in tmp_path.rglob("*"))
    con = open_sandbox({"items": loaded.cursor().sql("SELECT * FROM items").to_arrow_table()})
    try:
        with pytest.raises(duckdb.Error) as info:
            con.sql(query)
    finally:
        con.close()
    assert message in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == files_before


def test_legitimate_queries_still_work(loaded: Store) -> None:
    joined = loaded.read_only_query(
        "SELECT i.item_id, i.reference, o.output, o.quality FROM items i "
        "JOIN outcomes o USING (workload, item_id) JOIN workloads w ON w.name = i.workload "
        "WHERE w.task_type = 'classification' ORDER BY i.item_id")
    assert joined["item_id"].to_list() == ["a", "b", "c"]
    assert joined["quality"].to_list() == [1.0, 0.0, 1.0]
    agg = loaded.read_only_query(
        "WITH q AS (SELECT model, avg(quality) AS acc FROM outcomes GROUP BY model) "
        "SELECT * FROM q")
    assert agg.row(0) == ("m", pytest.approx(2 / 3))
    assert loaded.read_only_query("EXPLAIN SELECT * FROM items").height >= 1
    assert loaded.read_only_query("SELECT 1 /* a ; inside a comment */ AS one")["one"][0] == 1


def test_snapshots_follow_writes(loaded: Store) -> None:
    assert loaded.read_only_query("SELECT count(*) AS n FROM items")["n"][0] == 3
    loaded.add_workload_frame("w2", pl.DataFrame({"item_id": ["z"], "input": ["zz"]}),
                              task_type="qa", source="test")
    assert loaded.read_only_query("SELECT count(*) AS n FROM items")["n"][0] == 4
    loaded.delete_workload("w2")
    assert loaded.read_only_query("SELECT count(*) AS n FROM items")["n"][0] == 3


def test_row_limit_and_timeout(loaded: Store) -> None:
    assert loaded.read_only_query("SELECT * FROM range(100000)", limit=50).height == 50
    # a query that would run for hours is interrupted at the time limit
    with pytest.raises(ReadOnlyError, match="ran longer than 0.5 s and was stopped"):
        loaded.read_only_query("SELECT count(*) FROM range(1000000000000) a, range(10) b",
                               timeout_s=0.5)
    assert loaded.read_only_query("SELECT count(*) AS n FROM items")["n"][0] == 3


def test_memory_limit() -> None:
    with pytest.raises(ReadOnlyError, match="memory"):
        run_query("SELECT list(repeat('x', 1000) || i::VARCHAR) FROM range(2000000) t(i)", {},
                  SandboxLimits(memory_limit="64MB"))


# -- the app binds to localhost ------------------------------------------------------------------

def test_app_binds_to_localhost_by_default() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net shows them) listening on TCP `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                addr, port_hex = fields[1].rsplit(":", 1)
                if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    found.append(addr)
    return found


LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net")
def test_started_app_listens_on_loopback_only(tmp_path: Path) -> None:
    """Start the app as `make app` does (no address given) and read the kernel's socket table:
    every listening socket of its port is a loopback one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env.update(WORKBENCH_HOME=str(tmp_path / "home"), STREAMLIT_SERVER_PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        addresses = _listening(port)
        assert addresses, "the app did not start listening"
        assert set(addresses) <= LOOPBACK_HEX, addresses
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_sharing_is_an_explicit_make_variable() -> None:
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    default = subprocess.run(["make", "-n", "app"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    shared = subprocess.run(["make", "-n", "app", "APP_ADDRESS=0.0.0.0"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    assert "streamlit run app.py" in default and "--server.address" not in default
    assert "--server.address=0.0.0.0" in shared


# -- serve: a bearer token beyond loopback --------------------------------------------------------

TOKEN = "team-token-4f1c2b9e8d7a6350"
SERVE_CANARY = "CANARY-body-5e2d1a"


def _policy() -> Policy:
    """One local tier; a deny pattern gives a cheap path (refused before any model runs)."""
    return Policy.validate_data({
        "name": "served",
        "models": {"small": {"kind": "local-gguf", "model": str(bundled_model_path()),
                             "tags": ["local"]}},
        "refusal": {"deny_patterns": ["(?i)forbidden topic"]},
        "tiers": [{"model": "small"}],
    })


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyServer]:
    """A served policy that requires TOKEN, on a free loopback port."""
    log_path = tmp_path_factory.mktemp("serve") / "decisions.jsonl"
    router = PolicyRouter(_policy(), log_path=log_path, max_tokens=3)
    srv = PolicyServer(router, "127.0.0.1", 0, token=TOKEN).start()
    yield srv
    srv.stop()
    router.close()


def test_serve_beyond_loopback_needs_a_token() -> None:
    router = PolicyRouter(_policy(), log=False)
    try:
        for host in ("0.0.0.0", "", "::"):
            with pytest.raises(WorkbenchError, match="needs a bearer token"):
                PolicyServer(router, host, 0)
        with pytest.raises(WorkbenchError, match="too short") as info:
            PolicyServer(router, "0.0.0.0", 0, token="short-secret")
        assert "short-secret" not in str(info.value)
        srv = PolicyServer(router, "0.0.0.0", 0, token=TOKEN)  # allowed with a token
        assert srv.requires_token
        srv.httpd.server_close()
    finally:
        router.close()


def test_requests_without_the_token_get_401_logged_without_body(
        token_server: PolicyServer, caplog: pytest.LogCaptureFixture) -> None:
    base = f"http://127.0.0.1:{token_server.port}"
    body = {"model": "served", "messages": [{"role": "user", "content": SERVE_CANARY}]}
    caplog.set_level(logging.DEBUG, logger="workbench.serve")
    with httpx.Client(timeout=60) as client:  # one keep-alive connection throughout
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                        {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}):
            r = client.post(f"{base}/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["error"]["code"] == "invalid_api_key"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert client.get(f"{base}/health", headers=headers).status_code == 401
            assert client.get(f"{base}/v1/models", headers=headers).status_code == 401
        ok = client.get(f"{base}/health", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["policy"] == "served"
    refused = [r for r in caplog.records if r.getMessage().startswith("401 ")]
    assert len(refused) == 12
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SERVE_CANARY not in logged and TOKEN not in logged
    assert "POST /v1/chat/completions from 127.0.0.1" in logged


@pytest.mark.slow
def test_openai_client_uses_the_token_as_api_key(token_server: PolicyServer) -> None:
    from openai import AuthenticationError, OpenAI

    client = OpenAI(base_url=token_server.base_url, api_key=TOKEN, max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == ["served", "small"]
    answer = client.chat.completions.create(
        model="served", messages=[{"role": "user", "content": "Where is my parcel?"}],
        extra_body={"labels": ["billing", "shipping", "other"]})
    assert answer.choices[0].message.content in ("billing", "shipping", "other")
    refused = client.chat.completions.create(
        model="served", messages=[{"role": "user", "content": "the forbidden topic"}])
    assert refused.choices[0].finish_reason == "content_filter"
    wrong = OpenAI(base_url=token_server.base_url, api_key="not-the-token", max_retries=0)
    with pytest.raises(AuthenticationError):
        wrong.models.list()


def test_serve_command_refuses_to_expose_without_a_token(
        home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.cli import main

    assert main(["serve", "--policy", "any", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "needs a bearer token" in capsys.readouterr().err
    monkeypatch.delenv("WB_SERVE_TOKEN", raising=False)
    assert main(["serve", "--policy", "any", "--host", "0.0.0.0", "--port", "0",
                 "--token-env", "WB_SERVE_TOKEN"]) == 2
    assert "WB_SERVE_TOKEN: that environment variable is unset" in capsys.readouterr().err
    monkeypatch.setenv("WB_SERVE_TOKEN", "tiny")
    assert main(["serve", "--policy", "any", "--host", "0.0.0.0", "--port", "0",
                 "--token-env", "WB_SERVE_TOKEN"]) == 2
    err = capsys.readouterr().err
    assert "too short" in err and "tiny" not in err


def _burst(url: str, headers: dict[str, str], n: int = 200, workers: int = 16) -> np.ndarray:
    """Wall times (ms) of `n` refused-by-policy chat requests, `workers` at a time, each
    worker on its own keep-alive connection (as a pooled client would)."""
    body = {"model": "served", "messages": [{"role": "user", "content": "forbidden topic"}]}
    local = threading.local()
    clients: list[httpx.Client] = []

    def one(_: int) -> float:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60)
            clients.append(client)
        t0 = time.perf_counter()
        r = client.post(url, json=body, headers=headers)
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == \
            "content_filter"
        return (time.perf_counter() - t0) * 1000

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return np.array(list(pool.map(one, range(n))))
    finally:
        for client in clients:
            client.close()


def test_token_check_overhead_is_reported() -> None:
    """The cost of the token check, as figures (never asserted: wall time on a shared machine
    is not a test): the check alone, and rounds of 200 requests at concurrency 16 on the
    policy's cheap refusal path against two identical servers, with and without a token,
    interleaved. Nothing may be lost."""
    secret = TOKEN.encode()
    header = f"Bearer {TOKEN}"
    checks = []
    for _ in range(20_000):
        t0 = time.perf_counter_ns()
        authorized(header, secret)
        checks.append(time.perf_counter_ns() - t0)
    check_p95_us = float(np.percentile(checks, 95)) / 1000
    routers = [PolicyRouter(_policy(), log=False) for _ in range(2)]
    guarded = PolicyServer(routers[0], "127.0.0.1", 0, token=TOKEN).start()
    plain = PolicyServer(routers[1], "127.0.0.1", 0).start()
    try:
        with_token, without = [], []
        for _ in range(3):
            with_token.append(_burst(f"{guarded.base_url}/chat/completions",
                                     {"Authorization": header}))
            without.append(_burst(f"{plain.base_url}/chat/completions", {}))
    finally:
        for srv, router in zip((guarded, plain), routers, strict=True):
            srv.stop()
            router.close()
    assert [len(x) for x in with_token + without] == [200] * 6
    p95_with = float(np.percentile(np.concatenate(with_token), 95))
    p95_without = float(np.percentile(np.concatenate(without), 95))
    print(f"\nTOKEN check_p95_us={check_p95_us:.2f} requests=3x200 concurrency=16 "
          f"p95_with_token_ms={p95_with:.2f} p95_without_ms={p95_without:.2f} "
          f"p95_added_ms={p95_with - p95_without:.2f} ratio={p95_with / p95_without:.3f}")


# -- uploads, model files and the GGUF path field ---------------------------------------------------

HOSTILE_NAMES = [
    "../../escape.csv", "/etc/passwd", "..\\..\\windows.csv", "a\x00b.csv", "x" * 5_000 + ".csv",
    ".hidden.csv", "..", "", "~/.ssh/id_rsa", "uploads/../../../etc/cron.d/job.csv",
]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_upload_names_stay_in_the_uploads_folder(tmp_path: Path, name: str) -> None:
    home = tmp_path / "home"
    path = save_upload(home, name, b"id,input\n1,hello\n")
    folder = (home / "uploads").resolve()
    assert path.parent == folder and path.is_file()
    assert len(path.name) <= MAX_NAME_CHARS + 13 and "\x00" not in path.name
    assert not path.name.split("-", 1)[1].startswith(".")
    assert _files(tmp_path) == {path}


def test_upload_size_limit_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="the limit is"):
        save_upload(tmp_path, "big.csv", b"x" * 2_000, max_bytes=1_000)
    assert _files(tmp_path) == set()
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_MB  # Streamlit refuses larger first


def test_upload_on_the_page_lands_in_the_uploads_folder(home: Path, tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/workloads.py")
    at.run()
    before = _files(tmp_path)
    at.file_uploader(key="wl_upload").set_value(
        ("../../../escape.csv", b"id,input,label\n1,hello,a\n2,bye,b\n", "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    new = _files(tmp_path) - before
    written = [p for p in new if p.parent == (home / "uploads").resolve()]
    assert len(written) == 1 and written[0].name.endswith("-escape.csv")
    assert not (tmp_path.parent / "escape.csv").exists()


HOSTILE_MODEL_NAMES = ["../x", "../../etc/evil", "/abs/path/model", "a/../../b", "..\\..\\c",
                       "ok-name", "name with spaces", "...", "~/.ssh/authorized_keys"]


@pytest.mark.parametrize("name", HOSTILE_MODEL_NAMES)
def test_model_names_map_inside_the_models_folder(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    try:
        path = model_output_path(folder, name)
    except WorkbenchError as exc:
        assert "no letters or digits" in str(exc)
        return
    assert path.parent == folder.resolve() and path.suffix == ".gguf"
    assert not path.name.startswith(".")


@pytest.mark.parametrize(("name", "message"), [
    ("evil\x00.gguf", "NUL byte"), ("m" * 101, "at most 100"), ("", "no letters"),
    ("..", "no letters")])
def test_bad_model_names_are_refused(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(WorkbenchError, match=message):
        model_output_path(tmp_path, name)


@pytest.mark.parametrize(("dst", "message"), [
    ("{models}/../outside.gguf", "outside the models folder"),
    ("{models}/../../etc/outside.gguf", "outside the models folder"),
    ("/tmp/absolute-outside.gguf", "outside the models folder"),
    ("{models}/nul\x00.gguf", "NUL byte"),
    ("{models}/" + "n" * 300 + ".gguf", "at most 255"),
])
def test_quantize_outputs_cannot_escape(tmp_path: Path, dst: str, message: str) -> None:
    from workbench.providers.quantize import requantize

    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(WorkbenchError, match=message):
        requantize(bundled_model_path(), dst.replace("{models}", str(models)), "Q3_K_M",
                   within=models)
    assert _files(tmp_path) == set()


def test_cli_quantize_refuses_a_too_long_name(home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.catalog import BUNDLED_MODEL_NAME
    from workbench.cli import main

    assert main(["models", "quantize", BUNDLED_MODEL_NAME, "--type", "Q3_K_M",
                 "--as", "n" * 300]) == 2
    assert "at most 255" in capsys.readouterr().err
    models = home / "models"
    assert not models.exists() or not any(models.iterdir())


def test_gguf_path_field_reads_only_the_magic(tmp_path: Path) -> None:
    from workbench.catalog import validate_gguf

    secret = tmp_path / "secrets.toml"
    secret.write_text(f'{CANARY} = "value"\n')
    with pytest.raises(WorkbenchError) as info:
        validate_gguf(secret)
    message = str(info.value)
    assert "read only its first 4 bytes" in message and "not a GGUF file" in message
    assert CANARY[:4] not in message.replace(str(secret), "")
    assert validate_gguf(bundled_model_path()) == bundled_model_path().resolve()
