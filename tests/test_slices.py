"""Slices that represent the workload: numeric ids in numeric order, a seeded sample
stratified by label (or difficulty, or tag) by default, and a warning naming missed labels."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import WorkbenchError
from workbench.slices import auto_stratum, choose, natural_order

INTENTS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "balance_not_updated",
           "declined_card_payment", "pending_top_up"]


def _banking_like(n_per: tuple[int, ...] = (10, 7, 3, 15, 12, 13)) -> pl.DataFrame:
    """A team's CSV: numeric ids, grouped by intent (as the first-N slice found them)."""
    refs = [INTENTS[k] for k, c in enumerate(n_per) for _ in range(c)]
    return pl.DataFrame({"item_id": [str(i) for i in range(len(refs))], "input": refs,
                         "reference": refs})


def test_numeric_ids_sort_as_numbers() -> None:
    ids = pl.Series(["10", "2", "1", "b", "a", "0"])
    assert natural_order(ids).to_list() == ["0", "1", "2", "10", "a", "b"]
    first = choose(_banking_like(), 5, mode="first")
    assert first.item_ids == ("0", "1", "2", "3", "4")
    assert first.description == "the first 5 items by id"


def test_default_slice_covers_every_label() -> None:
    items = _banking_like()
    s = choose(items, 20, task_type="classification")
    assert s.by == "label" and len(s.item_ids) == 20
    assert not s.missing and s.warning is None
    assert "stratified by label (seed 0), covering 6 of 6 label values" in s.description
    got = items.filter(pl.col("item_id").is_in(list(s.item_ids)))["reference"]
    assert got.n_unique() == 6
    assert choose(items, 20, task_type="classification") == s  # seeded: the same slice
    assert choose(items, 20, task_type="classification", seed=1).item_ids != s.item_ids


def test_too_small_a_slice_names_the_labels_it_misses() -> None:
    s = choose(_banking_like(), 4, task_type="classification")
    assert len(s.missing) == 2
    assert s.warning is not None and "misses 2 label value(s)" in s.warning
    assert all(m in s.warning for m in s.missing)
    first = choose(_banking_like(), 20, mode="first")
    assert first.by is None and first.warning is None


def test_stratum_choice_and_bad_input() -> None:
    items = _banking_like().with_columns(difficulty=pl.lit("easy"))
    assert auto_stratum(items, "classification") == "label"
    assert auto_stratum(items.drop("reference"), "generation") is None  # nothing varies
    hard = items.with_columns(difficulty=pl.Series(["easy", "hard"] * 30))
    assert auto_stratum(hard, "generation") == "difficulty"
    with pytest.raises(WorkbenchError, match="unknown slice mode 'sideways'"):
        choose(items, 3, mode="sideways")
    with pytest.raises(WorkbenchError, match="at least 1 item"):
        choose(items, 0)
    with pytest.raises(WorkbenchError, match="unknown stratum 'colour'"):
        choose(items, 3, by="colour")


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=8), n=st.integers(1, 120),
       seed=st.integers(0, 5))
def test_stratified_slice_properties(sizes: list[int], n: int, seed: int) -> None:
    """Exactly min(n, items) distinct items; every label covered when n >= labels; each
    label's count within one of its proportional share unless capped by its size."""
    items = _banking_like(tuple(sizes)) if len(sizes) <= 6 else pl.DataFrame({
        "item_id": [str(i) for i in range(sum(sizes))],
        "input": ["x"] * sum(sizes),
        "reference": [f"l{k}" for k, c in enumerate(sizes) for _ in range(c)]})
    s = choose(items, n, by="label", seed=seed)
    want = min(n, items.height)
    assert len(s.item_ids) == len(set(s.item_ids)) == want
    if want >= len(sizes):
        assert not s.missing
    counts = items.filter(pl.col("item_id").is_in(list(s.item_ids)))["reference"] \
        .value_counts()
    got = dict(zip(counts["reference"].to_list(), counts["count"].to_list(), strict=True))
    assert sum(got.values()) == want
    assert list(s.item_ids) == natural_order(pl.Series(list(s.item_ids))).to_list()
    assert np.all(np.array(list(got.values())) >= 1)


def test_runner_takes_a_slice_and_names_unknown_ids(tmp_path) -> None:  # noqa: ANN001
    """`run(item_ids=...)` runs exactly the slice; an id not in the workload is a one-line
    error before any call (nothing written)."""
    from tests.servers import bundled_model_path
    from workbench.models import ModelSpec
    from workbench.runner import run
    from workbench.store import Store

    s = Store(tmp_path / "w.duckdb")
    items = _banking_like((2, 2, 2, 0, 0, 0)).filter(pl.col("reference").is_not_null())
    s.add_workload_frame("t", items, task_type="classification", source="test",
                         label_set=INTENTS[:3])
    spec = ModelSpec(name="g", kind="local-gguf", model=str(bundled_model_path()))
    picked = choose(s.items("t"), 3, task_type="classification")
    run(s, "t", [spec], item_ids=list(picked.item_ids))
    assert sorted(s.outcomes("t")["item_id"].to_list()) == sorted(picked.item_ids)
    with pytest.raises(WorkbenchError, match="1 item id\\(s\\) not in workload 't', e.g. '99'"):
        run(s, "t", [spec], item_ids=["0", "99"])
    assert s.outcomes("t").height == 3
    s.close()
