"""Why the cheap model is wrong: Compare's item view (answers with confidence, label
probabilities and failure modes, filterable) and the prompt each model received, rendered the
way the provider renders it; a model's own examples and template edited and validated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workbench.catalog import Catalog
from workbench.errors import WorkbenchError
from workbench.fewshot import FewShotSource
from workbench.models import ModelSpecError
from workbench.outcome_metrics import side_by_side
from workbench.prompt_view import clean_examples, examples_table, prompt_view, with_prompt
from workbench.providers.local import LocalProvider
from workbench.providers.prompts import DEFAULT_FEW_SHOT
from workbench.runner import run
from workbench.store import Store, open_store
from workbench.workloads.samples import load_samples

LOCAL = "gemma3-270m-q4km-local"


def _catalog(home: Path) -> Catalog:
    """The catalog with the bundled model registered, as the app and CLI register it."""
    catalog = Catalog(home)
    catalog.ensure_defaults()
    return catalog


def _triage(home: Path) -> Store:
    store = open_store(home)
    load_samples(store, names=["support-triage"])
    return store


def _record(store: Store) -> list[str]:
    """Recorded outcomes of the bundled model (by name) and an imported strong model."""
    ids = store.items("support-triage")["item_id"].to_list()[:40]
    rng = np.random.default_rng(1)
    conf = rng.uniform(0, 1, len(ids))
    outputs = ["billing", "shipping", "I'm sorry, I cannot help with that.", "", "weather"]
    rows = pl.DataFrame({
        "item_id": ids * 2,
        "model": [LOCAL] * len(ids) + ["strong"] * len(ids),
        "output": [outputs[i % len(outputs)] for i in range(len(ids))] + ["billing"] * len(ids),
        "quality": [float(i % 5 == 0) for i in range(len(ids))] + [1.0] * len(ids),
        "cost_usd": [0.00001] * len(ids) + [0.002] * len(ids),
        "latency_ms": [80.0] * len(ids) + [900.0] * len(ids),
        "confidence": np.concatenate([conf, np.full(len(ids), 0.99)]),
        "signals": [json.dumps({"label_probs": {"billing": 0.7, "refund": 0.2, "other": 0.1}})]
        * (2 * len(ids)),
    })
    store.write_outcomes("support-triage", rows)
    return ids


def test_side_by_side_has_confidence_and_failure_modes(home: Path) -> None:
    store = _triage(home)
    _record(store)
    table = side_by_side(store, "support-triage", [LOCAL, "strong"])
    assert {f"{LOCAL}:confidence", f"{LOCAL}:failure", "strong:failure"} <= set(table.columns)
    modes = set(table[f"{LOCAL}:failure"].to_list())
    # right answers, a refusal, an empty answer and a label outside the set, told apart
    assert {"ok", "refusal", "empty_output", "invalid_format"} <= modes, modes
    assert table[f"{LOCAL}:confidence"].is_between(0, 1).all()
    assert set(table["strong:failure"].to_list()) == {"ok"}
    assert table.filter(pl.col("cheap_wrong"))[f"{LOCAL}:failure"].ne("ok").all()


def test_prompt_view_is_what_the_local_provider_renders(home: Path) -> None:
    store = _triage(home)
    spec = _catalog(home).get(LOCAL)
    item = store.items("support-triage").row(3, named=True)
    view = prompt_view(store, "support-triage", item["item_id"], spec)
    info = store.workload("support-triage")
    from workbench.providers.base import Request

    sent = LocalProvider(spec).render(Request(
        item_id=item["item_id"], task_type=info.task_type, input=item["input"],
        labels=tuple(item["labels"] or info.label_set)))
    assert view.text == sent.text
    assert item["input"].split()[0] in view.text and view.text.rstrip().endswith("Category:")
    assert view.examples_from == "the built-in examples for this task type"
    assert len(view.examples) == len(DEFAULT_FEW_SHOT["classification"])
    with pytest.raises(WorkbenchError, match="'nope' is not in workload"):
        prompt_view(store, "support-triage", "nope", spec)


def test_own_labels_without_examples_are_shown_as_zero_shot(home: Path) -> None:
    """A team's own labels match none of the built-in examples: the view says the model
    answers zero-shot; a few-shot source from the workload fixes it, and the view shows the
    drawn examples."""
    store = open_store(home)
    frame = pl.DataFrame({
        "item_id": [str(i) for i in range(12)],
        "input": [f"ticket {i} about {'cards' if i % 2 else 'loans'}" for i in range(12)],
        "reference": ["card_issue" if i % 2 else "loan_question" for i in range(12)],
    })
    labels = ("card_issue", "loan_question")
    store.add_workload_frame("team", frame, task_type="classification", source="test",
                             label_set=labels)
    store.add_workload_frame("team-train", frame.with_columns(
        ("train " + pl.col("input")).alias("input")), task_type="classification",
        source="test", label_set=labels)
    spec = _catalog(home).get(LOCAL)
    view = prompt_view(store, "team", "5", spec)
    assert view.examples == () and "zero-shot" in view.examples_from
    drawn = spec.replace(few_shot_source=FewShotSource(workload="team-train", k=2,
                                                       select="per-label"))
    view = prompt_view(store, "team", "5", drawn)
    assert view.examples_from == "drawn from workload 'team-train' (2 per label)"
    assert sorted(a for _, a in view.examples) == sorted(labels * 2)
    assert all(f"Message: {q}\nCategory: {a}" in view.text for q, a in view.examples)
    itself = spec.replace(few_shot_source=FewShotSource(workload="team", k=1))
    with pytest.raises(WorkbenchError, match="itself"):  # never an item's own answer
        prompt_view(store, "team", "5", itself)


def test_examples_and_template_edits_are_validated(home: Path) -> None:
    spec = _catalog(home).get(LOCAL)
    table = examples_table(spec, "classification")
    assert table.height == len(DEFAULT_FEW_SHOT["classification"])
    rows = [{"input": "card blocked abroad", "answer": "card_issue"},
            {"input": "", "answer": ""},  # blank rows are dropped
            {"input": "rate on a 5-year loan?", "answer": "loan_question"}]
    pairs = clean_examples(rows, ["card_issue", "loan_question"])
    assert pairs == (("card blocked abroad", "card_issue"),
                     ("rate on a 5-year loan?", "loan_question"))
    with pytest.raises(WorkbenchError, match="row 1 needs both"):
        clean_examples([{"input": "x", "answer": ""}])
    with pytest.raises(WorkbenchError, match="'billing' is not one of the labels"):
        clean_examples([{"input": "x", "answer": "billing"}], ["card_issue"])
    with pytest.raises(ModelSpecError, match="input"):
        with_prompt(spec, "classification", "Message without the placeholder", pairs)
    catalog = _catalog(home)
    changes = with_prompt(spec, "classification",
                          "Label: {labels}\n\n{examples}Msg: {input}\nLabel:", pairs)
    catalog.update(LOCAL, **changes)
    saved = catalog.get(LOCAL)
    assert saved.few_shot["classification"] == pairs
    assert saved.templates["classification"].startswith("Label: {labels}")


@pytest.mark.slow
def test_edited_examples_are_what_the_model_receives(home: Path) -> None:
    """Edit the bundled model's examples and template, run it for real on two items, and the
    prompt view shows exactly the edited prompt (the run's cache key changed with it)."""
    store = _triage(home)
    catalog = _catalog(home)
    spec = catalog.get(LOCAL)
    pairs = (("I was billed twice", "billing"), ("Where is my parcel?", "shipping"))
    catalog.update(LOCAL, **with_prompt(spec, "classification",
                                        "Categories: {labels}\n\n{examples}Q: {input}\nA:",
                                        pairs))
    edited = catalog.get(LOCAL)
    ids = store.items("support-triage")["item_id"].to_list()[:2]
    before = run(store, "support-triage", [spec], item_ids=ids).models[0]
    assert (before.completed, before.errors) == (2, 0)
    after = run(store, "support-triage", [edited], item_ids=ids).models[0]
    assert (after.cached, after.completed, after.errors) == (0, 2, 0)  # not the old answers
    view = prompt_view(store, "support-triage", ids[0], edited)
    assert view.text.startswith("Categories: ") and "Q: I was billed twice\nA: billing" in view.text
    assert view.examples == pairs and view.examples_from.startswith("the model's own")


def test_compare_page_opens_one_item_with_its_prompt(home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    store = _triage(home)
    ids = _record(store)
    at = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=120)
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.radio(key="cmp_filter").set_value("a failure mode").run()
    assert at.selectbox(key="cmp_mode").value == "empty_output"  # first, in order
    at.selectbox(key="cmp_mode").set_value("refusal").run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if f"{LOCAL}:failure" in d.value.columns)
    assert set(table[f"{LOCAL}:failure"]) == {"refusal"}
    first = at.selectbox(key="cmp_item").value
    assert first in ids and first == table["item_id"].iloc[0]
    answers = next(d.value for d in at.dataframe if "label probabilities" in d.value.columns)
    assert list(answers["model"]) == [LOCAL, "strong"]
    assert answers["label probabilities"].iloc[0] == "billing 0.70, refund 0.20, other 0.10"
    prompt = at.code[0].value
    item = store.items("support-triage").filter(pl.col("item_id") == first).row(0, named=True)
    assert item["input"][:20] in prompt and prompt.rstrip().endswith("Category:")
    assert any("not in the model catalog" in c.value for c in at.caption)


def test_models_page_edits_examples_and_shows_the_prompt(home: Path) -> None:
    """The Models page's prompt tab: the built-in examples to start from, an edit saved to the
    catalog, and the preview showing the saved prompt; a bad answer is refused, nothing saved."""
    from streamlit.testing.v1 import AppTest

    _triage(home)
    _catalog(home)
    at = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=120)
    at.switch_page("pages/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="mp_model").value == LOCAL
    before = next(c.value for c in at.code if "Category:" in c.value)
    assert "I was charged twice for my subscription this month." in before  # built-in
    tpl = next(t for t in at.text_area if t.key.startswith("mp_tpl_"))
    tpl.set_value("Sort: {labels}\n\n{examples}Ticket: {input}\nQueue:").run()
    at.button(key="mp_save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    n = len(DEFAULT_FEW_SHOT["classification"])
    assert any(f"Saved {n} example(s)" in s.value for s in at.success), [s.value for s in at.success]
    after = next(c.value for c in at.code if "Queue:" in c.value)
    assert after.startswith("Sort: ") and "Ticket: I was charged twice" in after
    assert Catalog(home).get(LOCAL).templates["classification"].startswith("Sort: ")
    bad = next(t for t in at.text_area if t.key.startswith("mp_tpl_"))
    bad.set_value("no placeholder here").run()
    at.button(key="mp_save").click().run()
    assert any("input" in e.value for e in at.error), [e.value for e in at.error]
    assert Catalog(home).get(LOCAL).templates["classification"].startswith("Sort: ")
