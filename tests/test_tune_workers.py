"""Two `workbench tune` worker processes share one SQLite study: no trial is lost or repeated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna

from workbench import tune as tn
from workbench.bench.tune import base_policy, synthetic
from workbench.store import Store

REPO = Path(__file__).resolve().parents[1]
TRIALS = 12


def _home_with_workload(path: Path) -> Path:
    """A data directory of its own (as on another machine) holding the same workload."""
    path.mkdir()
    store = Store(path / "workbench.duckdb")
    items, outcomes = synthetic(2000, seed=4)
    store.add_workload_frame("syn", items, task_type="classification", source="test",
                             synthetic=True)
    store.write_outcomes("syn", outcomes)
    store.close()
    return path


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    """Both workers run TRIALS trials concurrently on one study: the study ends with exactly
    2 x TRIALS complete trials, numbered 0..2N-1 without gaps or repeats, with distinct
    parameters, each storing its full policy; the result file of each worker is valid."""
    url = f"sqlite:///{tmp_path / 'shared-studies.db'}"
    policy_file = tmp_path / "base.yaml"
    base_policy().to_file(policy_file)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    procs = []
    for worker in (0, 1):
        home = _home_with_workload(tmp_path / f"home{worker}")
        cmd = [sys.executable, "-m", "workbench", "tune", "--home", str(home),
               "--workload", "syn", "--objective", "min-cost", "--quality-floor", "0.8",
               "--trials", str(TRIALS), "--storage", url, "--study", "shared",
               "--seed", "3", "--worker", str(worker), "--policy", str(policy_file),
               "--out", str(tmp_path / f"best{worker}.yaml"), "--json"]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert json.loads(out)["study"] == "shared"

    study = tn.load_study(url, "shared")
    trials = study.get_trials()
    assert len(trials) == 2 * TRIALS
    assert sorted(t.number for t in trials) == list(range(2 * TRIALS))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    params = {json.dumps(t.params, sort_keys=True) for t in trials}
    assert len(params) == 2 * TRIALS
    for t in trials:
        assert tn.trial_policy(url, "shared", t.number).tier_models == ("cheap", "mid", "strong")
