"""A flagged slice becomes a routing rule (issue 15, item 2): the report flags the slice where
the cheap model is worse, `gate add` sends it to the strong tier, and the replay before and
after shows the effect, item by item."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workbench.catalog import Catalog
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.export import load_policy_file
from workbench.gates import add_gate, gate_effect
from workbench.models import ModelSpec
from workbench.policy import LearnedPreroute, cascade
from workbench.replay import evaluate_workload
from workbench.report import build_report
from workbench.store import Store, open_store

N = 400


def _workload(store: Store) -> None:
    """Cheap model: right 90% on easy items, 20% on hard ones, and confident either way (so
    confidence does not catch the hard ones); strong: right 95% everywhere."""
    rng = np.random.default_rng(7)
    hard = np.arange(N) % 4 == 0
    store.add_workload_frame("tickets", pl.DataFrame({
        "item_id": [str(i) for i in range(N)],
        "input": [("long question " * 40 if h else "short q ") + str(i)
                  for i, h in enumerate(hard)],
        "reference": ["a"] * N,
        "difficulty": np.where(hard, "hard", "easy").tolist(),
    }), task_type="classification", source="test", label_set=("a", "b"))
    cheap_q = np.where(hard, rng.uniform(size=N) < 0.2, rng.uniform(size=N) < 0.9)
    store.write_outcomes("tickets", pl.DataFrame({
        "item_id": [str(i) for i in range(N)] * 2,
        "model": ["cheap"] * N + ["strong"] * N,
        "output": ["a"] * (2 * N),
        "quality": np.concatenate([cheap_q, rng.uniform(size=N) < 0.95]).astype(float),
        "cost_usd": [0.0001] * N + [0.003] * N,
        "latency_ms": [40.0] * N + [800.0] * N,
        "confidence": np.concatenate([rng.uniform(0.8, 1.0, N), np.full(N, 0.99)]),
    }))


def _policy() -> object:
    specs = {m: ModelSpec(name=m, model=f"openai/{m}") for m in ("cheap", "strong")}
    return cascade(specs, ["cheap", "strong"], [0.7, 0.0], name="triage")


@pytest.fixture
def tickets(home: Path) -> Store:
    store = open_store(home)
    _workload(store)
    return store


def test_the_flagged_slice_gated_sends_exactly_it_to_the_strong_tier(tickets: Store) -> None:
    flagged = build_report(tickets, "tickets").flagged()
    hard = flagged.filter((pl.col("column") == "difficulty") & (pl.col("model") == "cheap"))
    assert hard["slice"].to_list() == ["hard"]  # the report finds it
    policy = _policy()
    effect = gate_effect(tickets, "tickets", policy, "difficulty", "hard")
    assert effect.rule == "items with difficulty 'hard' go straight to strong"
    assert effect.slice_items == N // 4
    def trace(p: object) -> pl.DataFrame:
        return evaluate_workload(tickets, "tickets", p).trace.with_columns(
            pl.col("models_tried").cast(pl.String))

    before, after = trace(policy), trace(effect.policy)
    is_hard = (pl.col("item_id").cast(pl.Int64) % 4) == 0
    # every hard item starts (and ends) at the strong model; easy items are untouched
    assert (after.filter(is_hard)["models_tried"] == "strong").all()
    assert after.filter(~is_hard).equals(before.filter(~is_hard))
    newly = before.filter(is_hard)["models_tried"].str.starts_with("cheap").sum()
    assert effect.gated_items == newly > 0
    # quality rises and costs more, by exactly the hard items' change
    b, a = effect.before, effect.after
    gain = (after.filter(is_hard)["quality"].sum() - before.filter(is_hard)["quality"].sum()) / N
    assert a.quality - b.quality == pytest.approx(gain)
    assert a.quality > b.quality and a.cost_per_request > b.cost_per_request
    assert a.strong_share > b.strong_share


def test_the_longest_input_bucket_becomes_a_length_rule(tickets: Store) -> None:
    longest = build_report(tickets, "tickets").slices.filter(
        pl.col("column") == "input_length")["slice"].unique().sort().to_list()
    top = next(s for s in longest if s.startswith(">"))
    effect = gate_effect(tickets, "tickets", _policy(), "input_length", top)
    limit = int(top[1:].split()[0])
    assert effect.policy.preroute.long_input_chars == limit
    trace = evaluate_workload(tickets, "tickets", effect.policy).trace.with_columns(
        pl.col("models_tried").cast(pl.String))
    items = tickets.items("tickets").join(trace, on="item_id")
    long_ = items.filter(pl.col("input").str.len_chars() > limit)
    assert long_.height and (long_["models_tried"] == "strong").all()


def test_slices_that_cannot_be_rules_are_refused_with_the_reason(tickets: Store) -> None:
    policy = _policy()
    with pytest.raises(WorkbenchError, match="reference answer, which is unknown"):
        add_gate(policy, "label", "a")
    with pytest.raises(WorkbenchError, match="only inputs longer than"):
        add_gate(policy, "input_length", "<=20 chars")
    with pytest.raises(WorkbenchError, match="unknown slice column 'colour'"):
        gate_effect(tickets, "tickets", policy, "colour", "red")
    with pytest.raises(WorkbenchError, match="no recorded item .* difficulty 'medium'"):
        gate_effect(tickets, "tickets", policy, "difficulty", "medium")
    learned = policy.model_copy(update={"preroute": LearnedPreroute()})
    with pytest.raises(WorkbenchError, match="learned router"):
        add_gate(learned, "difficulty", "hard")
    single = cascade({"cheap": ModelSpec(name="cheap", model="openai/cheap")}, ["cheap"])
    with pytest.raises(WorkbenchError, match="one tier"):
        add_gate(single, "difficulty", "hard")


def test_gate_add_on_the_command_line(tickets: Store, home: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "triage.yaml"
    src.write_text(_policy().to_yaml())
    out = tmp_path / "gated.yaml"
    code = main(["gate", "add", "--home", str(home), "--workload", "tickets", "--policy",
                 str(src), "--column", "difficulty", "--slice", "hard", "--save",
                 "triage-gated", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Rule: items with difficulty 'hard' go straight to strong." in text
    assert "Saved triage-gated version 1." in text
    saved = Catalog(home).get_policy("triage-gated")
    written = load_policy_file(out)
    assert written.preroute.tag_scores == {"hard": -1.0}
    assert saved.body and "hard: -1.0" in saved.body
    code = main(["gate", "add", "--home", str(home), "--workload", "tickets", "--policy",
                 "triage-gated", "--column", "difficulty", "--slice", "hard", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["gated_items"] == 0  # already gated: nothing new
    assert data["after"]["quality"] == pytest.approx(data["before"]["quality"])
    code = main(["gate", "add", "--home", str(home), "--workload", "tickets", "--policy",
                 str(src), "--column", "label", "--slice", "a"])
    err = capsys.readouterr().err
    assert code == 2 and "reference answer" in err
    assert [p.name for p in Catalog(home).list_policies()] == ["triage-gated"]  # nothing new


def test_one_click_on_compare_saves_the_gated_policy(tickets: Store, home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    Catalog(home).save_policy("triage", _policy().to_yaml(), workload="tickets")
    at = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=180)
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    box = at.selectbox(key="cmp_headline_gate_slice")
    assert "difficulty: hard" in box.options and not any(o.startswith("label")
                                                         for o in box.options)
    box.set_value("difficulty: hard").run()
    assert at.selectbox(key="cmp_headline_gate_policy").value == "triage"
    at.button(key="cmp_headline_gate_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    done = [s.value for s in at.success if s.value.startswith("Saved triage-gated version 1")]
    assert done and "items with difficulty 'hard' go straight to strong" in done[0], done
    gated = Catalog(home).get_policy("triage-gated")
    assert "hard: -1.0" in gated.body
