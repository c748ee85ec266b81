"""Slices that represent a workload: which N items a run covers when it cannot cover them all.

"The first N by id" covers whatever the ids happen to group together (on a Banking77 CSV, 3 of
6 intents). The default is a seeded sample stratified by what varies: the reference label for
classification, else difficulty, else the first tag; each stratum gets its share of N (at
least one item while N allows), and the slice says which stratification it used and which
strata it misses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError

STRATA = ("label", "difficulty", "tag")
MODES = ("stratified", "first", "random")


@dataclass(frozen=True)
class Slice:
    """The chosen item ids (in natural id order) and what a person should know about them."""

    item_ids: tuple[str, ...]
    mode: str
    by: str | None  # the stratum the sample was stratified by (None: not stratified)
    seed: int
    strata: tuple[str, ...]  # every stratum value in the workload
    missing: tuple[str, ...]  # strata with no item in the slice

    @property
    def description(self) -> str:
        """One line: how the slice was drawn."""
        n = len(self.item_ids)
        if self.mode == "first":
            text = f"the first {n} items by id"
        elif self.by is None:
            text = f"a random sample of {n} items (seed {self.seed})"
        else:
            text = (f"a sample of {n} items stratified by {self.by} (seed {self.seed}), "
                    f"covering {len(self.strata) - len(self.missing)} of {len(self.strata)} "
                    f"{self.by} values")
        return text

    @property
    def warning(self) -> str | None:
        """Which strata the slice misses, when it misses any."""
        if not self.missing or self.by is None:
            return None
        shown = ", ".join(self.missing[:8]) + (" ..." if len(self.missing) > 8 else "")
        return (f"the slice misses {len(self.missing)} {self.by} value(s): {shown}; "
                "use more items to cover them")


def natural_order(ids: pl.Series) -> pl.Series:
    """Ids sorted as a person expects: numeric ids by value (2 before 10), then the rest."""
    frame = pl.DataFrame({"id": ids.cast(pl.String)}).with_columns(
        num=pl.col("id").cast(pl.Int128, strict=False))
    return frame.sort(["num", "id"], nulls_last=True)["id"]


def strata_of(items: pl.DataFrame, by: str) -> pl.Series:
    """Each item's stratum value under `by` ('label' = the reference, 'difficulty', 'tag' =
    the first tag); null when the item has none."""
    if by == "label":
        return items["reference"].cast(pl.String) if "reference" in items.columns else \
            pl.Series([None] * items.height, dtype=pl.String)
    if by == "difficulty":
        return items["difficulty"].cast(pl.String) if "difficulty" in items.columns else \
            pl.Series([None] * items.height, dtype=pl.String)
    if by == "tag":
        if "tags" not in items.columns:
            return pl.Series([None] * items.height, dtype=pl.String)
        return pl.Series([_first_tag(t) for t in items["tags"].to_list()], dtype=pl.String)
    raise WorkbenchError(f"unknown stratum {by!r}; choose one of {', '.join(STRATA)}")


def _first_tag(raw: object) -> str | None:
    if raw is None:
        return None
    tags = json.loads(raw) if isinstance(raw, str) else raw
    return str(tags[0]) if isinstance(tags, list) and tags else None


def auto_stratum(items: pl.DataFrame, task_type: str | None) -> str | None:
    """What to stratify by: the label for classification, else difficulty, else tags; only a
    column that varies and covers most items (None: a plain random sample)."""
    order = ("label", "difficulty", "tag") if task_type == "classification" else (
        "difficulty", "tag", "label")
    for by in order:
        values = strata_of(items, by)
        if values.null_count() <= 0.2 * items.height and 1 < values.n_unique() <= max(
                2, items.height // 2):
            return by
    return None


def choose(items: pl.DataFrame, n: int, *, mode: str = "stratified", by: str | None = None,
           seed: int = 0, task_type: str | None = None) -> Slice:
    """Pick `n` of `items`: 'stratified' (by `by`, or chosen by `auto_stratum`), 'first' (by
    natural id order) or 'random'; seeded, so the same call gives the same slice."""
    if mode not in MODES:
        raise WorkbenchError(f"unknown slice mode {mode!r}; choose one of {', '.join(MODES)}")
    if n < 1:
        raise WorkbenchError(f"a slice needs at least 1 item, got {n}")
    ids = items["item_id"].cast(pl.String)
    n = min(n, items.height)
    if mode == "stratified":
        by = by or auto_stratum(items, task_type)
    elif by is not None:
        raise WorkbenchError(f"stratifying by {by!r} needs mode 'stratified', not {mode!r}")
    strata = strata_of(items, by) if by else None
    all_strata = tuple(sorted(set(strata.drop_nulls().to_list()))) if strata is not None else ()
    rng = np.random.default_rng(seed)
    if mode == "first":
        chosen = natural_order(ids).head(n).to_list()
    elif strata is None:
        chosen = ids.gather(np.sort(rng.choice(items.height, n, replace=False))).to_list()
    else:
        chosen = _stratified(ids, strata, n, rng)
    picked = set(chosen)
    covered = set(strata.filter(ids.is_in(list(picked))).drop_nulls().to_list()) \
        if strata is not None else set()
    missing = tuple(s for s in all_strata if s not in covered)
    ordered = tuple(natural_order(pl.Series(chosen, dtype=pl.String)).to_list())
    return Slice(ordered, mode, by, seed, all_strata, missing)


def _stratified(ids: pl.Series, strata: pl.Series, n: int, rng: np.random.Generator
                ) -> list[str]:
    """Proportional allocation by largest remainder, at least one per stratum while n allows
    (strata beyond n drawn at random); items without a stratum form their own group."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata.fill_null("\x00none").to_list()):
        groups.setdefault(s, []).append(i)
    names = sorted(groups)
    sizes = np.array([len(groups[g]) for g in names], dtype=float)
    if n < len(names):  # not every stratum fits: a seeded choice of strata, one item each
        keep = rng.choice(len(names), n, replace=False)
        alloc = np.zeros(len(names), dtype=int)
        alloc[keep] = 1
    else:
        alloc = np.ones(len(names), dtype=int)
        rest = n - len(names)
        share = (sizes - 1) / max((sizes - 1).sum(), 1) * rest
        alloc += np.floor(share).astype(int)
        short = rest - int(np.floor(share).sum())
        order = np.argsort(-(share - np.floor(share)), kind="stable")
        for j in order[:short]:
            alloc[j] += 1
        alloc = np.minimum(alloc, sizes.astype(int))
        while alloc.sum() < n:  # capped strata hand their share to the others
            room = np.flatnonzero(alloc < sizes)
            alloc[room[int(rng.integers(len(room)))]] += 1
    chosen: list[int] = []
    for g, k in zip(names, alloc, strict=True):
        if k:
            chosen.extend(rng.choice(groups[g], int(k), replace=False).tolist())
    return ids.gather(sorted(chosen)).to_list()


__all__ = ["MODES", "STRATA", "Slice", "auto_stratum", "choose", "natural_order", "strata_of"]
