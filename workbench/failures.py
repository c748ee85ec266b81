"""Failure modes per model, classified from the recorded outcomes (no new model calls).

Each outcome row gets exactly one mode, by the first rule that applies:
1. a recorded provider error: `context_window` -> context_overflow, `timeout` -> timeout,
   `rate_limit` -> rate_limit, `content_policy` -> refusal (the provider's safety filter),
   anything else (auth, connection, unknown model, 5xx...) -> provider_error;
2. no output, or only whitespace, quotes and brackets (`['']`) -> empty_output;
3. quality >= `success_threshold` -> ok (a correct answer is never a failure, whatever its
   wording);
4. the answer opens like a refusal ("I'm sorry", "I cannot help", "As an AI") -> refusal;
5. the answer fails the task's format verifier -> invalid_format: a valid label when the item
   (or the workload's label set) lists labels, valid JSON for extraction workloads;
6. quality null (unscored) -> unscored;
7. otherwise -> wrong_answer.
The rules are polars expressions over all rows at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from workbench.verifiers import ESCAPED_WS, LABEL_STRIP

FAILURE_MODES = (
    "wrong_answer", "invalid_format", "refusal", "empty_output", "context_overflow",
    "timeout", "rate_limit", "provider_error",
)
MODES = ("ok", *FAILURE_MODES, "unscored")
ERROR_MODES = {"context_window": "context_overflow", "timeout": "timeout",
               "rate_limit": "rate_limit", "content_policy": "refusal"}
REFUSAL_PATTERN = (
    r"(?i)^\W*(i'?m sorry|i am sorry|sorry, but|i apologi[sz]e|i can(?:'|no)?t (?:help|assist|"
    r"answer|provide|comply|do that)|i cannot|i'?m (?:not able|unable)|i am (?:not able|unable)|"
    r"as an ai|i won'?t be able)"
)
N_EXAMPLES = 3


def classify(
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    *,
    task_type: str = "generation",
    label_set: Sequence[str] = (),
    success_threshold: float = 0.5,
) -> pl.DataFrame:
    """(item_id, model, mode) for every outcome row; `mode` is one of MODES (see the module
    docstring for the rules and their order)."""
    cols = outcomes.columns
    out = outcomes.select(
        pl.col("item_id").cast(pl.String), pl.col("model").cast(pl.String),
        (pl.col("output").cast(pl.String) if "output" in cols else pl.lit(None, pl.String))
        .alias("output"),
        pl.col("quality").cast(pl.Float64),
        (pl.col("error").cast(pl.String) if "error" in cols else pl.lit(None, pl.String))
        .alias("error"),
    )
    labels = (items.select(pl.col("item_id").cast(pl.String), pl.col("labels"))
              if "labels" in items.columns else items.select(
                  pl.col("item_id").cast(pl.String), pl.lit(None, pl.List(pl.String))
                  .alias("labels")))
    labels = labels.with_columns(
        pl.col("labels").list.eval(pl.element().str.strip_chars(LABEL_STRIP).str.to_lowercase()))
    out = out.join(labels, on="item_id", how="left", maintain_order="left")
    fallback = [lab.strip(LABEL_STRIP).lower() for lab in label_set]
    norm = (pl.col("output").str.replace_all(ESCAPED_WS, " ").str.strip_chars(LABEL_STRIP)
            .str.to_lowercase())
    has_labels = pl.col("labels").list.len().fill_null(0) > 0
    if fallback:
        label_ok = pl.when(has_labels).then(pl.col("labels").list.contains(norm)).otherwise(
            norm.is_in(fallback))
        checks_label = pl.lit(True)
    else:
        label_ok = pl.col("labels").list.contains(norm)
        checks_label = has_labels
    format_bad = (checks_label & ~label_ok.fill_null(False))
    if task_type == "extraction":
        text = pl.col("output").str.strip_chars().str.replace(r"^```[A-Za-z]*\s*", "").str.replace(
            r"\s*```$", "").str.strip_chars()
        format_bad = format_bad | ~(text.str.starts_with("{") | text.str.starts_with("["))
    err = pl.col("error")
    # the regexes run only on rows that are not already settled (most rows are right answers)
    settled = (err.is_not_null() | pl.col("output").is_null()
               | (pl.col("quality") >= success_threshold))
    out = out.with_columns(settled.fill_null(False).alias("_settled"))
    cheap = pl.when(err.is_not_null()).then(err.replace_strict(
        ERROR_MODES, default="provider_error", return_dtype=pl.String)).when(
        pl.col("output").is_null()).then(pl.lit("empty_output")).otherwise(pl.lit("ok"))
    done = out.filter(pl.col("_settled")).select("item_id", "model", cheap.alias("mode"))
    out = out.filter(~pl.col("_settled"))
    mode = (
        pl.when(err.is_not_null()).then(err.replace_strict(
            ERROR_MODES, default="provider_error", return_dtype=pl.String))
        .when(pl.col("output").is_null()
              | (pl.col("output").str.replace_all(ESCAPED_WS, " ").str.strip_chars(LABEL_STRIP)
                 == ""))
        .then(pl.lit("empty_output"))
        .when(pl.col("quality") >= success_threshold).then(pl.lit("ok"))
        .when(pl.col("output").str.slice(0, 200).str.contains(REFUSAL_PATTERN))
        .then(pl.lit("refusal"))
        .when(format_bad).then(pl.lit("invalid_format"))
        .when(pl.col("quality").is_null()).then(pl.lit("unscored"))
        .otherwise(pl.lit("wrong_answer"))
    )
    return pl.concat([done, out.select("item_id", "model", mode.alias("mode"))])


def failure_table(classified: pl.DataFrame, *, n_examples: int = N_EXAMPLES) -> pl.DataFrame:
    """Per (model, mode) with at least one row: count, rate (over the model's outcome rows)
    and up to `n_examples` example item ids (the first in id order), sorted by model then
    MODES order."""
    total = classified.group_by("model").agg(pl.len().alias("_total"))
    order = {m: i for i, m in enumerate(MODES)}
    return (
        classified.group_by("model", "mode")
        .agg(pl.len().cast(pl.Int64).alias("count"),
             pl.col("item_id").bottom_k(n_examples).sort().alias("examples"))
        .join(total, on="model")
        .with_columns((pl.col("count") / pl.col("_total")).alias("rate"),
                      pl.col("mode").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
        .sort("model", "_o")
        .select("model", "mode", "count", "rate", "examples")
    )


def failure_counts(table: pl.DataFrame) -> pl.DataFrame:
    """Wide view of `failure_table`: one row per model, one count column per mode in MODES."""
    wide = table.pivot(on="mode", index="model", values="count").fill_null(0)
    for mode in MODES:
        if mode not in wide.columns:
            wide = wide.with_columns(pl.lit(0, pl.Int64).alias(mode))
    return wide.select("model", *MODES).sort("model")
