"""The Tune page opens on the last study of the workload (Home's, or another session's): a
stored study reopens as the same result, rebuilt from its trials without running any."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from workbench import tune as tn
from workbench.catalog import Catalog
from workbench.errors import WorkbenchError
from workbench.store import Store, open_store
from workbench.tune.reopen import reopen
from workbench.workloads.samples import load_samples

ROOT = Path(__file__).resolve().parents[1]


def _recorded(home: Path) -> Store:
    """support-triage with seeded outcomes of a cheap, confident-when-right model and a
    strong one."""
    store = open_store(home)
    load_samples(store, names=["support-triage"])
    ids = store.items("support-triage")["item_id"].to_list()
    rng = np.random.default_rng(3)
    conf = rng.uniform(0, 1, len(ids))
    cheap_q = (rng.uniform(0, 1, len(ids)) < 0.3 + 0.7 * conf).astype(float)
    strong_q = (rng.uniform(0, 1, len(ids)) < 0.95).astype(float)
    store.write_outcomes("support-triage", pl.DataFrame({
        "item_id": ids * 2, "model": ["cheap"] * len(ids) + ["strong"] * len(ids),
        "output": ["billing"] * (2 * len(ids)),
        "quality": np.concatenate([cheap_q, strong_q]),
        "cost_usd": [0.0001] * len(ids) + [0.002] * len(ids),
        "latency_ms": [50.0] * len(ids) + [900.0] * len(ids),
        "confidence": np.concatenate([conf, np.full(len(ids), 0.99)]),
    }))
    return store


def _tuned(home: Path, store: Store) -> tn.TuneResult:
    settings = tn.StudySettings.create("min-cost", quality_floor="95%", trials=25, seed=4)
    return tn.tune(store, "support-triage", None, settings, home=home)


def test_a_stored_study_reopens_as_the_same_result(home: Path) -> None:
    store = _recorded(home)
    first = _tuned(home, store)
    entry = Catalog(home).list_studies("support-triage")[0]
    assert entry.name == first.study_name
    again = reopen(store, entry.storage, entry.name, home=home)
    assert again.n_trials == first.n_trials == 25  # no trial was run
    assert again.best_trial == first.best_trial
    def bare(p: object) -> object:  # provenance's creation time is the report's own
        return p.model_copy(update={"provenance": None})  # type: ignore[attr-defined]

    assert bare(again.best_policy) == bare(first.best_policy)
    assert again.best_policy.provenance.study == first.study_name
    assert again.holdout == first.holdout and again.train == first.train
    assert Catalog(home).list_studies("support-triage")[0].name == entry.name  # not re-recorded
    with pytest.raises(WorkbenchError, match="no study 'nope'"):
        reopen(store, entry.storage, "nope", home=home)
    store.delete_workload("support-triage")
    with pytest.raises(WorkbenchError, match="no longer stored"):
        reopen(store, entry.storage, entry.name, home=home)


def test_tune_page_opens_on_the_last_study(home: Path) -> None:
    store = _recorded(home)
    first = _tuned(home, store)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("pages/tune.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"Showing the last study on support-triage: {first.study_name}" in i.value
               for i in at.info), [i.value for i in at.info]
    assert any(h.value == f"Best policy (study {first.study_name})" for h in at.subheader)
    labels = {m.label: m.value for m in at.metric}
    assert labels["Holdout quality"] == f"{first.holdout['quality']:.3f}"
    assert labels["Holdout items"] == str(first.holdout["n"])
