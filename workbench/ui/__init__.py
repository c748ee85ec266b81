"""Streamlit glue: the only package (with pages/) that imports streamlit.

Cached resources (one store and catalog object per process; the store opens its file only
while in use), session keys, and small render helpers
that turn library errors into `st.error` messages instead of tracebacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import streamlit as st

from workbench import settings
from workbench.errors import WorkbenchError
from workbench.store import Store, open_store


def home_dir() -> Path:
    """The data directory for this app process (WORKBENCH_HOME)."""
    return settings.home()


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    return open_store(path)


def _waiting_notice(message: str) -> None:
    st.toast(message, icon=":material/hourglass_top:")


def store() -> Store:
    """The process-wide DuckDB store. It holds the file only while reading or writing, so CLI
    commands can use the same data directory; when one of them has it, the page waits and
    says so (a toast) rather than failing."""
    shared = _store(str(home_dir()))
    shared.set_wait_notice(_waiting_notice)  # for this script thread
    return shared


@st.cache_resource(show_spinner=False)
def _catalog(path: str):  # noqa: ANN202 - Catalog import deferred to keep startup light
    from workbench.catalog import Catalog

    cat = Catalog(path)
    cat.ensure_defaults()
    return cat


def catalog():  # noqa: ANN201
    """The process-wide model/policy catalog, with the bundled local model registered."""
    return _catalog(str(home_dir()))


@st.cache_resource(show_spinner=False, max_entries=4)
def _recorded_frames(path: str, workload: str,
                     version: tuple[str, int, int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    del version  # part of the cache key only
    st_ = open_store(path)
    return st_.recorded_items(workload), st_.outcomes(workload)


def recorded_frames(workload: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(items with outcomes, outcomes) of a workload: the same frame objects across reruns
    while the stored outcomes are unchanged, so replay's per-frame cache (governance
    detections, outcome matrices) is reused and a widget change only redoes cascade math."""
    shared = store()
    with shared.session():  # opened (or waited for, with the notice) outside the cached function
        return _recorded_frames(str(home_dir()), workload, shared.outcomes_version(workload))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a WorkbenchError as `st.error` (what went wrong and what to do), not a traceback."""
    try:
        yield
    except WorkbenchError as exc:
        st.error(str(exc), icon=":material/error:")


def workload_picker(label: str = "Workload", key: str = "workload", *,
                    require_outcomes: bool = False) -> str | None:
    """A selectbox of stored workloads (remembered across pages); None with a hint when empty."""
    infos = store().workloads()
    if require_outcomes:
        infos = [w for w in infos if w.n_outcomes > 0]
    if not infos:
        hint = ("No workload has recorded outcomes yet: run models on the Compare page or import "
                "recorded outcomes on the Workloads page." if require_outcomes else
                "No workloads yet: load the samples on the Home or Workloads page.")
        st.info(hint)
        return None
    names = [w.name for w in infos]
    remembered = st.session_state.get("current_workload")
    index = names.index(remembered) if remembered in names else 0
    choice = st.selectbox(label, names, index=index, key=key)
    st.session_state["current_workload"] = choice
    return choice
