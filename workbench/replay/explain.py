"""A decision trace a person can read: per item, the input, the reference, every model's
recorded answer and confidence, the path the policy took and the answer it gave, with units."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from workbench.policy import Policy

INPUT_CHARS = 200
HEAD = 60  # long inputs keep their start and their end (few-shot prompts differ at the end)


def explain(policy: Policy, trace: pl.DataFrame, items: pl.DataFrame,
            outcomes: pl.DataFrame, *, models: Sequence[str] | None = None) -> pl.DataFrame:
    """`trace` (from a replay of `policy`) joined with each item's input and reference and,
    for every model the policy uses (or `models`), its recorded answer and confidence; plus
    the answer given. Costs in $, latency in whole ms, confidences to 3 decimals; long inputs
    shortened in the middle."""
    used = list(models or policy.used_models)
    item_cols = [c for c in ("item_id", "input", "reference") if c in items.columns]
    frame = trace.with_columns(pl.col("answered_by").cast(pl.String)).join(
        items.select(item_cols), on="item_id", how="left")
    if "input" in frame.columns:
        frame = frame.with_columns(
            pl.when(pl.col("input").str.len_chars() > INPUT_CHARS)
            .then(pl.col("input").str.slice(0, HEAD) + " … "
                  + pl.col("input").str.slice(-(INPUT_CHARS - HEAD)))
            .otherwise(pl.col("input")).alias("input"))
    out_cols = [c for c in ("output", "confidence") if c in outcomes.columns]
    recorded = outcomes.filter(pl.col("model").is_in(used)).select(
        "item_id", "model", *out_cols).unique(["item_id", "model"], keep="last")
    for model in used:
        one = recorded.filter(pl.col("model") == model).drop("model")
        renames = {"output": f"answer · {model}", "confidence": f"confidence · {model}"}
        frame = frame.join(one.rename({c: renames[c] for c in out_cols}), on="item_id",
                           how="left")
    if "output" in out_cols:
        given = recorded.select("item_id", pl.col("model").alias("answered_by"),
                                pl.col("output").alias("answer"))
        frame = frame.join(given, on=["item_id", "answered_by"], how="left")
    conf = [c for c in frame.columns if c.startswith("confidence · ")]
    frame = frame.with_columns(
        *(pl.col(c).round(3) for c in conf),
        pl.col("cost_usd").round(8).alias("cost ($)"),
        pl.col("latency_ms").round(0).alias("latency (ms)"),
        pl.col("models_tried").cast(pl.String).str.replace_all(">", " → ").alias("path"),
    )
    lead = [c for c in ("item_id", "input", "reference", "answer", "quality", "path",
                        "answered_by") if c in frame.columns]
    per_model = [c for m in used for c in (f"answer · {m}", f"confidence · {m}")
                 if c in frame.columns]
    tail = ["cost ($)", "latency (ms)", "refusal_reason", "governance_block", "escalated"]
    return frame.select(*lead, *per_model, *[c for c in tail if c in frame.columns])


__all__ = ["explain"]
