"""The whole first-run journey in a real browser: `streamlit run app.py` on a free loopback
port with an empty WORKBENCH_HOME, driven by Debian's Chromium through Playwright.

Walks Home (samples -> run the local models -> compose -> tune -> download the policy file),
then every page via the sidebar, failing on any exception box or `st.error`. One screenshot per
page goes to docs/screenshots/ when WORKBENCH_SCREENSHOTS=1, else to the test's tmp_path.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, streamlit_app

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 800}
MAX_PNG_BYTES = 250_000
# A team's own Banking77-style tickets: numeric ids, 6 intents in blocks of 10, so the first 20
# ids by id would cover only 2 intents (a stratified slice covers all 6).
INTENTS = {
    "card_arrival": "When will my new card arrive? It has been {} days",
    "lost_card": "I lost my card on day {} of my trip so please block it",
    "exchange_rate": "What exchange rate applies to a transfer of {} euros",
    "top_up_failed": "My top-up of {} pounds failed again",
    "pending_transfer": "A transfer of {} dollars is still pending",
    "refund_not_showing": "The refund of {} euros is not on my statement",
}
UPLOAD_CSV = "ticket_no,body,intent\n" + "".join(
    f"{10 * k + i + 1},{text.format(3 + i)},{intent}\n"
    for k, (intent, text) in enumerate(INTENTS.items()) for i in range(10))
BROKEN_CSV = 'ticket_no,body\n1,"an unterminated quote\n'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} is absent (Debian package chromium; .ci/run installs "
                              "it when missing)"),
]


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    """`streamlit run app.py` on a free loopback port with an empty WORKBENCH_HOME; stopped
    (terminate, then kill) however the test ends."""
    home = tmp_path / "home"
    home.mkdir()
    with streamlit_app(home, tmp_path / "streamlit.log", timeout_s=90) as url:
        yield url


def _wait_idle(page, timeout_s: float = 120) -> None:  # noqa: ANN001 - playwright Page
    """Wait until the script run is over: no 'Running' status and no stale elements."""
    page.wait_for_function(
        """() => {
            const s = document.querySelector('[data-testid="stStatusWidget"]');
            const running = s && /Running/i.test(s.innerText);
            return !running && !document.querySelector('[data-stale="true"]');
        }""",
        timeout=timeout_s * 1000,
    )
    page.wait_for_timeout(400)  # let charts finish their first paint


def _assert_clean(page, where: str) -> None:  # noqa: ANN001
    """No Streamlit exception box and no `st.error` on the page."""
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, f"{where}: exception box: {exc.first.inner_text()[:2000]}"
    err = page.locator('[data-testid="stAlertContentError"]')
    assert err.count() == 0, f"{where}: st.error: " + " | ".join(err.all_inner_texts())


def _shot(page, out_dir: Path, name: str, anchor=None) -> Path:  # noqa: ANN001
    """Viewport screenshot from the top of the page (or from `anchor`), palette-quantized
    when it would be large."""
    path = out_dir / f"{name}.png"
    if anchor is None:
        page.evaluate("""() => { for (const el of document.querySelectorAll('*')) {
                                     if (el.scrollTop > 0) el.scrollTop = 0; } }""")
    else:
        anchor.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.mouse.move(5, VIEWPORT["height"] - 5)  # no hover toolbars over the charts
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    if path.stat().st_size > MAX_PNG_BYTES:
        from PIL import Image

        with Image.open(path) as img:
            small = img.convert("RGB").quantize(colors=128)
        small.save(path, optimize=True)
    return path


def _nav(page, title: str) -> None:  # noqa: ANN001
    """Go to a page through the sidebar navigation."""
    page.locator(f'[data-testid="stSidebarNavLink"] span[label="{title}"]').click()
    page.wait_for_url(re.compile(rf"/{title.lower()}$"), timeout=30_000)


def _text(page, pattern: str | re.Pattern[str], timeout_s: float = 60):  # noqa: ANN001, ANN202
    """The first element showing `pattern`, once visible."""
    loc = page.get_by_text(pattern).first
    loc.wait_for(state="visible", timeout=timeout_s * 1000)
    return loc


def _selected(page, key: str) -> str:  # noqa: ANN001
    """The value shown by the selectbox with widget key `key`."""
    return page.locator(f".st-key-{key} input[role=combobox]").input_value()


def _select(page, key: str, option: str) -> None:  # noqa: ANN001
    """Choose `option` in the selectbox with widget key `key`."""
    box = page.locator(f".st-key-{key} input[role=combobox]")
    for attempt in range(3):  # a rerun finishing just then may close the list: open it again
        box.click()
        item = page.get_by_role("option", name=option, exact=True)
        try:
            item.wait_for(state="visible", timeout=5_000)
            item.click()
            break
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    assert _selected(page, key) == option


def _metric(page, label: str) -> str:  # noqa: ANN001
    """The displayed value of the visible metric labelled `label`."""
    box = page.locator('[data-testid="stMetric"]:visible').filter(
        has=page.get_by_text(label, exact=True)).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_first_run_journey_in_a_browser(app_url: str, tmp_path: Path) -> None:
    """A new user's whole path in Chromium: Home's five steps with their figures, a downloaded
    policy file that loads, and every page rendering without an error."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) "
                                   "is not installed")

    from workbench.export import load_policy_file
    from workbench.journey import CHEAP_NAME, SLICE, TUNED_POLICY

    if os.environ.get("WORKBENCH_SCREENSHOTS") == "1":
        shots = ROOT / "docs" / "screenshots"
    else:
        shots = tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    def step(label: str) -> None:  # shown with the output of a failing run (or with -s)
        print(f"[e2e] {time.monotonic() - t0:6.1f} s  {label}", flush=True)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        page = None
        try:
            page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
            page.goto(app_url, timeout=60_000)
            _text(page, "Get started (no API key needed)")
            _wait_idle(page)
            _assert_clean(page, "Home, empty")
            # later steps wait for earlier ones
            assert page.locator(".st-key-home_run button").is_disabled()

            step("home loaded")
            # 1. samples
            page.locator(".st-key-home_load_samples button").click()
            loaded = _text(page, re.compile(r"^Loaded support-triage"), 120).inner_text()
            assert "support-triage (420 items)" in loaded, loaded
            assert re.search(r"field-extraction \(\d+ items\)", loaded), loaded
            assert re.search(r"arithmetic-qa \(\d+ items\)", loaded), loaded
            _wait_idle(page)
            _assert_clean(page, "Home, samples")

            step("samples loaded")
            # 2. run the two local tiers on the slice (real llama.cpp)
            run = page.locator(".st-key-home_run button")
            assert run.is_enabled()
            run.click()
            _text(page, "Running local models", 60)  # the progress bar
            done = _text(page, re.compile(rf"^{SLICE} items x 2 models: "), 600).inner_text()
            m = re.search(r"(\d+) calls, (\d+) cached, (\d+) errors", done)
            assert m, done
            assert int(m.group(1)) + int(m.group(2)) == 2 * SLICE, done
            assert int(m.group(3)) == 0, done
            _wait_idle(page)
            _assert_clean(page, "Home, run")
            best = _text(page, re.compile(r"^Best model so far: ")).inner_text()
            assert re.search(r"at quality [01]\.\d\d for \$\d+\.\d{6} per request", best), best
            assert page.locator(".st-key-home_chart_models").is_visible()

            step("local models run")
            # 3. compose the starter policy; its replay is explained in a caption
            page.locator(".st-key-home_compose button").click()
            replay = _text(page, re.compile(r"^Replayed on the recorded items: quality"),
                           120).inner_text()
            q = re.search(r"quality ([01]\.\d{3}), \$(\d+\.\d{6}) per request, (\d+)% escalated",
                          replay)
            assert q, replay
            assert 0.0 <= float(q.group(1)) <= 1.0 and 0 <= int(q.group(3)) <= 100
            _wait_idle(page)
            _assert_clean(page, "Home, compose")

            step("policy composed")
            # 4. tune
            page.locator(".st-key-home_tune button").click()
            held = _text(page, re.compile(r"^Held-out quality"), 300).inner_text()
            h = re.search(r"Held-out quality ([01]\.\d{3}) \(95% CI ([01]\.\d{3}) – "
                          r"([01]\.\d{3})\) at \$(\d+\.\d{6}) per request over (\d+) unseen",
                          held)
            assert h, held
            assert float(h.group(2)) <= float(h.group(1)) <= float(h.group(3)), held
            assert 0 < int(h.group(5)) < SLICE, held
            _wait_idle(page)
            _assert_clean(page, "Home, tune")

            step("tuned")
            # 5. download the policy file and load it like a production router would
            with page.expect_download(timeout=60_000) as dl_info:
                page.locator(".st-key-home_download button").click()
            download = dl_info.value
            assert download.suggested_filename == f"{TUNED_POLICY}.yaml"
            policy_path = tmp_path / download.suggested_filename
            download.save_as(policy_path)
            policy = load_policy_file(policy_path)
            assert policy.name == TUNED_POLICY
            assert CHEAP_NAME in [t.model for t in policy.tiers]
            assert policy.provenance is not None and policy.provenance.holdout_metrics
            assert policy.provenance.holdout_metrics["n"] == int(h.group(5))
            _wait_idle(page)
            _assert_clean(page, "Home, download")
            # the download's rerun shows every step done, the download included, with
            # Material icons (rendered from Streamlit's own font, no emoji font needed)
            for n, title in enumerate(["Load the sample workloads", "Run two local models",
                                       "Compose a routing policy", "Tune its thresholds",
                                       "Export it"], 1):
                # a Material icon is a ligature: its name is the element's text; the
                # download's rerun may still be on its way on a busy machine, so wait for it
                header = page.locator("h4", has_text=f"{n}. {title}")
                header.filter(has_text="check_circle").wait_for(state="visible",
                                                                timeout=60_000)
                assert header.inner_text().startswith("check_circle"), (n, title)
            _shot(page, shots, "home")

            step("policy downloaded")
            # Workloads: the samples are listed; upload a CSV with an explicit mapping
            _nav(page, "Workloads")
            _text(page, "Distribution by")
            _wait_idle(page)
            _assert_clean(page, "Workloads")
            assert page.locator('[data-testid="stDataFrame"]').first.is_visible()  # the list
            assert _selected(page, "wl_pick") == "support-triage"
            assert _metric(page, "Items") == "420"
            assert _metric(page, "Models with outcomes") == "2"
            _shot(page, shots, "workloads")

            step("workloads page")
            page.get_by_role("tab", name="Upload").click()
            upload = page.locator('.st-key-wl_upload input[type="file"]')
            # a broken file first: the message names the user's file, not where it was saved
            broken = tmp_path / "team broken.csv"
            broken.write_text(BROKEN_CSV)
            upload.set_input_files(str(broken))
            err = page.locator('[data-testid="stAlertContentError"]').first
            err.wait_for(timeout=60_000)
            assert "team broken.csv" in err.inner_text(), err.inner_text()
            assert "uploads" not in err.inner_text(), err.inner_text()
            _wait_idle(page)
            csv = tmp_path / "tickets.csv"
            csv.write_text(UPLOAD_CSV)
            upload.set_input_files(str(csv))
            _text(page, "Format: csv", 60)
            page.get_by_role("button", name="Import").wait_for(timeout=60_000)
            _wait_idle(page)
            _assert_clean(page, "Workloads, upload")
            _select(page, "map_id", "ticket_no")
            _select(page, "map_input", "body")
            _select(page, "map_ref", "intent")
            name = page.locator(".st-key-wl_name input")
            name.fill("e2e-tickets")
            page.get_by_role("button", name="Import").click()
            imported = _text(page, re.compile(r"^Imported e2e-tickets: "), 60).inner_text()
            assert "Imported e2e-tickets: 60 items, 0 models with outcomes" in imported, imported
            _wait_idle(page)
            _assert_clean(page, "Workloads, after upload")
            # the same run lists it and opens the explorer on it, no navigation needed
            assert _selected(page, "wl_pick") == "e2e-tickets"
            assert _metric(page, "Items") == "60"
            assert _metric(page, "Labels") == "6"
            uploads = sorted(p.name for p in (tmp_path / "home" / "uploads").iterdir())
            assert [u.split("-", 1)[1] for u in uploads] == ["tickets.csv"], uploads

            step("upload imported")
            # Models: the bundled model and its re-quantized copy, the GGUF checked
            _nav(page, "Models")
            _text(page, "Hosted provider keys")
            _wait_idle(page)
            _assert_clean(page, "Models")
            assert page.locator('[data-testid="stDataFrame"]').first.is_visible()
            page.get_by_role("tab", name="Edit or delete").click()
            _text(page, re.compile(r"^GGUF file OK: .+\.gguf \(\d+ MB\)"), 30)
            _select(page, "me_pick", CHEAP_NAME)
            _wait_idle(page)
            _text(page, re.compile(rf"^GGUF file OK: .+{re.escape(CHEAP_NAME)}.*\.gguf"), 30)
            _assert_clean(page, "Models, edit")
            # the prompt the model receives for one of the team's tickets, with their labels
            page.get_by_role("tab", name="Prompt and examples").click()
            _select(page, "mp_workload", "e2e-tickets")
            _wait_idle(page)
            prompt = page.locator('[data-testid="stCode"]:visible').filter(
                has_text="Category:").first.inner_text()
            assert "card_arrival, exchange_rate, lost_card" in prompt and "new card" in prompt, \
                prompt[:600]
            _assert_clean(page, "Models, prompt")
            page.get_by_role("tab", name="Add").click()
            _shot(page, shots, "models")

            step("models page")
            # Compare: recorded metrics of both tiers on the slice, item by item
            _nav(page, "Compare")
            _text(page, "Models to run")
            _wait_idle(page)
            _assert_clean(page, "Compare")
            assert _selected(page, "cmp_workload") == "e2e-tickets"  # the current workload
            # the default slice is a seeded sample stratified by label: all 6 intents
            _text(page, "Runs on a sample of 20 items stratified by label (seed 0), covering "
                        "6 of 6 label values.")
            _select(page, "cmp_workload", "support-triage")
            _text(page, "Per-model metrics")
            _wait_idle(page)
            _assert_clean(page, "Compare, support-triage")
            assert page.get_by_text("Quality with a 95% bootstrap interval").is_visible()
            _text(page, f"{SLICE} items")  # the side-by-side table, filter "all"
            _shot(page, shots, "compare")

            step("compare page")
            # Route: replays the recorded slice with live metrics
            _nav(page, "Route")
            _text(page, f"{SLICE} of 420 items have recorded outcomes; replaying those.")
            _wait_idle(page)
            _assert_clean(page, "Route")
            assert re.fullmatch(r"[01]\.\d{3}", _metric(page, "Quality"))
            assert _metric(page, "Cost / request").startswith("$")
            _text(page, "Decision trace")
            # it opens on the policy Home just tuned, and replays an uploaded policy file
            assert _selected(page, "route_load_pick") == TUNED_POLICY
            page.locator(".st-key-route_source").get_by_text("Upload a policy file").click()
            page.locator(".st-key-route_upload input[type=file]").set_input_files(
                str(policy_path))
            _text(page, f"Loaded {policy_path.name}: policy {TUNED_POLICY!r}", 60)
            _wait_idle(page)
            _assert_clean(page, "Route, uploaded policy")
            assert re.fullmatch(r"[01]\.\d{3}", _metric(page, "Quality"))
            _shot(page, shots, "route")

            step("route page")
            # Tune: a short study from the page itself, held-out figures shown
            _nav(page, "Tune")
            _text(page, "Tuning uses a train split only; the held-out items judge the result.")
            _wait_idle(page)
            _assert_clean(page, "Tune")
            trials = page.locator(".st-key-tune_trials input")
            trials.fill("30")
            trials.press("Enter")
            _wait_idle(page)
            page.locator(".st-key-tune_go button").click()
            best_head = _text(page, re.compile(r"^Best policy \(study "), 300)
            _wait_idle(page)
            _assert_clean(page, "Tune, result")
            assert re.fullmatch(r"[01]\.\d{3}", _metric(page, "Holdout quality"))
            assert int(_metric(page, "Holdout items")) == int(h.group(5))
            _shot(page, shots, "tune", anchor=best_head)

            step("tune page")
            # Export: the tuned policy is preselected, its file and LiteLLM config shown
            _nav(page, "Export")
            _text(page, "Try it")
            _wait_idle(page)
            _assert_clean(page, "Export")
            assert _selected(page, "exp_policy") == TUNED_POLICY
            code = page.locator('[data-testid="stCode"]:visible').first.inner_text()
            assert f"name: {TUNED_POLICY}" in code and CHEAP_NAME in code, code[:500]
            assert page.locator(".st-key-exp_dl_policy button").is_visible()
            assert page.locator(".st-key-exp_dl_litellm button").is_visible()
            _shot(page, shots, "export")
            step("export page")
        except Exception:
            if page is not None:  # what the browser showed, next to streamlit.log
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                print(f"[e2e] failure screenshot: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()

    for name in ("home", "workloads", "models", "compare", "route", "tune", "export"):
        png = shots / f"{name}.png"
        assert png.exists() and 0 < png.stat().st_size <= MAX_PNG_BYTES, png
