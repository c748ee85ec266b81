"""Compare's item-by-item view: the side-by-side table with filters (disagreement, the cheap
model wrong, a failure mode), and one item opened in full: its input, every model's answer
with its confidence and label probabilities, the reference, and the prompt each model received
(so "why is the cheap model wrong?" has an answer on the page)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import polars as pl
import streamlit as st

from workbench import ui

FILTERS = ("all", "models disagree", "cheap model wrong", "errors", "a failure mode")
_FLAGS = {"models disagree": "models_disagree", "cheap model wrong": "cheap_wrong",
          "errors": "has_error"}
_MODE_NAMES = {
    "ok": "right", "wrong_answer": "wrong answer", "invalid_format": "invalid format",
    "refusal": "refusal", "empty_output": "empty output", "context_overflow": "context overflow",
    "timeout": "timeout", "rate_limit": "rate limit", "provider_error": "provider error",
    "unscored": "not scored",
}


def mode_name(mode: str | None) -> str:
    """A failure mode in words."""
    return _MODE_NAMES.get(mode or "", mode or "no outcome")


def _label_probs(signals: Any, top: int = 3) -> str:
    """The top label probabilities recorded with an answer, as 'billing 0.81, refund 0.12'."""
    if isinstance(signals, str):
        try:
            signals = json.loads(signals)
        except ValueError:
            return ""
    probs = (signals or {}).get("label_probs") if isinstance(signals, dict) else None
    if not probs:
        return ""
    best = sorted(probs.items(), key=lambda kv: -float(kv[1]))[:top]
    return ", ".join(f"{k} {float(v):.2f}" for k, v in best)


def render(workload: str, models: Sequence[str], key: str) -> None:
    """The filtered side-by-side table of `models` on `workload`, then one item in full."""
    from workbench.outcome_metrics import side_by_side

    store = ui.store()
    table = side_by_side(store, workload, models)
    c = st.columns([0.6, 0.4])
    filt = c[0].radio("Show", FILTERS, horizontal=True, key=f"{key}_filter")
    if filt in _FLAGS:
        table = table.filter(pl.col(_FLAGS[filt]))
    elif filt == "a failure mode":
        fail_cols = [f"{m}:failure" for m in models]
        present = sorted({v for col in fail_cols for v in table[col].drop_nulls().to_list()}
                         - {"ok"})
        if not present:
            c[1].caption("No model failed on these items.")
            table = table.clear()
        else:
            mode = c[1].selectbox("Failure mode", present, format_func=mode_name,
                                  key=f"{key}_mode")
            table = table.filter(pl.any_horizontal([pl.col(col) == mode for col in fail_cols]))
    st.caption(f"{table.height} items" + (" (first 500 shown)" if table.height > 500 else ""))
    shown = table.head(500).with_columns(
        [pl.col(f"{m}:failure").replace_strict(_MODE_NAMES, default=pl.col(f"{m}:failure"))
         for m in models])
    st.dataframe(shown.to_pandas(), hide_index=True, width="stretch", key=f"{key}_table")
    if table.height:
        _one_item(workload, models, table["item_id"].head(500).to_list(), key)


def _one_item(workload: str, models: Sequence[str], ids: list[str], key: str) -> None:
    """One item in full, picked from the filtered ids."""
    store = ui.store()
    st.markdown("**One item in full**")
    item_id = st.selectbox("Item", ids, key=f"{key}_item",
                           help="The items the table shows, in the same order.")
    item = store.items(workload).filter(pl.col("item_id") == item_id).row(0, named=True)
    st.text_area("Input", item["input"], height=100, disabled=True, key=f"{key}_in_{item_id}")
    ref = item.get("reference")
    st.markdown(f"Reference: `{ref}`" if ref not in (None, "") else
                "Reference: none recorded (quality comes from a scorer or a review).")
    out = store.outcomes(workload, list(models)).filter(pl.col("item_id") == item_id)
    rows = []
    for m in models:
        r = out.filter(pl.col("model") == m)
        if r.height == 0:
            rows.append({"model": m, "answer": None, "confidence": None, "label probabilities":
                         "", "quality": None, "cost": None, "latency": None, "error": None})
            continue
        o = r.row(0, named=True)
        rows.append({
            "model": m, "answer": o["output"],
            "confidence": None if o["confidence"] is None else round(o["confidence"], 3),
            "label probabilities": _label_probs(o.get("signals")),
            "quality": None if o["quality"] is None else round(o["quality"], 3),
            "cost": None if o["cost_usd"] is None else f"${o['cost_usd']:.6f}",
            "latency": None if o["latency_ms"] is None else f"{o['latency_ms'] / 1000:.2f} s",
            "error": o["error"],
        })
    st.dataframe(pl.DataFrame(rows).to_pandas(), hide_index=True, width="stretch",
                 key=f"{key}_answers_{item_id}")
    _prompts(workload, models, item_id, key)


def _prompts(workload: str, models: Sequence[str], item_id: str, key: str) -> None:
    """The prompt each catalog model received for the item (rendered as the provider does)."""
    from workbench.prompt_view import prompt_view

    catalog = ui.catalog()
    known = set(catalog.names())
    for m in models:
        with st.expander(f"Prompt {m} received", expanded=False):
            if m not in known:
                st.caption(f"{m} is not in the model catalog (imported outcomes), so its "
                           "prompt is not known here.")
                continue
            with ui.user_errors():
                view = prompt_view(ui.store(), workload, item_id, catalog.get(m))
                st.caption(f"Few-shot examples: {view.examples_from}; "
                           f"{len(view.examples)} example(s). Edit a model's own examples and "
                           "template on the Models page.")
                st.code(view.text, language=None, wrap_lines=True)
