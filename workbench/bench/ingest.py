"""ingest: import a generated N-row CSV with our DuckDB importer vs a naive row-wise baseline.

Ours: `import_file` (DuckDB reads the CSV, set-based INSERT ... SELECT in one transaction).
Baseline: polars reads the whole CSV into Python memory, then each row is turned into a Python
tuple and inserted with `executemany` into the same items table. The baseline's insert is timed
on a subset (`--baseline-rows`) and scaled linearly to N rows; the table says so.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl

from workbench.store import ITEM_COLUMNS, Store
from workbench.workloads.importers import ColumnMapping, import_file

CATEGORIES = ("billing", "shipping", "technical", "account", "refund", "other")
MAPPING = ColumnMapping(id="id", input="text", reference="category",
                        tags=["difficulty", "data_class", "channel"], metadata=["customer"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `workbench bench ingest`."""
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the generated CSV")
    parser.add_argument("--baseline-rows", type=int, default=20_000,
                        help="rows the naive baseline inserts (then scaled to --rows)")


def write_csv(path: Path, rows: int) -> None:
    """A support-triage-like CSV of `rows` rows, written by DuckDB COPY (seconds for 1M)."""
    cats = "[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]"
    with duckdb.connect(":memory:") as con:
        con.execute(
            f"""
            COPY (
              SELECT 'item-' || i AS id,
                     'Customer message ' || i || ': my order ' || (i * 7919 % 100000) ||
                       ' has a problem with ' || {cats}[1 + i % 6] || ', please help' AS text,
                     {cats}[1 + (i * 31) % 6] AS category,
                     ['easy', 'medium', 'hard'][1 + i % 3] AS difficulty,
                     CASE WHEN i % 10 = 0 THEN 'pii' ELSE 'public' END AS data_class,
                     ['email', 'chat', 'phone'][1 + i % 3] AS channel,
                     'c-' || (i % 5000) AS customer
              FROM range({int(rows)}) t(i)
            ) TO '{path}' (HEADER, DELIMITER ',')
            """
        )


def ours(store: Store, path: Path) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) for our importer on the file."""
    cpu = time.process_time()
    start = time.perf_counter()
    info = import_file(store, path, "ingest", mapping=MAPPING)
    elapsed = time.perf_counter() - start
    assert info.n_items > 0
    return elapsed, time.process_time() - cpu


def baseline(store: Store, path: Path, subset: int) -> tuple[float, float, int]:
    """(read seconds for the whole file, insert seconds for `subset` rows, rows inserted):
    polars read, then a Python loop building one tuple per row, executemany."""
    start = time.perf_counter()
    frame = pl.read_csv(path, infer_schema=False)
    read_s = time.perf_counter() - start
    part = frame.head(subset)
    start = time.perf_counter()
    params = []
    for row in part.iter_rows(named=True):
        params.append((
            "ingest", row["id"], row["text"], None, row["category"], None, row["difficulty"],
            row["data_class"], json.dumps({"channel": row["channel"]}),
            json.dumps({"customer": row["customer"]}),
        ))
    with store.transaction() as cur:
        cur.executemany(
            f"INSERT INTO items ({', '.join(ITEM_COLUMNS)}) VALUES "
            f"({', '.join('?' for _ in ITEM_COLUMNS)})",
            params,
        )
    insert_s = time.perf_counter() - start
    return read_s, insert_s, part.height


def _load_average() -> str:
    """1-minute load average (the machine is shared; wall times depend on it)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def run(args: argparse.Namespace) -> int:
    """Generate the CSV, time both, print the table and the RESULT line."""
    rows = int(args.rows)
    subset = min(int(args.baseline_rows), rows)
    with tempfile.TemporaryDirectory(prefix="wb-bench-ingest-") as tmp:
        tmp_path = Path(tmp)
        csv = tmp_path / "items.csv"
        start = time.perf_counter()
        write_csv(csv, rows)
        gen_s = time.perf_counter() - start
        size_mb = csv.stat().st_size / 1e6

        ours_store = Store(tmp_path / "ours.duckdb")
        try:
            ours_s, ours_cpu_s = ours(ours_store, csv)
            stored = ours_store.workload("ingest").n_items
        finally:
            ours_store.close()
        base_store = Store(tmp_path / "baseline.duckdb")
        try:
            read_s, insert_s, inserted = baseline(base_store, csv, subset)
        finally:
            base_store.close()

    scaled_insert_s = insert_s * rows / inserted
    base_s = read_s + scaled_insert_s
    ratio = base_s / ours_s
    load = _load_average()
    print(f"ingest benchmark: {rows:,} rows, {size_mb:.0f} MB CSV (generated in {gen_s:.1f} s); "
          f"machine load average {load}")
    lines = [
        ("method", "seconds", "rows/s", "note"),
        ("ours: DuckDB read_csv + INSERT..SELECT", f"{ours_s:.2f}", f"{rows / ours_s:,.0f}",
         f"all {stored:,} rows stored, one transaction; {ours_cpu_s:.2f} CPU s"),
        ("baseline: polars read_csv", f"{read_s:.2f}", f"{rows / read_s:,.0f}", "whole file"),
        ("baseline: row-wise executemany", f"{insert_s:.2f}", f"{inserted / insert_s:,.0f}",
         f"measured on {inserted:,} rows"),
        ("baseline total (insert scaled)", f"{base_s:.2f}", f"{rows / base_s:,.0f}",
         f"insert scaled linearly x{rows / inserted:.0f} to {rows:,} rows"),
    ]
    widths = [max(len(r[i]) for r in lines) for i in range(4)]
    for r in lines:
        print("  ".join(c.ljust(widths[i]) if i in (0, 3) else c.rjust(widths[i])
                        for i, c in enumerate(r)).rstrip())
    print(f"RESULT bench=ingest ratio={ratio:.1f} ours_s={ours_s:.2f}")
    return 0
