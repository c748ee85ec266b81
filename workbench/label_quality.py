"""Quality without gold labels: silver references and reviewed label sets applied to outcomes.

- **Silver references.** Each model's answers are scored against a chosen reference model's
  answers with the workload's own scorer (`workbench.scoring`, the rules gold references use);
  for classification the reference answer is first reduced to the label it names, as the
  label scorer reads outputs. Free text (the `exact` scorer) is compared the way
  `workbench.agreement` compares answers, in the kind it infers from the recorded answers
  (option letter, number, JSON or text), so "['A\\n']" and "A" agree. The result is
  *agreement with that model, not accuracy*, and every caller shows it as such
  (`Basis.describe`). Items the reference model did not answer are unscored. Nothing is written: silver quality is a derived frame.
- **Label sets.** A reviewed label set (`workbench.reviews`) recomputes quality: a verdict on a
  model's answer sets that answer's quality to 1 or 0 (while the recorded answer is still the
  one judged); an item's written answer rescores every other answer to that item against it
  with the workload's scorer. Items nobody reviewed keep their quality (gold or silver).

`quality_outcomes(store, workload, silver=..., label_set=...)` is the one entry point replay,
the report, Compare and export use when a reference model or label set is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from workbench import agreement, scoring
from workbench import reviews as rv
from workbench.errors import NotFoundError, WorkbenchError
from workbench.store import Store


@dataclass(frozen=True)
class Basis:
    """What the quality column of a derived outcomes frame means."""

    workload: str
    silver: str | None = None
    label_set: rv.LabelSet | None = None
    n_silver_missing: int = 0  # items the reference model did not answer (unscored)
    n_relabelled: int = 0  # outcome rows whose quality a review decided

    @property
    def gold(self) -> bool:
        """Whether this is the stored quality, unchanged."""
        return self.silver is None and self.label_set is None

    def describe(self) -> str:
        """How to read the quality figures, in one line (shown beside them everywhere)."""
        parts = []
        if self.silver is not None:
            parts.append(f"agreement with {self.silver}, not accuracy")
        else:
            parts.append("quality against the workload's reference answers")
        if self.label_set is not None:
            parts.append(f"corrected by {self.label_set.describe()}")
        return "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready: the basis line plus the silver model and the label set's provenance."""
        return {"basis": self.describe(), "silver_reference": self.silver,
                "label_set": self.label_set.as_provenance() if self.label_set else None,
                "items_without_reference_answer": self.n_silver_missing,
                "outcomes_decided_by_reviews": self.n_relabelled}


@dataclass(frozen=True)
class Scored:
    """Outcomes whose quality follows `basis` (the store's columns, quality replaced)."""

    outcomes: pl.DataFrame
    basis: Basis


def _score_against(task_type: str, outputs: Sequence[str | None], refs: Sequence[Any],
                   labels: Sequence[str] | None) -> np.ndarray:
    """The workload's scorer on (output, reference) pairs; null outputs (errors) score 0."""
    if not outputs:
        return np.zeros(0)
    return scoring.score(task_type, list(outputs), [r if r is not None else "" for r in refs],
                         labels=list(labels) if labels else None)


def reference_answers(task_type: str, outputs: pl.Series,
                      labels: Sequence[str] | None) -> pl.Series:
    """Reference answers from a model's outputs: for classification the label each output
    names (as the label scorer reads it), else the output itself; null where none."""
    outs = outputs.cast(pl.String)
    if scoring.default_scorer(task_type) != "label":
        return outs
    label_list = [str(x) for x in (labels or [])]
    if not label_list:
        return outs
    values = outs.to_list()
    picked: list[str | None] = [None] * len(values)
    for label in label_list:
        hit = scoring.label_match(values, [label] * len(values), labels=label_list)
        for i in np.flatnonzero(hit > 0).tolist():
            if picked[i] is None:
                picked[i] = label
    return pl.Series(outputs.name, picked, dtype=pl.String)


def silver_quality(outcomes: pl.DataFrame, reference: str, *, task_type: str,
                   labels: Sequence[str] | None = None, workload: str = "") -> Scored:
    """`outcomes` with quality = agreement with `reference`'s answer to the same item (the
    workload's scorer). Raises when `reference` has no answers at all."""
    models = sorted(outcomes["model"].unique().drop_nulls().to_list()) if outcomes.height else []
    ref_rows = outcomes.filter((pl.col("model") == reference) & pl.col("output").is_not_null()
                               & pl.col("error").is_null())
    if ref_rows.height == 0:
        raise NotFoundError(
            f"the reference model {reference!r} has no answers on workload {workload!r}, so "
            f"nothing can be scored against it; models with answers: "
            f"{', '.join(m for m in models if m != reference) or 'none'}")
    kind = None
    if scoring.default_scorer(task_type) == "exact":
        kind = agreement.infer_kind(outcomes["output"], task_type)
        answers = agreement.normalize(kind, ref_rows["output"])
    else:
        answers = reference_answers(task_type, ref_rows["output"], labels)
    refs = ref_rows.select("item_id", answers.alias("_silver"))
    joined = outcomes.join(refs, on="item_id", how="left", maintain_order="left")
    has_ref = joined["_silver"].is_not_null().to_numpy()
    q = np.full(joined.height, np.nan)
    idx = np.flatnonzero(has_ref)
    if idx.size and kind is not None:
        mine = agreement.normalize(kind, joined["output"].gather(idx))
        q[idx] = (mine == joined["_silver"].gather(idx)).fill_null(False).to_numpy()
    elif idx.size:
        q[idx] = _score_against(task_type, joined["output"].gather(idx).to_list(),
                                joined["_silver"].gather(idx).to_list(), labels)
    missing = outcomes["item_id"].n_unique() - refs["item_id"].n_unique()
    out = joined.drop("_silver").with_columns(
        pl.Series("quality", q, dtype=pl.Float64).fill_nan(None))
    return Scored(out, Basis(workload, silver=reference, n_silver_missing=max(0, missing)))


def apply_label_set(outcomes: pl.DataFrame, labels_set: rv.LabelSet, *, task_type: str,
                    labels: Sequence[str] | None = None, basis: Basis | None = None) -> Scored:
    """`outcomes` with quality recomputed from a label set (see the module docstring): a
    verdict on the answer as recorded wins; else the item's written answer rescores it."""
    out = outcomes.with_columns(pl.col("quality").cast(pl.Float64))
    decided = np.zeros(out.height, dtype=bool)
    if labels_set.answers.height:
        joined = out.join(labels_set.answers, on="item_id", how="left", maintain_order="left")
        idx = np.flatnonzero(joined["answer"].is_not_null().to_numpy())
        if idx.size:
            q = joined["quality"].to_numpy().astype(np.float64, copy=True)
            q[idx] = _score_against(task_type, joined["output"].gather(idx).to_list(),
                                    joined["answer"].gather(idx).to_list(), labels)
            out = out.with_columns(pl.Series("quality", q, dtype=pl.Float64).fill_nan(None))
            decided[idx] = True
    if labels_set.verdicts.height:
        v = labels_set.verdicts.rename({"output": "_judged", "verdict": "_verdict"})
        joined = out.join(v, on=["item_id", "model"], how="left", maintain_order="left")
        # a verdict holds for the answer it judged; a re-run with another answer drops it
        holds = (joined["_verdict"].is_not_null()
                 & joined["output"].eq_missing(joined["_judged"])).to_numpy()
        q = joined["quality"].to_numpy().astype(np.float64, copy=True)
        q[holds] = joined["_verdict"].to_numpy()[holds].astype(np.float64)
        out = out.with_columns(pl.Series("quality", q, dtype=pl.Float64).fill_nan(None))
        decided |= holds
    base = basis or Basis(labels_set.workload)
    return Scored(out, Basis(base.workload, silver=base.silver, label_set=labels_set,
                             n_silver_missing=base.n_silver_missing,
                             n_relabelled=int(decided.sum())))


def quality_outcomes(
    store: Store,
    workload: str,
    *,
    silver: str | None = None,
    label_set: int | str | None = None,
    models: Sequence[str] | None = None,
) -> Scored:
    """A stored workload's outcomes with quality from the chosen basis: the stored quality,
    agreement with the `silver` reference model, and/or a reviewed `label_set` version
    ('latest' or a number). Nothing is written."""
    with store.session():  # one open of the file for all these reads
        if silver is not None and not silver.strip():
            raise WorkbenchError("the reference model name is empty; name a model with answers")
        info = store.workload(workload)
        labels = list(info.label_set) or None
        outcomes = store.outcomes(workload)
        if silver is not None:
            if silver not in set(outcomes["model"].to_list()):
                have = ", ".join(store.models_of(workload)) or "none"
                raise NotFoundError(f"the reference model {silver!r} has no answers on workload "
                                    f"{workload!r}; models with answers: {have}")
            scored = silver_quality(outcomes, silver, task_type=info.task_type, labels=labels,
                                    workload=workload)
        else:
            scored = Scored(outcomes, Basis(workload))
        if label_set is not None:
            ls = rv.label_set(store, workload, label_set)
            scored = apply_label_set(scored.outcomes, ls, task_type=info.task_type, labels=labels,
                                     basis=scored.basis)
        if models:
            unknown = [m for m in models if m not in set(scored.outcomes["model"].to_list())]
            if unknown:
                raise NotFoundError(f"model {unknown[0]!r} has no outcomes on workload "
                                    f"{workload!r}; models with outcomes: "
                                    f"{', '.join(store.models_of(workload)) or 'none'}")
            scored = Scored(scored.outcomes.filter(pl.col("model").is_in(list(models))),
                            scored.basis)
        return scored


def basis_metrics(store: Store, workload: str, *, silver: str | None = None,
                  label_set: int | str | None = None, n_boot: int = 1000,
                  seed: int = 0) -> tuple[pl.DataFrame, Basis]:
    """Per model on the chosen basis (`workbench.report.model_table`: n, quality with a 95%
    CI, cost per request, latency, error rate) and the basis to show beside it."""
    from workbench.report import model_table
    from workbench.report_data import prepare

    with store.session():
        scored = quality_outcomes(store, workload, silver=silver, label_set=label_set)
        items = store.recorded_items(workload)
    return model_table(prepare(items, scored.outcomes), n_boot=n_boot, seed=seed), scored.basis


__all__ = ["Basis", "Scored", "basis_metrics", "apply_label_set", "quality_outcomes", "reference_answers",
           "silver_quality"]
