"""Per-model metrics and item-by-item comparison over stored outcome rows (read-only).

`model_metrics` summarises what each model did on a workload (quality with a bootstrap CI,
cost, latency, tokens, errors); `side_by_side` lines up the models' outputs per item for the
Compare page. Both read the store only; `workbench.runner` writes the rows and re-exports these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from workbench import scoring
from workbench.errors import WorkbenchError
from workbench.metrics import bootstrap_mean_ci
from workbench.store import Store

METRIC_COLUMNS = (
    "model", "n", "quality", "quality_lo", "quality_hi", "cost_per_request", "cost_per_1k",
    "cost_per_success", "total_cost_usd", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
    "mean_prompt_tokens", "mean_completion_tokens", "error_rate", "mean_confidence",
)


def model_metrics(
    store: Store,
    workload: str,
    models: Sequence[str] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    outcomes: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per model: mean quality with a 95% bootstrap CI (`quality_ci` = [lo, hi]), cost per
    request / per 1k / per successful task, latency p50/p95/p99, mean tokens, error rate, n.
    Conventions follow `workbench.metrics`: quality is the mean over scored rows (errors score
    0; unscored imported rows are left out) and cost_per_success = cost_per_request / quality.
    `outcomes`: the workload's outcomes with quality on another basis (silver reference or a
    reviewed label set, workbench.label_quality) instead of the stored ones."""
    out = store.outcomes(workload, models) if outcomes is None else (
        outcomes if not models else outcomes.filter(pl.col("model").is_in(list(models))))
    if out.height == 0:
        return pl.DataFrame(schema={c: pl.Float64 for c in METRIC_COLUMNS} | {
            "model": pl.String, "n": pl.Int64, "n_scored": pl.Int64,
            "quality_ci": pl.List(pl.Float64)})
    out = out.with_columns(pl.col("cost_usd").fill_null(0.0))
    agg = (
        out.group_by("model", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("quality").count().cast(pl.Int64).alias("n_scored"),
            pl.col("quality").mean().alias("quality"),
            pl.col("cost_usd").mean().alias("cost_per_request"),
            pl.col("cost_usd").sum().alias("total_cost_usd"),
            pl.col("latency_ms").quantile(0.50, "linear").alias("latency_p50_ms"),
            pl.col("latency_ms").quantile(0.95, "linear").alias("latency_p95_ms"),
            pl.col("latency_ms").quantile(0.99, "linear").alias("latency_p99_ms"),
            pl.col("prompt_tokens").mean().alias("mean_prompt_tokens"),
            pl.col("completion_tokens").mean().alias("mean_completion_tokens"),
            pl.col("error").is_not_null().mean().alias("error_rate"),
            pl.col("confidence").mean().alias("mean_confidence"),
        )
        .with_columns(
            (pl.col("cost_per_request") * 1000).alias("cost_per_1k"),
            pl.when(pl.col("quality") > 0)
            .then(pl.col("cost_per_request") / pl.col("quality"))
            .otherwise(None)
            .alias("cost_per_success"),
        )
        .sort("model")
    )
    cis = {
        m: bootstrap_mean_ci(g["quality"].cast(pl.Float64).fill_null(np.nan).to_numpy(), n_boot=n_boot,
                seed=seed)
        for (m,), g in out.group_by("model")
    }
    if models:
        order = {m: i for i, m in enumerate(models)}
        agg = agg.sort(pl.col("model").replace_strict(order, default=len(order)))
    agg = agg.with_columns(
        pl.Series("quality_lo", [cis[m][0] for m in agg["model"]], dtype=pl.Float64),
        pl.Series("quality_hi", [cis[m][1] for m in agg["model"]], dtype=pl.Float64),
    ).with_columns(pl.concat_list("quality_lo", "quality_hi").alias("quality_ci"))
    return agg.select(*METRIC_COLUMNS, "n_scored", "quality_ci")


def side_by_side(
    store: Store,
    workload: str,
    models: Sequence[str],
    *,
    success_threshold: float = 0.5,
) -> pl.DataFrame:
    """Item-by-item outputs for the Compare page: item_id, input, reference, then per model
    `<model>:output`, `<model>:confidence`, `<model>:quality`, `<model>:failure` (the failure
    mode, workbench.failures; "ok" when right), `<model>:error`, and flags `models_disagree`
    (normalized outputs differ), `cheap_wrong` (the cheapest model's quality is below the
    threshold) and `has_error`."""
    if not models:
        raise WorkbenchError("choose at least one model to compare")
    from workbench.failures import classify

    info = store.workload(workload)
    all_items = store.items(workload)
    items = all_items.select("item_id", "input", "reference")
    out = store.outcomes(workload, models)
    missing = [m for m in models if m not in set(out["model"].unique().to_list())]
    if missing:
        raise WorkbenchError(
            f"no outcomes for model(s) {', '.join(missing)} on workload {workload!r}; run them "
            "first"
        )
    modes = classify(all_items, out, task_type=info.task_type, label_set=info.label_set,
                     success_threshold=success_threshold)
    out = out.with_columns(pl.col("item_id").cast(pl.String)).join(
        modes, on=["item_id", "model"], how="left")
    frame = items
    for m in models:
        sub = out.filter(pl.col("model") == m).select(
            "item_id",
            pl.col("output").alias(f"{m}:output"),
            pl.col("confidence").round(3).alias(f"{m}:confidence"),
            pl.col("quality").alias(f"{m}:quality"),
            pl.col("mode").alias(f"{m}:failure"),
            pl.col("error").alias(f"{m}:error"),
        )
        frame = frame.join(sub, on="item_id", how="left")
    frame = frame.filter(
        pl.any_horizontal([pl.col(f"{m}:output").is_not_null() | pl.col(f"{m}:error").is_not_null()
                           for m in models])
    )
    flags = (
        out.with_columns(scoring.normalize_expr(pl.col("output")).alias("_norm"))
        .group_by("item_id")
        .agg(
            (pl.col("_norm").drop_nulls().n_unique() > 1).alias("models_disagree"),
            pl.col("error").is_not_null().any().alias("has_error"),
        )
    )
    costs = out.group_by("model").agg(pl.col("cost_usd").fill_null(0).mean().alias("c"))
    order = {m: i for i, m in enumerate(models)}
    cheapest = costs.with_columns(pl.col("model").replace_strict(order).alias("o")).sort(
        ["c", "o"])["model"][0]
    frame = frame.join(flags, on="item_id", how="left").with_columns(
        (pl.col(f"{cheapest}:quality").fill_null(0.0) < success_threshold).alias("cheap_wrong"),
        pl.col("models_disagree").fill_null(False),
        pl.col("has_error").fill_null(False),
    )
    return frame.sort("item_id")
