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

    def progress(self, done: int, total: int, detail: str = "") -> None:
        """Progress callback handed to the library (any thread may call it)."""
        self.done, self.total, self.detail = int(done), int(total), str(detail or "")

    def should_stop(self) -> bool:
        """Stop callback handed to the library."""
        return self.stop_requested

    def eta_s(self) -> float | None:
        """Seconds left, extrapolated from the rate so far."""
        elapsed = time.monotonic() - self.started
        if self.done <= 0 or self.total <= 0:
            return None
        return elapsed / self.done * max(self.total - self.done, 0)


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
            eta = job.eta_s()
            eta_text = f", about {eta:.0f} s left" if eta is not None else ""
            stop_text = " (stopping after the current item...)" if job.stop_requested else ""
            bar.progress(min(frac, 1.0),
                         text=f"{job.label}: {job.done}/{job.total} {job.detail}{eta_text}"
                              f"{stop_text}")
            time.sleep(poll_s)
        bar.empty()
        cancel_slot.empty()
    return job
