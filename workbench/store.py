"""DuckDB store: schema (versioned, migrated), opened only while in use, a cursor per thread.

The app and CLI commands share a data directory, and DuckDB lets one process at a time hold the
file, so the store holds no connection at rest: reads and writes open it briefly through a
`Lease` (workbench.store_access), waiting while another process has it. Writes are short
transactions; each bumps a `generation` kept in the database, so a cache in any process can
tell that another process wrote.

Tables:
- `workloads`: one row per workload (name is the id), with task type, source and fingerprint.
- `items`: the requests of a workload, with reference answer, label set, tags and metadata.
- `outcomes`: recorded model outcomes per (workload, item, model); written by importers of
  recorded outcomes and by the runner.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from workbench import settings
from workbench.errors import ConflictError, NotFoundError, WorkbenchError
from workbench.store_access import Lease, StoreBusyError, WaitNotice, connect

__all__ = ["Store", "StoreBusyError", "WorkloadInfo", "fetch_pl", "open_store"]

SCHEMA_VERSION = 1

# Each migration brings the schema from version i to i + 1; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS workloads (
        name        VARCHAR PRIMARY KEY,
        task_type   VARCHAR NOT NULL,
        source      VARCHAR NOT NULL,
        synthetic   BOOLEAN NOT NULL DEFAULT FALSE,
        description VARCHAR NOT NULL DEFAULT '',
        label_set   VARCHAR[],
        created     TIMESTAMP NOT NULL DEFAULT current_timestamp,
        fingerprint VARCHAR NOT NULL
    );
    CREATE TABLE IF NOT EXISTS items (
        workload    VARCHAR NOT NULL,
        item_id     VARCHAR NOT NULL,
        input       VARCHAR NOT NULL,
        messages    JSON,
        reference   VARCHAR,
        labels      VARCHAR[],
        difficulty  VARCHAR,
        data_class  VARCHAR,
        tags        JSON,
        metadata    JSON,
        PRIMARY KEY (workload, item_id)
    );
    CREATE TABLE IF NOT EXISTS outcomes (
        workload          VARCHAR NOT NULL,
        item_id           VARCHAR NOT NULL,
        model             VARCHAR NOT NULL,
        output            VARCHAR,
        quality           DOUBLE,
        cost_usd          DOUBLE,
        latency_ms        DOUBLE,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        error             VARCHAR,
        confidence        DOUBLE,
        signals           JSON,
        cache_key         VARCHAR,
        created           TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (workload, item_id, model)
    );
    """,
)

# natural item order: numeric ids by value (2 before 10), then the others as text
ID_ORDER = "TRY_CAST(item_id AS HUGEINT) NULLS LAST, item_id"

ITEM_COLUMNS = (
    "workload", "item_id", "input", "messages", "reference", "labels",
    "difficulty", "data_class", "tags", "metadata",
)
OUTCOME_COLUMNS = (
    "workload", "item_id", "model", "output", "quality", "cost_usd", "latency_ms",
    "prompt_tokens", "completion_tokens", "error", "confidence", "signals", "cache_key",
)

# Every committed transaction bumps this row in the same transaction (read by `generation()`).
_BUMP_GENERATION = (
    "INSERT INTO meta VALUES ('generation', '1') ON CONFLICT (key) DO UPDATE "
    "SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS VARCHAR)"
)

_WORKLOADS_SQL = """
    SELECT w.name, w.task_type, w.source, w.synthetic, w.description, w.label_set,
           w.created, w.fingerprint,
           (SELECT count(*) FROM items i WHERE i.workload = w.name),
           (SELECT count(DISTINCT model) FROM outcomes o WHERE o.workload = w.name),
           (SELECT count(*) FROM outcomes o WHERE o.workload = w.name)
    FROM workloads w ORDER BY w.created DESC, w.name
"""

# The tables user SQL (the SQL box, `workbench sql`) may see; nothing else is visible to it.
# `reviews` (workbench.reviews) exists once somebody has reviewed an item
QUERYABLE_TABLES = ("workloads", "items", "outcomes", "reviews")


@dataclass(frozen=True)
class WorkloadInfo:
    """Summary of one workload, as listed by `Store.workloads()`."""

    name: str
    task_type: str
    source: str
    synthetic: bool
    description: str
    label_set: tuple[str, ...]
    created: datetime
    fingerprint: str
    n_items: int
    n_models: int
    n_outcomes: int

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (timestamps as ISO text)."""
        d = self.__dict__.copy()
        d["created"] = self.created.isoformat()
        d["label_set"] = list(self.label_set)
        return d


class Store:
    """The DuckDB store at `path`, opened only while in use (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lease = Lease(self.path)
        self._write_lock = threading.RLock()
        # the SQL box's table snapshots, each with the generation it was read at
        self._snapshots: dict[str, tuple[int, pa.Table]] = {}
        with self.session():
            self.migrate()

    # -- connection handling -------------------------------------------------------------
    @contextlib.contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the store open for a group of reads: this thread's cursor, valid inside the
        block (opened if need be, waiting while another process has the file)."""
        with self._lease.use() as cur:
            yield cur

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """Inside `session()` or `transaction()`: this thread's cursor. Outside: a connection
        of its own that keeps the file open until it is dropped, so use it for one statement
        (`store.cursor().execute(...).fetchone()`) and `session()` for more."""
        if self._lease.depth():
            with self._lease.use() as cur:
                return cur
        return connect(self.path)

    def set_wait_notice(self, notice: WaitNotice | None) -> None:
        """Who hears, in this thread, that the store is waiting for another process (the app
        shows it)."""
        self._lease.set_wait_notice(notice)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction on this thread's cursor: all or nothing. Keep it short: other
        processes (the app, other commands) wait for the file until it ends."""
        with self._write_lock, self._lease.use(wrote=True) as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute(_BUMP_GENERATION)
                cur.execute("COMMIT")

    def generation(self) -> int:
        """Count of committed writes to this file by any process: caches keyed on it stay
        valid while it is unchanged."""
        with self.session() as cur:
            rows = cur.execute("SELECT value FROM meta WHERE key = 'generation'").fetchall()
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        """Close the connection if open (tests and CLI exit); a later use opens it again."""
        self._snapshots.clear()
        self._lease.close()
        _OPEN.pop(str(self.path.resolve()), None)

    # -- schema --------------------------------------------------------------------------
    def schema_version(self) -> int:
        """Version recorded in the store (0 for a new file)."""
        with self.session() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            rows = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        return int(rows[0][0]) if rows else 0

    def migrate(self) -> None:
        """Apply pending migrations, each in its own transaction."""
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise WorkbenchError(
                f"store {self.path} has schema version {current}, newer than this workbench "
                f"({SCHEMA_VERSION}); upgrade the workbench"
            )
        for version in range(current, SCHEMA_VERSION):
            with self.transaction() as cur:
                cur.execute(MIGRATIONS[version])
                cur.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(version + 1)]
                )

    # -- workloads -----------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        """Whether a workload of this name is stored."""
        with self.session() as cur:
            rows = cur.execute("SELECT 1 FROM workloads WHERE name = ?", [name]).fetchall()
        return bool(rows)

    def workloads(self) -> list[WorkloadInfo]:
        """All workloads with item, model and outcome counts, newest first."""
        with self.session() as cur:
            rows = cur.execute(_WORKLOADS_SQL).fetchall()
        return [
            WorkloadInfo(r[0], r[1], r[2], bool(r[3]), r[4], tuple(r[5] or ()), r[6], r[7],
                         int(r[8]), int(r[9]), int(r[10]))
            for r in rows
        ]

    def workload(self, name: str) -> WorkloadInfo:
        """One workload's summary; a clear error listing known names when missing."""
        for info in self.workloads():
            if info.name == name:
                return info
        known = ", ".join(w.name for w in self.workloads()) or "none"
        raise NotFoundError(f"unknown workload {name!r}; known workloads: {known}")

    def prepare_name(self, cur: duckdb.DuckDBPyConnection, name: str, replace: bool) -> None:
        """Inside a transaction: refuse a taken name, or clear it when `replace` is set."""
        if not name or not name.strip():
            raise WorkbenchError("workload name must not be empty")
        taken = cur.execute("SELECT 1 FROM workloads WHERE name = ?", [name]).fetchone()
        if taken and not replace:
            raise ConflictError(
                f"a workload named {name!r} already exists; choose another name or replace it"
            )
        if taken:
            for table in ("outcomes", "items", "workloads"):
                col = "name" if table == "workloads" else "workload"
                cur.execute(f"DELETE FROM {table} WHERE {col} = ?", [name])

    def finish_workload(
        self,
        cur: duckdb.DuckDBPyConnection,
        name: str,
        *,
        task_type: str,
        source: str,
        synthetic: bool = False,
        description: str = "",
        label_set: Sequence[str] | None = None,
    ) -> None:
        """Inside a transaction, after items are inserted: write the workload row with the
        content fingerprint computed by DuckDB over the stored items."""
        fp = cur.execute(
            """
            SELECT coalesce(bit_xor(hash(item_id, input, reference)), 0)::VARCHAR || ':' ||
                   count(*)::VARCHAR
            FROM items WHERE workload = ?
            """,
            [name],
        ).fetchone()[0]
        fingerprint = hashlib.sha256(f"{task_type}|{fp}".encode()).hexdigest()[:16]
        cur.execute(
            "INSERT INTO workloads (name, task_type, source, synthetic, description, label_set,"
            " created, fingerprint) VALUES (?, ?, ?, ?, ?, ?, now(), ?)",
            [name, task_type, source, synthetic, description,
             list(label_set) if label_set else None, fingerprint],
        )

    def add_workload_frame(
        self,
        name: str,
        items: pl.DataFrame,
        *,
        task_type: str,
        source: str,
        synthetic: bool = False,
        description: str = "",
        label_set: Sequence[str] | None = None,
        replace: bool = False,
    ) -> WorkloadInfo:
        """Store an in-memory item frame (columns from ITEM_COLUMNS minus `workload`) as a
        workload, in one transaction. Used for generated samples and small uploads."""
        if items.height == 0:
            raise WorkbenchError(f"workload {name!r} has no items")
        dupes = items.filter(pl.col("item_id").is_duplicated())["item_id"].unique().to_list()
        if dupes:
            raise WorkbenchError(f"workload {name!r}: duplicate item ids {dupes[:5]}")
        frame = _normalise_items(items, name)
        with self.transaction() as cur:
            self.prepare_name(cur, name, replace)
            cur.register("_new_items", frame.to_arrow())
            try:
                cur.execute(
                    f"INSERT INTO items ({', '.join(ITEM_COLUMNS)}) "
                    f"SELECT {', '.join(ITEM_COLUMNS)} FROM _new_items"
                )
            finally:
                cur.unregister("_new_items")
            self.finish_workload(cur, name, task_type=task_type, source=source,
                                 synthetic=synthetic, description=description,
                                 label_set=label_set)
        return self.workload(name)

    def delete_workload(self, name: str) -> None:
        """Remove a workload with its items and outcomes."""
        if not self.exists(name):
            raise NotFoundError(f"unknown workload {name!r}")
        with self.transaction() as cur:
            self.prepare_name(cur, name, replace=True)

    # -- reading -------------------------------------------------------------------------
    def items(self, name: str, limit: int | None = None) -> pl.DataFrame:
        """Items of a workload as a polars frame, in item id order (numeric ids as numbers:
        2 before 10)."""
        sql = f"SELECT * EXCLUDE (workload) FROM items WHERE workload = ? ORDER BY {ID_ORDER}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.session() as cur:
            self.workload(name)
            return fetch_pl(cur, sql, [name])

    def recorded_items(self, name: str) -> pl.DataFrame:
        """Items with at least one recorded outcome: what replay, tuning and gates evaluate
        when a run covered only a slice of the workload."""
        with self.session() as cur:
            self.workload(name)
            return fetch_pl(
                cur,
                "SELECT * EXCLUDE (workload) FROM items i WHERE workload = ? AND EXISTS (SELECT 1 "
                "FROM outcomes o WHERE o.workload = i.workload AND o.item_id = i.item_id) "
                f"ORDER BY {ID_ORDER}",
                [name],
            )

    def outcomes_version(self, name: str) -> tuple[str, int, int]:
        """A cheap content hash of a workload's outcomes (with its fingerprint): equal while
        nothing stored for it changed, so callers can keep frames read earlier."""
        with self.session() as cur:
            row = cur.execute(
                "SELECT count(*), coalesce(bit_xor(hash(item_id, model, output, quality, "
                "cost_usd, latency_ms, error, confidence)), 0) FROM outcomes WHERE workload = ?",
                [name],
            ).fetchone()
            return self.workload(name).fingerprint, int(row[0]), int(row[1])

    def outcomes(self, name: str, models: Sequence[str] | None = None) -> pl.DataFrame:
        """Recorded outcomes of a workload (optionally only some models)."""
        sql = "SELECT * EXCLUDE (workload) FROM outcomes WHERE workload = ?"
        params: list[Any] = [name]
        if models:
            sql += " AND model IN (SELECT unnest(?))"
            params.append(list(models))
        with self.session() as cur:
            self.workload(name)
            return fetch_pl(cur, sql + " ORDER BY item_id, model", params)

    def models_of(self, name: str) -> list[str]:
        """Models with recorded outcomes on a workload."""
        with self.session() as cur:
            rows = cur.execute(
                "SELECT DISTINCT model FROM outcomes WHERE workload = ? ORDER BY model", [name]
            ).fetchall()
        return [r[0] for r in rows]

    def write_outcomes(self, name: str, rows: pl.DataFrame) -> int:
        """Upsert outcome rows (columns from OUTCOME_COLUMNS minus `workload`) in one transaction."""
        if rows.height == 0:
            return 0
        frame = rows.with_columns(pl.lit(name).alias("workload"))
        for col in OUTCOME_COLUMNS:
            if col not in frame.columns:
                frame = frame.with_columns(pl.lit(None).alias(col))
        frame = frame.select(OUTCOME_COLUMNS)
        with self.transaction() as cur:
            cur.register("_new_outcomes", frame.to_arrow())
            try:
                cur.execute(
                    f"INSERT OR REPLACE INTO outcomes ({', '.join(OUTCOME_COLUMNS)}) "
                    f"SELECT {', '.join(OUTCOME_COLUMNS)} FROM _new_outcomes"
                )
            finally:
                cur.unregister("_new_outcomes")
        return frame.height

    def read_only_query(self, sql: str, limit: int = 10_000,
                        timeout_s: float | None = None) -> pl.DataFrame:
        """Run user SQL in a sandbox that sees the store's tables (QUERYABLE_TABLES) and
        nothing else: no files, network, ATTACH, COPY, extensions or settings (see
        `workbench.sandbox`); one SELECT, at most `limit` rows, interrupted after `timeout_s`
        seconds. Every refusal is a ReadOnlyError saying why."""
        from workbench.sandbox import DEFAULT_LIMITS, SandboxLimits, run_query

        limits = SandboxLimits(
            timeout_s=DEFAULT_LIMITS.timeout_s if timeout_s is None else float(timeout_s),
            max_rows=int(limit),
        )
        return run_query(sql, self._table_snapshots(sql), limits)

    def _table_snapshots(self, sql: str) -> dict[str, pa.Table]:
        """Arrow copies of the queryable tables `sql` names (a word match: only a saving, a
        table left out is simply not there), reused until the next committed write by any
        process (the generation stored in the file)."""
        wanted = [t for t in QUERYABLE_TABLES
                  if re.search(rf"(?i)\b{t}\b", sql)]
        out: dict[str, pa.Table] = {}
        # No commit between reading the generation and the tables: this process's writers
        # wait for the write lock, other processes for the file this session holds.
        with self._write_lock, self.session() as cur:
            generation = self.generation() if wanted else 0
            present = {r[0] for r in cur.execute(
                "SELECT table_name FROM information_schema.tables").fetchall()} if wanted else set()
            for table in (t for t in wanted if t in present):
                cached = self._snapshots.get(table)
                if cached is None or cached[0] != generation:
                    arrow = cur.sql(f"SELECT * FROM {table}").to_arrow_table()
                    cached = (generation, arrow)
                    self._snapshots[table] = cached
                out[table] = cached[1]
        return out


def fetch_pl(cur: duckdb.DuckDBPyConnection, sql: str,
             params: Sequence[Any] | None = None) -> pl.DataFrame:
    """Run a query and return a polars frame (via Arrow; DuckDB 2 cursors have no `.pl()`)."""
    table = cur.sql(sql, params=list(params) if params is not None else None).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _normalise_items(items: pl.DataFrame, name: str) -> pl.DataFrame:
    """Give an item frame every stored column with the stored types."""
    frame = items.with_columns(pl.lit(name).alias("workload"))
    string_cols = ("item_id", "input", "reference", "difficulty", "data_class")
    json_cols = ("messages", "tags", "metadata")
    for col in ITEM_COLUMNS:
        if col not in frame.columns:
            dtype = pl.List(pl.String) if col == "labels" else pl.String
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(col))
        elif col in json_cols and frame.schema[col] != pl.String:
            frame = frame.with_columns(
                pl.col(col).map_elements(lambda v: json.dumps(v) if v is not None else None,
                                         return_dtype=pl.String)
            )
        elif col in string_cols:
            frame = frame.with_columns(pl.col(col).cast(pl.String))
    return frame.select(ITEM_COLUMNS)


_OPEN: dict[str, Store] = {}
_OPEN_LOCK = threading.Lock()


def open_store(home: str | Path | None = None) -> Store:
    """The process-wide Store for a data directory (opened once, then reused)."""
    path = settings.db_path(home)
    key = str(path.resolve())
    with _OPEN_LOCK:
        store = _OPEN.get(key)
        if store is None:
            store = Store(path)
            _OPEN[key] = store
        return store
