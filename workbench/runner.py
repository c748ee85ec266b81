"""The runner: workload x models -> outcome rows (cached, resumable, cancellable).

`run` sends every item of a workload to every model and writes one outcome row per
(item, model) in small batches as results arrive, so a cancel or a kill keeps finished rows.
Each row carries a cache key (hash of the model config without secrets, the task type, the
input, the labels and the prompt template/few-shot): a row with the same key and no error is
not run again, so a re-run makes no model calls and an interrupted run resumes with only the
missing items. Per-call failures become error rows, never exceptions.

Per-model metrics over the stored rows live in `workbench.outcome_metrics` (re-exported here,
with `workbench.metrics.bootstrap_mean_ci`, for existing callers).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from workbench import fewshot, prompt_view, scoring
from workbench.errors import WorkbenchError
from workbench.metrics import bootstrap_mean_ci as bootstrap_mean_ci
from workbench.models import ModelSpec
from workbench.outcome_metrics import METRIC_COLUMNS as METRIC_COLUMNS
from workbench.outcome_metrics import model_metrics as model_metrics
from workbench.outcome_metrics import side_by_side as side_by_side
from workbench.providers.base import (
    Provider,
    ProviderError,
    Request,
    Response,
    UnknownModelError,
    get_provider,
    redact,
)
from workbench.store import Store, fetch_pl

ProgressFn = Callable[[int, int, str], None]
StopFn = Callable[[], bool]
ProviderFactory = Callable[[ModelSpec], Provider]


@dataclass(frozen=True)
class ModelRun:
    """What one model did in a run: items asked, served from cache, newly run, errors."""

    model: str
    total: int
    cached: int
    completed: int
    errors: int
    not_run: int
    seconds: float


@dataclass(frozen=True)
class RunSummary:
    """Immutable result of `run`: one ModelRun per model, and whether it was cancelled."""

    workload: str
    task_type: str
    n_items: int
    models: tuple[ModelRun, ...]
    cancelled: bool
    seconds: float
    scorer: str = field(default="")

    @property
    def calls(self) -> int:
        """Provider calls made (items newly run, including those that errored)."""
        return sum(m.completed for m in self.models)

    @property
    def cached(self) -> int:
        """Items served from cached outcome rows."""
        return sum(m.cached for m in self.models)

    @property
    def errors(self) -> int:
        """Newly written error rows."""
        return sum(m.errors for m in self.models)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "workload": self.workload, "task_type": self.task_type, "n_items": self.n_items,
            "cancelled": self.cancelled, "seconds": round(self.seconds, 3),
            "scorer": self.scorer, "models": [m.__dict__ for m in self.models],
        }


# -- cache keys --------------------------------------------------------------------------------


def _identity(config: ModelSpec, task_type: str) -> dict[str, Any]:
    ident = dict(config.cache_identity())
    for k in list(ident):
        if "key" in k.lower() and k != "model":  # belt and braces: never hash secrets
            ident.pop(k)
    return {
        "model": ident,
        "task_type": task_type,
        "template": config.templates.get(task_type),
        "few_shot": [list(p) for p in config.few_shot.get(task_type, [])],
    }


def cache_keys(
    config: ModelSpec,
    task_type: str,
    inputs: Sequence[str],
    messages: Sequence[Any],
    labels: Sequence[Sequence[str] | None],
    examples: Sequence[Sequence[tuple[str, str]] | None] | None = None,
) -> list[str]:
    """sha256 per item of (config identity without secrets, task type, template/few-shot,
    input, messages, labels, and the item's own few-shot examples when it has them)."""
    prefix = hashlib.sha256(
        json.dumps(_identity(config, task_type), sort_keys=True, default=str).encode()
    )
    per_item = list(examples) if examples is not None else [None] * len(inputs)
    keys = []
    for inp, msg, labs, ex in zip(inputs, messages, labels, per_item, strict=True):
        h = prefix.copy()
        h.update(json.dumps([inp, msg, list(labs) if labs else None], default=str).encode())
        if ex is not None:  # only then, so runs without drawn examples keep their keys
            h.update(json.dumps([list(p) for p in ex]).encode())
        keys.append(h.hexdigest())
    return keys


def cache_key(
    config: ModelSpec,
    task_type: str,
    input: str,
    labels: Sequence[str] | None = None,
    messages: Any = None,
) -> str:
    """The cache key of one item (see `cache_keys`)."""
    return cache_keys(config, task_type, [input], [messages], [labels])[0]


# -- running -----------------------------------------------------------------------------------


def _round_probs(probs: Mapping[str, float] | None) -> dict[str, float] | None:
    if not probs:
        return None
    return {str(k): round(float(v), 5) for k, v in probs.items()}


class _Writer:
    """Buffers finished rows and writes them to the store in small, scored batches."""

    def __init__(self, store: Store, workload: str, task_type: str, model: str,
                 scorer: scoring.Scorer, label_set: Sequence[str] | None,
                 batch_size: int, flush_s: float) -> None:
        self.store, self.workload, self.task_type, self.model = store, workload, task_type, model
        self.scorer, self.label_set = scorer, label_set
        self.batch_size, self.flush_s = batch_size, flush_s
        self.rows: list[dict[str, Any]] = []
        self.refs: list[Any] = []
        self.inputs: list[str] = []
        self.last_flush = time.monotonic()
        self.written = 0
        self.errors = 0

    def add(self, item_id: str, key: str, reference: Any, input_text: str, resp: Response) -> None:
        signals = dict(resp.signals or {})
        probs = _round_probs(resp.label_probs)
        if probs:
            signals["label_probs"] = probs
        if resp.error:
            signals["error_message"] = redact(resp.error_message or resp.error)
            self.errors += 1
        conf = resp.confidence
        if conf is not None and not math.isfinite(conf):
            conf = None
        self.rows.append({
            "item_id": item_id, "model": self.model,
            "output": None if resp.error else resp.output,
            "cost_usd": float(resp.cost_usd or 0.0), "latency_ms": float(resp.latency_ms or 0.0),
            "prompt_tokens": int(resp.prompt_tokens or 0),
            "completion_tokens": int(resp.completion_tokens or 0),
            "error": resp.error, "confidence": None if conf is None else float(conf),
            "signals": json.dumps(signals, default=str), "cache_key": key,
        })
        self.refs.append(reference)
        self.inputs.append(input_text)
        if (len(self.rows) >= self.batch_size
                or time.monotonic() - self.last_flush >= self.flush_s):
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.rows:
            return
        outputs = [r["output"] for r in self.rows]
        quality = score_outputs(self.task_type, outputs, self.refs, self.scorer,
                                labels=self.label_set, inputs=self.inputs)
        frame = pl.DataFrame(
            self.rows,
            schema={
                "item_id": pl.String, "model": pl.String, "output": pl.String,
                "cost_usd": pl.Float64, "latency_ms": pl.Float64, "prompt_tokens": pl.Int32,
                "completion_tokens": pl.Int32, "error": pl.String, "confidence": pl.Float64,
                "signals": pl.String, "cache_key": pl.String,
            },
        ).with_columns(pl.Series("quality", quality, dtype=pl.Float64).fill_nan(None))
        self.written += self.store.write_outcomes(self.workload, frame)
        self.rows, self.refs, self.inputs = [], [], []


def _register_variants(store: Store, specs: Sequence[ModelSpec]) -> None:
    """Few-shot variants (`<model>+fs-...`, named by `fewshot.with_source`) enter the data
    directory's catalog, so tuning and export describe them as they ran, not as bare names."""
    if not specs:
        return
    from workbench.catalog import Catalog

    catalog = Catalog(store.path.parent)
    known = set(catalog.names())
    for spec in specs:
        if spec.name not in known:
            catalog.add(spec, fill_prices=False)


def score_outputs(
    task_type: str,
    outputs: Sequence[str | None],
    references: Sequence[Any],
    scorer: str | scoring.Scorer | None = None,
    **options: Any,
) -> np.ndarray:
    """Quality per output in [0, 1]: a missing output (error) scores 0; an answer to an item
    without a reference is unscored (NaN, stored as null) unless the scorer is a judge."""
    chosen = scoring.get_scorer(scorer or scoring.default_scorer(task_type))
    q = chosen(list(outputs), [r if r is not None else "" for r in references], **options)
    if chosen.needs_reference:
        unscored = np.array([r is None and o is not None for o, r in zip(outputs, references,
                                                                         strict=True)])
        q = np.where(unscored, np.nan, q)
    return q


class _ModelJob:
    """One model's share of a run: find cached items, run the rest, write rows in batches."""

    def __init__(self, store: Store, workload: str, task_type: str, config: ModelSpec,
                 scorer: scoring.Scorer, label_set: list[str] | None, ids: list[str],
                 inputs: list[str], refs: list[Any], messages: list[Any],
                 item_labels: list[tuple[str, ...] | None], batch_size: int,
                 flush_s: float, examples: list[fewshot.Examples] | None = None) -> None:
        self.store, self.workload, self.task_type, self.config = store, workload, task_type, config
        self.ids, self.inputs, self.refs = ids, inputs, refs
        self.messages, self.item_labels = messages, item_labels
        self.examples = examples  # per item, drawn from the config's few_shot_source
        self.writer = _Writer(store, workload, task_type, config.name, scorer, label_set,
                              batch_size, flush_s)
        self.finished: set[int] = set()

    def execute(self, provider_factory: ProviderFactory, stop: StopFn,
                progress: ProgressFn | None, done: int, total: int) -> ModelRun:
        t0 = time.monotonic()
        n = len(self.ids)
        keys = cache_keys(self.config, self.task_type, self.inputs, self.messages,
                          self.item_labels, self.examples)
        cached_mask = _cached(self.store, self.workload, self.config.name, self.ids, keys)
        pending = [i for i in range(n) if not cached_mask[i]]
        done += n - len(pending)
        if progress:
            progress(done, total, self.config.name)

        def finish(j: int, resp: Response) -> None:
            nonlocal done
            if j in self.finished:
                return
            i = pending[j]
            self.writer.add(self.ids[i], keys[i], self.refs[i], self.inputs[i], resp)
            self.finished.add(j)
            done += 1
            if progress:
                progress(done, total, self.config.name)

        if pending:
            requests = [
                Request(item_id=self.ids[i], task_type=self.task_type, input=self.inputs[i],
                        labels=self.item_labels[i], messages=self.messages[i],
                        few_shot=None if self.examples is None else self.examples[i])
                for i in pending
            ]
            try:
                provider = provider_factory(self.config)
                provider.complete_many(requests, on_result=finish, should_stop=stop)
            except UnknownModelError:
                self.writer.flush()
                raise
            except Exception as exc:  # noqa: BLE001 - per-model failures become error rows
                if isinstance(exc, WorkbenchError) and not isinstance(exc, ProviderError):
                    self.writer.flush()
                    raise
                # The model failed as a whole (server gone, load failure): every request
                # without a result becomes an error row so the run ends and can be resumed.
                failure = Response.failure(exc)
                for j in range(len(pending)):
                    finish(j, failure)
            self.writer.flush()
        return ModelRun(self.config.name, n, n - len(pending), len(self.finished),
                        self.writer.errors, len(pending) - len(self.finished),
                        time.monotonic() - t0)


def run(
    store: Store,
    workload: str,
    configs: Sequence[ModelSpec | str],
    *,
    limit: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    scorer: str | scoring.Scorer | None = None,
    provider_factory: ProviderFactory = get_provider,
    batch_size: int = 8,
    flush_s: float = 2.0,
    item_ids: Sequence[str] | None = None,
) -> RunSummary:
    """Run every item of `workload` (the first `limit` by item id, or the `item_ids` given,
    e.g. a `workbench.slices` sample) on every model; write
    outcome rows as results arrive. Cached rows are skipped; `should_stop()` is polled between
    items; `progress(done, total, model)` counts cached and finished items over all models.
    Models are ModelSpecs or catalog names (looked up in the store's data directory).
    An unknown model raises UnknownModelError before any row of it is written."""
    if not configs:
        raise WorkbenchError("choose at least one model to run")
    if any(isinstance(c, str) for c in configs):
        from workbench.catalog import resolve_specs  # names are looked up in this home

        configs = resolve_specs(configs, store.path.parent)
    configs = [c for c in configs if isinstance(c, ModelSpec)]
    _register_variants(store, [c for c in configs if c.few_shot_source is not None])
    names = [c.name for c in configs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise WorkbenchError(f"model(s) listed twice: {', '.join(dupes)}")
    started = time.monotonic()
    info = store.workload(workload)
    task_type = info.task_type
    chosen = scoring.get_scorer(scorer or scoring.default_scorer(task_type))
    if item_ids is not None:
        wanted = list(dict.fromkeys(str(i) for i in item_ids))
        items = store.items(workload).filter(pl.col("item_id").is_in(wanted))
        if items.height < len(wanted):
            absent = sorted(set(wanted) - set(items["item_id"].to_list()))
            raise WorkbenchError(f"{len(absent)} item id(s) not in workload {workload!r}, "
                                 f"e.g. {absent[0]!r}")
    else:
        items = store.items(workload, limit=limit)
    label_set = list(info.label_set) or None
    ids = items["item_id"].to_list()
    inputs = items["input"].to_list()
    refs = items["reference"].to_list()
    messages = [prompt_view.parse_messages(m) for m in items["messages"].to_list()]
    item_labels = [prompt_view.item_labels(task_type, label_set or (), x)
                   for x in items["labels"].to_list()]
    # Few-shot examples drawn from workloads are resolved for every model before the first
    # call, so a bad source fails with one line and writes nothing.
    drawn = {
        c.name: fewshot.examples_for_items(
            store, c.few_shot_source, workload=workload, labels=label_set, item_ids=ids,
            inputs=inputs, messages=messages)
        for c in configs if c.few_shot_source is not None
    }
    n = len(ids)
    total = n * len(configs)
    done = 0
    stop = should_stop or (lambda: False)
    runs: list[ModelRun] = []
    cancelled = False

    for config in configs:
        if cancelled or stop():
            cancelled = True
            runs.append(ModelRun(config.name, n, 0, 0, 0, n, 0.0))
            continue
        job = _ModelJob(store, workload, task_type, config, chosen, label_set, ids, inputs,
                        refs, messages, item_labels, batch_size, flush_s,
                        drawn.get(config.name))
        model_run = job.execute(provider_factory, stop, progress, done, total)
        done += model_run.cached + model_run.completed
        cancelled = model_run.not_run > 0
        runs.append(model_run)

    return RunSummary(workload, task_type, n, tuple(runs), cancelled,
                      time.monotonic() - started, chosen.name)


def _cached(store: Store, workload: str, model: str, ids: Sequence[str],
            keys: Sequence[str]) -> np.ndarray:
    """Mask of items whose stored outcome for `model` has the same key and no error."""
    with store.session() as cur:
        have = fetch_pl(
            cur,
            "SELECT item_id, cache_key FROM outcomes WHERE workload = ? AND model = ? "
            "AND error IS NULL AND cache_key IS NOT NULL",
            [workload, model],
        )
    want = pl.DataFrame({"item_id": list(ids), "cache_key": list(keys)},
                        schema={"item_id": pl.String, "cache_key": pl.String})
    hit = want.join(have.with_columns(pl.lit(True).alias("hit")), on=["item_id", "cache_key"],
                    how="left", maintain_order="left")
    return hit["hit"].fill_null(False).to_numpy()


def rescore(
    store: Store,
    workload: str,
    models: Sequence[str] | None = None,
    scorer: str | scoring.Scorer | None = None,
    **options: Any,
) -> int:
    """Score stored outcomes again (e.g. with another scorer or a judge) without calling the
    models; writes the new quality into the rows and returns how many were rescored."""
    info = store.workload(workload)
    chosen = scoring.get_scorer(scorer or scoring.default_scorer(info.task_type))
    out = store.outcomes(workload, models)
    if out.height == 0:
        return 0
    items = store.items(workload).select("item_id", "input", "reference")
    joined = out.join(items, on="item_id", how="left")
    quality = score_outputs(info.task_type, joined["output"].to_list(),
                            joined["reference"].to_list(), chosen,
                            labels=list(info.label_set) or None,
                            inputs=joined["input"].to_list(), **options)
    frame = joined.drop("input", "reference").with_columns(
        pl.Series("quality", quality, dtype=pl.Float64).fill_nan(None))
    if frame.schema.get("signals") != pl.String:
        frame = frame.with_columns(pl.col("signals").cast(pl.String))
    return store.write_outcomes(workload, frame.drop("created", strict=False))
