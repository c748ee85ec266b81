"""The real app for browser tests: `streamlit run app.py` on a free loopback port over a data
directory, healthy before the test drives it and stopped however the test ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium (.ci/run installs it when missing)
# as root, headless, and quiet on a closed network (no background connections)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def python() -> str:
    """The project's interpreter (the venv's when there is one)."""
    return str(PYTHON if PYTHON.exists() else Path(sys.executable))


def app_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an app or CLI process over data directory `home`."""
    return {**os.environ, "WORKBENCH_HOME": str(home),
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **extra}


def log_tail(log: Path, n: int = 40) -> str:
    """The last `n` lines of a process log (for failure messages)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "\n".join(lines[-n:])


def stop(proc: subprocess.Popen) -> None:
    """Stop a process group: terminate, then kill after 15 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@contextlib.contextmanager
def streamlit_app(home: Path, log: Path, *, timeout_s: float = 120) -> Iterator[str]:
    """`streamlit run app.py` over `home`, logging to `log`; yields its URL once healthy."""
    port = free_port()
    cmd = [python(), "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           # no hot reload: the tests edit nothing, and watching the repo (.venv) costs CPU
           "--server.fileWatcherType", "none", "--server.runOnSave", "false"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=app_env(home), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200 and resp.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit not healthy after {timeout_s:.0f} s:\n{log_tail(log)}")
            time.sleep(0.5)
        yield url
    finally:
        stop(proc)
