"""Sample counts in the search space: a run with n draws gives derived `<model>@vote<k>`
models that equal a real run with k draws (same seed), and the tuner can pick one, exporting
`samples: k`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.servers import bundled_model_path
from workbench import tune as tn
from workbench.consistency import majority
from workbench.models import ModelSpec
from workbench.runner import run
from workbench.store import Store
from workbench.tune.variants import counts_for, variant_name, variant_specs, vote_variants
from workbench.workloads.samples import load_samples

LABELS = ["a", "b", "c"]


def test_counts_offered_exclude_a_single_draw() -> None:
    assert counts_for(9) == [3, 4, 5, 7]
    assert counts_for(2) == []
    assert counts_for(3) == []  # only n//2 = 1, which is not sampling
    assert counts_for(5) == [2, 3]


def _sampled_store(tmp_path: Path, n_items: int = 300, n: int = 9, seed: int = 3) -> Store:
    """Label task: 'local' records n draws from a per-item distribution (its vote share is
    informative), 'strong' is right 95% of the time at 20x the price."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n_items)
    ids = [f"t{i}" for i in range(n_items)]
    s = Store(tmp_path / "workbench.duckdb")
    s.add_workload_frame("lab", pl.DataFrame({
        "item_id": ids, "input": [f"ticket {i}" for i in range(n_items)],
        "reference": [LABELS[t] for t in truth]}), task_type="classification", source="test")
    rows = []
    for i, t in enumerate(truth):
        sharp = rng.random() < 0.5  # half the items are easy for the local model
        p = np.full(3, 0.05 if sharp else 0.3)
        p[t if sharp or rng.random() < 0.5 else (t + 1) % 3] += 1.0
        p /= p.sum()
        draws = [LABELS[j] for j in rng.choice(3, n, p=p)]
        vote = majority(draws, "label")
        rows.append({"item_id": ids[i], "model": "local", "output": vote.answer,
                     "quality": float(vote.answer == LABELS[t]), "cost_usd": 0.0001,
                     "latency_ms": 50.0, "confidence": vote.share,
                     "signals": json.dumps({"self_consistency": "label_probs", "samples": draws,
                                            "vote_on": "label"})})
        strong_right = rng.random() < 0.95
        rows.append({"item_id": ids[i], "model": "strong",
                     "output": LABELS[t] if strong_right else LABELS[(t + 1) % 3],
                     "quality": float(strong_right), "cost_usd": 0.002, "latency_ms": 900.0,
                     "confidence": None, "signals": "{}"})
    s.write_outcomes("lab", pl.DataFrame(rows))
    return s


def test_variants_recount_the_vote_and_rescore(tmp_path: Path) -> None:
    s = _sampled_store(tmp_path)
    out = s.outcomes("lab")
    extra = vote_variants(s.items("lab"), out, "classification", LABELS)
    assert sorted(extra["model"].unique().to_list()) == [variant_name("local", k)
                                                         for k in (3, 4, 5, 7)]
    base = out.filter(pl.col("model") == "local").sort("item_id")
    v3 = extra.filter(pl.col("model") == "local@vote3").sort("item_id")
    refs = dict(zip(*s.items("lab").select("item_id", "reference"), strict=True))
    for b, v in zip(base.iter_rows(named=True), v3.iter_rows(named=True), strict=True):
        draws = json.loads(b["signals"])["samples"][:3]
        vote = majority(draws, "label")
        assert v["output"] == vote.answer and v["confidence"] == pytest.approx(vote.share)
        assert v["quality"] == float(vote.answer == refs[v["item_id"]])
        assert v["cost_usd"] == b["cost_usd"]  # label draws: one scoring pass whatever k
    assert vote_variants(s.items("lab"), out.filter(pl.col("model") == "strong"),
                         "classification").height == 0
    spec = variant_specs(["local@vote5"], {"local": ModelSpec(name="local", model="m",
                                                             samples=9)})["local@vote5"]
    assert spec.samples == 5 and spec.name == "local@vote5"
    s.close()


def test_tuner_searches_sample_counts(tmp_path: Path) -> None:
    """With sampled runs recorded, the default study offers the derived models as tiers; the
    chosen policy's models carry the sample count it was tuned with."""
    s = _sampled_store(tmp_path)
    res = tn.tune(s, "lab", None, tn.StudySettings.create(
        "min-cost", quality_floor="95%", trials=40, storage=tn.IN_MEMORY, study_name="v"),
        home=tmp_path, record=False)
    singles = set(res.singles["model"].to_list())
    assert {"local@vote3", "local@vote5", "local@vote7"} <= singles
    for tier in res.best_policy.tiers:
        spec = res.best_policy.models[tier.model]
        if "@vote" in tier.model:
            assert spec.samples == int(tier.model.rsplit("@vote", 1)[1])
    assert res.holdout["cost_per_request"] < 0.002  # cheaper than the strong model alone
    s.close()


def test_derived_count_equals_a_real_run_with_fewer_draws(tmp_path: Path) -> None:
    """On the bundled model: the vote over the first 3 of 9 recorded draws is what a run with
    samples=3 and the same seed answers, item by item (answer and confidence)."""
    s = Store(tmp_path / "workbench.duckdb")
    load_samples(s, ["support-triage"])
    base = ModelSpec(name="g", kind="local-gguf", model=str(bundled_model_path()),
                     samples=9, sample_temperature=0.8, seed=11)
    run(s, "support-triage", [base], limit=8)
    run(s, "support-triage", [base.replace(name="g3", samples=3)], limit=8)
    info = s.workload("support-triage")
    out = s.outcomes("support-triage")
    derived = vote_variants(s.items("support-triage"), out.filter(pl.col("model") == "g"),
                            info.task_type, info.label_set)
    mine = derived.filter(pl.col("model") == "g@vote3").sort("item_id")
    real = out.filter(pl.col("model") == "g3").sort("item_id")
    assert mine.height == real.height == 8
    assert mine["output"].to_list() == real["output"].to_list()
    assert mine["confidence"].to_list() == pytest.approx(real["confidence"].to_list())
    assert mine["quality"].to_list() == real["quality"].to_list()
    s.close()
