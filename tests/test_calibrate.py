"""Calibrating a cascade to a strong share (workbench.calibrate), `workbench calibrate`, and
Route's calibration control, on a real DuckDB store (and RouterBench ARC when present)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import shared_file
from workbench.calibrate import calibrate, calibrate_workload, check_share, quantile_threshold
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.policy import Policy
from workbench.store import Store, open_store

WL = "support-triage"


def _policy(cheap: str = "cheap", strong: str = "strong", **tier: object) -> Policy:
    return Policy.validate_data({
        "name": "cal", "models": {m: {"model": f"openai/{m}"} for m in (cheap, strong)},
        "tiers": [{"model": cheap, "accept_above": 0.5, **tier}, {"model": strong}]})


def _record(store: Store, *, n: int | None = None, cheap_errors: int = 0,
            confidence: bool = True) -> list[str]:
    """support-triage with seeded outcomes of 'cheap' (distinct confidences, the first
    `cheap_errors` items failing) and 'strong'."""
    from workbench.workloads.samples import load_samples

    load_samples(store, names=[WL])
    ids = store.items(WL)["item_id"].to_list()[:n]
    k = len(ids)
    rng = np.random.default_rng(1)
    conf = rng.permutation(np.arange(1, k + 1)) / (k + 1)  # distinct, in (0, 1)
    cheap_q = (rng.uniform(0, 1, k) < 0.3 + 0.7 * conf).astype(float)
    err = np.arange(k) < cheap_errors
    store.write_outcomes(WL, pl.DataFrame({
        "item_id": ids * 2,
        "model": ["cheap"] * k + ["strong"] * k,
        "output": [None if e else "billing" for e in err] + ["billing"] * k,
        "quality": [None if e else q for e, q in zip(err, cheap_q, strict=True)]
        + list((rng.uniform(0, 1, k) < 0.95).astype(float)),
        "error": ["timeout" if e else None for e in err] + [None] * k,
        "cost_usd": [0.0001] * k + [0.002] * k,
        "latency_ms": list(rng.uniform(20, 80, k)) + list(rng.uniform(500, 1500, k)),
        "confidence": (list(conf) if confidence else [None] * k) + [0.99] * k,
    }, schema_overrides={"quality": pl.Float64, "confidence": pl.Float64,
                         "output": pl.String, "error": pl.String}))
    return ids


# -- the quantile --------------------------------------------------------------------------------
def test_quantile_threshold_keeps_at_most_the_share_below() -> None:
    conf = np.arange(1, 11) / 10.0  # 0.1 .. 1.0
    assert quantile_threshold(conf, 0.2) == pytest.approx(0.3)  # 0.1 and 0.2 fall below
    assert quantile_threshold(conf, 0.25) == pytest.approx(0.3)  # floor(2.5) = 2 items
    assert quantile_threshold(conf, 0.0) == pytest.approx(0.1)  # nothing below the minimum
    assert quantile_threshold(conf, 1.0) == 1.0
    with_missing = np.array([np.nan, 0.5, 0.6, 0.7])
    # the item without a confidence always escalates: it is the one item 25% allows
    assert quantile_threshold(with_missing, 0.25) == pytest.approx(0.5)
    tied = np.array([0.4, 0.4, 0.4, 0.9])
    assert quantile_threshold(tied, 0.5) == pytest.approx(0.4)  # never more than the share


def test_bad_shares_are_clear_errors() -> None:
    for bad in (-0.1, 1.5, math.nan, "abc", None):
        with pytest.raises(WorkbenchError, match="strong share must be"):
            check_share(bad)
    assert check_share("0.25") == 0.25


# -- on a real store -------------------------------------------------------------------------
def test_calibrated_share_meets_the_target(store: Store) -> None:
    ids = _record(store, n=200)
    for share in (0.0, 0.1, 0.2, 0.35, 1.0):
        cal = calibrate_workload(store, WL, _policy(), share)
        limit = math.floor(share * len(ids) + 1e-9)
        assert cal.n == 200 and cal.limit == limit
        # distinct confidences and no errors: the quantile is exact, the share hits the limit
        assert cal.n_strong == limit, (share, cal.message)
        assert cal.threshold == pytest.approx(cal.quantile_threshold)
        assert cal.policy.tiers[0].accept_above == pytest.approx(cal.threshold)
        assert cal.metrics.strong_share == pytest.approx(limit / 200)
        lo, hi = cal.metrics.quality_ci
        assert lo <= cal.metrics.quality <= hi
    assert cal.confidence_source == "recorded"


def test_errors_escalate_too_so_the_threshold_comes_down(store: Store) -> None:
    _record(store, n=200, cheap_errors=15)
    cal = calibrate_workload(store, WL, _policy(), 0.2)
    assert cal.n_strong <= 40 and cal.n_strong >= 39  # within one item of the target
    assert cal.threshold < cal.quantile_threshold  # the plain quantile sends too many
    assert "the plain 20% quantile" in cal.message
    with pytest.raises(WorkbenchError, match=r"even when cheap keeps every answer .* 15 items"):
        calibrate_workload(store, WL, _policy(), 0.05)  # 10 items, but 15 errors escalate


def test_no_recorded_confidence_is_a_clear_error(store: Store) -> None:
    _record(store, n=50, confidence=False)
    with pytest.raises(WorkbenchError, match="no recorded confidence for the cheap tier 'cheap'"):
        calibrate_workload(store, WL, _policy(), 0.2)
    with pytest.raises(WorkbenchError, match="gates on its verifier"):
        calibrate_workload(store, WL, _policy(confidence="verifier"), 0.2)


def test_one_tier_is_not_a_cascade(store: Store) -> None:
    _record(store, n=20)
    from workbench.policy import single

    with pytest.raises(WorkbenchError, match="at least two tiers"):
        calibrate(single("cheap"), store.recorded_items(WL), store.outcomes(WL), 0.2)


# -- the command line ------------------------------------------------------------------------
def test_cli_writes_the_calibrated_policy(store: Store, home: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _record(store, n=100)
    store.close()
    src, out = tmp_path / "cascade.yaml", tmp_path / "calibrated.yaml"
    _policy().to_file(src)
    assert main(["calibrate", "--workload", WL, "--policy", str(src), "--strong-share", "30%",
                 "--out", str(out), "--home", str(home)]) == 0
    text = capsys.readouterr().out
    assert "30 of 100 items (30.0%)" in text and f"written to {out}" in text
    written = Policy.from_file(out)
    assert written.provenance is not None and written.provenance.workload == WL
    assert main(["calibrate", "--workload", WL, "--policy", str(src), "--strong-share", "0.3",
                 "--json", "--home", str(home)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_strong"] == 30 and data["written"] is None
    assert written.tiers[0].accept_above == pytest.approx(data["threshold"])


@pytest.mark.parametrize("share", ["1.5", "-0.2", "lots", "120%"])
def test_cli_bad_share_writes_nothing(store: Store, home: Path, tmp_path: Path, share: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _record(store, n=20)
    store.close()
    src, out = tmp_path / "cascade.yaml", tmp_path / "calibrated.yaml"
    _policy().to_file(src)
    assert main(["calibrate", "--workload", WL, "--policy", str(src), "--strong-share", share,
                 "--out", str(out), "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err == ("error: the strong share must be a number between 0 and 1 (0.2 = 20%), "
                   f"got {share!r}\n")
    assert not out.exists()


def test_cli_without_confidence_writes_nothing(store: Store, home: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _record(store, n=20, confidence=False)
    store.close()
    src, out = tmp_path / "cascade.yaml", tmp_path / "calibrated.yaml"
    _policy().to_file(src)
    assert main(["calibrate", "--workload", WL, "--policy", str(src), "--strong-share", "0.2",
                 "--out", str(out), "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: workload 'support-triage' has no recorded confidence")
    assert not out.exists()
    assert main(["calibrate", "--workload", WL, "--policy", "no-such-saved-policy",
                 "--strong-share", "0.2", "--home", str(home)]) == 2
    assert "unknown policy 'no-such-saved-policy'" in capsys.readouterr().err


# -- RouterBench ARC-Challenge --------------------------------------------------------------------
def test_real_routerbench_arc_calibrates_the_learned_confidence(store: Store) -> None:
    """RouterBench records no confidence; Yi-34B's confidence is then the learned router's
    predicted success (cross-fitted), as RouteLLM calibrates its win-rate threshold. The
    share reached is within one item of the target."""
    from workbench.workloads.importers import import_file

    import_file(store, shared_file("routerbench", "arc_challenge_test.csv"), "arc",
                format="routerbench")
    yi, gpt4 = "zero-one-ai/Yi-34B-Chat", "gpt-4-1106-preview"
    models = {m: {"model": m} for m in (yi, gpt4)}
    plain = Policy.validate_data({"models": models, "tiers": [{"model": yi}, {"model": gpt4}]})
    with pytest.raises(WorkbenchError, match="no recorded confidence"):
        calibrate_workload(store, "arc", plain, 0.2)
    learned = Policy.validate_data({"models": models, "router": {},
                                    "tiers": [{"model": yi, "confidence": "router"},
                                              {"model": gpt4}]})
    items, outcomes = store.recorded_items("arc"), store.outcomes("arc")
    for share in (0.2, 0.5):
        cal = calibrate(learned, items, outcomes, share, workload="arc", n_boot=200)
        assert cal.n == 445 and cal.confidence_source == "router"
        assert abs(cal.n_strong - share * 445) <= 1, cal.message
        assert cal.n_strong <= cal.limit
    # more traffic to GPT-4 buys quality and costs more
    low = calibrate(learned, items, outcomes, 0.2, workload="arc", n_boot=200)
    assert low.metrics.cost_per_request < cal.metrics.cost_per_request


# -- the Route page -----------------------------------------------------------------------------
def test_route_page_calibrates_and_applies_the_threshold(home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    _record(open_store(home), n=100)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=180)
    at.switch_page("pages/route.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="route_tiers").value == ["cheap", "strong"]
    latency = next(m for m in at.metric if m.label == "Latency p95 / p99")
    assert latency.value.endswith(" s") and "/" in latency.value  # strong takes 0.5-1.5 s
    at.slider(key="route_cal_share").set_value(30).run()
    at.button(key="route_cal_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    sent = next(m for m in at.metric if m.label == "Sent to strong")
    assert sent.value == "30.0%"
    threshold = float(next(m for m in at.metric if m.label == "Threshold").value)
    at.button(key="route_cal_apply").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.slider(key="route_acc_0").value == pytest.approx(threshold, abs=5e-4)
    # the page's own replay now escalates the calibrated 30% (no errors in this workload)
    assert next(m for m in at.metric if m.label == "Escalated").value == "30.0%"


def test_route_page_calibration_without_confidence_says_so(home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    _record(open_store(home), n=12, confidence=False)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=180)
    at.switch_page("pages/route.py").run()
    at.multiselect(key="route_tiers").set_value(["cheap", "strong"]).run()
    at.button(key="route_cal_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("no recorded confidence for the cheap tier" in e.value for e in at.error)
    # 12 items: the quality's interval is too wide to decide, and the page says so
    assert any("too few items to decide" in w.value for w in at.warning)
