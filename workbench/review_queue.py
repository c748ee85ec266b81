"""The review queue: the items worth a person's time, and everything shown to judge one.

An item is queued when the models' answers disagree (for classification the label each answer
names, as the label scorer reads it; otherwise as `workbench.agreement` normalises them), or when the cheap model is confident and
wrong: its confidence is at or above a threshold and its quality, on the chosen basis (gold,
agreement with a reference model, and the current label set), is below one half. Confident
and wrong items come first (most confident first), then by how many distinct answers the
models gave, then in item order. Items the label set already reviewed are left out unless
asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from workbench import agreement
from workbench import reviews as rv
from workbench.errors import NotFoundError, WorkbenchError
from workbench.label_quality import Basis, quality_outcomes, reference_answers
from workbench.store import ID_ORDER, Store, fetch_pl

QUEUE_COLUMNS = ("item_id", "reason", "n_answers", "cheap_confidence", "cheap_quality")
WRONG_BELOW = 0.5


@dataclass(frozen=True)
class Queue:
    """The queued items (QUEUE_COLUMNS, in review order) and how they were chosen."""

    workload: str
    items: pl.DataFrame
    cheap: str | None
    min_confidence: float
    basis: Basis
    agree_on: str

    @property
    def size(self) -> int:
        """How many items are queued."""
        return self.items.height


@dataclass(frozen=True)
class ItemView:
    """One item as the reviewer sees it: input, gold reference, the silver reference model's
    answer, the label set's written answer, and every model's answer (model, output,
    confidence, quality on the basis, error, verdict in the label set)."""

    workload: str
    item_id: str
    input: str
    reference: str | None
    silver_model: str | None
    silver_answer: str | None
    written_answer: str | None
    answers: pl.DataFrame
    history: pl.DataFrame


def cheapest_model(outcomes: pl.DataFrame) -> str | None:
    """The model with the lowest mean cost per request among those that answered at least
    once (a model whose every call failed costs nothing and says nothing; ties: by name)."""
    if outcomes.height == 0:
        return None
    answering = outcomes.filter(pl.col("output").is_not_null().any().over("model"))
    costs = ((answering if answering.height else outcomes)
             .group_by("model").agg(pl.col("cost_usd").fill_null(0.0).mean().alias("c"))
             .sort("c", "model"))
    return str(costs["model"][0])


def build_queue(
    store: Store,
    workload: str,
    *,
    cheap: str | None = None,
    silver: str | None = None,
    min_confidence: float = 0.8,
    use_label_set: bool = True,
    include_reviewed: bool = False,
) -> Queue:
    """The review queue of a stored workload (see the module docstring)."""
    with store.session():  # one open of the file for all these reads
        if not 0.0 <= min_confidence <= 1.0:
            raise WorkbenchError(f"the confidence threshold must be between 0 and 1, got "
                                 f"{min_confidence}")
        info = store.workload(workload)
        newest = rv.latest_version(store, workload)
        scored = quality_outcomes(store, workload, silver=silver,
                                  label_set=rv.LATEST if use_label_set and newest else None)
        out = scored.outcomes
        if out.height == 0:
            raise WorkbenchError(f"workload {workload!r} has no recorded answers to review; run "
                                 "some models on it first")
        models = sorted(set(out["model"].to_list()))
        cheap = cheap or cheapest_model(out)
        if cheap not in models:
            raise NotFoundError(f"model {cheap!r} has no answers on workload {workload!r}; models "
                                f"with answers: {', '.join(models)}")
        kind = agreement.infer_kind(out["output"], info.task_type)
        answered = out.filter(pl.col("output").is_not_null() & pl.col("error").is_null())
        if kind == "label" and info.label_set:
            # the label each answer names, as the label scorer reads it ("Category: billing"
            # and "BILLING" agree)
            named = reference_answers(info.task_type, answered["output"], info.label_set)
            norm = answered.select("item_id", named.fill_null(
                agreement.normalize(kind, answered["output"])).alias("n"))
        else:
            norm = answered.select("item_id",
                                   agreement.normalize(kind, answered["output"]).alias("n"))
        spread = norm.group_by("item_id").agg(
            pl.col("n").n_unique().alias("n_answers"), pl.len().alias("n_models"))
        c = out.filter(pl.col("model") == cheap).select(
            "item_id", pl.col("confidence").cast(pl.Float64).alias("cheap_confidence"),
            pl.col("quality").cast(pl.Float64).alias("cheap_quality"))
        frame = (spread.join(c, on="item_id", how="full", coalesce=True)
                 .with_columns(pl.col("n_answers").fill_null(0)))
        confident_wrong = ((pl.col("cheap_confidence") >= min_confidence)
                           & (pl.col("cheap_quality") < WRONG_BELOW)).fill_null(False)
        disagree = (pl.col("n_answers") > 1).fill_null(False)
        frame = frame.with_columns(
            pl.when(confident_wrong & disagree).then(pl.lit("cheap model confident and wrong; "
                                                            "models disagree"))
            .when(confident_wrong).then(pl.lit("cheap model confident and wrong"))
            .when(disagree).then(pl.lit("models disagree"))
            .otherwise(None).alias("reason"),
            confident_wrong.alias("_cw"),
        ).filter(pl.col("reason").is_not_null())
        if not include_reviewed and newest:
            reviewed = rv.reviews(store, workload)["item_id"].unique()
            frame = frame.filter(~pl.col("item_id").is_in(reviewed.to_list()))
        order = fetch_pl(store.cursor(), f"SELECT item_id, row_number() OVER (ORDER BY {ID_ORDER}) "
                         "AS _pos FROM items WHERE workload = ?", [workload])
        frame = (frame.join(order, on="item_id", how="inner")
                 .sort(["_cw", "cheap_confidence", "n_answers", "_pos"],
                       descending=[True, True, True, False], nulls_last=True)
                 .select(QUEUE_COLUMNS))
        return Queue(workload, frame, cheap, min_confidence, scored.basis, kind)


def item_view(store: Store, workload: str, item_id: str, *, silver: str | None = None,
              use_label_set: bool = True) -> ItemView:
    """Everything shown to judge one item; a clear error when it is gone."""
    with store.session():  # one open of the file for all these reads
        store.workload(workload)
        rows = store.cursor().execute("SELECT input, reference FROM items WHERE workload = ? "
                                      "AND item_id = ?", [workload, str(item_id)]).fetchall()
        if not rows:
            raise NotFoundError(f"item {item_id!r} is not in workload {workload!r} (deleted, or "
                                "never there)")
        newest = rv.latest_version(store, workload)
        ls = rv.label_set(store, workload) if use_label_set and newest else None
        scored = quality_outcomes(store, workload, silver=silver,
                                  label_set=ls.version if ls else None)
        mine = scored.outcomes.filter(pl.col("item_id") == str(item_id))
        if ls is not None and ls.verdicts.height:
            v = ls.verdicts.filter(pl.col("item_id") == str(item_id)).select("model", "verdict")
            mine = mine.join(v, on="model", how="left")
        else:
            mine = mine.with_columns(pl.lit(None, dtype=pl.Boolean).alias("verdict"))
        answers = mine.sort("model").select("model", "output", "confidence", "quality", "error",
                                            "verdict")
        silver_answer = None
        if silver is not None:
            s = answers.filter(pl.col("model") == silver)
            silver_answer = s["output"][0] if s.height else None
        written = None
        if ls is not None:
            w = ls.answers.filter(pl.col("item_id") == str(item_id))
            written = w["answer"][0] if w.height else None
        return ItemView(workload, str(item_id), rows[0][0], _reference_text(rows[0][1]), silver,
                        silver_answer, written, answers,
                        rv.reviews(store, workload, item_id=str(item_id)))


def _reference_text(value: Any) -> str | None:
    """The gold reference as text (JSON references pretty-printed)."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value)
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return json.dumps(parsed, indent=2) if isinstance(parsed, dict | list) else text


__all__ = ["QUEUE_COLUMNS", "ItemView", "Queue", "build_queue", "cheapest_model", "item_view"]
