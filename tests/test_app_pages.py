"""Pages through streamlit.testing.v1.AppTest with st.navigation: Home and Workloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.store import open_store

ROOT = Path(__file__).resolve().parents[1]


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if page is not None:
        at.switch_page(page)
    return at


def _no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_home_loads_samples_in_one_click(home: Path) -> None:
    at = _app().run()
    _no_exceptions(at)
    assert "LLM routing workbench" in at.title[0].value
    at.button(key="home_load_samples").click().run()
    _no_exceptions(at)
    assert any("support-triage" in s.value for s in at.success)
    names = {w.name: w.n_items for w in open_store(home).workloads()}
    assert names.keys() >= {"support-triage", "field-extraction", "arithmetic-qa"}
    # the journey marks step 1 done once workloads exist
    at.run()
    assert any(m.value.startswith("#### :material/check_circle: 1.") for m in at.markdown)


def test_workloads_page_lists_counts_and_charts(home: Path) -> None:
    from workbench.workloads.samples import load_samples

    load_samples(open_store(home))
    at = _app("pages/workloads.py").run()
    _no_exceptions(at)
    table = at.dataframe[0].value
    counts = dict(zip(table["workload"], table["items"], strict=True))
    assert counts["support-triage"] >= 300
    assert at.metric[0].value != ""


def test_workloads_sql_box_is_read_only(home: Path) -> None:
    from workbench.workloads.samples import load_samples

    store = open_store(home)
    load_samples(store, names=["arithmetic-qa"])
    before = store.workload("arithmetic-qa").n_items
    at = _app("pages/workloads.py").run()
    at.text_area(key="wl_sql").set_value("DELETE FROM items").run()
    at.button(key="wl_sql_run").click().run()
    _no_exceptions(at)
    assert any("only SELECT" in e.value for e in at.error)
    assert store.workload("arithmetic-qa").n_items == before


@pytest.mark.slow
def test_upload_csv_with_mapping(home: Path, tmp_path: Path) -> None:
    """Upload path: the page writes the file under home/uploads and imports with the mapping."""
    from workbench.workloads import importers

    csv = tmp_path / "tickets.csv"
    csv.write_text("ticket,body,gold\n1,where is my parcel,shipping\n2,refund me,refund\n"
                   "3,card declined,billing\n")
    store = open_store(home)
    mapping = importers.ColumnMapping(id="ticket", input="body", reference="gold")
    info = importers.import_file(store, csv, "tickets", format="csv", mapping=mapping)
    assert info.n_items == 3
    at = _app("pages/workloads.py").run()
    _no_exceptions(at)
    table = at.dataframe[0].value
    assert dict(zip(table["workload"], table["items"], strict=True))["tickets"] == 3


def _recorded_workload(home: Path) -> str:
    """support-triage with recorded outcomes of a cheap and a strong model (seeded)."""
    import numpy as np
    import polars as pl

    from workbench.workloads.samples import load_samples

    store = open_store(home)
    load_samples(store, names=["support-triage"])
    ids = store.items("support-triage")["item_id"].to_list()
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, len(ids))
    cheap_q = (rng.uniform(0, 1, len(ids)) < 0.4 + 0.6 * conf).astype(float)
    strong_q = (rng.uniform(0, 1, len(ids)) < 0.95).astype(float)
    rows = pl.DataFrame({
        "item_id": ids * 2,
        "model": ["cheap"] * len(ids) + ["strong"] * len(ids),
        "output": ["billing"] * (2 * len(ids)),
        "quality": np.concatenate([cheap_q, strong_q]),
        "cost_usd": [0.0001] * len(ids) + [0.002] * len(ids),
        "latency_ms": [50.0] * len(ids) + [900.0] * len(ids),
        "confidence": np.concatenate([conf, np.full(len(ids), 0.99)]),
    })
    store.write_outcomes("support-triage", rows)
    return "support-triage"


def test_route_page_replays_and_saves_a_policy(home: Path) -> None:
    _recorded_workload(home)
    at = _app("pages/route.py").run()
    _no_exceptions(at)
    assert at.multiselect(key="route_tiers").value == ["cheap", "strong"]
    quality = next(m for m in at.metric if m.label == "Quality")
    first = float(quality.value)
    at.slider(key="route_acc_0").set_value(1.0).run()
    _no_exceptions(at)
    escalated = next(m for m in at.metric if m.label == "Escalated").value
    assert escalated == "100.0%"
    assert float(next(m for m in at.metric if m.label == "Quality").value) != first
    at.toggle(key="route_pii").set_value(True).run()
    _no_exceptions(at)
    refused = next(m for m in at.metric if m.label == "Refused").value
    assert refused != "0.0%"  # PII items have no model tagged local here
    at.text_input(key="route_name").set_value("triage-cascade").run()
    at.button(key="route_save").click().run()
    _no_exceptions(at)
    assert any("Saved triage-cascade version 1" in s.value for s in at.success)


def test_export_page_previews_and_diffs(home: Path) -> None:
    from workbench.catalog import Catalog
    from workbench.policy import Policy

    _recorded_workload(home)
    cat = Catalog(home)
    body = {"name": "p", "models": {"cheap": {"model": "cheap"}, "strong": {"model": "strong"}},
            "tiers": [{"model": "cheap", "accept_above": 0.6}, {"model": "strong"}]}
    cat.save_policy("p", Policy.validate_data(body).to_yaml(), workload="support-triage")
    body["tiers"][0]["accept_above"] = 0.8
    cat.save_policy("p", Policy.validate_data(body).to_yaml(), workload="support-triage")
    at = _app("pages/export.py").run()
    _no_exceptions(at)
    codes = [c.value for c in at.code]
    assert any("accept_above: 0.8" in c and "workload_fingerprint" in c for c in codes)
    assert any("-  accept_above: 0.6" in c and "+  accept_above: 0.8" in c for c in codes)
    assert any("model_list" in c for c in codes)


def test_models_page_lists_bundled_model(home: Path) -> None:
    at = _app("pages/models.py").run()
    _no_exceptions(at)
    table = at.dataframe[0].value
    assert "gemma3-270m-q4km-local" in list(table["name"])


@pytest.mark.slow
def test_compare_page_runs_the_bundled_model(home: Path) -> None:
    """Real llama.cpp inference from the page: 5 items, metrics table and side-by-side view."""
    from workbench.workloads.samples import load_samples

    load_samples(open_store(home), names=["support-triage"])
    at = _app("pages/compare.py")
    at.default_timeout = 300
    at.run()
    _no_exceptions(at)
    assert at.multiselect(key="cmp_models").value == ["gemma3-270m-q4km-local"]
    at.slider(key="cmp_limit").set_value(5).run()
    at.button(key="cmp_run").click().run()
    _no_exceptions(at)
    assert any("5 items x 1 model(s): 5 calls, 0 cached" in s.value for s in at.success), \
        [s.value for s in at.success] + [e.value for e in at.error]
    outcomes = open_store(home).outcomes("support-triage")
    assert outcomes.height == 5 and outcomes["confidence"].is_between(0, 1).all()
    # the default slice is a stratified sample, and it says so
    assert any("stratified by" in c.value for c in at.caption), [c.value for c in at.caption]
    tables = [d.value for d in at.dataframe]
    assert any("cost_per_success" in t.columns and t["n"].tolist() == [5] for t in tables)


def test_tune_page_tunes_and_saves_a_trial(home: Path) -> None:
    _recorded_workload(home)
    at = _app("pages/tune.py").run()
    _no_exceptions(at)
    at.number_input(key="tune_trials").set_value(30).run()
    at.button(key="tune_go").click().run()
    _no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    labels = {m.label: m.value for m in at.metric}
    assert "Holdout quality" in labels and 0.0 <= float(labels["Holdout quality"]) <= 1.0
    at.text_input(key="tune_pname").set_value("tuned").run()
    at.button(key="tune_save").click().run()
    _no_exceptions(at)
    assert any("Saved tuned version 1" in s.value for s in at.success)
    from workbench.catalog import Catalog

    entry = Catalog(home).get_policy("tuned")
    assert entry.workload == "support-triage"
    from workbench.policy import Policy

    prov = Policy.from_yaml(entry.body).provenance
    assert prov is not None and prov.study and prov.trial is not None
    assert prov.holdout_metrics and prov.holdout_metrics["n"] > 0


@pytest.mark.slow
def test_home_first_run_journey(home: Path) -> None:
    """The whole no-key journey from the Home page: samples, run (real llama.cpp, two
    quantization levels), compose, tune, export download."""
    at = _app()
    at.default_timeout = 600
    at.run()
    at.button(key="home_load_samples").click().run()
    _no_exceptions(at)
    at.button(key="home_run").click().run()
    _no_exceptions(at)
    assert any("40 items x 2 models: 80 calls" in s.value for s in at.success), \
        [s.value for s in at.success] + [e.value for e in at.error]
    at.button(key="home_compose").click().run()
    _no_exceptions(at)
    assert any("Replayed on the recorded items: quality" in c.value for c in at.caption)
    at.button(key="home_tune").click().run()
    _no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Held-out quality" in c.value for c in at.caption)
    from workbench.catalog import Catalog
    from workbench.export import load_policy_text

    entry = Catalog(home).get_policy("starter-policy-tuned")
    policy = load_policy_text(entry.body)
    assert policy.provenance is not None and policy.provenance.holdout_metrics


def test_route_page_reuses_frames_until_outcomes_change(home: Path) -> None:
    """A widget change replays the same frame objects (replay's per-frame cache hits); new
    outcomes give new frames."""
    import polars as pl

    from workbench import replay

    _recorded_workload(home)
    at = _app("pages/route.py").run()
    slots_before = list(replay._SLOTS)
    at.slider(key="route_acc_0").set_value(0.9).run()
    _no_exceptions(at)
    assert list(replay._SLOTS)[-1] in slots_before  # same frames, no new prepared workload
    store = open_store(home)
    store.write_outcomes("support-triage", pl.DataFrame(
        {"item_id": [store.items("support-triage")["item_id"][0]], "model": ["cheap"],
         "quality": [0.0], "cost_usd": [0.0001], "latency_ms": [50.0], "confidence": [0.01]}))
    at.run()
    _no_exceptions(at)
    assert list(replay._SLOTS)[-1] not in slots_before


def test_route_page_replays_an_uploaded_policy_file(home: Path) -> None:
    """Upload a policy YAML: validated by the loader (errors name the user's file), replayed
    as it is, its thresholds adjustable; the trace shows inputs, answers and confidences."""
    from workbench.policy import Policy

    _recorded_workload(home)
    at = _app("pages/route.py").run()
    at.radio(key="route_source").set_value("Upload a policy file").run()
    _no_exceptions(at)
    broken = b"name: x\ntiers: [{model: nobody}]\n"
    at.file_uploader(key="route_upload").set_value(("team-policy.yaml", broken,
                                                    "application/x-yaml")).run()
    _no_exceptions(at)
    errors = [e.value for e in at.error]
    assert any("team-policy.yaml" in e for e in errors), errors
    assert not any("uploads/" in e for e in errors), errors
    body = Policy.validate_data({
        "name": "team-policy", "models": {"cheap": {"model": "cheap"},
                                          "strong": {"model": "strong"}},
        "tiers": [{"model": "cheap", "accept_above": 0.5}, {"model": "strong"}]}).to_yaml()
    at.file_uploader(key="route_upload").set_value(("team-policy.yaml", body.encode(),
                                                    "application/x-yaml")).run()
    _no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    assert at.slider(key="route_pacc_0").value == 0.5
    first = next(m for m in at.metric if m.label == "Escalated").value
    at.slider(key="route_pacc_0").set_value(1.0).run()
    _no_exceptions(at)
    assert next(m for m in at.metric if m.label == "Escalated").value == "100.0%" != first
    trace = at.dataframe[-1].value
    assert {"input", "answer", "path", "answer · cheap", "confidence · cheap"} <= set(
        trace.columns)
    assert at.text_input(key="route_name").value == "team-policy"


def test_route_page_opens_on_the_current_policy(home: Path) -> None:
    """What the previous step saved (current_policy) is what Route replays first."""
    from workbench.catalog import Catalog
    from workbench.policy import Policy

    _recorded_workload(home)
    body = Policy.validate_data({
        "name": "starter", "models": {"cheap": {"model": "cheap"}, "strong": {"model": "strong"}},
        "tiers": [{"model": "cheap", "accept_above": 0.42}, {"model": "strong"}]}).to_yaml()
    Catalog(home).save_policy("starter", body, workload="support-triage")
    at = _app("pages/route.py")
    at.session_state["current_policy"] = "starter"
    at.run()
    _no_exceptions(at)
    assert at.radio(key="route_source").value == "Saved policy"
    assert at.selectbox(key="route_load_pick").value == "starter"
    assert at.slider(key="route_pacc_0").value == 0.42


def test_home_shows_the_headline_with_a_what_if(home: Path) -> None:
    """With two models recorded, Home states what share a cheaper model can take, what that
    saves at the user's volume, and recomputes when the user changes the quality to keep."""
    _recorded_workload(home)
    at = _app().run()
    _no_exceptions(at)
    first = [i.value for i in at.info if "requests per day" in i.value]
    assert len(first) == 1, [i.value for i in at.info]
    assert "can be answered by cheap" in first[0] and "at 10,000 requests per day" in first[0]
    assert "(95% CI" in first[0]  # the share and the saving carry intervals
    at.number_input(key="home_headline_volume").set_value(50_000).run()
    _no_exceptions(at)
    second = [i.value for i in at.info if "requests per day" in i.value]
    assert "at 50,000 requests per day" in second[0]
    assert any(b.label.startswith("Download the one-page report")
               for b in at.get("download_button"))


def test_compare_slices_a_teams_csv_by_label(home: Path) -> None:
    """A team's CSV with numeric ids grouped by intent: the default slice of 20 covers every
    label (the first 20 by id covered 3 of 6), and a slice too small to cover them says which
    labels it misses."""
    import polars as pl

    intents = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "balance_not_updated",
               "declined_card_payment", "pending_top_up"]
    refs = [intents[k] for k, c in enumerate((10, 7, 3, 15, 12, 13)) for _ in range(c)]
    store = open_store(home)
    store.add_workload_frame("tickets", pl.DataFrame({
        "item_id": [str(i) for i in range(len(refs))], "input": refs, "reference": refs}),
        task_type="classification", source="test", label_set=intents)
    store.close()
    at = _app("pages/compare.py")
    at.session_state["current_workload"] = "tickets"
    at.run()
    _no_exceptions(at)
    assert any("covering 6 of 6 label values" in c.value for c in at.caption), \
        [c.value for c in at.caption]
    assert not at.warning
    at.slider(key="cmp_limit").set_value(4).run()
    assert any("misses 2 label value(s)" in w.value for w in at.warning)
    at.selectbox(key="cmp_slice").set_value("first by id").run()
    assert any("the first 4 items by id" in c.value for c in at.caption)
