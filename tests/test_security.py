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
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import duckdb
import polars as pl
import pytest

from workbench.errors import ReadOnlyError
from workbench.sandbox import SandboxLimits, open_sandbox, run_query
from workbench.store import Store

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
