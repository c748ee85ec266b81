"""The cost-first report of one workload: the headline answer, slices, failure modes.

`build_report(store, workload, settings)` returns a frozen `Report` with every figure a page,
`workbench report --json` or the HTML report shows; `workbench.report_charts` turns it into
plotly figures and a standalone HTML file. Library code only (no streamlit): a page calls
`build_report` and renders `report_figures(report)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from workbench import failures, headline, slicing_stats
from workbench.errors import WorkbenchError
from workbench.headline import HeadlineSettings, Option
from workbench.report_data import Prepared, prepare
from workbench.store import Store


@dataclass(frozen=True)
class ReportSettings:
    """The headline's settings plus what the breakdowns use: `slice_columns` (None: every
    column that splits the workload), the false discovery rate `alpha` of the slice flags and
    the quality at or above which an answer counts as right (`success_threshold`)."""

    headline: HeadlineSettings = field(default_factory=HeadlineSettings)
    slice_columns: tuple[str, ...] | None = None
    alpha: float = 0.05
    success_threshold: float = 0.5

    def validate(self) -> None:
        """One-line errors for values that cannot be right (nothing is computed before)."""
        self.headline.validate()
        for column in self.slice_columns or ():
            slicing_stats.check_column(column)
        if not 0 < self.alpha < 1:
            raise WorkbenchError(f"the false discovery rate must be in (0, 1), got {self.alpha}")


@dataclass(frozen=True)
class Report:
    """Every figure of the report; frames are polars, treat all of it as immutable."""

    workload: str
    n_items: int
    settings: ReportSettings
    strong: str
    models: pl.DataFrame  # per model: n, quality (+ CI), cost, latency p50/p95, error rate
    options: tuple[Option, ...]  # per cheaper model, best first (see headline._rank)
    slice_columns: tuple[str, ...]
    slices: pl.DataFrame  # workbench.slicing_stats.breakdown
    failures: pl.DataFrame  # workbench.failures.failure_table
    # the indexed arrays, kept so a what-if recomputes the headline alone
    prepared: Prepared | None = field(default=None, repr=False, compare=False)
    # what quality means here when it is not the stored quality (workbench.label_quality)
    basis: dict[str, Any] | None = None

    def what_if(self, **changes: Any) -> Report:
        """This report with headline settings changed (keep_quality, requests_per_day, mix,
        mix_by, route_by, strong, ...): only the headline is recomputed, since slices and
        failure modes do not depend on them (what a page's what-if widgets call)."""
        settings = with_headline(self.settings, **changes)
        settings.validate()
        if self.prepared is None:
            raise WorkbenchError("this report keeps no data to recompute from; rebuild it")
        strong, options = headline.cheaper_options_prepared(
            self.prepared, settings.headline, columns=self.slice_columns)
        return replace(self, settings=settings, strong=strong, options=tuple(options))

    @property
    def headline(self) -> Option | None:
        """The first option: the largest saving at the lower end of its interval, then at its
        point estimate (None when no cheaper model takes any share)."""
        return next((o for o in self.options if o.share > 0 and o.monthly_saving_usd > 0), None)

    @property
    def sentence(self) -> str:
        """The headline answer in one sentence."""
        return headline.sentence(self.strong, self.headline, self.settings.headline)

    def flagged(self) -> pl.DataFrame:
        """Slices where a model is significantly worse than on the rest of the workload."""
        return self.slices.filter(pl.col("flagged"))

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict of every figure (`workbench report --json`)."""
        h = self.settings.headline
        return {
            "workload": self.workload,
            "n_items": self.n_items,
            "strong": self.strong,
            "settings": {
                "keep_quality": h.keep_quality, "requests_per_day": h.requests_per_day,
                "days_per_month": headline.DAYS_PER_MONTH, "route_by": h.route_by,
                "mix": dict(h.mix) if h.mix is not None else None, "mix_by": h.mix_by,
                "min_slice_items": h.min_slice_items, "n_boot": h.n_boot, "seed": h.seed,
                "alpha": self.settings.alpha,
                "success_threshold": self.settings.success_threshold,
            },
            "sentence": self.sentence,
            "headline": self.headline.as_json() if self.headline else None,
            "options": [o.as_json() for o in self.options],
            "models": _rows(self.models),
            "slice_columns": list(self.slice_columns),
            "flagged_slices": _rows(self.flagged()),
            "slices": _rows(self.slices),
            "failures": _rows(self.failures),
            "quality_basis": self.basis,
        }


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    rows = frame.to_dicts()
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = None
    return rows


def model_table(prep: Prepared, *, n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Per model: n, scored n, mean quality with a 95% bootstrap CI, cost per request, latency
    p50/p95 and error rate (conventions of workbench.metrics), sorted by cost."""
    m = len(prep.models)
    scored = ~np.isnan(prep.quality)
    n = np.bincount(prep.model, minlength=m)
    qn = np.bincount(prep.model[scored], minlength=m).astype(np.float64)
    qs = np.bincount(prep.model[scored], prep.quality[scored], minlength=m)
    binary = bool(np.all((prep.quality[scored] == 0) | (prep.quality[scored] == 1)))
    lo, hi = slicing_stats.quality_cis(prep.model[scored], prep.quality[scored], qn, qs,
                                       np.arange(m), binary, n_boot,
                                       np.random.default_rng(seed))
    lat = pl.DataFrame({"model": prep.model, "lat": prep.latency}).group_by("model").agg(
        pl.col("lat").quantile(0.5, "linear").alias("p50"),
        pl.col("lat").quantile(0.95, "linear").alias("p95")).sort("model")
    with np.errstate(invalid="ignore", divide="ignore"):
        quality = qs / qn
    return pl.DataFrame({
        "model": list(prep.models), "n": n.astype(np.int64), "n_scored": qn.astype(np.int64),
        "quality": quality, "quality_lo": lo, "quality_hi": hi,
        "cost_per_request": np.bincount(prep.model, prep.cost, minlength=m) / n,
        "latency_p50_ms": lat["p50"], "latency_p95_ms": lat["p95"],
        "error_rate": np.bincount(prep.model, prep.errored, minlength=m) / n,
    }).with_columns(pl.col(pl.Float64).fill_nan(None)).sort("cost_per_request", "model")


def report_from_frames(
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    settings: ReportSettings | None = None,
    *,
    workload: str = "",
    task_type: str = "generation",
    label_set: Sequence[str] = (),
) -> Report:
    """The report of items and outcome frames (the store's columns). Raises a one-line
    WorkbenchError on bad settings before computing anything."""
    settings = settings or ReportSettings()
    settings.validate()
    if outcomes.height == 0:
        raise WorkbenchError(f"workload {workload!r} has no outcomes: run or import some models "
                             "first")
    columns = settings.slice_columns
    if columns is None:
        columns = tuple(slicing_stats.available_columns(items))
    h = settings.headline
    if h.route_by in slicing_stats.SLICE_COLUMNS and h.route_by not in columns:
        columns = (*columns, h.route_by)
    if h.mix_by is not None and h.mix_by not in columns:
        columns = (*columns, h.mix_by)
    prep = prepare(items, outcomes)
    strong, options = headline.cheaper_options_prepared(prep, h, columns=columns)
    classified = failures.classify(items, outcomes, task_type=task_type, label_set=label_set,
                                   success_threshold=settings.success_threshold)
    return Report(
        workload=workload,
        n_items=items.height,
        settings=settings,
        strong=strong,
        models=model_table(prep, n_boot=h.n_boot, seed=h.seed),
        options=tuple(options),
        slice_columns=tuple(columns),
        slices=slicing_stats.breakdown_prepared(prep, columns, alpha=settings.alpha,
                                                n_boot=h.n_boot, seed=h.seed),
        failures=failures.failure_table(classified),
        prepared=prep,
    )


def build_report(store: Store, workload: str, settings: ReportSettings | None = None, *,
                 silver: str | None = None, label_set: int | str | None = None) -> Report:
    """The report of a stored workload (items with at least one outcome); with `silver` (a
    reference model) and/or `label_set` (a reviewed version), quality comes from
    `workbench.label_quality` and the report's `basis` says so."""
    settings = settings or ReportSettings()
    settings.validate()
    info = store.workload(workload)
    outcomes, basis = store.outcomes(workload), None
    if silver is not None or label_set is not None:
        from workbench.label_quality import quality_outcomes

        scored = quality_outcomes(store, workload, silver=silver, label_set=label_set)
        outcomes, basis = scored.outcomes, scored.basis.as_json()
    report = report_from_frames(
        store.recorded_items(workload), outcomes, settings,
        workload=workload, task_type=info.task_type, label_set=info.label_set)
    return replace(report, basis=basis) if basis is not None else report


def with_headline(settings: ReportSettings, **changes: Any) -> ReportSettings:
    """A copy of `settings` with headline fields changed (a page's what-if widgets)."""
    return replace(settings, headline=replace(settings.headline, **changes))
