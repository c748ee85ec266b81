"""The Workloads page's upload in the user's terms: messages name the user's file (never the
uploads folder), a rejected file is not kept, a name clash points at the page's own Replace
box, and an import shows up in the list and the explorer at once."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from workbench.store import open_store
from workbench.workloads.samples import load_samples

ROOT = Path(__file__).resolve().parents[1]
CSV = ("ticket_no,body,queue\n" + "".join(
    f"{i},message number {i} about {q},{q}\n"
    for i, q in enumerate(["cards", "loans", "fraud", "cards", "loans", "fraud"] * 2, start=1)))


def _page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/workloads.py")
    return at.run()


def _uploads(home: Path) -> list[str]:
    folder = home / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _errors(at: AppTest) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def test_a_broken_file_is_named_as_the_user_named_it_and_not_kept(home: Path) -> None:
    at = _page()
    at.file_uploader(key="wl_upload").set_value(
        ("team tickets.csv", b"ticket_no,body\n1,\"unterminated\n", "text/csv")).run()
    errors = _errors(at)
    assert errors and all("team tickets.csv" in e for e in errors), errors
    assert not any("uploads" in e or "team_tickets.csv" in e for e in errors), errors
    assert _uploads(home) == []  # nothing half-kept
    assert open_store(home).workloads() == []


def test_an_import_shows_at_once_and_a_clash_names_the_replace_box(home: Path) -> None:
    store = open_store(home)
    load_samples(store, names=["support-triage"])
    at = _page()
    at.file_uploader(key="wl_upload").set_value(("tickets.csv", CSV.encode(), "text/csv")).run()
    assert _errors(at) == []
    at.selectbox(key="map_id").set_value("ticket_no")
    at.selectbox(key="map_input").set_value("body")
    at.selectbox(key="map_ref").set_value("queue")
    at.text_input(key="wl_name").set_value("support-triage")  # taken
    at.button[[b.label for b in at.button].index("Import")].click().run()
    errors = _errors(at)
    assert any("already exists" in e and "'Replace' box" in e for e in errors), errors
    assert all(e.startswith("tickets.csv: ") for e in errors), errors  # the user's name
    assert store.workload("support-triage").n_items == 420  # untouched
    at.text_input(key="wl_name").set_value("team-tickets")
    at.button[[b.label for b in at.button].index("Import")].click().run()
    assert _errors(at) == []
    assert any(s.value.startswith("Imported team-tickets: 12 items") for s in at.success), \
        [s.value for s in at.success]
    table = at.dataframe[0].value  # the list at the top, in the same run
    assert "team-tickets" in list(table["workload"])
    assert at.selectbox(key="wl_pick").value == "team-tickets"  # the explorer opens on it
    assert [p.split("-", 1)[1] for p in _uploads(home)] == ["tickets.csv"]  # the imported file
