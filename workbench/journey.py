"""The first-run journey (Home page): load samples -> run local models on a slice -> compose a
policy -> tune it -> export it. Each step is one call with sensible defaults and no API key:
without keys the two tiers are two quantization levels of the bundled model (Q3_K_M re-quantized
here, and the shipped Q4_K_M), the comparison issue 3 asks teams to make anyway."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench import compose, settings
from workbench.catalog import BUNDLED_MODEL_NAME, Catalog
from workbench.errors import WorkbenchError
from workbench.models import ModelSpec
from workbench.policy import Policy
from workbench.store import Store

WORKLOAD = "support-triage"
SLICE = 40
CHEAP_QTYPE = "Q3_K_M"
CHEAP_NAME = f"{BUNDLED_MODEL_NAME}-{CHEAP_QTYPE.lower()}"
STARTER_POLICY = "starter-policy"
TUNED_POLICY = "starter-policy-tuned"


@dataclass(frozen=True)
class StepState:
    """Where the user stands: which steps are done, with a one-line summary each."""

    samples: bool
    runs: bool
    policy: bool
    tuned: bool
    run_models: tuple[str, ...]


def state(store: Store, catalog: Catalog) -> StepState:
    """Which journey steps are done on this data directory."""
    has_wl = store.exists(WORKLOAD)
    models = tuple(store.models_of(WORKLOAD)) if has_wl else ()
    names = {p.name for p in catalog.list_policies()}
    return StepState(has_wl, len(models) >= 2, STARTER_POLICY in names, TUNED_POLICY in names,
                     models)


def ensure_cheap_model(catalog: Catalog, home: str | Path | None = None) -> ModelSpec:
    """The bundled model re-quantized to Q3_K_M, registered once (a second, cheaper tier that
    needs no API key)."""
    if CHEAP_NAME in catalog.names():
        return catalog.get(CHEAP_NAME)
    from workbench.providers.quantize import requantize

    source = catalog.get(BUNDLED_MODEL_NAME)
    out_dir = settings.home(home) / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / (re.sub(r"[^A-Za-z0-9._-]+", "_", CHEAP_NAME) + ".gguf")
    path = Path(requantize(source.model, target, CHEAP_QTYPE, overwrite=True))
    return catalog.add(source.replace(name=CHEAP_NAME, model=str(path)))


def journey_models(catalog: Catalog, home: str | Path | None = None) -> list[ModelSpec]:
    """The models step 2 runs: the cheap re-quantized tier and the bundled model."""
    catalog.ensure_defaults()
    if BUNDLED_MODEL_NAME not in catalog.names():
        raise WorkbenchError(f"the bundled model {BUNDLED_MODEL_NAME!r} was deleted from the "
                             "catalog; add a local GGUF model on the Models page")
    return [ensure_cheap_model(catalog, home), catalog.get(BUNDLED_MODEL_NAME)]


def estimate_seconds(store: Store | None = None, n_items: int = SLICE,
                     n_models: int = 2) -> tuple[float, float]:
    """A (low, high) range for step 2's wall time: from the local models' latencies measured on
    this machine when any are recorded (a busy machine is slower: high = 3x), else from the
    bundled model's range on 2 idle cores (0.11-0.3 s per item), plus loading."""
    per_item: float | None = None
    if store is not None:
        with store.session() as cur:
            row = cur.execute(
                "SELECT median(latency_ms) / 1000.0 FROM outcomes WHERE model IN (?, ?) "
                "AND latency_ms > 0", [CHEAP_NAME, BUNDLED_MODEL_NAME]).fetchone()
        per_item = float(row[0]) if row and row[0] is not None else None
    if per_item is None:
        low, high = 0.11, 0.3
    else:
        low, high = per_item, per_item * 3
    n = n_items * n_models
    return n * low + 5.0, n * high + 15.0


def run_slice(store: Store, catalog: Catalog, *, limit: int = SLICE,
              progress: Callable[[int, int, str], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              home: str | Path | None = None):  # noqa: ANN201 - RunSummary
    """Step 2: run both local tiers on the first `limit` support-triage items (cached)."""
    from workbench.runner import run

    if not store.exists(WORKLOAD):
        raise WorkbenchError("load the sample workloads first (step 1)")
    if progress is not None and CHEAP_NAME not in catalog.names():
        progress(0, 0, f"re-quantizing the bundled model to {CHEAP_QTYPE} (once, about 10 s)")
    models = journey_models(catalog, home)
    if progress is not None:
        from workbench.local_cost import measure_first

        # a model not measured on this machine yet is timed once (its speed sets its cost)
        measure_first(models, home, lambda m: progress(0, 0, m))
        progress(0, 0, "loading the local models")
    return run(store, WORKLOAD, models, limit=limit, progress=progress, should_stop=should_stop)


def starter_policy(store: Store, catalog: Catalog) -> Policy:
    """Step 3: cheapest recorded model first, escalate to the best when its label probability
    is below 0.6; PII may only reach models tagged `local`."""
    from workbench.replay import replay

    outcomes = store.outcomes(WORKLOAD)
    summaries = compose.summarize(outcomes)
    if len(summaries) < 2:
        raise WorkbenchError("run the models first (step 2): a policy needs recorded outcomes "
                             "of at least two models")
    tiers = compose.default_tiers(summaries)
    if len(tiers) < 2:  # the cheapest is also the best here: still show a two-tier cascade
        tiers = [summaries[0].name, summaries[-1].name]
    specs = compose.model_specs(store, WORKLOAD, catalog.list_models())
    policy = compose.compose(specs, tiers, [0.6], name=STARTER_POLICY,
                             pii_allowed_tags=["local"], verifier="valid_label")
    metrics = replay(policy, store.recorded_items(WORKLOAD), outcomes).metrics
    catalog.save_policy(STARTER_POLICY, policy.to_yaml(), workload=WORKLOAD,
                        metrics=metrics.as_dict())
    return policy


def tune_starter(store: Store, catalog: Catalog, *, trials: int = 60,
                 progress: Callable | None = None, should_stop: Callable[[], bool] | None = None,
                 home: str | Path | None = None):  # noqa: ANN201 - TuneResult
    """Step 4: cheapest policy keeping 95% of the best model's quality, tuned on 70% of the
    run items and judged on the other 30%; the best trial is saved with its provenance."""
    from workbench import tune as tn
    from workbench.export import with_provenance

    base = Policy.from_yaml(catalog.get_policy(STARTER_POLICY).body)
    settings = tn.StudySettings.create("min-cost", quality_floor="95%", trials=trials,
                                       holdout=0.3, seed=0)
    result = tn.tune(store, WORKLOAD, base, settings, progress=progress,
                     should_stop=should_stop, home=home)
    tuned = with_provenance(
        result.best_policy.model_copy(update={"name": TUNED_POLICY}), workload=WORKLOAD,
        workload_fingerprint=store.workload(WORKLOAD).fingerprint, study=result.study_name,
        trial=result.best_trial, train_metrics=result.train, holdout_metrics=result.holdout)
    catalog.save_policy(TUNED_POLICY, tuned.to_yaml(), workload=WORKLOAD,
                        metrics={"train": result.train, "holdout": result.holdout})
    return result
