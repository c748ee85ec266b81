"""Background jobs for long operations (runs, tuning): they survive Streamlit reruns, report
progress, and can be cancelled without losing finished work (the library writes as it goes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from workbench.errors import WorkbenchError


@dataclass
class Job:
    """One background operation: progress counters, a stop flag, its result or error."""

    label: str
    done: int = 0
    total: int = 0
    detail: str = ""
    started: float = field(default_factory=time.monotonic)
    stop_requested: bool = False
    result: Any = None
    error: str | None = None
    finished: bool = False
    thread: threading.Thread | None = None

    samples: list[tuple[float, int]] = field(default_factory=list)

    def progress(self, done: int, total: int, detail: str = "") -> None:
        """Progress callback handed to the library (any thread may call it). `total` 0 means
        a phase without a count (quantizing, loading): `detail` names it."""
        done, total = int(done), int(total)
        if total != self.total or done < self.done or done - self.done > 1:
            self.samples = []  # a new phase, or a batch of cached items: the pace starts over
        self.done, self.total, self.detail = done, total, str(detail or "")
        self.samples.append((time.monotonic(), done))
        del self.samples[:-WINDOW]

    def should_stop(self) -> bool:
        """Stop callback handed to the library."""
        return self.stop_requested

    def eta_s(self) -> float | None:
        """Seconds left from the throughput measured over the recent updates (not the average
        since the start, which counts setup time and cached items); None until it is known."""
        remaining = self.total - self.done
        if self.total <= 0 or remaining <= 0 or len(self.samples) < MIN_SAMPLES:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        if d1 <= d0 or t1 - t0 < MIN_SPAN_S:
            return None
        rate = (d1 - d0) / (t1 - t0)
        since_last = time.monotonic() - t1  # time already spent on the current item
        return max(remaining / rate - since_last, 0.0)

    def text(self) -> str:
        """The progress line: the phase, counts and the measured estimate."""
        stop = " (stopping after the current item...)" if self.stop_requested else ""
        if self.total <= 0:
            return f"{self.label}: {self.detail or 'starting'}...{stop}"
        eta = self.eta_s()
        eta_text = (f", about {_duration(eta)} left at the current pace" if eta is not None
                    else ", measuring the pace...")
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.label}{detail}: {self.done}/{self.total}{eta_text}{stop}"


WINDOW = 12  # progress updates the throughput is measured over
MIN_SAMPLES = 3
MIN_SPAN_S = 1.0


def _duration(seconds: float) -> str:
    """'45 s', '3 min', '1 h 5 min': rounded as a person would say it."""
    if seconds < 90:
        return f"{max(round(seconds / 5) * 5, 5):.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def start(key: str, label: str, target: Callable[[Job], Any]) -> Job:
    """Start `target(job)` in a thread and remember the job under `key` in the session."""
    job = Job(label)

    def body() -> None:
        try:
            job.result = target(job)
        except WorkbenchError as exc:
            job.error = str(exc)
        except Exception as exc:  # shown to the user; the traceback goes to the server log
            import logging

            logging.getLogger(__name__).exception("background job %s failed", label)
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = True

    job.thread = threading.Thread(target=body, name=f"workbench-{key}", daemon=True)
    st.session_state[key] = job
    job.thread.start()
    return job


def current(key: str) -> Job | None:
    """The job stored under `key`, if any."""
    return st.session_state.get(key)


def watch(key: str, *, poll_s: float = 0.4) -> Job | None:
    """Render a running job's progress (with a Cancel button) until it finishes; returns the
    finished job (once) or None when there is none."""
    job = current(key)
    if job is None:
        return None
    if not job.finished:
        cancel_slot = st.empty()
        if cancel_slot.button("Cancel", key=f"{key}_cancel"):
            job.stop_requested = True
        bar = st.progress(0.0, text=job.label)
        while not job.finished:
            frac = job.done / job.total if job.total else 0.0
            bar.progress(min(frac, 1.0), text=job.text())
            time.sleep(poll_s)
        bar.empty()
        cancel_slot.empty()
    return job
