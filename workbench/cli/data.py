"""Data commands: `samples`, `load`, `workloads`, `delete`, `sql`.

Each handler opens the store of `--home`, calls one library function and prints the result;
problems the user can fix surface as WorkbenchError (one line on stderr, exit 2).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import polars as pl

from workbench.cli import add_home
from workbench.errors import WorkbenchError
from workbench.store import WorkloadInfo, open_store


def _table(infos: Sequence[WorkloadInfo]) -> str:
    """Plain-text table of workloads with counts."""
    if not infos:
        return "no workloads yet; try `workbench samples` or `workbench load PATH --name NAME`"
    header = ("name", "task_type", "items", "models", "outcomes", "source")
    rows = [header] + [
        (w.name, w.task_type, str(w.n_items), str(w.n_models), str(w.n_outcomes), w.source)
        for w in infos
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip()
                     for r in rows)


def _samples(args: argparse.Namespace) -> int:
    """Load the built-in synthetic sample workloads (--keep: only those not stored yet)."""
    from workbench.workloads.samples import SAMPLE_NAMES, load_samples

    store = open_store(args.home)
    names = [n for n in SAMPLE_NAMES if args.replace or not store.exists(n)]
    kept = [n for n in SAMPLE_NAMES if n not in names]
    if names:
        load_samples(store, names, replace=args.replace)
    print(f"loaded: {', '.join(names) or 'none'}"
          + (f"; kept existing: {', '.join(kept)} (use --replace to regenerate)" if kept else ""))
    print(_table(store.workloads()))
    return 0


def _load(args: argparse.Namespace) -> int:
    """Import a file as a workload (items, or recorded outcomes)."""
    from workbench.workloads.importers import ColumnMapping, import_file

    mapping_flags = (args.id_col, args.input_col, args.reference_col, args.labels_col,
                     args.tag_col, args.metadata_col)
    mapping = None
    if any(mapping_flags):
        if not args.input_col:
            raise WorkbenchError("--input-col is required when mapping columns")
        mapping = ColumnMapping(
            id=args.id_col, input=args.input_col, reference=args.reference_col,
            labels=args.labels_col, tags=list(args.tag_col or []),
            metadata=list(args.metadata_col or []), labels_delimiter=args.labels_delimiter,
        )
    store = open_store(args.home)
    info = import_file(store, args.path, args.name, format=args.format, mapping=mapping,
                       task_type=args.task_type, replace=args.replace,
                       delimiter=args.delimiter)
    print(f"imported {info.name!r}: {info.n_items} items, {info.n_models} models, "
          f"{info.n_outcomes} outcomes, task type {info.task_type}")
    return 0


def _workloads(args: argparse.Namespace) -> int:
    """List stored workloads."""
    infos = open_store(args.home).workloads()
    if args.json:
        print(json.dumps([w.as_json() for w in infos], indent=2))
    else:
        print(_table(infos))
    return 0


def _delete(args: argparse.Namespace) -> int:
    """Delete a workload with its items and outcomes."""
    open_store(args.home).delete_workload(args.name)
    print(f"deleted {args.name!r}")
    return 0


def _sql(args: argparse.Namespace) -> int:
    """Run one read-only SELECT over the store and print the result."""
    frame = open_store(args.home).read_only_query(args.query, limit=args.limit)
    if args.output == "csv":
        print(frame.write_csv(), end="")
    elif args.output == "json":
        print(frame.write_json())
    else:
        with pl.Config(tbl_rows=min(frame.height, 200), tbl_cols=-1, fmt_str_lengths=60):
            print(frame)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the data commands to the `workbench` parser."""
    from workbench.workloads.importers import FORMATS, TASK_TYPES

    p = sub.add_parser("samples", help="load the built-in synthetic sample workloads")
    add_home(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--replace", dest="replace", action="store_true",
                       help="replace sample workloads that already exist")
    group.add_argument("--keep", dest="replace", action="store_false",
                       help="keep existing sample workloads (default)")
    p.set_defaults(func=_samples, replace=False)

    p = sub.add_parser("load", help="import a CSV/JSONL/Parquet workload or recorded outcomes")
    add_home(p)
    p.add_argument("path", help="file to import")
    p.add_argument("--name", required=True, help="workload name")
    p.add_argument("--format", default="auto", choices=FORMATS,
                   help="file format; auto detects RouterBench/RouteLLM/long from the header")
    p.add_argument("--replace", action="store_true", help="replace a workload of the same name")
    p.add_argument("--delimiter", default=None,
                   help="CSV delimiter (default ',' or tab for .tsv)")
    p.add_argument("--id-col", help="column with item ids (default: row number)")
    p.add_argument("--input-col", help="column with the input text")
    p.add_argument("--reference-col", help="column with the reference answer / gold label")
    p.add_argument("--labels-col", help="column with a delimiter-separated label set")
    p.add_argument("--labels-delimiter", default="|", help="separator in --labels-col")
    p.add_argument("--tag-col", action="append",
                   help="tag column (repeatable); difficulty/data_class fill their own fields")
    p.add_argument("--metadata-col", action="append", help="metadata column (repeatable)")
    p.add_argument("--task-type", choices=TASK_TYPES, help="task type (default: inferred)")
    p.set_defaults(func=_load)

    p = sub.add_parser("workloads", help="list workloads with counts")
    add_home(p)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=_workloads)

    p = sub.add_parser("delete", help="delete a workload with its items and outcomes")
    add_home(p)
    p.add_argument("name", help="workload name")
    p.set_defaults(func=_delete)

    p = sub.add_parser("sql", help="run a read-only SQL query over the store")
    add_home(p)
    p.add_argument("query", help='one SELECT statement, e.g. "SELECT * FROM workloads"')
    p.add_argument("--limit", type=int, default=10_000, help="maximum rows returned")
    p.add_argument("--output", choices=("table", "csv", "json"), default="table",
                   help="output format")
    p.set_defaults(func=_sql)
