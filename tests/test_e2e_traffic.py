"""Issue 15's journey in a real browser: a team uploads a week of its own traffic with a cheap
and a strong model's answers and no gold labels, and gets the share it can move, the monthly
saving with an interval, the slice to keep on the strong model, and the one-page report for
their manager. Driven through Debian's Chromium with Playwright against `streamlit run app.py`
(the fixture and helpers of tests/test_e2e_browser.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.test_e2e_browser import (  # noqa: F401 - app_url is a fixture
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    _assert_clean,
    _nav,
    _selected,
    _text,
    _wait_idle,
    app_url,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent"),
]
N = 280
LABELS = ("billing", "shipping", "refund", "account")


def traffic_csv() -> str:
    """Long format, one answer per row, no reference: the cheap model agrees with the strong
    one on short requests 96% of the time and on long ones (a quarter) 40%."""
    rng = np.random.default_rng(5)
    rows = ["item_id,input,model,output,cost_usd,latency_ms"]
    for i in range(N):
        long_ = i % 4 == 0
        text = (f"request {i} " + "with a long story about the order " * (12 if long_ else 1))
        strong = LABELS[int(rng.integers(len(LABELS)))]
        agree = rng.uniform() < (0.4 if long_ else 0.96)
        cheap = strong if agree else LABELS[(LABELS.index(strong) + 1) % len(LABELS)]
        rows.append(f"{i},{text.strip()},cheap,{cheap},0.0001,80")
        rows.append(f"{i},{text.strip()},strong,{strong},0.004,900")
    return "\n".join(rows) + "\n"


def test_own_traffic_without_labels_to_a_report(app_url: str, tmp_path: Path) -> None:  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api")
    csv = tmp_path / "week.csv"
    csv.write_text(traffic_csv())
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        page = None
        try:
            page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
            page.goto(app_url, timeout=60_000)
            _text(page, "Get started (no API key needed)")
            _wait_idle(page)
            # the week's traffic, uploaded as recorded outcomes (long format)
            _nav(page, "Workloads")
            page.get_by_role("tab", name="Upload").click()
            page.locator('.st-key-wl_upload input[type="file"]').set_input_files(str(csv))
            _text(page, "Format: long", 60)
            page.get_by_role("button", name="Import").wait_for(timeout=60_000)
            _wait_idle(page)
            page.get_by_role("button", name="Import").click()
            done = _text(page, re.compile(r"^Imported week: "), 120).inner_text()
            assert f"Imported week: {N} items, 2 models with outcomes" in done, done
            _wait_idle(page)
            _assert_clean(page, "Workloads, traffic imported")

            # Compare: no references, so quality is agreement with the strong model
            _nav(page, "Compare")
            _text(page, "What could move to a cheaper model?", 120)
            _wait_idle(page)
            _assert_clean(page, "Compare, traffic")
            assert _selected(page, "cmp_workload") == "week"
            assert _selected(page, "cmp_headline_basis") == "agreement with strong"
            headline = _text(page, re.compile(r"^\d+% of requests \(95% CI "), 180).inner_text()
            assert "can be answered by cheap, 40.0x cheaper than strong" in headline, headline
            m = re.search(r"saves \$([\d,]+) per month \(95% CI \$([\d,]+)-\$([\d,]+)\)",
                          headline)
            assert m, headline
            low, point, high = (int(g.replace(",", "")) for g in (m[2], m[1], m[3]))
            assert point > 0 and low <= point <= high, headline
            _text(page, "Quality here is agreement with strong, not accuracy.")
            # the slice to keep on the strong model: the long requests
            _text(page, "Slices where a model does significantly worse than on the rest")
            # the one-page report for a manager, a standalone file
            with page.expect_download(timeout=120_000) as dl:
                page.locator(".st-key-cmp_headline_html button").click()
            report = Path(dl.value.path()).read_text()
            assert len(report.encode()) < 5_000_000
            assert "agreement with strong, not accuracy" in report
            import html

            text = html.unescape(report)
            saving = headline[headline.index("can be answered by"):].split(", at ")[0]
            assert saving in text and m[0] in text, (saving, m[0])
            # the flagged slice in the report: the longest inputs, where cheap disagrees
            start = report.index("<h2>Slices where a model is significantly worse")
            section = report[start:report.index("<h2>", start + 4)]
            assert re.search(r"<td>cheap</td><td>input_length</td><td>&gt;\d+ chars</td>",
                             section), section[:1500]
            _wait_idle(page)
            _assert_clean(page, "Compare, report downloaded")

            # Review: the disagreements are queued one at a time
            _nav(page, "Review")
            _wait_idle(page)
            _assert_clean(page, "Review")
        except Exception:
            if page is not None:
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                print(f"[e2e] failure screenshot: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
