"""Drift gate: PSI / KS / rate tests, and `workbench drift` exit codes on a stored calibration
workload against decision logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from workbench.cli import main
from workbench.drift import (
    compare,
    ks_2samp,
    psi,
    read_decision_log,
    reference_from_workload,
    two_proportion_p,
)
from workbench.errors import WorkbenchError
from workbench.export import export_policy, with_provenance
from workbench.policy import Policy
from workbench.replay import replay
from workbench.router import DecisionLog, PolicyRouter


def test_psi_and_ks() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.beta(5, 2, 3000), rng.beta(5, 2, 3000)
    shifted = rng.beta(2, 5, 3000)
    assert psi(a, b) < 0.02
    assert psi(a, shifted) > 0.5
    d, p = ks_2samp(a, b)
    assert d < 0.05 and p > 0.01
    d, p = ks_2samp(a, shifted)
    assert d > 0.4 and p < 1e-9
    # the KS statistic is the largest gap between the two empirical CDFs
    x, y = np.array([0.1, 0.2, 0.3]), np.array([0.25, 0.35, 0.45, 0.55])
    assert ks_2samp(x, y)[0] == pytest.approx(0.75)  # at 0.3: 3/3 vs 1/4


def test_two_proportions() -> None:
    assert two_proportion_p(50, 100, 50, 100) == pytest.approx(1.0)
    assert two_proportion_p(90, 100, 30, 100) < 1e-9
    assert two_proportion_p(0, 0, 3, 10) == 1.0


POLICY: dict[str, Any] = {
    "name": "drifty",
    "models": {"cheap": {"kind": "local-gguf", "model": "/m/cheap.gguf"},
               "strong": {"kind": "litellm", "model": "openai/gpt-4o",
                          "input_price_per_mtok": 2.5, "output_price_per_mtok": 10}},
    "refusal": {"deny_patterns": ["(?i)forbidden"]},
    "tiers": [{"model": "cheap", "accept_above": 0.6}, {"model": "strong"}],
}


def calibration(store: Any, n: int = 600) -> Policy:
    """A stored workload with recorded outcomes of both models; the policy's provenance names it."""
    rng = np.random.default_rng(1)
    texts = [("forbidden " if i % 25 == 0 else "") + f"question {i}" for i in range(n)]
    items = pl.DataFrame({"item_id": [f"q{i:04d}" for i in range(n)], "input": texts})
    conf = rng.beta(5, 2, n)
    outcomes = pl.concat([
        pl.DataFrame({"item_id": items["item_id"], "model": ["cheap"] * n,
                      "quality": (rng.random(n) < conf).astype(float),
                      "cost_usd": np.full(n, 1e-5), "confidence": conf}),
        pl.DataFrame({"item_id": items["item_id"], "model": ["strong"] * n,
                      "quality": (rng.random(n) < 0.9).astype(float),
                      "cost_usd": np.full(n, 3e-3), "confidence": rng.random(n)}),
    ])
    store.add_workload_frame("cal", items, task_type="qa", source="test")
    store.write_outcomes("cal", outcomes)
    return with_provenance(Policy.validate_data(POLICY), workload="cal")


def write_log(path: Path, escalated: np.ndarray, refused: np.ndarray,
              conf: np.ndarray) -> Path:
    """A decision log written by the router's log writer, with the given decisions."""
    log = DecisionLog(path)
    for e, r, c in zip(escalated, refused, conf, strict=True):
        log.write({"policy": "drifty", "refused": bool(r), "escalated": bool(e) and not r,
                   "cheap_confidence": None if r else float(c)})
    log.close()
    return path


def test_drift_cli_exit_codes(tmp_path: Path, store: Any, home: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    policy = calibration(store)
    policy_file = export_policy(policy, tmp_path / "policy.yaml")
    esc, ref, conf = reference_from_workload(policy, store, "cal")
    trace = replay(policy, store.items("cal"), store.outcomes("cal")).trace
    assert esc.tolist() == trace["escalated"].to_list()
    rng = np.random.default_rng(7)

    # production traffic like the calibration workload: resampled items -> no drift
    pick = rng.integers(0, esc.size, 400)
    cheap_conf = store.outcomes("cal", ["cheap"])["confidence"].to_numpy()
    same = write_log(tmp_path / "same.jsonl", esc[pick], ref[pick], cheap_conf[pick])
    code = main(["drift", "--policy", str(policy_file), "--log", str(same), "--home", str(home)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("ok: no drift")

    # lower confidence, more escalations, more refusals -> drift, exit 1
    n = 400
    low = rng.beta(2, 5, n)
    drifted = write_log(tmp_path / "drift.jsonl", low < 0.6, rng.random(n) < 0.2, low)
    code = main(["drift", "--policy", str(policy_file), "--log", str(drifted), "--home",
                 str(home)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("DRIFT:")
    for reason in ("escalation rate", "refusal rate", "PSI", "KS"):
        assert reason in out

    # user errors: exit 2 with a message naming the problem
    code = main(["drift", "--policy", str(policy_file), "--log", str(tmp_path / "no.jsonl"),
                 "--home", str(home)])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    bare = export_policy(Policy.validate_data(POLICY), tmp_path / "bare.yaml", provenance=False)
    code = main(["drift", "--policy", str(bare), "--log", str(same), "--home", str(home)])
    assert code == 2 and "calibration workload" in capsys.readouterr().err
    code = main(["drift", "--policy", str(bare), "--log", str(same), "--workload", "cal",
                 "--home", str(home), "--json"])
    assert code == 0


def test_small_logs_skip_distribution_tests() -> None:
    log = pl.DataFrame({"refused": [False] * 5, "escalated": [False] * 5,
                        "cheap_confidence": [0.9] * 5})
    report = compare(log, np.zeros(100, bool), np.zeros(100, bool), np.linspace(0, 1, 100))
    assert not report.drifted and report.notes and np.isnan(report.psi)


def test_reads_a_real_router_log(tmp_path: Path) -> None:
    """The log the router writes is what the drift gate reads (refusals need no model)."""
    router = PolicyRouter(Policy.validate_data(POLICY), log_path=tmp_path / "r.jsonl")
    for text in ("a forbidden question", "another FORBIDDEN one"):
        assert router.complete(text).refused
    router.close()
    frame = read_decision_log(tmp_path / "r.jsonl", "drifty")
    assert frame["refused"].to_list() == [True, True]
    assert frame["cheap_confidence"].null_count() == 2
    with pytest.raises(WorkbenchError, match="no records for policy 'other'"):
        read_decision_log(tmp_path / "r.jsonl", "other")
