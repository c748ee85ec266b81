"""Speed figures per model from recorded outcomes: items per second and latency percentiles.

Throughput here is what one worker answering requests one at a time gets: the items with a
recorded latency divided by the sum of their latencies. Concurrent hosted calls go faster in
wall time; local models on one machine do not.
"""

from __future__ import annotations

import polars as pl


def per_model(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Per model: `n_timed` (items with a latency), `items_per_s` (one at a time) and
    latency p50/p95/p99 in ms; null where no latency was recorded (e.g. RouterBench)."""
    lat = pl.col("latency_ms").cast(pl.Float64)
    timed = outcomes.filter(pl.col("latency_ms").is_not_null())
    if timed.height == 0:
        models = outcomes["model"].unique().sort()
        return pl.DataFrame({"model": models}).with_columns(
            pl.lit(0, pl.Int64).alias("n_timed"),
            *[pl.lit(None, pl.Float64).alias(c) for c in (
                "items_per_s", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")])
    speed = timed.group_by("model").agg(
        pl.len().cast(pl.Int64).alias("n_timed"),
        pl.when(lat.sum() > 0).then(pl.len() / (lat.sum() / 1000.0)).otherwise(None)
        .alias("items_per_s"),
        lat.quantile(0.50, "linear").alias("latency_p50_ms"),
        lat.quantile(0.95, "linear").alias("latency_p95_ms"),
        lat.quantile(0.99, "linear").alias("latency_p99_ms"),
    )
    models = pl.DataFrame({"model": outcomes["model"].unique()})
    return models.join(speed, on="model", how="left").with_columns(
        pl.col("n_timed").fill_null(0)).sort("model")


__all__ = ["per_model"]
