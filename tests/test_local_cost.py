"""Local cost from measured throughput (workbench.local_cost), with real llama.cpp inference on
the bundled model: the same items cost the same on a busy and a quiet machine, the measurement
is stored and reused, each cost says how it was derived, and exports carry the local price."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from workbench import local_cost
from workbench.catalog import Catalog, bundled_model_path
from workbench.errors import WorkbenchError
from workbench.export import litellm_config, load_policy_text, policy_text
from workbench.local_cost import tps_text
from workbench.models import ModelSpec
from workbench.policy import Policy
from workbench.providers.base import Request
from workbench.providers.local import LocalProvider
from workbench.runner import run
from workbench.store import Store
from workbench.workloads.samples import load_samples

RATE = 0.36  # USD per hour of the machine
WORKBENCH = str(Path(sys.executable).with_name("workbench"))


def local(name: str, threads: int = 1, **kw: object) -> ModelSpec:
    # One thread: on this shared 2-core machine two threads contend with other work.
    return ModelSpec(name=name, kind="local-gguf", model=str(bundled_model_path()),
                     threads=threads, hardware_usd_per_hour=RATE, **kw)  # type: ignore[arg-type]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@contextlib.contextmanager
def cpu_burners(n: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`n` processes spinning on the CPU, running (checked) before the block starts."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        deadline = time.monotonic() + 120
        while any(_cpu_ticks(p.pid) < 10 for p in procs):  # each has burnt >= 0.1 s of CPU
            assert time.monotonic() < deadline, "the CPU burners never got to run"
            time.sleep(0.05)
        yield procs
        assert all(p.poll() is None for p in procs)  # the load lasted the whole block
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.fixture
def triage(store: Store) -> Store:
    load_samples(store, ["support-triage"])
    return store


def test_same_items_cost_the_same_on_a_busy_and_a_quiet_machine(triage: Store,
                                                                 home: Path) -> None:
    quiet, busy = local("gemma-quiet"), local("gemma-busy")
    tp = local_cost.ensure(quiet, home)  # measured once (or earlier in this process), stored
    factory = local_cost.provider_factory(home)
    first = run(triage, "support-triage", [quiet], limit=3, provider_factory=factory)
    with cpu_burners(2):  # both cores busy while the same items run again
        second = run(triage, "support-triage", [busy], limit=3, provider_factory=factory)
    assert first.errors == 0 and second.errors == 0 and first.calls == second.calls == 3
    out = triage.outcomes("support-triage").sort("item_id")
    q = out.filter(out["model"] == "gemma-quiet")
    b = out.filter(out["model"] == "gemma-busy")
    assert q["prompt_tokens"].to_list() == b["prompt_tokens"].to_list()
    # Exact equality: a call's cost is its token counts times rates fixed by the stored
    # measurement, so no tolerance is needed (wall time, which the load changes, is not used).
    assert q["cost_usd"].to_list() == b["cost_usd"].to_list()
    assert all(c > 0 for c in q["cost_usd"].to_list())
    inp, out_price = tp.prices(RATE)
    for row in q.iter_rows(named=True):
        sig = json.loads(row["signals"])
        scored = sig["label_tokens_scored"]
        expected = (row["prompt_tokens"] / tp.prompt_tps + scored / tp.gen_tps) * RATE / 3600
        assert row["cost_usd"] == pytest.approx(expected, rel=1e-12)
        assert row["cost_usd"] == pytest.approx(
            (row["prompt_tokens"] * inp + scored * out_price) / 1e6, rel=1e-12)
        assert sig["cost_basis"].startswith(
            f"local: {row['prompt_tokens']:,} prompt tokens at {tps_text(tp.prompt_tps)} tok/s + "
            f"{scored:,} label token")
        assert f"at {tps_text(tp.gen_tps)} tok/s, $0.36/h (measured " in sig["cost_basis"]
        assert sig["cost_measure"]["contended"] == tp.contended
    # Neither run measured again: the stored measurement was reused as it was.
    assert local_cost.lookup(busy, home) == tp
    assert len(local_cost.stored(home)) == 1
    # Measured again (here: a faster machine state, stored as calibrate would), the recorded
    # calls of a model are charged again at the new speed; other models' rows are left alone.
    faster = dataclasses.replace(tp, prompt_tps=tp.prompt_tps * 2, gen_tps=tp.gen_tps * 2,
                                 contended=False, measured_at="2026-12-02T00:00:00+00:00")
    local_cost.save(faster, home)
    assert local_cost.recost(triage, quiet, home) == 3
    again = triage.outcomes("support-triage").sort("item_id")
    halved = again.filter(again["model"] == "gemma-quiet")["cost_usd"].to_list()
    assert halved == pytest.approx([c / 2 for c in q["cost_usd"].to_list()], rel=1e-12)
    assert again.filter(again["model"] == "gemma-busy")["cost_usd"].to_list() == \
        b["cost_usd"].to_list()
    sig = json.loads(again.filter(again["model"] == "gemma-quiet")["signals"][0])
    assert "(measured 2026-12-02)" in sig["cost_basis"] and not sig["cost_measure"]["contended"]


def test_measurement_under_load_is_flagged(home: Path) -> None:
    spec = local("gemma-two-threads", threads=2)
    with cpu_burners(3):  # five busy threads on two cores: each gets well under 60% of one
        tp = local_cost.ensure(spec, home, force=True, trials=1)  # one trial: keep it short
    assert tp.contended and tp.threads == 2 and tp.trials == 1
    assert min(tp.prompt_cpu_share, tp.gen_cpu_share) < local_cost.CONTENDED_BELOW
    assert "measured under contention" in tp.describe()
    assert local_cost.lookup(spec, home) == tp  # the flag is stored with the speeds
    assert tp.prompt_tps > tp.gen_tps > 0
    # The Models page shows it, as a warning, for the bundled model (all cores: 2 threads).
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=120)
    at.switch_page("pages/models.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [w.value for w in at.warning if w.value.startswith("Speed on this machine")]
    assert shown and "measured under contention" in shown[0] and "per 1M prompt tokens" in \
        shown[0], [w.value for w in at.warning]


def test_cli_calibrates_once_and_runs_reuse_it(triage: Store, home: Path) -> None:
    Catalog(home).add(local("gemma"))
    env = {**os.environ, "WORKBENCH_HOME": str(home / "elsewhere")}  # --home must win
    cal = subprocess.run([WORKBENCH, "models", "calibrate", "gemma", "--trials", "2",
                          "--home", str(home)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert cal.returncode == 0, cal.stderr
    assert "measuring the speed of gemma" in cal.stderr
    assert "tok/s prompt" in cal.stdout and "per 1M prompt tokens" in cal.stdout
    measured = local_cost.lookup(local("gemma"), home)
    assert measured is not None and measured.trials == 2
    ran = subprocess.run([WORKBENCH, "run", "--workload", "support-triage", "--model", "gemma",
                          "--limit", "1", "--home", str(home)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert ran.returncode == 0, ran.stderr
    assert "measuring" not in ran.stderr  # stored: not measured again
    row = triage.outcomes("support-triage").row(0, named=True)
    basis = json.loads(row["signals"])["cost_basis"]
    assert f"at {tps_text(measured.prompt_tps)} tok/s" in basis
    shown = subprocess.run([WORKBENCH, "models", "calibrate", "gemma", "--show", "--json",
                            "--home", str(home)], capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["measured_at"] == measured.measured_at and data["prompt_tps"] > 0
    assert data["input_price_per_mtok"] == pytest.approx(measured.prices(RATE)[0])
    assert not (home / "elsewhere" / local_cost.STORE_FILE).exists()


def test_export_carries_the_local_price(home: Path) -> None:
    spec = local("cheap")
    tp = local_cost.ensure(spec, home)
    policy = Policy.validate_data({"name": "p", "models": {"cheap": spec.model_dump()},
                                   "tiers": [{"model": "cheap"}]})
    text = policy_text(policy, "yaml")
    exported = yaml.safe_load(text)["models"]["cheap"]
    inp, out = tp.prices(RATE)
    assert exported["input_price_per_mtok"] == pytest.approx(inp) and inp > 0
    assert exported["output_price_per_mtok"] == pytest.approx(out) and out > inp
    params = litellm_config(policy)["model_list"][0]["litellm_params"]
    assert params["input_cost_per_token"] == pytest.approx(inp / 1e6)
    # A router running the exported file charges the exported prices: the same figure.
    loaded = load_policy_text(text).models["cheap"].replace(model=spec.model)
    req = Request("1", "classification", "My card was charged twice", ("billing", "shipping"))
    priced = LocalProvider(loaded, home=home).complete(req)
    measured = LocalProvider(spec, home=home).complete(req)
    assert priced.error is None and priced.cost_usd == pytest.approx(measured.cost_usd, rel=1e-9)
    assert "(prices set on the model)" in priced.signals["cost_basis"]


def test_bad_input_is_a_clear_error(home: Path) -> None:
    bad = home / local_cost.STORE_FILE
    bad.write_text("{not json")
    with pytest.raises(WorkbenchError, match="local_throughput.json.*measure again"):
        local_cost.lookup(local("gemma"), home)
    assert bad.read_text() == "{not json"  # nothing changed
    bad.unlink()
    with pytest.raises(WorkbenchError, match="hosted model"):
        local_cost.lookup(ModelSpec(name="h", model="openai/gpt-4o"), home)
    Catalog(home).add(ModelSpec(name="h", model="openai/gpt-4o"))
    Catalog(home).add(local("gemma"))
    for args, message in ((["h"], "hosted model"), (["gemma", "--trials", "0"], "--trials"),
                          (["gemma", "--show"], "no speed measured")):
        res = subprocess.run([WORKBENCH, "models", "calibrate", *args, "--home", str(home)],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert not bad.exists()


JOURNEY_RUN = """
import sys
from workbench import journey
from workbench.catalog import Catalog
from workbench.store import open_store
home = sys.argv[1]
store = open_store(home)
from workbench.workloads.samples import load_samples
load_samples(store, names=[journey.WORKLOAD])
summary = journey.run_slice(store, Catalog(home), limit=2, home=home,
                            progress=lambda d, t, m: print("progress:", m, flush=True))
print("done:", summary.n_items)
"""


@pytest.mark.slow
def test_home_run_says_it_measures_first(tmp_path: Path) -> None:
    """Home's step 2 on a new machine: the progress says each local model is being measured
    (before, the run paused silently on its first call), then loads and runs them."""
    home = tmp_path / "fresh"
    done = subprocess.run([sys.executable, "-c", JOURNEY_RUN, str(home)], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "WORKBENCH_HOME": str(home)})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("progress:")]
    measuring = [i for i, ln in enumerate(lines) if "measuring the speed of" in ln]
    loading = lines.index("progress: loading the local models")
    assert len({lines[i].split(" of ")[1].split()[0] for i in measuring}) == 2, lines[:12]
    assert max(measuring) < loading, lines[:12]
    assert "done: 2" in done.stdout
