"""Context-window use (workbench.context_use): a real store, the bundled model run with a small
n_ctx on prompts that approach and pass it, hosted context sizes from LiteLLM's bundled table,
and the Compare page's section."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from workbench.catalog import Catalog, bundled_model_path
from workbench.cli import main
from workbench.context_use import NEAR_LIMIT, context_sizes, context_use, hosted_context
from workbench.errors import WorkbenchError
from workbench.models import ModelSpec
from workbench.runner import run
from workbench.store import Store

ROOT = Path(__file__).resolve().parents[1]
N_CTX = 256
PHRASE = "the parcel arrived late and the invoice shows a second charge "


def _workload(store: Store) -> None:
    """Classification items from a few words to more than the small window holds."""
    sizes = {"a-short": 1, "b-mid": 6, "c-near": 11, "d-nearer": 13, "e-over": 30}
    items = pl.DataFrame({"item_id": list(sizes),
                          "input": [(PHRASE * n).strip() for n in sizes.values()],
                          "reference": ["billing"] * len(sizes)})
    store.add_workload_frame("ctx", items, task_type="classification", source="test",
                             label_set=["billing", "shipping"])


def test_prompts_near_a_small_window_are_listed(store: Store, home: Path) -> None:
    # Prices set on the model: no speed measurement needed for this test.
    Catalog(home).add(ModelSpec(name="tiny-ctx", kind="local-gguf",
                                model=str(bundled_model_path()), threads=1, n_ctx=N_CTX,
                                input_price_per_mtok=0.1, output_price_per_mtok=0.2))
    _workload(store)
    summary = run(store, "ctx", ["tiny-ctx"])
    assert summary.calls == 5
    out = store.outcomes("ctx").sort("item_id")
    over = out.filter(pl.col("error") == "context_window")
    assert over["item_id"].to_list() == ["e-over"]  # the long one did not fit
    ok = out.filter(pl.col("error").is_null())
    share = dict(zip(ok["item_id"], (t / N_CTX for t in ok["prompt_tokens"]), strict=True))
    near = {i for i, s in share.items() if s >= NEAR_LIMIT}
    assert share["a-short"] < 0.5 and near >= {"c-near", "d-nearer"}  # the workload's design

    use = context_use(store, "ctx", home=home)
    row = use.per_model.row(0, named=True)
    assert row["model"] == "tiny-ctx" and row["context_tokens"] == N_CTX
    assert row["source"] == "n_ctx of the local model" and row["n"] == 5
    assert row["did_not_fit"] == 1 and row["near_limit"] == len(near) + 1
    assert row["max_prompt_tokens"] == max(ok["prompt_tokens"])
    assert row["median_share"] == pytest.approx(sorted([*share.values(), 1.0])[2])
    listed = use.near_limit
    assert listed["item_id"].to_list()[0] == "e-over"  # fullest first: did not fit at all
    assert set(listed["item_id"].to_list()) == near | {"e-over"}
    for r in listed.filter(pl.col("error").is_null()).iter_rows(named=True):
        assert r["share"] == pytest.approx(share[r["item_id"]])
    assert use.distribution["items"].sum() == 5
    buckets = dict(zip(use.distribution["bucket"], use.distribution["items"], strict=True))
    assert buckets["at or over the limit"] == 1 and buckets["25%-50%"] >= 1
    data = use.as_json()
    assert data["models"][0]["context_tokens"] == N_CTX and len(data["near_limit"]) == len(listed)
    json.dumps(data)  # JSON-ready
    with pytest.raises(WorkbenchError, match="near-limit share"):
        context_use(store, "ctx", home=home, threshold=1.5)


def test_hosted_context_from_litellms_bundled_table(store: Store, home: Path) -> None:
    assert hosted_context("gpt-4o-mini") == 128_000
    assert hosted_context("openai/gpt-4o-mini") == 128_000
    assert hosted_context("openai/my-own-served-model") is None
    cat = Catalog(home)
    cat.add(ModelSpec(name="mini", model="openai/gpt-4o-mini"))
    cat.add(ModelSpec(name="served", model="openai/my-own-served-model",
                      api_base="http://127.0.0.1:9/v1"))
    sizes = context_sizes(["mini", "mini@vote3", "served", "imported"], home)
    assert sizes["mini"] == (128_000, "LiteLLM's model table") == sizes["mini@vote3"]
    assert sizes["served"] == (None, "unknown to LiteLLM")
    assert sizes["imported"] == (None, "not in the model catalog")
    # Recorded outcomes of the hosted model: one prompt fills 90% of its window.
    _workload(store)
    store.write_outcomes("ctx", pl.DataFrame({
        "item_id": ["a-short", "b-mid", "c-near"], "model": ["mini"] * 3,
        "output": ["billing"] * 3, "quality": [1.0] * 3, "cost_usd": [1e-4] * 3,
        "prompt_tokens": [900, 20_000, 115_200], "latency_ms": [300.0] * 3}))
    use = context_use(store, "ctx", home=home)
    assert use.per_model["context_tokens"].to_list() == [128_000]
    assert use.near_limit["item_id"].to_list() == ["c-near"]
    assert use.near_limit["share"].to_list() == [pytest.approx(0.9)]
    # ... and in the report's JSON, beside a cheaper model's outcomes
    store.write_outcomes("ctx", pl.DataFrame({
        "item_id": ["a-short", "b-mid", "c-near"], "model": ["imported"] * 3,
        "output": ["billing"] * 3, "quality": [1.0, 0.0, 1.0], "cost_usd": [1e-6] * 3,
        "prompt_tokens": [50, 60, 70], "latency_ms": [30.0] * 3}))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["report", "--workload", "ctx", "--json", "--n-boot", "50",
                     "--home", str(home)]) == 0
    reported = json.loads(printed.getvalue())["context_use"]
    assert [m["model"] for m in reported["models"]] == ["imported", "mini"]
    assert reported["models"][0]["source"] == "not in the model catalog"
    assert [r["item_id"] for r in reported["near_limit"]] == ["c-near"]


def test_compare_page_shows_context_use_and_cost_derivation(store: Store, home: Path) -> None:
    Catalog(home).add(ModelSpec(name="mini", model="openai/gpt-4o-mini"))
    _workload(store)
    basis = ("local: 239 prompt tokens at 50 tok/s + 0 label tokens scored at 6.3 tok/s, "
             "$0.10/h (measured 2026-12-01, under contention)")
    signals = json.dumps({"cost_basis": basis, "cost_measure": {
        "prompt_tps": 50.0, "gen_tps": 6.3, "usd_per_hour": 0.1, "contended": True}})
    store.write_outcomes("ctx", pl.DataFrame({
        "item_id": ["a-short", "c-near"] * 2, "model": ["mini", "mini", "local", "local"],
        "output": ["billing"] * 4, "quality": [1.0, 1.0, 0.0, 1.0],
        "cost_usd": [1e-4, 1e-4, 1e-5, 1e-5], "prompt_tokens": [900, 115_200, 100, 239],
        "latency_ms": [300.0, 300.0, 90.0, 95.0],
        "signals": ["{}", "{}", signals, signals]}))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/compare.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "Context-window use" for s in at.subheader)
    frames = [d.value for d in at.dataframe]
    near = next(f for f in frames if "share %" in f.columns)
    assert near["item_id"].tolist() == ["c-near"] and near["model"].tolist() == ["mini"]
    table = next(f for f in frames if "context (tokens)" in f.columns)
    assert table["context (tokens)"].tolist()[table["model"].tolist().index("mini")] == 128_000
    captions = " ".join(c.value for c in at.caption)
    assert "never from wall time" in captions and basis in captions
    assert any("local: speed measured while the machine was busy" in w.value
               for w in at.warning), [w.value for w in at.warning]
