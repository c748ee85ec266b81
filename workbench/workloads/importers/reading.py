"""File access for the importers: which container a file is (CSV, JSONL, Parquet), the DuckDB
reader for it, its columns and layout (items or a recorded-outcome format), and read errors that
name the file, the line and the likely cause (not UTF-8, wrong delimiter)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import duckdb
import polars as pl

from workbench.errors import ImportError_
from workbench.store import fetch_pl
from workbench.workloads.importers.sql import _lit

ITEM_FORMATS = ("csv", "jsonl", "parquet")
OUTCOME_FORMATS = ("routerbench", "routellm", "long")
FORMATS = ("auto", *ITEM_FORMATS, *OUTCOME_FORMATS)
TASK_TYPES = ("classification", "qa", "generation", "extraction")
DELIMITER_CANDIDATES = (";", "\t", "|", ",")


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

