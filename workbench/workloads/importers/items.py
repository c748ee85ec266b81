"""Item files (CSV, JSONL, Parquet with one item per row): the column mapping, guessing it from
conventional column names, and importing the items in one transaction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from workbench.errors import ImportError_
from workbench.store import Store
from workbench.workloads.importers.reading import (
    _columns,
    _delimiter_hint,
    _read_error,
    _reader_sql,
    _scratch,
)
from workbench.workloads.importers.sql import _as_text, _ident, _lit
from workbench.workloads.importers.staging import (
    _check_present,
    _check_unique,
    _finish,
    _infer_task,
    _missing_columns,
    _prepare_name,
    _row_id_sql,
)

INPUT_GUESSES = ("input", "text", "prompt", "question", "query", "message", "utterance", "content")
REFERENCE_GUESSES = (
    "reference", "label", "answer", "target", "category", "gold", "expected", "intent", "class",
)
ID_GUESSES = ("item_id", "id", "sample_id", "uid", "uuid")
TAG_COLUMNS = ("difficulty", "data_class")


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

