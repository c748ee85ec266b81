"""Progress a person can trust: phases without a count, the pace measured over recent items
(not since the start, which counts setup and cached items), and durations said plainly."""

from __future__ import annotations

import time

import pytest

from workbench.ui.jobs import Job, _duration


def test_a_phase_without_a_count_names_itself() -> None:
    job = Job("Running local models")
    job.progress(0, 0, "re-quantizing the bundled model to Q3_K_M (once, about 10 s)")
    assert job.text() == ("Running local models: re-quantizing the bundled model to Q3_K_M "
                          "(once, about 10 s)...")
    assert "0/0" not in job.text()
    assert job.eta_s() is None


def test_pace_is_measured_over_recent_items_only() -> None:
    job = Job("Running local models")
    job.progress(0, 80, "m")
    assert job.eta_s() is None and "measuring the pace" in job.text()
    job.progress(30, 80, "m")  # 30 cached items at once: not a pace
    assert job.samples == [job.samples[-1]]
    now = time.monotonic()
    # one item every 2 s over the last 10 items
    job.samples = [(now - 20.0 + 2.0 * k, 30 + k) for k in range(11)]
    job.done = 40
    eta = job.eta_s()
    assert eta == pytest.approx(40 * 2.0, abs=1.0)
    assert "(m): 40/80, about 80 s left at the current pace" in job.text()
    job.progress(0, 40, "next model")  # a new count: the pace starts over
    assert job.eta_s() is None


@pytest.mark.parametrize(("seconds", "said"), [
    (3, "5 s"), (44, "45 s"), (89, "90 s"), (150, "2 min"), (3600 + 300, "1 h 5 min")])
def test_durations_are_said_plainly(seconds: float, said: str) -> None:
    assert _duration(seconds) == said
