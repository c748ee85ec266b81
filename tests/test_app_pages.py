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
    assert any(m.value == "✅" for m in at.markdown)


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
