"""The README stays true: settings table matches the code; its two commands are the Makefile's."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from workbench.docs import settings_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _fresh_machine_commands() -> list[str]:
    block = README.split("## Two commands for a fresh machine", 1)[1].split("```bash", 1)[1]
    block = block.split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def test_settings_table_matches_code() -> None:
    section = README.split("<!-- settings-table:start -->", 1)[1].split(
        "<!-- settings-table:end -->", 1)[0]
    assert section.strip() == settings_table().strip()


def test_readme_opens_with_exactly_two_commands() -> None:
    assert _fresh_machine_commands() == ["make app", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^app: \$\(STAMP\)\n\t.*streamlit run app\.py", makefile, re.M)
    assert re.search(r"^test: \$\(STAMP\)\n(\t.*\n)*\t.*pytest", makefile, re.M)


def test_test_command_is_set_up_here() -> None:
    """`make test`'s setup step is up to date in this checkout (so it is quick to rerun)."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert "pytest" in dry.stdout
    assert "pip install" not in dry.stdout, "the .venv stamp is stale: make would reinstall"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_app_starts_the_app(tmp_path: Path) -> None:
    """Run the README's app command for real and wait for the server's health endpoint."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    port = _free_port()
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home"),
           "STREAMLIT_SERVER_PORT": str(port), "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
           "STREAMLIT_SERVER_HEADLESS": "true"}
    proc = subprocess.Popen(["make", "app"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=2) as resp:
                    healthy = resp.status == 200
                    break
            except OSError:
                time.sleep(0.5)
        assert healthy, "the app did not become healthy"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _walkthrough() -> list[str]:
    block = README.split("<!-- cli-walkthrough:start -->", 1)[1].split(
        "<!-- cli-walkthrough:end -->", 1)[0]
    body = block.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in body.strip().splitlines() if line.strip()]


@pytest.mark.slow
def test_cli_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """Every command of the README's CLI walk-through, in order, against a temporary home,
    with the real console script (real local inference, tuning, export, live routing)."""
    import shlex
    import sys

    from workbench.export import load_policy_file

    exe = Path(sys.executable).parent / "workbench"
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home")}
    outputs: dict[str, str] = {}
    for line in _walkthrough():
        argv = shlex.split(line)
        assert argv[0] == "workbench"
        proc = subprocess.run([str(exe), *argv[1:]], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
        outputs[argv[1]] = proc.stdout
    import json

    workloads = {w["name"]: w["n_items"] for w in json.loads(outputs["workloads"])}
    assert workloads["support-triage"] >= 300
    compare = json.loads(outputs["compare"])
    assert compare  # per-model metrics present
    tuned = json.loads(outputs["tune"])
    assert tuned["holdout"]["n"] > 0 and tuned["train"]["n"] > tuned["holdout"]["n"]
    policy = load_policy_file(tmp_path / "policy.yaml")
    assert policy.provenance is not None and policy.provenance.holdout_metrics
    assert "model_list" in (tmp_path / "litellm.yaml").read_text()
    assert outputs["route"].startswith("answer (")
