"""The import transaction and its checks: stage a file into a temp table with row numbers
inside one `store.transaction()`, validate it set-wise (present, unique, numbers in range),
name the first bad row and column, and infer the task type."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from workbench.errors import ConflictError, ImportError_
from workbench.store import Store
from workbench.workloads.importers.reading import _delimiter_hint, _read_error, _reader_sql
from workbench.workloads.importers.sql import _as_text, _ident, _lit, _present_sql

# Classification inference: few distinct references, each used several times on average.
MAX_CLASSES = 100
MIN_ROWS_PER_CLASS = 2


def _rows_text(rows: Sequence[int], total: int | None = None) -> str:
    shown = ", ".join(str(r) for r in rows)
    more = f" (and {total - len(rows)} more)" if total and total > len(rows) else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


@contextmanager
def _staged(
    store: Store, path: Path, container: str, delimiter: str, select: str
) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """Open the import transaction and stage the file into a temp table with a 1-based `_row`;
    `select` is the projection list over the reader. Yields (cursor, table)."""
    table = f"_import_{uuid.uuid4().hex[:12]}"
    reader = _reader_sql(path, container, delimiter)
    with store.transaction() as cur:
        try:
            cur.execute(
                f"CREATE TEMP TABLE {table} AS "
                f"SELECT row_number() OVER () AS _row, {select} FROM {reader}"
            )
        except duckdb.Error as exc:
            raise _read_error(path, container, delimiter, exc) from None
        yield cur, table
        cur.execute(f"DROP TABLE IF EXISTS {table}")


def _prepare_name(store: Store, cur: duckdb.DuckDBPyConnection, path: Path, name: str,
                  replace: bool) -> None:
    try:
        store.prepare_name(cur, name, replace)
    except ConflictError as exc:
        raise ImportError_(f"{path}: {exc}") from None


def _count(cur: duckdb.DuckDBPyConnection, table: str, path: Path) -> int:
    n = int(cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    if n == 0:
        raise ImportError_(f"{path}: no data rows (only a header); nothing to import")
    return n


def _check_present(cur: duckdb.DuckDBPyConnection, table: str, path: Path, col: str,
                   label: str, why: str) -> None:
    """Every row must have a value in staged column `col` (file column `label`)."""
    rows = cur.execute(
        f"SELECT _row, count(*) OVER () FROM {table} WHERE {_ident(col)} IS NULL "
        f"OR trim(CAST({_ident(col)} AS VARCHAR)) = '' ORDER BY _row LIMIT 5"
    ).fetchall()
    if rows:
        raise ImportError_(
            f"{path}, {_rows_text([r[0] for r in rows], rows[0][1])}, column {label!r}: "
            f"empty; {why}"
        )


def _check_unique(cur: duckdb.DuckDBPyConnection, table: str, path: Path, key_sql: str,
                  label: str) -> None:
    """The key expression must be unique; name the first duplicated key and its rows."""
    dup = cur.execute(
        f"SELECT {key_sql} AS k, list(_row ORDER BY _row), count(*) FROM {table} "
        f"GROUP BY k HAVING count(*) > 1 ORDER BY min(_row) LIMIT 1"
    ).fetchone()
    if dup:
        rows = list(dup[1])[:5]
        raise ImportError_(
            f"{path}: duplicate {label} {dup[0]!r} in {_rows_text(rows, int(dup[2]))}"
        )


def _check_numbers(cur: duckdb.DuckDBPyConnection, table: str, path: Path,
                   checks: Sequence[tuple[str, str, str]]) -> None:
    """checks: (staged column, value SQL, kind) with kind `quality` (a number in [0, 1] or
    true/false) or `amount` (a number >= 0). Names the first bad row and column."""
    rules = {"quality": "a number in [0, 1] or true/false", "amount": "a number >= 0"}
    parts = []
    for col, value_sql, kind in checks:
        ok = f"{value_sql} BETWEEN 0 AND 1" if kind == "quality" else f"{value_sql} >= 0"
        parts.append(
            f"SELECT _row, {_lit(col)} AS col, {_as_text(col)} AS val, {_lit(kind)} AS kind "
            f"FROM {table} WHERE {_present_sql(col)} AND ({value_sql} IS NULL OR NOT ({ok}))"
        )
    if not parts:
        return
    row = cur.execute(
        f"SELECT _row, col, val, kind FROM ({' UNION ALL '.join(parts)}) "
        "ORDER BY _row, col LIMIT 1"
    ).fetchone()
    if row:
        raise ImportError_(
            f"{path}, row {row[0]}, column {row[1]!r}: {str(row[2])[:60]!r} is not "
            f"{rules[row[3]]}"
        )


def _missing_columns(path: Path, container: str, delimiter: str, needed: dict[str, str],
                     columns: Sequence[str]) -> None:
    missing = [f"{col!r} ({role.split()[0]})" for role, col in needed.items()
               if col not in columns]
    if missing:
        avail = ", ".join(repr(c) for c in columns)
        raise ImportError_(
            f"{path}: mapped column{'s' if len(missing) > 1 else ''} {', '.join(missing)} not "
            f"found; available columns: {avail}{_delimiter_hint(path, container, delimiter)}"
        )


def _infer_task(n: int, distinct: int | None, numeric: bool, has_labels: bool,
                task_type: str | None) -> tuple[str, str]:
    """(task type, reason) by the rule in the package docstring unless given; `distinct` is the
    number of distinct references (None without a reference column)."""
    if task_type:
        return task_type, "given"
    if has_labels:
        return "classification", "a labels column is mapped"
    if distinct is None:
        return "generation", "no reference column"
    reason = f"{distinct} distinct reference values in {n} rows"
    if numeric and distinct > 2:
        return "qa", reason + ", all numeric"
    if 0 < distinct <= MAX_CLASSES and distinct * MIN_ROWS_PER_CLASS <= n:
        return "classification", reason
    return "qa", reason


def _id_width(n: int) -> int:
    return len(str(n))


def _row_id_sql(n: int) -> str:
    """Row number as a zero-padded text id, so ids sort in file order."""
    return f"lpad(CAST(_row AS VARCHAR), {_id_width(n)}, '0')"


def _finish(store: Store, cur: duckdb.DuckDBPyConnection, name: str, *, task_type: str,
            source: str, description: str, label_set: Sequence[str] | None) -> None:
    store.finish_workload(cur, name, task_type=task_type, source=source,
                          description=description, label_set=label_set or None)

