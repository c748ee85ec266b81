"""Import workloads and recorded model outcomes from files into the store.

DuckDB reads every file itself (read_csv / read_json / read_parquet with explicit options) and
the rows go into the store with set-based `INSERT ... SELECT` statements inside ONE
`store.transaction()`: no row-by-row Python, and the file never sits in Python memory.

Layouts:
- items (`csv`, `jsonl`, `parquet`): one item per row, columns chosen by a `ColumnMapping`.
- `routerbench`: wide recorded outcomes (`<model>` correctness, `<model>|total_cost`,
  `<model>|model_response`, `prompt` as a Python-literal list of strings, `eval_name`).
- `routellm`: True/False correctness per model plus `<model>_response`; no cost column, so cost is
  estimated from LiteLLM's bundled price table (tokens = ceil(chars / 4)) and flagged in `signals`.
- `long`: one outcome per row: item_id, model, output, quality, cost_usd, latency_ms,
  tokens or prompt_tokens/completion_tokens, error; input and reference optional.
The three outcome layouts may come in any of the three containers (CSV, JSONL, Parquet).

Label sets: the workload's `label_set` holds the task's labels (the labels column's distinct
values, or the distinct references of a classification task); an item's `labels` is filled
only when the file gives a per-item label set (a mapped labels column).

Rows in error messages are counted from 1 at the first data row (the CSV header is not a row).
A bad file raises `ImportError_` naming file, row and column, and nothing is written.

Task type rule (when not given): a mapped labels column means `classification`; otherwise, with
a reference column, `classification` when the reference has at most 100 distinct values,
each used on average by at least 2 rows (distinct * 2 <= rows), and is not a numeric answer
(all values numbers with more than 2 distinct values), else `qa`; with no reference,
`generation`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from workbench.errors import ConflictError, ImportError_
from workbench.store import Store, WorkloadInfo, fetch_pl

ITEM_FORMATS = ("csv", "jsonl", "parquet")
OUTCOME_FORMATS = ("routerbench", "routellm", "long")
FORMATS = ("auto", *ITEM_FORMATS, *OUTCOME_FORMATS)
TASK_TYPES = ("classification", "qa", "generation", "extraction")

# Classification inference: few distinct references, each used several times on average.
MAX_CLASSES = 100
MIN_ROWS_PER_CLASS = 2

INPUT_GUESSES = ("input", "text", "prompt", "question", "query", "message", "utterance", "content")
REFERENCE_GUESSES = (
    "reference", "label", "answer", "target", "category", "gold", "expected", "intent", "class",
)
ID_GUESSES = ("item_id", "id", "sample_id", "uid", "uuid")
TAG_COLUMNS = ("difficulty", "data_class")
LONG_NUMERIC = ("quality", "cost_usd", "latency_ms", "tokens", "prompt_tokens", "completion_tokens")
LONG_KNOWN = ("item_id", "model", "output", "input", "reference", "error", *LONG_NUMERIC)
DELIMITER_CANDIDATES = (";", "\t", "|", ",")
PRICE_PREFIXES = (
    "", "together_ai/", "openrouter/", "mistral/", "deepinfra/", "anyscale/", "fireworks_ai/",
    "groq/", "openai/", "anthropic/", "replicate/", "bedrock/",
)
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class ColumnMapping:
    """Which file columns feed which item fields; `id` None means the row number is the id.

    `labels` names a column holding a `labels_delimiter`-separated label set per item; `tags`
    columns go to the `difficulty` / `data_class` fields when so named, else into the `tags`
    JSON; `metadata` columns go into the `metadata` JSON.
    """

    id: str | None = None
    input: str = "input"
    reference: str | None = None
    labels: str | None = None
    tags: Sequence[str] = field(default_factory=list)
    metadata: Sequence[str] = field(default_factory=list)
    labels_delimiter: str = "|"

    def columns(self) -> dict[str, str]:
        """Mapped file column per role (tag/metadata columns keyed `tag <col>` / `metadata <col>`)."""
        roles: dict[str, str] = {"input": self.input}
        for role in ("id", "reference", "labels"):
            col = getattr(self, role)
            if col:
                roles[role] = col
        for col in self.tags:
            roles[f"tag {col}"] = col
        for col in self.metadata:
            roles[f"metadata {col}"] = col
        return roles


# -- small SQL helpers -----------------------------------------------------------------------
def _lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _as_text(col: str) -> str:
    return f"CAST({_ident(col)} AS VARCHAR)"


def _quality_sql(col: str) -> str:
    """Correctness/quality as DOUBLE: true/false words or numbers; blanks become NULL."""
    raw = f"lower(trim({_as_text(col)}))"
    return (f"(CASE {raw} WHEN 'true' THEN 1.0 WHEN 'false' THEN 0.0 "
            f"ELSE TRY_CAST({raw} AS DOUBLE) END)")


def _number_sql(col: str) -> str:
    return f"TRY_CAST(trim({_as_text(col)}) AS DOUBLE)"


def _present_sql(col: str) -> str:
    """The cell holds something (not NULL, not blank)."""
    return f"({_ident(col)} IS NOT NULL AND trim({_as_text(col)}) <> '')"


def _rows_text(rows: Sequence[int], total: int | None = None) -> str:
    shown = ", ".join(str(r) for r in rows)
    more = f" (and {total - len(rows)} more)" if total and total > len(rows) else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


# -- file access -----------------------------------------------------------------------------
def _container(path: Path, format: str) -> str:
    """csv / jsonl / parquet: the explicit item format, else the extension, else magic bytes."""
    if format in ITEM_FORMATS:
        return format
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    return "csv"


def _default_delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _reader_sql(path: Path, container: str, delimiter: str) -> str:
    """The DuckDB table function reading the file, with explicit options."""
    p = _lit(str(path))
    if container == "csv":
        return (f"read_csv({p}, header=true, delim={_lit(delimiter)}, quote='\"', escape='\"', "
                "all_varchar=true, auto_detect=true)")
    if container == "jsonl":
        return f"read_json({p}, format='newline_delimited', records=true)"
    return f"read_parquet({p})"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImportError_(f"{path}: no such file")
    if path.is_dir():
        raise ImportError_(f"{path}: is a directory, not a file")
    if path.stat().st_size == 0:
        raise ImportError_(f"{path}: the file is empty (0 bytes); nothing to import")


def _first_invalid_utf8(path: Path) -> tuple[int, int, int] | None:
    """(byte offset, line, byte value) of the first byte that is not valid UTF-8, streaming the
    file in 1 MiB chunks (used only to explain a read error)."""
    carry = b""
    base = 0
    lines = 0
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            data = carry + chunk
            if not data:
                return None
            try:
                data.decode("utf-8")
                carry = b""
                good = len(data)
            except UnicodeDecodeError as exc:
                truncated = exc.reason == "unexpected end of data" and len(data) - exc.start < 4
                if truncated and chunk:
                    good = exc.start
                    carry = data[good:]
                else:
                    offset = base + exc.start
                    return offset, lines + data[: exc.start].count(b"\n") + 1, data[exc.start]
            lines += data[:good].count(b"\n")
            base += good
            if not chunk:
                return None


def _guess_delimiter(path: Path, used: str) -> str | None:
    """The delimiter the header line seems to use, when it is not the one we read with."""
    with path.open("rb") as fh:
        first = fh.readline(1 << 16).decode("utf-8", errors="replace")
    counts = {d: first.count(d) for d in DELIMITER_CANDIDATES if d != used}
    best = max(counts, key=lambda d: counts[d]) if counts else None
    if best and counts[best] > first.count(used):
        return best
    return None


def _delimiter_hint(path: Path, container: str, delimiter: str) -> str:
    if container != "csv":
        return ""
    guess = _guess_delimiter(path, delimiter)
    if guess is None:
        return ""
    shown = "\\t" if guess == "\t" else guess
    used = "\\t" if delimiter == "\t" else delimiter
    return (f"; the delimiter looks wrong: the file was read with {used!r} but its header seems "
            f"to use {shown!r} (pass delimiter={shown!r} / --delimiter {shown!r})")


def _read_error(path: Path, container: str, delimiter: str, exc: duckdb.Error) -> ImportError_:
    """Turn a DuckDB read failure into a message naming the file, line and likely cause."""
    msg = str(exc)
    lowered = msg.lower()
    # Error path only: a streaming scan names the exact byte, whatever DuckDB's wording.
    bad = _first_invalid_utf8(path) if container != "parquet" else None
    if bad is not None:
        offset, line, value = bad
        where = f"line {line}" + (f" (row {line - 1})" if container == "csv" else "")
        return ImportError_(
            f"{path}: not UTF-8 text: byte 0x{value:02x} at byte offset {offset}, {where}; "
            "save the file as UTF-8 and import again"
        )
    line = re.search(r"[Ll]ine:?\s*(\d+)", msg)
    where = f", line {line.group(1)}" if line else ""
    hint = _delimiter_hint(path, container, delimiter)
    if container == "csv" and ("sniffing" in lowered or "number of columns" in lowered):
        return ImportError_(
            f"{path}{where}: rows do not split into the same columns with delimiter "
            f"{delimiter!r}{hint or '; check the delimiter and quoting'}"
        )
    first = next((s for s in msg.splitlines() if s.strip()), msg)
    return ImportError_(f"{path}{where}: cannot read as {container}: {first}{hint}")


def _scratch() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def _columns(
    con: duckdb.DuckDBPyConnection, path: Path, container: str, delimiter: str
) -> dict[str, str]:
    """Column name -> DuckDB type, as the reader sees the file."""
    try:
        rows = con.execute(
            f"DESCRIBE SELECT * FROM {_reader_sql(path, container, delimiter)}"
        ).fetchall()
    except duckdb.Error as exc:
        raise _read_error(path, container, delimiter, exc) from None
    return {r[0]: r[1] for r in rows}


def _layout(columns: Sequence[str]) -> str:
    """items / routerbench / routellm / long, from the column names alone."""
    names = set(columns)
    if any(c.endswith(("|total_cost", "|model_response")) for c in columns):
        return "routerbench"
    if any(f"{c}_response" in names for c in columns):
        return "routellm"
    if {"item_id", "model"} <= names and names & {"output", "quality"}:
        return "long"
    return "items"


def detect_format(path: str | os.PathLike[str], *, delimiter: str | None = None) -> str:
    """The format `--format auto` would use: routerbench, routellm or long when the header has
    that layout, else the container (csv, jsonl, parquet)."""
    path = Path(path)
    _check_file(path)
    container = _container(path, "auto")
    delim = delimiter or _default_delimiter(path)
    with _scratch() as con:
        layout = _layout(list(_columns(con, path, container, delim)))
    return container if layout == "items" else layout


def preview_file(
    path: str | os.PathLike[str],
    format: str = "auto",
    limit: int = 20,
    *,
    delimiter: str | None = None,
) -> pl.DataFrame:
    """The file's columns and first `limit` rows (CSV cells as text), for a mapping form; reads
    only what it shows."""
    path = Path(path)
    _check_file(path)
    if format not in FORMATS:
        raise ImportError_(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    container = _container(path, format)
    delim = delimiter or _default_delimiter(path)
    reader = _reader_sql(path, container, delim)
    with _scratch() as con:
        try:
            return fetch_pl(con, f"SELECT * FROM {reader} LIMIT {int(limit)}")
        except duckdb.Error as exc:
            raise _read_error(path, container, delim, exc) from None


def guess_mapping(columns: Sequence[str]) -> ColumnMapping | None:
    """A mapping from conventional column names (input/text/prompt..., reference/label/...);
    the remaining columns become metadata. None when no input column can be recognised."""
    lower = {c.lower(): c for c in columns}

    def pick(cands: Sequence[str]) -> str | None:
        return next((lower[c] for c in cands if c in lower), None)

    input_col = pick(INPUT_GUESSES)
    if input_col is None:
        return None
    id_col = pick(ID_GUESSES)
    ref_col = pick([c for c in REFERENCE_GUESSES if lower.get(c) != input_col])
    tags = [lower[t] for t in TAG_COLUMNS if t in lower]
    used = {input_col, id_col, ref_col, *tags}
    metadata = [c for c in columns if c not in used and not re.fullmatch(r"column\d+", c)]
    return ColumnMapping(id=id_col, input=input_col, reference=ref_col, tags=tags,
                         metadata=metadata)


# -- the import transaction ------------------------------------------------------------------
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
    """(task type, reason) by the module's documented rule unless given; `distinct` is the
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


def _json_object_sql(cols: Sequence[str]) -> str:
    if not cols:
        return "NULL::JSON"
    return "json_object(" + ", ".join(f"{_lit(c)}, {_ident(c)}" for c in cols) + ")"


def _input_sql(col: str, dtype: str) -> tuple[str, str]:
    """(input text SQL, messages JSON SQL) for the mapped input column of this type: a list of
    chat messages (structs with `content`) is kept as messages and its contents joined as text."""
    c = _ident(col)
    if dtype.endswith("[]") and "content" in dtype and dtype.startswith("STRUCT"):
        return (f"array_to_string([CAST(m.content AS VARCHAR) FOR m IN {c}], chr(10) || chr(10))",
                f"to_json({c})")
    if dtype == "VARCHAR":
        return c, "NULL::JSON"
    return f"CAST({c} AS VARCHAR)", "NULL::JSON"


def _id_width(n: int) -> int:
    return len(str(n))


def _row_id_sql(n: int) -> str:
    """Row number as a zero-padded text id, so ids sort in file order."""
    return f"lpad(CAST(_row AS VARCHAR), {_id_width(n)}, '0')"


def _finish(store: Store, cur: duckdb.DuckDBPyConnection, name: str, *, task_type: str,
            source: str, description: str, label_set: Sequence[str] | None) -> None:
    store.finish_workload(cur, name, task_type=task_type, source=source,
                          description=description, label_set=label_set or None)


def _import_items(store: Store, path: Path, name: str, container: str, delimiter: str,
                  mapping: ColumnMapping | None, task_type: str | None,
                  replace: bool) -> None:
    with _scratch() as con:
        types = _columns(con, path, container, delimiter)
    columns = list(types)
    if mapping is None:
        mapping = guess_mapping(columns)
        if mapping is None:
            avail = ", ".join(repr(c) for c in columns)
            raise ImportError_(
                f"{path}: cannot tell which column holds the input text (looked for "
                f"{', '.join(INPUT_GUESSES)}); map it explicitly (--input-col); available "
                f"columns: {avail}{_delimiter_hint(path, container, delimiter)}"
            )
    _missing_columns(path, container, delimiter, mapping.columns(), columns)
    input_sql, messages_sql = _input_sql(mapping.input, types[mapping.input])
    tag_named = {t: t for t in mapping.tags if t.lower() in TAG_COLUMNS}
    other_tags = [t for t in mapping.tags if t not in tag_named]
    select = [
        f"{_as_text(mapping.id)} AS id" if mapping.id else "NULL::VARCHAR AS id",
        f"{input_sql} AS input",
        f"{messages_sql} AS messages",
        f"{_as_text(mapping.reference)} AS reference" if mapping.reference
        else "NULL::VARCHAR AS reference",
    ]
    for tag in TAG_COLUMNS:
        col = next((c for c in tag_named if c.lower() == tag), None)
        select.append(f"{_as_text(col)} AS {tag}" if col else f"NULL::VARCHAR AS {tag}")
    select.append(f"{_json_object_sql(other_tags)} AS tags")
    select.append(f"{_json_object_sql(list(mapping.metadata))} AS metadata")

    if task_type == "classification" and not (mapping.reference or mapping.labels):
        raise ImportError_(f"{path}: task type classification needs a reference or a "
                           "labels column in the mapping")
    reader = _reader_sql(path, container, delimiter)
    select.append(
        f"[trim(l) FOR l IN string_split({_as_text(mapping.labels)}, "
        f"{_lit(mapping.labels_delimiter)}) IF trim(l) <> ''] AS labels"
        if mapping.labels else "NULL::VARCHAR[] AS labels"
    )
    with store.transaction() as cur:
        _prepare_name(store, cur, path, name, replace)
        if mapping.id:
            # No staging, no row numbers: DuckDB streams the file straight into the table.
            source, id_sql = reader, "id"
        else:
            try:
                rows = int(cur.execute(f"SELECT count(*) FROM {reader}").fetchone()[0])
            except duckdb.Error as exc:
                raise _read_error(path, container, delimiter, exc) from None
            source = f"(SELECT row_number() OVER () AS _row, * FROM {reader})"
            id_sql = _row_id_sql(max(rows, 1))
        try:
            cur.execute(
                "INSERT INTO items (workload, item_id, input, messages, reference, labels, "
                "difficulty, data_class, tags, metadata) "
                f"SELECT $name, {id_sql}, input, messages, reference, labels, difficulty, "
                f"data_class, tags, metadata FROM (SELECT {', '.join(select)}"
                f"{', _row' if not mapping.id else ''} FROM {source})",
                {"name": name},
            )
        except duckdb.ConstraintException:  # NULL input/id or a duplicate id: find the rows
            raise _diagnose_items(path, container, delimiter, mapping, input_sql) from None
        except duckdb.Error as exc:
            raise _read_error(path, container, delimiter, exc) from None
        n, blank, distinct, numeric = cur.execute(
            "SELECT count(*), count_if(trim(input) = '' OR trim(item_id) = ''), "
            "count(DISTINCT trim(reference)), bool_and(TRY_CAST(trim(reference) AS DOUBLE) "
            "IS NOT NULL) FROM items WHERE workload = $name",
            {"name": name},
        ).fetchone()
        if n == 0:
            raise ImportError_(f"{path}: no data rows (only a header); nothing to import")
        if blank:
            raise _diagnose_items(path, container, delimiter, mapping, input_sql)
        task, reason = _infer_task(int(n), int(distinct) if mapping.reference else None,
                                   bool(numeric), bool(mapping.labels), task_type)
        labels: list[str] = []
        if mapping.labels:
            sql = ("SELECT DISTINCT l FROM (SELECT unnest(labels) AS l FROM items "
                   "WHERE workload = $name) ORDER BY l")
        else:
            sql = ("SELECT DISTINCT trim(reference) AS l FROM items WHERE workload = $name "
                   "AND trim(reference) <> '' ORDER BY l")
        if mapping.labels or task == "classification":
            labels = [r[0] for r in cur.execute(sql, {"name": name}).fetchall()]
        _finish(store, cur, name, task_type=task, source=f"{container}:{path.name}",
                description=(f"Imported from {path.name} ({container}), {n} rows; "
                             f"task type {task} ({reason})."),
                label_set=labels)


def _diagnose_items(path: Path, container: str, delimiter: str, mapping: ColumnMapping,
                    input_sql: str) -> ImportError_:
    """Error path only: re-read the file with row numbers (in a scratch database) to name the
    rows with an empty input or id, or a duplicate id."""
    id_sql = _as_text(mapping.id) if mapping.id else "CAST(_row AS VARCHAR)"
    reader = _reader_sql(path, container, delimiter)
    with _scratch() as con:
        con.execute(
            f"CREATE TABLE d AS SELECT _row, {id_sql} AS id, {input_sql} AS input FROM "
            f"(SELECT row_number() OVER () AS _row, * FROM {reader})"
        )
        try:
            _check_present(con, "d", path, "input", mapping.input, "every item needs an input")
            if mapping.id:
                _check_present(con, "d", path, "id", mapping.id, "every item needs an id")
                _check_unique(con, "d", path, "id", f"item id (column {mapping.id!r})")
        except ImportError_ as exc:
            return exc
    return ImportError_(f"{path}: the items violate a store constraint; check ids and inputs")


# -- recorded outcomes -----------------------------------------------------------------------
def _prompt_udf(values: Any) -> Any:
    """Arrow UDF: a RouterBench `prompt` cell (Python-literal list of strings) -> JSON
    {"text": parts joined (repeats dropped), "parts": [...]}; other text is kept as one part."""
    import pyarrow as pa

    out = []
    for value in values.to_pylist():
        if value is None:
            out.append(None)
            continue
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            parsed = value
        if isinstance(parsed, str):
            parts = [parsed]
        elif isinstance(parsed, list | tuple) and all(isinstance(p, str) for p in parsed):
            parts = list(parsed)
        else:
            parts = [value]
        kept = [p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1]]
        out.append(json.dumps({"text": "\n\n".join(kept), "parts": parts}))
    return pa.array(out, type=pa.string())


def _import_routerbench(store: Store, path: Path, name: str, container: str, delimiter: str,
                        task_type: str | None, replace: bool) -> None:
    with _scratch() as con:
        columns = list(_columns(con, path, container, delimiter))
    suffixes = ("|total_cost", "|model_response")
    models: list[str] = []
    for col in columns:
        for suffix in suffixes:
            if col.endswith(suffix) and col[: -len(suffix)] not in models:
                models.append(col[: -len(suffix)])
    if "prompt" not in columns:
        _missing_columns(path, container, delimiter, {"prompt": "prompt"}, columns)
    model_cols = {c for m in models for c in (m, m + suffixes[0], m + suffixes[1])}
    index_col = columns[0] if re.fullmatch(r"column\d+", columns[0]) else None
    extra = [c for c in columns if c not in model_cols and c not in
             ("prompt", "sample_id", "eval_name", index_col)]

    udf = f"_prompt_{uuid.uuid4().hex[:8]}"
    with _staged(store, path, container, delimiter, "*") as (cur, table):
        n = _count(cur, table, path)
        _check_present(cur, table, path, "prompt", "prompt", "every item needs a prompt")
        has_id = "sample_id" in columns
        if has_id:
            _check_present(cur, table, path, "sample_id", "sample_id", "every item needs an id")
            # Published RouterBench files repeat a few sample_ids for different prompts (ARC
            # test: 1 of 445); those become `<sample_id>#<k>` in file order, k from 1.
            id_sql = ("CASE WHEN count(*) OVER (PARTITION BY sample_id) = 1 THEN sample_id "
                      "ELSE sample_id || '#' || row_number() OVER (PARTITION BY sample_id "
                      "ORDER BY _row) END")
        else:
            id_sql = _row_id_sql(n)
        cur.execute(f"CREATE TEMP TABLE {table}_ids AS SELECT _row, {id_sql} AS _item_id "
                    f"FROM {table}")
        _check_unique(cur, f"{table}_ids", path, "_item_id", "item id (column 'sample_id')")
        source = f"{table} JOIN {table}_ids USING (_row)"
        checks = []
        for m in models:
            if m in columns:
                checks.append((m, _quality_sql(m), "quality"))
            cost = m + suffixes[0]
            if cost in columns:
                checks.append((cost, _number_sql(cost), "amount"))
        _check_numbers(cur, table, path, checks)
        _prepare_name(store, cur, path, name, replace)

        meta_pairs = [f"{_lit(c)}, {_ident(c)}" for c in extra]
        if has_id:
            meta_pairs.append("'sample_id', sample_id")
        if index_col:
            meta_pairs.append(f"'index', {_ident(index_col)}")
        meta = f"json_object({', '.join(meta_pairs)})" if meta_pairs else "json_object()"
        tags = ("json_object('eval_name', \"eval_name\")" if "eval_name" in columns
                else "NULL::JSON")
        cur.create_function(udf, _prompt_udf, ["VARCHAR"], "VARCHAR", type="arrow")
        try:
            cur.execute(
                "INSERT INTO items (workload, item_id, input, messages, reference, labels, "
                "difficulty, data_class, tags, metadata) "
                "SELECT $name, id, parsed->>'text', NULL, NULL, NULL, NULL, NULL, tags, "
                "CASE WHEN json_array_length(parsed->'parts') > 1 THEN json_merge_patch(meta, "
                "json_object('prompt_parts', parsed->'parts')) ELSE meta END "
                f"FROM (SELECT _item_id AS id, {udf}(prompt)::JSON AS parsed, {tags} AS tags, "
                f"{meta} AS meta FROM {source})",
                {"name": name},
            )
        finally:
            cur.remove_function(udf)

        proj = ["_item_id AS item_id"]
        groups = []
        for i, m in enumerate(models):
            q = _quality_sql(m) if m in columns else "NULL::DOUBLE"
            c = _number_sql(m + suffixes[0]) if m + suffixes[0] in columns else "NULL::DOUBLE"
            r = _as_text(m + suffixes[1]) if m + suffixes[1] in columns else "NULL::VARCHAR"
            proj += [f"{q} AS q{i}", f"{c} AS c{i}", f"{r} AS r{i}"]
            groups.append(f"(q{i}, c{i}, r{i}) AS {_lit(m)}")
        cur.execute(
            "INSERT INTO outcomes (workload, item_id, model, output, quality, cost_usd) "
            "SELECT $name, item_id, model, output, quality, cost_usd "
            f"FROM (SELECT {', '.join(proj)} FROM {source}) "
            f"UNPIVOT INCLUDE NULLS ((quality, cost_usd, output) FOR model IN "
            f"({', '.join(groups)})) "
            "WHERE quality IS NOT NULL OR cost_usd IS NOT NULL OR output IS NOT NULL",
            {"name": name},
        )
        cur.execute(f"DROP TABLE {table}_ids")
        task = task_type or "generation"
        _finish(store, cur, name, task_type=task, source=f"routerbench:{path.name}",
                description=(f"RouterBench recorded outcomes from {path.name}: {n} items, "
                             f"{len(models)} models; quality is recorded correctness."),
                label_set=None)


def price_entry(model: str) -> tuple[str, float, float] | None:
    """(LiteLLM price-table key, $ per input token, $ per output token) for a model name such as
    `gpt-4-1106-preview` or `mistralai/Mixtral-8x7B-Instruct-v0.1`, trying provider prefixes;
    None when the bundled table has no entry."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    table = {k.lower(): (k, v) for k, v in litellm.model_cost.items() if isinstance(v, dict)}
    base = model.split("/")[-1]
    stems = [model, base, re.sub(r"-v\d+(\.\d+)*$", "", base)]
    for stem in stems:
        for prefix in PRICE_PREFIXES:
            hit = table.get((prefix + stem).lower())
            if hit is None:
                continue
            key, entry = hit
            cin, cout = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
            if cin is not None and cout is not None and (cin or cout):
                return key, float(cin), float(cout)
    return None


def _import_routellm(store: Store, path: Path, name: str, container: str, delimiter: str,
                     task_type: str | None, replace: bool) -> None:
    with _scratch() as con:
        columns = list(_columns(con, path, container, delimiter))
    names = set(columns)
    models = [c for c in columns if f"{c}_response" in names]
    if "prompt" not in columns:
        _missing_columns(path, container, delimiter, {"prompt": "prompt"}, columns)
    prices = {m: price_entry(m) for m in models}
    with _staged(store, path, container, delimiter, "*") as (cur, table):
        n = _count(cur, table, path)
        _check_present(cur, table, path, "prompt", "prompt", "every item needs a prompt")
        _check_numbers(cur, table, path, [
            (m, _quality_sql(m), "quality") for m in models
        ])
        _prepare_name(store, cur, path, name, replace)
        id_sql = _row_id_sql(n)
        cur.execute(
            "INSERT INTO items (workload, item_id, input) "
            f"SELECT $name, {id_sql}, prompt FROM {table}",
            {"name": name},
        )
        pt = f"CAST(ceil(length(prompt) / {CHARS_PER_TOKEN}) AS INTEGER)"
        proj = [f"{id_sql} AS item_id", f"{pt} AS pt"]
        groups = []
        for i, m in enumerate(models):
            resp = _as_text(f"{m}_response")
            ct = f"CAST(ceil(length({resp}) / {CHARS_PER_TOKEN}) AS INTEGER)"
            price = prices[m]
            if price:
                cost = f"({pt} * {price[1]!r} + {ct} * {price[2]!r})"
                signal = {"cost_estimated": True, "price_entry": price[0],
                          "token_rule": f"ceil(chars/{CHARS_PER_TOKEN})"}
            else:
                cost = "NULL::DOUBLE"
                signal = {"cost_estimated": False, "price_entry": None,
                          "reason": "no LiteLLM price entry for this model"}
            proj += [f"{_quality_sql(m)} AS q{i}", f"{resp} AS r{i}", f"{ct} AS t{i}",
                     f"{cost} AS c{i}", f"{_lit(json.dumps(signal))} AS s{i}"]
            groups.append(f"(q{i}, r{i}, t{i}, c{i}, s{i}) AS {_lit(m)}")
        cur.execute(
            "INSERT INTO outcomes (workload, item_id, model, output, quality, cost_usd, "
            "prompt_tokens, completion_tokens, signals) "
            "SELECT $name, item_id, model, output, quality, cost_usd, pt, ct, signals::JSON "
            f"FROM (SELECT {', '.join(proj)} FROM {table}) "
            f"UNPIVOT INCLUDE NULLS ((quality, output, ct, cost_usd, signals) FOR model IN "
            f"({', '.join(groups)})) WHERE quality IS NOT NULL OR output IS NOT NULL",
            {"name": name},
        )
        unpriced = [m for m, p in prices.items() if p is None]
        priced = ", ".join(f"{m} -> {p[0]}" for m, p in prices.items() if p)
        note = f" No price entry for: {', '.join(unpriced)} (cost left empty)." if unpriced else ""
        _finish(store, cur, name, task_type=task_type or "generation",
                source=f"routellm:{path.name}",
                description=(f"RouteLLM recorded outcomes from {path.name}: {n} items, "
                             f"{len(models)} models; cost estimated from LiteLLM prices "
                             f"({priced}) with tokens = ceil(chars/{CHARS_PER_TOKEN}).{note}"),
                label_set=None)


def _import_long(store: Store, path: Path, name: str, container: str, delimiter: str,
                 task_type: str | None, replace: bool) -> None:
    with _scratch() as con:
        columns = list(_columns(con, path, container, delimiter))
    _missing_columns(path, container, delimiter, {"item_id": "item_id", "model": "model"},
                     columns)
    if not {"output", "quality"} & set(columns):
        raise ImportError_(f"{path}: long format needs an 'output' or 'quality' column; "
                           f"available columns: {', '.join(map(repr, columns))}")
    has = set(columns)
    select = ", ".join(_ident(c) for c in columns if c in LONG_KNOWN)
    with _staged(store, path, container, delimiter, select) as (cur, table):
        n = _count(cur, table, path)
        _check_present(cur, table, path, "item_id", "item_id", "every outcome needs an item id")
        _check_present(cur, table, path, "model", "model", "every outcome needs a model")
        _check_unique(cur, table, path,
                      "CAST(item_id AS VARCHAR) || ' / ' || CAST(model AS VARCHAR)",
                      "(item_id / model) pair")
        checks = []
        for col in LONG_NUMERIC:
            if col in has:
                if col == "quality":
                    checks.append((col, _quality_sql(col), "quality"))
                else:
                    checks.append((col, _number_sql(col), "amount"))
        _check_numbers(cur, table, path, checks)

        def opt(col: str, sql: str | None = None, cast: str = "VARCHAR") -> str:
            return (sql or _as_text(col)) if col in has else f"NULL::{cast}"

        ref_table = (f"(SELECT CAST(item_id AS VARCHAR) AS item_id, "
                     f"first({opt('reference')} ORDER BY _row) FILTER "
                     f"(WHERE {opt('reference')} IS NOT NULL) AS reference, "
                     f"first({opt('input')} ORDER BY _row) FILTER "
                     f"(WHERE {opt('input')} IS NOT NULL) AS input, min(_row) AS _row "
                     f"FROM {table} GROUP BY 1)")
        _prepare_name(store, cur, path, name, replace)
        cur.execute(
            "INSERT INTO items (workload, item_id, input, reference) "
            f"SELECT $name, item_id, coalesce(input, ''), reference FROM {ref_table}",
            {"name": name},
        )
        n_items, distinct, numeric = cur.execute(
            "SELECT count(*), count(DISTINCT trim(reference)), bool_and(TRY_CAST(trim(reference)"
            " AS DOUBLE) IS NOT NULL) FROM items WHERE workload = $name", {"name": name},
        ).fetchone()
        task, _reason = _infer_task(int(n_items), int(distinct) if "reference" in has else None,
                                    bool(numeric), False, task_type)
        labels = [r[0] for r in cur.execute(
            "SELECT DISTINCT trim(reference) AS l FROM items WHERE workload = $name "
            "AND trim(reference) <> '' ORDER BY l", {"name": name}).fetchall()
        ] if task == "classification" else []

        def tok(col: str) -> str:
            return f"CAST(round({_number_sql(col)}) AS INTEGER)"

        completion = (tok("completion_tokens") if "completion_tokens" in has
                      else tok("tokens") if "tokens" in has else "NULL::INTEGER")
        signals = ("json_object('tokens', 'total tokens recorded in completion_tokens')"
                   if "tokens" in has and "completion_tokens" not in has else "NULL::JSON")
        cur.execute(
            "INSERT INTO outcomes (workload, item_id, model, output, quality, cost_usd, "
            "latency_ms, prompt_tokens, completion_tokens, error, signals) "
            f"SELECT $name, CAST(item_id AS VARCHAR), CAST(model AS VARCHAR), {opt('output')}, "
            f"{opt('quality', _quality_sql('quality'), 'DOUBLE')}, "
            f"{opt('cost_usd', _number_sql('cost_usd'), 'DOUBLE')}, "
            f"{opt('latency_ms', _number_sql('latency_ms'), 'DOUBLE')}, "
            f"{opt('prompt_tokens', tok('prompt_tokens'), 'INTEGER')}, {completion}, "
            f"{opt('error')}, {signals} FROM {table}",
            {"name": name},
        )
        n_models = int(cur.execute(
            f"SELECT count(DISTINCT model) FROM {table}").fetchone()[0])
        _finish(store, cur, name, task_type=task, source=f"long:{path.name}",
                description=(f"Recorded outcomes (long format) from {path.name}: {n} rows, "
                             f"{n_items} items, {n_models} models."),
                label_set=labels)


def import_file(
    store: Store,
    path: str | os.PathLike[str],
    name: str,
    *,
    format: str = "auto",
    mapping: ColumnMapping | None = None,
    task_type: str | None = None,
    replace: bool = False,
    delimiter: str | None = None,
) -> WorkloadInfo:
    """Import a workload (items, and recorded outcomes for outcome layouts) from a file in one
    transaction; on any problem raise ImportError_ and leave the store unchanged."""
    path = Path(path)
    if format not in FORMATS:
        raise ImportError_(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if task_type is not None and task_type not in TASK_TYPES:
        raise ImportError_(f"unknown task type {task_type!r}; choose one of "
                           f"{', '.join(TASK_TYPES)}")
    if not name or not name.strip():
        raise ImportError_(f"{path}: the workload name must not be empty")
    _check_file(path)
    if not replace and store.exists(name):
        raise ImportError_(f"{path}: a workload named {name!r} already exists; choose another "
                           "name or replace it (--replace)")
    container = _container(path, format)
    delim = delimiter or _default_delimiter(path)
    if format in ("auto", *ITEM_FORMATS):
        with _scratch() as con:
            layout = _layout(list(_columns(con, path, container, delim)))
        if format != "auto" or mapping is not None:
            layout = "items"
    else:
        layout = format
    if layout != "items" and mapping is not None:
        raise ImportError_(f"{path}: a column mapping applies to csv/jsonl/parquet item files, "
                           f"not to the {layout} layout")
    if layout == "items":
        _import_items(store, path, name, container, delim, mapping, task_type, replace)
    elif layout == "routerbench":
        _import_routerbench(store, path, name, container, delim, task_type, replace)
    elif layout == "routellm":
        _import_routellm(store, path, name, container, delim, task_type, replace)
    else:
        _import_long(store, path, name, container, delim, task_type, replace)
    return store.workload(name)


__all__ = [
    "FORMATS", "ITEM_FORMATS", "OUTCOME_FORMATS", "TASK_TYPES", "ColumnMapping", "detect_format",
    "guess_mapping", "import_file", "preview_file", "price_entry",
]
