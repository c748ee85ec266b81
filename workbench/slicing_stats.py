"""Quality, cost and latency per model broken down by slices of the workload, with intervals,
and the slices where a model is significantly worse than its own average.

A *slice column* groups items: `tag` (an item is in every tag it carries; a JSON object of
tags gives `key=value` tags), `data_class`, `difficulty`, `label` (the reference answer) and
`input_length` (quartiles of the input's length in characters, so every bucket holds about a
quarter of the items). Items without a value fall in the slice "(none)".

Per (column, slice, model): n, mean quality with a 95% bootstrap interval
(`workbench.metrics.bootstrap_mean_ci`), mean cost with a normal interval, latency p50/p95.
A slice is *flagged* when the model's quality on it is significantly below its quality on the
rest of the items: a one-sided Welch z-test of slice vs rest, with Benjamini-Hochberg
correction over every test of the breakdown (false discovery rate `alpha`), because with
dozens of slices per model some would look worse by chance alone. Slices with fewer than
`MIN_TEST_ITEMS` items are shown but not tested.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.metrics import bootstrap_mean_ci

if TYPE_CHECKING:
    from workbench.report_data import Prepared

SLICE_COLUMNS = ("tag", "data_class", "difficulty", "input_length", "label")
NONE_SLICE = "(none)"
MIN_TEST_ITEMS = 10
Z95 = 1.959963984540054

BREAKDOWN_SCHEMA = {
    "column": pl.String, "slice": pl.String, "model": pl.String, "n": pl.Int64,
    "quality": pl.Float64, "quality_lo": pl.Float64, "quality_hi": pl.Float64,
    "model_quality": pl.Float64, "rest_quality": pl.Float64,
    "cost_per_request": pl.Float64, "cost_lo": pl.Float64, "cost_hi": pl.Float64,
    "latency_p50_ms": pl.Float64, "latency_p95_ms": pl.Float64,
    "p_value": pl.Float64, "q_value": pl.Float64, "flagged": pl.Boolean,
}


def check_column(column: str) -> None:
    """Raise a one-line error unless `column` is a slice column."""
    if column not in SLICE_COLUMNS:
        raise WorkbenchError(
            f"unknown slice column {column!r}; choose one of {', '.join(SLICE_COLUMNS)}")


def _tag_list(raw: str | None) -> list[str]:
    """The tags of one stored `tags` cell: a JSON list, or an object giving key=value tags."""
    if raw is None:
        return []
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return [str(raw)]
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def slice_keys(items: pl.DataFrame, column: str) -> pl.DataFrame:
    """(item_id, slice) rows for one slice column; an item with several tags has several rows."""
    frame = item_slices(items, column)
    ids = items["item_id"].cast(pl.String)
    return frame.select(ids.gather(frame["_row"]).alias("item_id"), "slice")


def item_slices(items: pl.DataFrame, column: str) -> pl.DataFrame:
    """(_row, slice) rows for one slice column, `_row` being the item's row number. Tags are
    parsed once per distinct cell, so this stays vectorized over items."""
    check_column(column)
    rows = pl.Series("_row", np.arange(items.height, dtype=np.int64))
    if column == "tag":
        raw = items["tags"].cast(pl.String) if "tags" in items.columns else pl.Series(
            [None] * items.height, dtype=pl.String)
        uniq = raw.unique().drop_nulls().to_list()
        lookup = pl.DataFrame({"tags": uniq, "slice": [_tag_list(u) for u in uniq]},
                              schema={"tags": pl.String, "slice": pl.List(pl.String)})
        return (pl.DataFrame({"_row": rows, "tags": raw})
                .join(lookup, on="tags", how="left", maintain_order="left")
                .with_columns(pl.when(pl.col("slice").list.len() > 0).then(pl.col("slice"))
                              .otherwise(pl.lit([NONE_SLICE])))
                .explode("slice").select("_row", "slice"))
    if column == "input_length":
        length = items["input"].cast(pl.String).fill_null("").str.len_chars()
        return pl.DataFrame({"_row": rows, "slice": length_buckets(length)})
    source = "reference" if column == "label" else column
    values = items[source].cast(pl.String) if source in items.columns else pl.Series(
        [None] * items.height, dtype=pl.String)
    return pl.DataFrame({"_row": rows, "slice": values.fill_null(NONE_SLICE)})


def length_buckets(length: pl.Series) -> pl.Series:
    """Quartile buckets of input length, labelled by their character range ("<=312 chars",
    "313-870 chars", ">2100 chars"); fewer buckets when quartiles coincide."""
    x = length.cast(pl.Int64).to_numpy()
    if x.size == 0:
        return pl.Series("slice", [], dtype=pl.String)
    edges = np.unique(np.quantile(x, [0.25, 0.5, 0.75], method="lower").astype(np.int64))
    edges = edges[edges < x.max()]
    if edges.size == 0:
        return pl.Series("slice", [f"{int(x.min())}-{int(x.max())} chars"] * x.size)
    labels = [f"<={edges[0]} chars"]
    labels += [f"{hi} chars" if lo + 1 == hi else f"{lo + 1}-{hi} chars"
               for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    labels.append(f">{edges[-1]} chars")
    which = np.searchsorted(edges, x, side="left")
    return pl.Series("slice", np.asarray(labels, dtype=object)[which].tolist(), dtype=pl.String)


def available_columns(items: pl.DataFrame) -> list[str]:
    """Slice columns that split this workload into at least two slices (label only when it has
    at most 50 distinct values, i.e. looks like a class label rather than free text)."""
    out = []
    for column in SLICE_COLUMNS:
        n = slice_keys(items, column)["slice"].n_unique()
        if n >= 2 and (column != "label" or n <= 50):
            out.append(column)
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of `p`; NaN entries stay NaN and do
    not count as tests."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return q
    order = np.argsort(p[ok])
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    sub = np.empty(m)
    sub[order] = adjusted
    q[ok] = sub
    return q


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """P(Z <= z) for a standard normal, elementwise (few values: one per test)."""
    return np.array([0.5 * math.erfc(-float(v) / math.sqrt(2.0)) for v in np.ravel(z)]
                    ).reshape(np.shape(z))


def breakdown(
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    columns: Sequence[str],
    *,
    models: Sequence[str] | None = None,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Per (column, slice, model): quality with interval, cost with interval, latency, and the
    slice-vs-rest test (`p_value`, BH `q_value`, `flagged` when q < alpha and the slice is
    worse). Quality is over scored outcomes (null quality left out, as in workbench.metrics);
    cost and latency over all of the model's outcomes on the slice. Sorted by column, slice,
    model. Raises on an unknown column."""
    from workbench.report_data import prepare

    for column in columns:
        check_column(column)
    if models:
        outcomes = outcomes.filter(pl.col("model").is_in(list(models)))
    return breakdown_prepared(prepare(items, outcomes), columns, alpha=alpha, n_boot=n_boot,
                              seed=seed)


def breakdown_prepared(prep: Prepared, columns: Sequence[str], *, alpha: float = 0.05,
                       n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """`breakdown` on prepared arrays: cells (slice x model) are summed with bincount; the
    quality intervals of 0/1 quality are drawn for all cells at once (a replicate's mean is
    Binomial(n, mean) / n, as in bootstrap_mean_ci), other quality goes cell by cell."""
    for column in columns:
        check_column(column)
    m = len(prep.models)
    if m == 0 or not columns:
        return pl.DataFrame(schema=BREAKDOWN_SCHEMA)
    q_all, scored_all = prep.quality, ~np.isnan(prep.quality)
    binary = bool(np.all((q_all[scored_all] == 0.0) | (q_all[scored_all] == 1.0)))
    tot_n = np.bincount(prep.model[scored_all], minlength=m).astype(np.float64)
    tot_s = np.bincount(prep.model[scored_all], q_all[scored_all], minlength=m)
    tot_s2 = np.bincount(prep.model[scored_all], q_all[scored_all] ** 2, minlength=m)
    rng = np.random.default_rng(seed)
    frames = []
    for column in columns:
        sc = prep.codes(column)
        n_slices = len(sc.names)
        if sc.single:
            code_of_item = np.empty(prep.n_items, dtype=np.int64)
            code_of_item[sc.rows] = sc.codes
            obs = np.arange(prep.row.size)
            code = code_of_item[prep.row]
        else:
            pairs = pl.DataFrame({"_row": sc.rows, "code": sc.codes})
            joined = pl.DataFrame({"_obs": np.arange(prep.row.size), "_row": prep.row}).join(
                pairs, on="_row")
            obs, code = joined["_obs"].to_numpy(), joined["code"].to_numpy()
        cell = code * m + prep.model[obs]
        size = n_slices * m
        q, c = prep.quality[obs], prep.cost[obs]
        scored = ~np.isnan(q)
        n_rows = np.bincount(cell, minlength=size)
        qn = np.bincount(cell[scored], minlength=size).astype(np.float64)
        qs = np.bincount(cell[scored], q[scored], minlength=size)
        qs2 = np.bincount(cell[scored], q[scored] ** 2, minlength=size)
        cs = np.bincount(cell, c, minlength=size)
        cs2 = np.bincount(cell, c**2, minlength=size)
        lat = (pl.DataFrame({"cell": cell, "lat": prep.latency[obs]})
               .group_by("cell").agg(pl.col("lat").quantile(0.5, "linear").alias("p50"),
                                     pl.col("lat").quantile(0.95, "linear").alias("p95")))
        p50 = np.full(size, np.nan)
        p95 = np.full(size, np.nan)
        p50[lat["cell"].to_numpy()] = lat["p50"].to_numpy(allow_copy=True)
        p95[lat["cell"].to_numpy()] = lat["p95"].to_numpy(allow_copy=True)
        keep = np.flatnonzero(n_rows > 0)
        mi = keep % m
        lo, hi = quality_cis(cell[scored], q[scored], qn, qs, keep, binary, n_boot, rng)
        frames.append(pl.DataFrame({
            "column": [column] * keep.size,
            "slice": np.asarray(sc.names, dtype=object)[keep // m].tolist(),
            "model": np.asarray(prep.models, dtype=object)[mi].tolist(),
            "n": n_rows[keep].astype(np.int64), "q_n": qn[keep], "q_sum": qs[keep],
            "q_sq": qs2[keep], "quality_lo": lo, "quality_hi": hi,
            "c_sum": cs[keep], "c_sq": cs2[keep],
            "latency_p50_ms": p50[keep], "latency_p95_ms": p95[keep],
            "t_n": tot_n[mi], "t_sum": tot_s[mi], "t_sq": tot_s2[mi],
        }, schema_overrides={"slice": pl.String, "model": pl.String}))
    agg = pl.concat(frames).sort("column", "slice", "model")
    q_n = agg["q_n"].to_numpy()
    q_sum, q_sq = agg["q_sum"].to_numpy(), agg["q_sq"].to_numpy()
    r_n = agg["t_n"].to_numpy() - q_n
    r_sum, r_sq = agg["t_sum"].to_numpy() - q_sum, agg["t_sq"].to_numpy() - q_sq
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_s, mean_r = q_sum / q_n, r_sum / r_n
        var_s = np.maximum(q_sq / q_n - mean_s**2, 0.0) * q_n / (q_n - 1)
        var_r = np.maximum(r_sq / r_n - mean_r**2, 0.0) * r_n / (r_n - 1)
        se = np.sqrt(var_s / q_n + var_r / r_n)
        z = (mean_s - mean_r) / se
        n_all = agg["n"].to_numpy().astype(np.float64)
        cost = agg["c_sum"].to_numpy() / n_all
        c_sd = np.sqrt(np.maximum(agg["c_sq"].to_numpy() / n_all - cost**2, 0.0)
                       * n_all / np.maximum(n_all - 1, 1))
        model_q = agg["t_sum"].to_numpy() / agg["t_n"].to_numpy()
    testable = (q_n >= MIN_TEST_ITEMS) & (r_n >= MIN_TEST_ITEMS)
    z = np.where(se > 0, z, np.where(mean_s < mean_r, -1e9, 0.0))
    p = np.full(z.shape, np.nan)
    p[testable] = _normal_cdf(z[testable])
    q = benjamini_hochberg(p)
    half = Z95 * c_sd / np.sqrt(n_all)
    return agg.with_columns(
        pl.Series("quality", mean_s, nan_to_null=True),
        pl.Series("model_quality", model_q, nan_to_null=True),
        pl.Series("rest_quality", mean_r, nan_to_null=True),
        pl.Series("cost_per_request", cost), pl.Series("cost_lo", cost - half),
        pl.Series("cost_hi", cost + half),
        pl.Series("p_value", p, nan_to_null=True),
        pl.Series("q_value", q, nan_to_null=True),
        pl.Series("flagged", (np.nan_to_num(q, nan=1.0) < alpha) & (mean_s < mean_r)),
        pl.col("quality_lo").fill_nan(None), pl.col("quality_hi").fill_nan(None),
        pl.col("latency_p50_ms").fill_nan(None), pl.col("latency_p95_ms").fill_nan(None),
    ).select(list(BREAKDOWN_SCHEMA)).cast(BREAKDOWN_SCHEMA)  # type: ignore[arg-type]


def quality_cis(cell: np.ndarray, q: np.ndarray, qn: np.ndarray, qs: np.ndarray,
                 keep: np.ndarray, binary: bool, n_boot: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """95% bootstrap intervals of mean quality for the cells `keep` (NaN without scores), from
    each scored row's `cell` and quality `q` with per-cell count `qn` and sum `qs`."""
    lo = np.full(keep.size, np.nan)
    hi = np.full(keep.size, np.nan)
    n = qn[keep]
    has = n > 0
    if binary:
        nk = n[has].astype(np.int64)
        draws = rng.binomial(nk[:, None], (qs[keep][has] / nk)[:, None],
                             size=(nk.size, n_boot)) / nk[:, None]
        lo[has], hi[has] = np.quantile(draws, [0.025, 0.975], axis=1)
        return lo, hi
    order = np.argsort(cell, kind="stable")
    starts = np.searchsorted(cell[order], keep)
    ends = np.searchsorted(cell[order], keep, side="right")
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        if b > a:
            lo[i], hi[i] = bootstrap_mean_ci(q[order[a:b]], n_boot=n_boot,
                                             seed=int(rng.integers(2**31)))
    return lo, hi
