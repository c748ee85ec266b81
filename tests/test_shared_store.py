"""The app and CLI commands on one data directory: `streamlit run app.py` keeps its store while
`workbench load`, `workbench run` (bundled model, real llama.cpp) and read-only commands work on
the same directory at the same time; the app waits visibly while another process has the file
and shows the new data on its next rerun; a writer that waits past WORKBENCH_LOCK_WAIT_S fails
with a clear message and changes nothing; another process's write invalidates this process's
SQL snapshots."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, app_env, python, streamlit_app
from workbench.catalog import BUNDLED_MODEL_NAME
from workbench.store import Store, StoreBusyError

ROOT = Path(__file__).resolve().parents[1]
IMPORT_ROWS = 3000
RUN_ITEMS = 4

# A process that holds the store in a write transaction until told (a line on stdin) to go.
HOLDER = """
import sys
from workbench.store import open_store
store = open_store(sys.argv[1])
with store.transaction() as cur:
    cur.execute("CREATE TABLE holder_mark AS SELECT 1 AS x")
    print("holding", flush=True)
    sys.stdin.readline()
"""


def _workbench(*args: str) -> list[str]:
    return [python(), "-m", "workbench", *args]


def _write_csv(path: Path, rows: int) -> None:
    queues = ("billing", "account", "shipping")
    lines = ["id,input,reference"]
    lines += [f"t{i},Ticket number {i} about my {queues[i % 3]} problem,{queues[i % 3]}"
              for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")


class Holder:
    """A separate process holding the store's file in an open write transaction."""

    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen([python(), "-c", HOLDER, str(home)], cwd=ROOT,
                                     env=app_env(home), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert line.strip() == "holding", f"holder did not start: {line!r}"

    def release(self) -> None:
        """Let the transaction commit and the process exit."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
        assert self.proc.wait(timeout=120) == 0


def _counts(home: Path) -> dict[str, int]:
    """Rows per table and workloads by name, read by a Store of this process."""
    store = Store(home / "workbench.duckdb")
    try:
        with store.session() as cur:
            out = {t: int(cur.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
                   for t in ("workloads", "items", "outcomes")}
        return out
    finally:
        store.close()


def test_second_writer_waits_then_fails_clearly_and_changes_nothing(home: Path,
                                                                     tmp_path: Path) -> None:
    """`workbench load` while another process keeps a write open past the wait limit: exit 2,
    a message naming the data directory and the other process, and nothing stored."""
    csv = tmp_path / "tickets.csv"
    _write_csv(csv, 20)
    Store(home / "workbench.duckdb").close()  # a store with its schema
    before = _counts(home)
    holder = Holder(home)
    try:
        done = subprocess.run(_workbench("load", str(csv), "--name", "blocked"), cwd=ROOT,
                              env=app_env(home, WORKBENCH_LOCK_WAIT_S="2"), capture_output=True,
                              text=True, timeout=300)
    finally:
        holder.release()
    assert done.returncode == 2, done.stdout + done.stderr
    message = done.stderr
    assert f"the data directory {home} is in use" in message
    assert "another workbench process is writing to it" in message
    assert f"PID {holder.proc.pid}" in message
    assert "did not finish within 2 s" in message and "Nothing was changed" in message
    assert "Traceback" not in message
    assert _counts(home) == before  # the holder committed its own mark only
    listed = subprocess.run(_workbench("workloads", "--json"), cwd=ROOT, env=app_env(home),
                            capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(listed.stdout) == []


def test_in_process_wait_limit_raises_store_busy(home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's own error type, with the same message, for code that opens the store."""
    Store(home / "workbench.duckdb").close()
    monkeypatch.setenv("WORKBENCH_LOCK_WAIT_S", "0.5")
    holder = Holder(home)
    try:
        with pytest.raises(StoreBusyError, match=rf"PID {holder.proc.pid}\b"):
            Store(home / "workbench.duckdb")
    finally:
        holder.release()
    monkeypatch.delenv("WORKBENCH_LOCK_WAIT_S")
    assert _counts(home)["workloads"] == 0


def test_another_process_write_invalidates_snapshots(home: Path, tmp_path: Path) -> None:
    """The SQL box's table snapshots and the stored generation follow a write made by a CLI
    process while this process keeps its Store object."""
    store = Store(home / "workbench.duckdb")
    try:
        assert store.read_only_query("SELECT count(*) AS n FROM items")["n"][0] == 0
        generation = store.generation()
        csv = tmp_path / "tickets.csv"
        _write_csv(csv, 25)
        done = subprocess.run(_workbench("load", str(csv), "--name", "tickets"), cwd=ROOT,
                              env=app_env(home), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert store.generation() > generation
        assert store.read_only_query("SELECT count(*) AS n FROM items")["n"][0] == 25
        assert [w.name for w in store.workloads()] == ["tickets"]
    finally:
        store.close()


# -- the real app ------------------------------------------------------------------------


@pytest.fixture
def app(home: Path, tmp_path: Path) -> Iterator[str]:
    """`streamlit run app.py` on a free loopback port over `home`; stopped however the test
    ends."""
    with streamlit_app(home, tmp_path / "streamlit.log") as url:
        yield url


def _wait_idle(page) -> None:  # noqa: ANN001 - playwright Page
    """Until the script run is over: no 'Running' status, no stale elements."""
    page.wait_for_function(
        """() => {
            const s = document.querySelector('[data-testid="stStatusWidget"]');
            const running = s && /Running/i.test(s.innerText);
            return !running && !document.querySelector('[data-stale="true"]');
        }""",
        timeout=180_000,
    )


def _assert_clean(page, where: str) -> None:  # noqa: ANN001
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, f"{where}: exception box: {exc.first.inner_text()[:2000]}"
    err = page.locator('[data-testid="stAlertContentError"]')
    assert err.count() == 0, f"{where}: st.error: " + " | ".join(err.all_inner_texts())


def _load_workloads_page(page, url: str) -> None:  # noqa: ANN001
    page.goto(f"{url}/workloads", timeout=120_000)
    page.get_by_text("Workloads", exact=True).first.wait_for(state="visible", timeout=120_000)
    _wait_idle(page)
    _assert_clean(page, "Workloads")


def _picker_options(page) -> list[str]:  # noqa: ANN001
    """The workload names the Workloads page's picker offers (what the app read)."""
    box = page.locator(".st-key-wl_pick input[role=combobox]")
    box.click()
    options = page.get_by_role("option")
    options.first.wait_for(state="visible", timeout=30_000)
    names = [t.strip() for t in options.all_inner_texts()]
    page.keyboard.press("Escape")
    return names


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (Debian package "
                    "chromium; .ci/run installs it when missing)")
def test_cli_writes_while_the_app_is_open(app: str, home: Path, tmp_path: Path) -> None:
    """With the app open on the Workloads page and reloading it throughout: `samples`, `load`,
    `run` on the bundled model and read-only commands on the same directory all succeed,
    nothing is lost, CHECKPOINT works afterwards, the app waited visibly while another process
    held the file, and its next rerun shows the new workloads."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) "
                                   "is not installed")
    csv = tmp_path / "tickets.csv"
    _write_csv(csv, IMPORT_ROWS)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # The app opens the store (creating the file) and reads it for the page.
            _load_workloads_page(page, app)
            page.get_by_text("No workloads yet").first.wait_for(state="visible")
            assert (home / "workbench.duckdb").exists()

            # While another process holds the file, the page waits and says so, then renders.
            holder = Holder(home)
            try:
                page.reload()
                page.get_by_text(re.compile(r"The data directory .* is in use: another "
                                            r"workbench process .* Waiting up to")).first.wait_for(state="visible", timeout=120_000)
            finally:
                holder.release()
            _wait_idle(page)
            _assert_clean(page, "Workloads after waiting")

            # CLI writers and readers at the same time as each other and the app's reruns.
            env = app_env(home)
            writers = {
                "load": subprocess.Popen(
                    _workbench("load", str(csv), "--name", "tickets"), cwd=ROOT, env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                "samples+run": subprocess.Popen(
                    ["bash", "-c", " ".join(_workbench("samples")) + " && "
                     + " ".join(_workbench("run", "--workload", "support-triage", "--model",
                                           BUNDLED_MODEL_NAME, "--limit", str(RUN_ITEMS),
                                           "--json"))],
                    cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True),
            }
            readers_ok = reloads = 0
            while any(p.poll() is None for p in writers.values()):
                for args in (("workloads", "--json"), ("sql", "SELECT count(*) FROM items")):
                    read = subprocess.run(_workbench(*args), cwd=ROOT, env=env,
                                          capture_output=True, text=True, timeout=300)
                    assert read.returncode == 0, read.stderr
                    readers_ok += 1
                page.reload()
                _wait_idle(page)
                _assert_clean(page, f"Workloads, reload {reloads}")
                reloads += 1
            outputs = {k: p.communicate(timeout=60) for k, p in writers.items()}
            for name, proc in writers.items():
                assert proc.returncode == 0, f"{name}: {outputs[name][1][-3000:]}"
            assert readers_ok >= 2 and reloads >= 1

            # Nothing lost: every imported row and every scored item is stored, once.
            summary = json.loads(outputs["samples+run"][0][outputs["samples+run"][0].index("{"):])
            assert summary["n_items"] == RUN_ITEMS
            store = Store(home / "workbench.duckdb")
            try:
                with store.session() as cur:
                    cur.execute("CHECKPOINT")
                    integrity = cur.execute(
                        "SELECT count(*), count(DISTINCT item_id) FROM items "
                        "WHERE workload = 'tickets'").fetchall()[0]
                assert integrity == (IMPORT_ROWS, IMPORT_ROWS)
                assert store.workload("tickets").n_items == IMPORT_ROWS
                runs = store.outcomes("support-triage")
                assert runs.height == RUN_ITEMS
                assert runs["model"].unique().to_list() == [BUNDLED_MODEL_NAME]
                assert runs["error"].null_count() == RUN_ITEMS
                names = {w.name for w in store.workloads()}
            finally:
                store.close()
            assert names == {"tickets", "support-triage", "field-extraction", "arithmetic-qa"}

            # The app's next rerun shows them, with the imported count.
            page.reload()
            _wait_idle(page)
            _assert_clean(page, "Workloads, final")
            assert set(_picker_options(page)) == names
            box = page.locator(".st-key-wl_pick input[role=combobox]")
            box.click()
            page.get_by_role("option", name="tickets", exact=True).click()
            items = page.locator('[data-testid="stMetric"]').filter(
                has=page.get_by_text("Items", exact=True)).first
            # the rerun for the new choice may not have started yet: wait for its figure
            sync_api.expect(items.locator('[data-testid="stMetricValue"]')).to_have_text(
                re.compile(rf"^\s*({IMPORT_ROWS}|{IMPORT_ROWS:,})\s*$"), timeout=120_000)
            _wait_idle(page)
            _assert_clean(page, "Workloads, tickets")
        finally:
            browser.close()
