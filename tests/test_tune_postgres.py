"""Studies shared through a real PostgreSQL server (tests/pg.py starts one on loopback).

Worker processes are real `workbench tune` subprocesses with data directories of their own (as
on other machines) and one storage URL carrying a password. Covered: two workers lose no trial;
a worker killed mid-trial leaves the study usable (its trial is failed through Optuna's heartbeat,
the others finish); an unreachable or refused URL is a clear error without the password, and
nothing reaches the catalog.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import optuna
import pytest

from tests.pg import DATABASE, ROLE, PgServer, pg_server  # noqa: F401  (session fixture)
from tests.servers import free_port
from tests.test_tune_workers import _home_with_workload
from workbench import tune as tn
from workbench.bench.tune import base_policy
from workbench.catalog import Catalog
from workbench.errors import WorkbenchError
from workbench.policy import Policy
from workbench.store import open_store
from workbench.tune.storage import open_storage

REPO = Path(__file__).resolve().parents[1]
STALE_S = 6  # WORKBENCH_TUNE_STALE_S for the workers: heartbeat every 1 s, stale after 6 s
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "WORKBENCH_TUNE_STALE_S": str(STALE_S)}


def _tune(tmp_path: Path, url: str, study: str, worker: int, trials: int) -> subprocess.Popen:
    """Start `workbench tune` as worker `worker` with a data directory of its own."""
    policy_file = tmp_path / "base.yaml"
    if not policy_file.exists():
        base_policy().to_file(policy_file)
    home = _home_with_workload(tmp_path / f"{study}-home{worker}")
    cmd = [sys.executable, "-m", "workbench", "tune", "--home", str(home),
           "--workload", "syn", "--objective", "min-cost", "--quality-floor", "0.8",
           "--trials", str(trials), "--storage", url, "--study", study,
           "--seed", "3", "--worker", str(worker), "--policy", str(policy_file),
           "--out", str(tmp_path / f"{study}-best{worker}.yaml"), "--json"]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, secret: str) -> dict:
    """Wait for a worker; it succeeded, never printed the password; its JSON result."""
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    assert secret not in out and secret not in err
    return json.loads(out)


class _Reader:
    """Reads a study's trials through one storage (one connection pool) however often polled."""

    def __init__(self, url: str, study: str) -> None:
        self.storage, self.study = open_storage(url), study

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        try:
            return optuna.load_study(study_name=self.study, storage=self.storage).get_trials()
        except KeyError:  # not created yet
            return []


def _poll(condition, what: str, timeout: float = 600.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _check_contiguous_and_settled(trials: list[optuna.trial.FrozenTrial]) -> None:
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert not [t.number for t in trials
                if t.state not in (*DONE, optuna.trial.TrialState.FAIL)]


def _export_best(tmp_path: Path, url: str, study: str, result: dict, secret: str) -> Policy:
    """`workbench tune-trial` writes the best trial's policy; it loads as a policy."""
    out = tmp_path / f"{study}-trial.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "workbench", "tune-trial", "--home", str(tmp_path / "export"),
         "--storage", url, "--study", study, "--number", str(result["best_trial"]),
         "--out", str(out)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert secret not in done.stdout + done.stderr
    return Policy.from_file(out)


def _same(a: Policy, b: Policy) -> bool:
    """The same routing policy (the tuned file also carries its provenance)."""
    return a.model_dump(exclude={"provenance"}) == b.model_dump(exclude={"provenance"})


def test_two_workers_share_one_postgres_study(tmp_path: Path, pg_server: PgServer) -> None:  # noqa: F811
    """Two workers of TRIALS trials each, concurrently: exactly 2 x TRIALS finished trials
    numbered 0..2N-1, TRIALS run by each worker, every one storing its full policy; the best
    policy exports; each worker's catalog records the study with the password masked."""
    trials_each = 12
    url = pg_server.url
    procs = [_tune(tmp_path, url, "shared", w, trials_each) for w in (0, 1)]
    results = [_finish(p, pg_server.password) for p in procs]
    assert {r["study"] for r in results} == {"shared"}

    trials = tn.load_study(url, "shared").get_trials()
    assert len(trials) == 2 * trials_each
    _check_contiguous_and_settled(trials)
    assert all(t.state in DONE for t in trials)
    assert Counter(t.user_attrs["worker"] for t in trials) == {0: trials_each, 1: trials_each}
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 2 * trials_each
    for t in trials:
        assert tn.trial_policy(url, "shared", t.number).tier_models == ("cheap", "mid", "strong")

    best = _export_best(tmp_path, url, "shared", results[1], pg_server.password)
    assert _same(best, Policy.from_file(tmp_path / "shared-best1.yaml"))
    for w in (0, 1):
        entry = Catalog(tmp_path / f"shared-home{w}").get_study("shared")
        assert pg_server.password not in entry.storage
        assert entry.storage == f"postgresql://{ROLE}:***@127.0.0.1:{pg_server.port}/{DATABASE}"


def _freeze_in_trial(proc: subprocess.Popen, reader: _Reader, worker: int,
                     pg: PgServer) -> optuna.trial.FrozenTrial | None:
    """Stop `proc` (SIGSTOP) and return its RUNNING trial if it has one whose heartbeat is
    recorded (the trial is observably running); else let it go on (SIGCONT) and return None."""
    assert proc.poll() is None, f"worker {worker} ended early: {proc.stderr.read()[-2000:]}"
    os.kill(proc.pid, signal.SIGSTOP)
    for t in reader.trials():
        if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("worker") == worker:
            beats = pg.admin(f"SELECT count(*) FROM trial_heartbeats WHERE trial_id = "
                             f"{int(t._trial_id)}", database=DATABASE)
            if beats[0][0] == 1:
                return t
    os.kill(proc.pid, signal.SIGCONT)
    return None


def test_killed_worker_leaves_the_study_usable(tmp_path: Path, pg_server: PgServer) -> None:  # noqa: F811
    """Worker 0 is SIGKILLed while one of its trials is RUNNING; worker 1 goes on and finishes;
    once the dead worker's heartbeat is older than WORKBENCH_TUNE_STALE_S its trial is FAIL
    (marked by worker 1 before a later trial, or by worker 2 opening the study), every other
    trial finished, numbers stay contiguous, the counts add up and the best policy exports."""
    url, study = pg_server.url, "crash"
    victim = _tune(tmp_path, url, study, 0, 400)
    other = _tune(tmp_path, url, study, 1, 15)
    reader = _Reader(url, study)
    try:
        # a few trials of the victim first, so the study is well under way
        _poll(lambda: sum(t.user_attrs.get("worker") == 0 and t.state in DONE
                          for t in reader.trials()) >= 3, "worker 0's first trials")
        killed = _poll(lambda: _freeze_in_trial(victim, reader, 0, pg_server),
                       "worker 0 inside a running trial")
        victim.kill()
        victim.wait(timeout=60)
    except BaseException:  # a failed wait above must not leave workers behind
        for proc in (victim, other):
            proc.kill()
            proc.wait(timeout=60)
        raise
    assert victim.returncode == -signal.SIGKILL
    assert pg_server.password not in victim.stdout.read() + victim.stderr.read()

    result_other = _finish(other, pg_server.password)
    assert result_other["study"] == study
    # the dead worker's last heartbeat is older than the stale period (a condition, not a nap)
    _poll(lambda: pg_server.admin(
        f"SELECT now() - heartbeat > interval '{STALE_S + 1} seconds' FROM trial_heartbeats "
        f"WHERE trial_id = {int(killed._trial_id)}", database=DATABASE)[0][0],
        "the killed worker's heartbeat to go stale", timeout=120)
    result_last = _finish(_tune(tmp_path, url, study, 2, 3), pg_server.password)

    trials = tn.load_study(url, study).get_trials()
    _check_contiguous_and_settled(trials)
    by_number = {t.number: t for t in trials}
    assert by_number[killed.number].state == optuna.trial.TrialState.FAIL
    assert [t.number for t in trials if t.state == optuna.trial.TrialState.FAIL] \
        == [killed.number]
    per_worker = Counter(t.user_attrs["worker"] for t in trials)
    assert per_worker[1] == 15 and per_worker[2] == 3
    assert per_worker[0] == len(trials) - 18 >= 4  # >= 3 finished + the killed one
    with pytest.raises(WorkbenchError, match=f"trial {killed.number} .* has no policy"):
        tn.trial_policy(url, study, killed.number)

    assert result_last["n_trials"] == len(trials)
    best = _export_best(tmp_path, url, study, result_last, pg_server.password)
    assert _same(best, Policy.from_file(tmp_path / f"{study}-best2.yaml"))
    assert by_number[result_last["best_trial"]].state == optuna.trial.TrialState.COMPLETE


@pytest.mark.parametrize("case", ["nothing listening", "wrong password"])
def test_unreachable_storage_is_a_clear_error_without_the_password(
        tmp_path: Path, pg_server: PgServer, case: str) -> None:  # noqa: F811
    """A PostgreSQL URL that cannot be used (no server on that port; a refused password) fails
    with a message naming the masked URL and the reason, never the password (CLI output, the
    exception and its traceback), and the catalog records no study."""
    secret = "Hunter2-" + os.urandom(6).hex()
    port = free_port() if case == "nothing listening" else pg_server.port
    url = f"postgresql://{ROLE}:{secret}@127.0.0.1:{port}/{DATABASE}"
    masked = f"postgresql://{ROLE}:***@127.0.0.1:{port}/{DATABASE}"
    reason = "Connection refused" if case == "nothing listening" \
        else "password authentication failed"

    home = _home_with_workload(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "workbench", "tune", "--home", str(home), "--workload", "syn",
         "--objective", "min-cost", "--quality-floor", "0.8", "--trials", "3",
         "--storage", url, "--study", "never"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert secret not in done.stdout + done.stderr
    assert f"error: cannot connect to the study storage {masked}" in done.stderr
    assert reason in done.stderr
    assert "Traceback" not in done.stderr
    assert Catalog(home).list_studies() == []

    store = open_store(home)
    try:
        with pytest.raises(WorkbenchError) as caught:
            tn.tune(store, "syn", base_policy(), tn.StudySettings.create(
                "min-cost", quality_floor="0.8", trials=3, storage=url, study_name="never"),
                home=home)
    finally:
        store.close()
    text = "".join(traceback.format_exception(caught.value))
    assert secret not in str(caught.value) + repr(caught.value) + text
    assert masked in str(caught.value) and reason in str(caught.value)
    assert Catalog(home).list_studies() == []
