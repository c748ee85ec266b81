"""Shared fixtures: a temporary WORKBENCH_HOME with a real DuckDB store, and the shared data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.store import Store, open_store

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data directory, also exported as WORKBENCH_HOME for code that reads settings."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("WORKBENCH_HOME", str(path))
    return path


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    """A real DuckDB store in the temporary data directory, closed afterwards."""
    st = open_store(home)
    yield st
    st.close()


def shared_file(*parts: str) -> Path:
    """Path of a file under ../shared/data; skips the test when the shared data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path
