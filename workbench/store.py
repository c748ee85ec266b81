"""DuckDB store: schema (versioned, migrated), one connection per process, a cursor per thread.

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

# The tables user SQL (the SQL box, `workbench sql`) may see; nothing else is visible to it.
QUERYABLE_TABLES = ("workloads", "items", "outcomes")


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
    """The DuckDB store at `path`: one connection for the process, a cursor per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:  # most often: another process holds the lock
            raise WorkbenchError(
                f"cannot open the store {self.path}: {exc}. Is another workbench process "
                "(app or CLI) using this WORKBENCH_HOME?"
            ) from None
        self._local = threading.local()
        self._write_lock = threading.RLock()
        # bumped by every committed write; the SQL box's table snapshots are valid while equal
        self._generation = 0
        self._snapshots: dict[str, tuple[int, pa.Table]] = {}
        self.migrate()

    # -- connection handling -------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the shared connection (created on first use)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction on this thread's cursor: all or nothing."""
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
                self._generation += 1

    def close(self) -> None:
        """Close the connection (tests and CLI exit)."""
        self._snapshots.clear()
        with contextlib.suppress(Exception):
            self._con.close()
        _OPEN.pop(str(self.path.resolve()), None)

    # -- schema --------------------------------------------------------------------------
    def schema_version(self) -> int:
        """Version recorded in the store (0 for a new file)."""
        cur = self.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

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
        row = self.cursor().execute("SELECT 1 FROM workloads WHERE name = ?", [name]).fetchone()
        return row is not None

    def workloads(self) -> list[WorkloadInfo]:
        """All workloads with item, model and outcome counts, newest first."""
        rows = self.cursor().execute(
            """
            SELECT w.name, w.task_type, w.source, w.synthetic, w.description, w.label_set,
                   w.created, w.fingerprint,
                   (SELECT count(*) FROM items i WHERE i.workload = w.name),
                   (SELECT count(DISTINCT model) FROM outcomes o WHERE o.workload = w.name),
                   (SELECT count(*) FROM outcomes o WHERE o.workload = w.name)
            FROM workloads w ORDER BY w.created DESC, w.name
            """
        ).fetchall()
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
        self.workload(name)
        sql = f"SELECT * EXCLUDE (workload) FROM items WHERE workload = ? ORDER BY {ID_ORDER}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return fetch_pl(self.cursor(), sql, [name])

    def recorded_items(self, name: str) -> pl.DataFrame:
        """Items with at least one recorded outcome: what replay, tuning and gates evaluate
        when a run covered only a slice of the workload."""
        self.workload(name)
        return fetch_pl(
            self.cursor(),
            "SELECT * EXCLUDE (workload) FROM items i WHERE workload = ? AND EXISTS (SELECT 1 "
            "FROM outcomes o WHERE o.workload = i.workload AND o.item_id = i.item_id) "
            f"ORDER BY {ID_ORDER}",
            [name],
        )

    def outcomes_version(self, name: str) -> tuple[str, int, int]:
        """A cheap content hash of a workload's outcomes (with its fingerprint): equal while
        nothing stored for it changed, so callers can keep frames read earlier."""
        row = self.cursor().execute(
            "SELECT count(*), coalesce(bit_xor(hash(item_id, model, output, quality, cost_usd, "
            "latency_ms, error, confidence)), 0) FROM outcomes WHERE workload = ?",
            [name],
        ).fetchone()
        return self.workload(name).fingerprint, int(row[0]), int(row[1])

    def outcomes(self, name: str, models: Sequence[str] | None = None) -> pl.DataFrame:
        """Recorded outcomes of a workload (optionally only some models)."""
        self.workload(name)
        sql = "SELECT * EXCLUDE (workload) FROM outcomes WHERE workload = ?"
        params: list[Any] = [name]
        if models:
            sql += " AND model IN (SELECT unnest(?))"
            params.append(list(models))
        return fetch_pl(self.cursor(), sql + " ORDER BY item_id, model", params)

    def models_of(self, name: str) -> list[str]:
        """Models with recorded outcomes on a workload."""
        rows = self.cursor().execute(
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
        table left out is simply not there), reused until the next committed write."""
        wanted = [t for t in QUERYABLE_TABLES
                  if re.search(rf"(?i)\b{t}\b", sql)]
        out: dict[str, pa.Table] = {}
        with self._write_lock:  # no commit between reading the generation and the tables
            for table in wanted:
                cached = self._snapshots.get(table)
                if cached is None or cached[0] != self._generation:
                    arrow = self.cursor().sql(f"SELECT * FROM {table}").to_arrow_table()
                    cached = (self._generation, arrow)
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
