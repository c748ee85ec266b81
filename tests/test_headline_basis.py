"""The headline without gold labels: a team's traffic with a cheap and a strong model's answers
and no references gets the share it can move on agreement with the strong model, said as such,
and reviews correct it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from streamlit.testing.v1 import AppTest

from workbench.reviews import save_review
from workbench.store import Store, open_store

ROOT = Path(__file__).resolve().parents[1]
N = 300
LABELS = ("billing", "shipping", "refund")


def traffic(store: Store, name: str = "week") -> None:
    """A week of traffic: no references; the cheap model agrees with the strong one on public
    requests 95% of the time and on 'pii' ones 50%."""
    rng = np.random.default_rng(11)
    pii = np.arange(N) % 5 == 0
    strong = rng.choice(LABELS, N)
    agree = np.where(pii, rng.uniform(size=N) < 0.5, rng.uniform(size=N) < 0.95)
    cheap = np.where(agree, strong, np.roll(strong, 1))
    store.add_workload_frame(name, pl.DataFrame({
        "item_id": [str(i) for i in range(N)],
        "input": [f"request {i}" for i in range(N)],
        "data_class": np.where(pii, "pii", "public").tolist(),
    }), task_type="classification", source="test", label_set=LABELS)
    store.write_outcomes(name, pl.DataFrame({
        "item_id": [str(i) for i in range(N)] * 2,
        "model": ["cheap"] * N + ["strong"] * N,
        "output": np.concatenate([cheap, strong]).tolist(),
        "quality": [None] * (2 * N),
        "cost_usd": [0.0001] * N + [0.004] * N,
        "latency_ms": [60.0] * N + [900.0] * N,
        "confidence": rng.uniform(0.5, 1.0, 2 * N),
    }, schema_overrides={"quality": pl.Float64}))


def _compare(home: Path) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_without_references_the_headline_is_agreement_with_the_strong_model(home: Path) -> None:
    store = open_store(home)
    traffic(store)
    at = _compare(home)
    basis = at.selectbox(key="cmp_headline_basis")
    assert basis.options == ["agreement with strong", "agreement with cheap"]  # no references
    assert basis.value == "agreement with strong"
    sentence = next(i.value for i in at.info if "per month" in i.value)
    # the public 80% moves to the cheap model; the pii slice, where it disagrees, stays
    assert sentence.startswith("80% of requests") and "by cheap, 40.0x cheaper than strong, " \
        "on data_class public" in sentence, sentence
    assert any(c.value == "Quality here is agreement with strong, not accuracy." for c in at.caption)
    # the per-model table above is on the same basis: every model scored, strong by itself 1.0
    table = next(d.value for d in at.dataframe if "quality 95% CI" in d.value.columns)
    quality = dict(zip(table["model"], table["quality"], strict=True))
    assert quality["strong"] == 1.0 and 0.7 < quality["cheap"] < 0.95, quality
    assert any(c.value.endswith("Quality here is agreement with strong, not accuracy.")
               and c.value.startswith("Quality with a 95% bootstrap interval") for c in at.caption)
    flagged = next(d.value for d in at.dataframe if "q_value" in d.value.columns)
    assert ("data_class", "pii", "cheap") in set(zip(flagged["column"], flagged["slice"],
                                                     flagged["model"], strict=True))
    assert all(not c.key.endswith("_reviews") for c in at.checkbox)  # nothing reviewed yet


def test_reviews_correct_the_silver_basis(home: Path) -> None:
    store = open_store(home)
    traffic(store)
    out = store.outcomes("week")
    wrong = out.filter(pl.col("model") == "strong").row(0, named=True)
    save_review(store, "week", wrong["item_id"], reviewer="ana", model="strong", verdict=False)
    at = _compare(home)
    box = at.checkbox(key="cmp_headline_reviews")
    assert box.value and box.label == "Correct with reviewed labels (version 1)"
    assert any(c.value.startswith("Quality here is agreement with strong, not accuracy; "
                                  "corrected by ") for c in at.caption), \
        [c.value for c in at.caption]
