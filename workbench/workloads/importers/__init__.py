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

Modules: `reading` (containers, layout detection, read errors), `staging` (the transaction and
its checks), `items` (item files and column mappings), `outcomes` (the recorded-outcome
layouts), `sql` (SQL text helpers); this module holds the `import_file` entry point.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.errors import ImportError_
from workbench.store import Store, WorkloadInfo
from workbench.workloads.importers.items import (
    ColumnMapping,
    _import_items,
    guess_mapping,
)
from workbench.workloads.importers.outcomes import (
    _import_long,
    _import_routellm,
    _import_routerbench,
    price_entry,
)
from workbench.workloads.importers.reading import (
    FORMATS,
    ITEM_FORMATS,
    OUTCOME_FORMATS,
    TASK_TYPES,
    _check_file,
    _columns,
    _container,
    _default_delimiter,
    _layout,
    _scratch,
    detect_format,
    preview_file,
)


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
                           "name or replace it (the Workloads page's 'Replace' box, or --replace)")
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
