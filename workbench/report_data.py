"""Items and outcomes as integer-indexed numpy arrays, shared by the report's computations.

Joining on string item ids costs more than every figure of the report put together on a large
workload, so the report joins once: each outcome row gets its item's row number and its
model's code, and each slice column becomes integer slice codes per item. Everything after
that is bincount / indexing over these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.slicing_stats import item_slices


@dataclass(frozen=True)
class SliceCodes:
    """The slices of one column: `names` (sorted), and one (item row, code) pair per
    membership (an item with several tags has several pairs, in tag order)."""

    names: tuple[str, ...]
    rows: np.ndarray
    codes: np.ndarray
    n_items: int

    @property
    def single(self) -> bool:
        """Whether every item is in exactly one slice."""
        return self.rows.size == self.n_items

    def first(self) -> np.ndarray:
        """Each item's first slice code (the routing key: one slice per request)."""
        out = np.full(self.n_items, -1, dtype=np.int64)
        # reversed so the first pair of each item is written last and kept
        out[self.rows[::-1]] = self.codes[::-1]
        return out


@dataclass(frozen=True)
class Prepared:
    """Outcome rows with item rows and model codes, plus (items x models) matrices of
    quality, cost and confidence (NaN where a model has no outcome or no value)."""

    items: pl.DataFrame
    models: tuple[str, ...]
    row: np.ndarray  # item row of each outcome row
    model: np.ndarray  # model code of each outcome row
    quality: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    errored: np.ndarray  # 1.0 where the outcome records a provider error
    Q: np.ndarray
    C: np.ndarray
    K: np.ndarray
    _codes: dict[str, SliceCodes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_items(self) -> int:
        """Number of items."""
        return self.items.height

    def codes(self, column: str) -> SliceCodes:
        """Slice codes of a column (computed once per column)."""
        if column not in self._codes:
            frame = item_slices(self.items, column)
            names = frame["slice"].unique().sort()
            code = frame["slice"].cast(pl.Enum(names.to_list())).to_physical()
            self._codes[column] = SliceCodes(tuple(names.to_list()), frame["_row"].to_numpy(),
                                             code.to_numpy().astype(np.int64), self.n_items)
        return self._codes[column]


def prepare(items: pl.DataFrame, outcomes: pl.DataFrame) -> Prepared:
    """Index outcomes by item row and model code (outcomes of unknown items are left out)."""
    if items["item_id"].n_unique() != items.height:
        raise WorkbenchError("item ids are not unique; the report needs one row per item")
    index = items.select(pl.col("item_id").cast(pl.String)).with_row_index("_row")
    cols = outcomes.columns
    out = outcomes.select(
        pl.col("item_id").cast(pl.String), pl.col("model").cast(pl.String),
        pl.col("quality").cast(pl.Float64),
        pl.col("cost_usd").cast(pl.Float64).fill_null(0.0),
        (pl.col("latency_ms").cast(pl.Float64) if "latency_ms" in cols
         else pl.lit(None, pl.Float64)).alias("latency_ms"),
        (pl.col("confidence").cast(pl.Float64) if "confidence" in cols
         else pl.lit(None, pl.Float64)).alias("confidence"),
        (pl.col("error").is_not_null() if "error" in cols else pl.lit(False))
        .cast(pl.Float64).alias("errored"),
    ).join(index, on="item_id", how="inner")
    models = out["model"].unique().sort()
    code = out["model"].cast(pl.Enum(models.to_list())).to_physical().to_numpy().astype(np.int64)
    row = out["_row"].to_numpy().astype(np.int64)
    n, m = items.height, models.len()
    quality = out["quality"].to_numpy(allow_copy=True).astype(np.float64)
    cost = out["cost_usd"].to_numpy().astype(np.float64)
    conf = out["confidence"].to_numpy(allow_copy=True).astype(np.float64)
    mats = []
    for values in (quality, cost, conf):
        mat = np.full((n, m), np.nan)
        mat[row, code] = values
        mats.append(mat)
    return Prepared(
        items=items, models=tuple(models.to_list()), row=row, model=code, quality=quality,
        cost=cost, latency=out["latency_ms"].to_numpy(allow_copy=True).astype(np.float64),
        errored=out["errored"].to_numpy(),
        Q=mats[0], C=mats[1], K=mats[2])
