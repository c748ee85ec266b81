"""A sandbox for user SQL (the Workloads page's SQL box, `workbench sql`): queries see the
store's tables and nothing else.

Why a separate database: the store's own connection must keep reading files (importers use
`read_csv`/`read_parquet`), so it cannot be locked down, and DuckDB refuses a second
connection to the same file with another configuration in one process. Each query therefore
runs in a fresh in-memory DuckDB opened with DuckDB's own security settings
(`SANDBOX_CONFIG`: no external access, so no file, network, `COPY`, `ATTACH` or extension
loading; no extension auto-install/auto-load; no Python replacement scans, so no Python
variable is visible; the configuration locked, so `SET`/`PRAGMA`/`RESET` cannot loosen any of
it). The store's tables are made visible in it as read-only Arrow snapshots, and the sandbox is
thrown away after the query, so nothing a query creates outlives it.

Limits keep one query from hanging the app: a maximum SQL length, DuckDB's
`max_expression_depth` for deeply nested queries, a thread and memory cap, no spilling to disk,
a row limit on the result, and a wall-clock timeout after which the query is interrupted
(`DuckDBPyConnection.interrupt`). Only a single SELECT (or EXPLAIN) statement is accepted;
that check uses DuckDB's parser and exists for clear messages, the guarantees come from the
configuration above.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from workbench.errors import ReadOnlyError

READ_ONLY_STATEMENTS = frozenset({"SELECT", "EXPLAIN"})


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed query."""

    timeout_s: float = 10.0
    max_rows: int = 10_000
    max_sql_chars: int = 20_000
    max_expression_depth: int = 200
    memory_limit: str = "1GB"
    threads: int = 2


DEFAULT_LIMITS = SandboxLimits()


def sandbox_config(limits: SandboxLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The DuckDB configuration of a sandbox database (see the module docstring for why)."""
    return {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "python_enable_replacements": False,
        "temp_directory": "",
        "max_temp_directory_size": "0B",
        "threads": max(1, int(limits.threads)),
        "memory_limit": limits.memory_limit,
        "max_expression_depth": int(limits.max_expression_depth),
        # last: every setting above is fixed from here on (SET, RESET and PRAGMA fail)
        "lock_configuration": True,
    }


def open_sandbox(tables: Mapping[str, pa.Table],
                 limits: SandboxLimits = DEFAULT_LIMITS) -> duckdb.DuckDBPyConnection:
    """A fresh locked-down in-memory DuckDB with `tables` visible under their names."""
    con = duckdb.connect(":memory:", config=sandbox_config(limits))
    for name, table in tables.items():
        con.register(name, table)
    return con


def check_query(con: duckdb.DuckDBPyConnection, sql: str,
                limits: SandboxLimits = DEFAULT_LIMITS) -> str:
    """The one read-only statement in `sql`, or a ReadOnlyError saying why it is refused."""
    if len(sql) > limits.max_sql_chars:
        raise ReadOnlyError(f"the query is {len(sql):,} characters long; the SQL box accepts at "
                            f"most {limits.max_sql_chars:,}")
    if "\x00" in sql:
        raise ReadOnlyError("the query contains a NUL character")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyError(_explain(exc, limits)) from None
    if len(statements) != 1:
        kinds = ", ".join(s.type.name for s in statements) or "none"
        raise ReadOnlyError(f"enter exactly one SQL statement (found {len(statements)}: "
                            f"{kinds}); comments cannot hide a second one")
    kind = statements[0].type.name
    if kind not in READ_ONLY_STATEMENTS:
        raise ReadOnlyError(f"only SELECT queries are allowed here, not {kind}; the SQL box "
                            "reads the store's tables and changes nothing")
    return str(statements[0].query)


def run_query(sql: str, tables: Mapping[str, pa.Table],
              limits: SandboxLimits = DEFAULT_LIMITS) -> pl.DataFrame:
    """Run one read-only statement over `tables` in a sandbox; at most `limits.max_rows`
    rows. Every refusal, DuckDB error, timeout or limit is a ReadOnlyError with a clear
    message."""
    con = open_sandbox(tables, limits)
    timer = threading.Timer(limits.timeout_s, con.interrupt)
    timer.daemon = True
    try:
        query = check_query(con, sql, limits)
        timer.start()
        rel = con.sql(query)
        if rel is None:
            return pl.DataFrame()
        frame = pl.from_arrow(rel.limit(max(0, int(limits.max_rows))).to_arrow_table())
    except duckdb.InterruptException:
        raise ReadOnlyError(f"the query ran longer than {limits.timeout_s:g} s and was "
                            "stopped; narrow it (WHERE, LIMIT) and try again") from None
    except duckdb.Error as exc:
        raise ReadOnlyError(_explain(exc, limits)) from None
    finally:
        timer.cancel()
        con.close()
    assert isinstance(frame, pl.DataFrame)
    return frame


def _explain(exc: duckdb.Error, limits: SandboxLimits) -> str:
    """A user-facing message for a DuckDB error raised in the sandbox."""
    text = str(exc)
    if isinstance(exc, duckdb.PermissionException) or "disabled by configuration" in text \
            or "disabled through configuration" in text:
        return ("not allowed in the SQL box: queries see only the store's tables (workloads, "
                "items, outcomes), with no files, network, ATTACH, COPY or extensions "
                f"(DuckDB: {text})")
    if "configuration has been locked" in text:
        return f"settings cannot be changed in the SQL box (DuckDB: {text})"
    if "Max expression depth" in text:
        return (f"the query is nested too deeply: the SQL box allows an expression depth of "
                f"{limits.max_expression_depth}")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return (f"the query needs more than the SQL box's {limits.memory_limit} of memory; "
                "narrow it (WHERE, LIMIT, fewer columns)")
    if isinstance(exc, duckdb.CatalogException):
        return (f"SQL error: {text} (the SQL box sees only the store's tables workloads, items "
                "and outcomes, and DuckDB's built-in functions)")
    return f"SQL error: {text}"
