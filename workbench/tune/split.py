"""Held-out discipline: seeded stratified train/holdout splits, or an imported test workload as the holdout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from workbench import replay as rp
from workbench.errors import WorkbenchError

STRATA_COLUMNS = ("difficulty", "data_class", "tags")


def strata_columns(items: pl.DataFrame, holdout: float) -> list[str]:
    """Stratification columns that keep strata big enough to split (each stratum should hold
    several holdout items): columns are dropped, finest first, until they do."""
    cols = [c for c in STRATA_COLUMNS
            if c in items.columns and items[c].cast(pl.String).n_unique() > 1]
    min_mean = max(2.0 / holdout, 4.0)
    while cols:
        sizes = items.group_by([pl.col(c).cast(pl.String) for c in cols]).len()["len"]
        if sizes.mean() >= min_mean and float((sizes < 1.0 / holdout).mean()) <= 0.2:
            break
        cols.remove(max(cols, key=lambda c: items[c].cast(pl.String).n_unique()))
    return cols


@dataclass(frozen=True)
class Split:
    """Train and holdout frames (items and outcomes) and how they were made."""

    train_items: pl.DataFrame
    train_outcomes: pl.DataFrame
    holdout_items: pl.DataFrame
    holdout_outcomes: pl.DataFrame
    description: str
    notes: tuple[str, ...] = ()


def _recorded(store: Any, workload: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Items of a workload that have at least one recorded outcome, with the outcomes."""
    outcomes = store.outcomes(workload)
    items = store.items(workload)
    if outcomes.height == 0:
        raise WorkbenchError(f"workload {workload!r} has no recorded outcomes: run models on "
                             "it or import recorded outcomes first")
    items = items.filter(pl.col("item_id").is_in(outcomes["item_id"].unique().implode()))
    return items, outcomes


def _with_variants(store: Any, workload: str, items: pl.DataFrame,
                   outcomes: pl.DataFrame) -> pl.DataFrame:
    """Outcomes plus the derived `<model>@vote<k>` models of sampled runs (tune.variants)."""
    from workbench.tune.variants import vote_variants

    info = store.workload(workload)
    extra = vote_variants(items, outcomes, info.task_type, info.label_set)
    return pl.concat([outcomes, extra]) if extra.height else outcomes


def make_split(store: Any, workload: str, *, holdout: float = 0.3, seed: int = 0,
               test_workload: str | None = None) -> Split:
    """Train/holdout: a seeded stratified split of `workload`, or all of it against
    `test_workload` (whose items must not repeat train items). Only items with recorded
    outcomes take part: a run may have covered just a slice of a workload."""
    items, outcomes = _recorded(store, workload)
    outcomes = _with_variants(store, workload, items, outcomes)
    if test_workload is not None:
        t_items, t_out = _recorded(store, test_workload)
        t_out = _with_variants(store, test_workload, t_items, t_out)
        # an item seen in training (same id or same input) must not be scored as held out
        seen = pl.col("item_id").is_in(items["item_id"].implode()) | pl.col("input").is_in(
            items["input"].implode())
        dup = t_items.filter(seen)["item_id"]
        notes: list[str] = []
        if dup.len():
            notes.append(f"{dup.len()} item(s) of {test_workload} also occur in {workload} "
                         f"(same id or input), e.g. {dup[0]}; dropped from the holdout")
            t_items = t_items.filter(~pl.col("item_id").is_in(dup.implode()))
            t_out = t_out.filter(~pl.col("item_id").is_in(dup.implode()))
        if t_items.height == 0:
            raise WorkbenchError(f"test workload {test_workload!r} has no items to hold out")
        return Split(items, outcomes, t_items, t_out,
                     f"train = {workload} ({items.height}), holdout = {test_workload} "
                     f"({t_items.height})", tuple(notes))
    cols = strata_columns(items, holdout)
    train_ids, hold_ids = rp.split_items(items, holdout=holdout, seed=seed, stratify=cols)
    if not hold_ids or not train_ids:
        raise WorkbenchError(
            f"workload {workload!r} with {items.height} items is too small to hold out "
            f"{holdout:.0%}; import a test workload instead"
        )
    tr = items.filter(pl.col("item_id").is_in(train_ids))
    ho = items.filter(pl.col("item_id").is_in(hold_ids))
    return Split(
        tr, outcomes.filter(pl.col("item_id").is_in(train_ids)),
        ho, outcomes.filter(pl.col("item_id").is_in(hold_ids)),
        f"{workload}: {len(train_ids)} train / {len(hold_ids)} holdout items "
        f"(seed {seed}, stratified by {', '.join(cols) or 'nothing'})",
    )
