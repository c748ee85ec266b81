"""Recorded-outcome files: RouterBench (wide, with costs), RouteLLM (correctness and responses,
cost estimated from LiteLLM's price table) and the long format (one outcome per row)."""

from __future__ import annotations

import ast
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

from workbench.errors import ImportError_
from workbench.store import Store
from workbench.workloads.importers.reading import _columns, _scratch
from workbench.workloads.importers.sql import _as_text, _ident, _lit, _number_sql, _quality_sql
from workbench.workloads.importers.staging import (
    _check_numbers,
    _check_present,
    _check_unique,
    _count,
    _finish,
    _infer_task,
    _missing_columns,
    _prepare_name,
    _row_id_sql,
    _staged,
)

LONG_NUMERIC = ("quality", "cost_usd", "latency_ms", "tokens", "prompt_tokens", "completion_tokens")
LONG_KNOWN = ("item_id", "model", "output", "input", "reference", "error", *LONG_NUMERIC)
PRICE_PREFIXES = (
    "", "together_ai/", "openrouter/", "mistral/", "deepinfra/", "anyscale/", "fireworks_ai/",
    "groq/", "openai/", "anthropic/", "replicate/", "bedrock/",
)
CHARS_PER_TOKEN = 4


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

