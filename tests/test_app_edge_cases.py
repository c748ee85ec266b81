"""Edge states of every page (empty home, no outcomes, one model, RouterBench import, learned
policy) and an API key that must never reach the data directory or command output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from workbench.store import open_store

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PAGES = ["pages/home.py", "pages/workloads.py", "pages/models.py", "pages/compare.py",
         "pages/review.py", "pages/route.py", "pages/tune.py", "pages/export.py"]


def _app(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page(page)
    return at.run()


def _no_exceptions(at: AppTest, where: str) -> None:
    assert not at.exception, (where, [e.value for e in at.exception])


def _all_pages_render(home: Path) -> None:
    for page in PAGES:
        _no_exceptions(_app(page), page)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = "import sys; from workbench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, env=env, timeout=600, cwd=ROOT, check=False)


def test_empty_home_every_page(home: Path) -> None:
    _all_pages_render(home)
    at = _app("pages/route.py")
    assert any("No workload has recorded outcomes" in i.value for i in at.info)
    at = _app("pages/export.py")
    assert any("No saved policy" in i.value for i in at.info)


def test_tiny_workload_without_outcomes(home: Path, tmp_path: Path) -> None:
    """Three items (fewer than the Compare slider's minimum of 5) and no outcomes yet."""
    from workbench.workloads import importers

    csv = tmp_path / "tiny.csv"
    csv.write_text("id,input,reference\n1,hi,a\n2,yo,b\n3,hey,c\n")
    importers.import_file(open_store(home), csv, "tiny", format="csv")
    _all_pages_render(home)
    at = _app("pages/compare.py")
    assert at.slider(key="cmp_limit").value <= 5


def _single_model(home: Path) -> None:
    from workbench.workloads.samples import load_samples

    store = open_store(home)
    load_samples(store, names=["support-triage"])
    ids = store.items("support-triage")["item_id"].to_list()
    n = len(ids)
    store.write_outcomes("support-triage", pl.DataFrame({
        "item_id": ids, "model": ["only"] * n, "output": ["billing"] * n,
        "quality": (np.arange(n) % 2).astype(float), "cost_usd": [0.001] * n,
        "latency_ms": [100.0] * n, "confidence": [0.5] * n,
    }))


def _drive_route_tune_export(where: str) -> None:
    """Route widgets incl. the learned pre-router, save, tune, then Export's "try it"."""
    at = _app("pages/route.py")
    for key in ("route_learned", "route_pii", "route_share_on"):
        at.toggle(key=key).set_value(True).run()
        _no_exceptions(at, f"{where}: {key}")
    for verifier in ("valid_label", "json", "number"):
        at.selectbox(key="route_verifier").set_value(verifier).run()
        _no_exceptions(at, f"{where}: verifier {verifier}")
    at.multiselect(key="route_tiers").set_value([]).run()
    _no_exceptions(at, f"{where}: no tiers")
    assert at.error, "an empty tier list should be a user error"
    at = _app("pages/route.py")
    at.toggle(key="route_learned").set_value(True).run()
    at.text_input(key="route_name").set_value("learned-p").run()
    at.button(key="route_save").click().run()
    _no_exceptions(at, f"{where}: save")
    assert any("Saved learned-p version 1" in s.value for s in at.success)

    at = _app("pages/tune.py")
    at.number_input(key="tune_trials").set_value(10).run()
    at.button(key="tune_go").click().run()
    _no_exceptions(at, f"{where}: tune")

    at = _app("pages/export.py")
    at.selectbox(key="exp_policy").set_value("learned-p").run()
    _no_exceptions(at, f"{where}: export")
    at.button(key="exp_route").click().run()
    _no_exceptions(at, f"{where}: export try it")
    assert any("learned router" in e.value for e in at.error), [e.value for e in at.error]


def test_single_model_outcomes(home: Path) -> None:
    _single_model(home)
    _all_pages_render(home)
    _drive_route_tune_export("single model")


def test_routerbench_import(home: Path) -> None:
    csv = SHARED_DATA / "routerbench" / "arc_challenge_test.csv"
    if not csv.exists():
        pytest.skip(f"shared data not available: {csv}")
    done = _cli("load", str(csv), "--name", "arc", "--home", str(home))
    assert done.returncode == 0, done.stderr
    _all_pages_render(home)
    _drive_route_tune_export("routerbench")


SECRET = "sk-test-REVIEWSECRET999"


def test_api_key_never_reaches_home_or_output(home: Path) -> None:
    """A hosted model on a dead loopback port: errors are recorded, the key is nowhere."""
    env = {**os.environ, "OPENAI_API_KEY": SECRET, "WORKBENCH_HOME": str(home)}
    steps = [
        ("samples", "--home", str(home)),
        ("models", "add", "dead", "--kind", "litellm", "--model", "openai/gpt-4o-mini",
         "--api-base", "http://127.0.0.1:9/v1", "--api-key-env", "OPENAI_API_KEY",
         "--timeout", "5", "--home", str(home)),
        ("models", "--home", str(home), "--json"),
        ("run", "--workload", "support-triage", "--model", "dead", "--limit", "3",
         "--home", str(home)),
        ("run", "--workload", "support-triage", "--model", "dead", "--limit", "3",
         "--home", str(home), "--json"),
        ("compare", "--workload", "support-triage", "--home", str(home)),
        ("route", "--policy", "dead-only", "--log-text", "none", "--home", str(home),
         "hello there"),
    ]
    from workbench.catalog import Catalog
    from workbench.policy import Policy

    output = []
    for i, args in enumerate(steps):
        if args[0] == "route":
            spec = {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9/v1",
                    "api_key_env": "OPENAI_API_KEY"}
            body = {"name": "dead-only", "models": {"dead": spec}, "tiers": [{"model": "dead"}]}
            Catalog(home).save_policy("dead-only", Policy.validate_data(body).to_yaml(),
                                      workload="support-triage")
        done = _cli(*args, env=env)
        output.append(done.stdout + done.stderr)
        if i < 3:
            assert done.returncode == 0, (args, done.stderr)
    assert "failed: connection" in output[-1], output[-1]  # the call was really attempted
    assert (home / "decisions.jsonl").exists()
    out = open_store(home).outcomes("support-triage")
    assert out.height == 3 and out["error"].is_not_null().all()
    assert SECRET not in "\n".join(output)
    files = [f for f in home.rglob("*") if f.is_file()]
    assert any(f.suffix == ".duckdb" for f in files)
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f


def test_policy_saved_for_another_workload(home: Path) -> None:
    """A base policy whose models have no outcomes here: a clear error on Tune (it used to be
    "ValueError: max() arg is an empty sequence"), a warning when loaded on Route."""
    from workbench.catalog import Catalog
    from workbench.policy import Policy

    _single_model(home)
    body = {"name": "foreign", "models": {"cheap": {"model": "cheap"},
                                          "strong": {"model": "strong"}},
            "tiers": [{"model": "cheap", "accept_above": 0.6}, {"model": "strong"}]}
    Catalog(home).save_policy("foreign", Policy.validate_data(body).to_yaml(), workload="other")

    at = _app("pages/tune.py")
    at.selectbox(key="tune_base").set_value("foreign").run()
    at.number_input(key="tune_trials").set_value(10).run()
    at.button(key="tune_go").click().run()
    _no_exceptions(at, "tune foreign base")
    errors = [e.value for e in at.error]
    assert any("cheap, strong" in e and "no recorded outcomes" in e for e in errors), errors
    assert not any("ValueError" in e for e in errors), errors

    at = _app("pages/route.py")
    at.radio(key="route_source").set_value("Saved policy").run()
    at.selectbox(key="route_load_pick").set_value("foreign").run()
    _no_exceptions(at, "route load foreign")
    errors = [e.value for e in at.error]
    assert any("cheap, strong" in e and "no recorded outcomes" in e for e in errors), errors
