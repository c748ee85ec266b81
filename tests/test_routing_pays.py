"""Tests for workbench.routing_pays: McNemar on hand-computed tables, the paired bootstrap's
coverage and shared resamples, the random-mix hull read both ways, and verdicts on workloads
replayed for real (a policy equal to one model does not pay; a cascade on a confidence signal
that separates right from wrong answers does)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workbench import replay as rp
from workbench.errors import WorkbenchError
from workbench.policy import Policy, single
from workbench.routing_pays import (
    Point,
    compare,
    cost_at_quality,
    hull,
    mcnemar,
    mcnemar_counts,
    mix_at_cost,
    paired_bootstrap,
    routing_pays,
)

ROUTERBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routerbench"


# -- McNemar ----------------------------------------------------------------------------------
def test_mcnemar_exact_small_table() -> None:
    """1 vs 7 discordant items: P(X <= 1) for Binomial(8, 1/2) is 9/256; two-sided 18/256."""
    t = mcnemar_counts(1, 7)
    assert t.method == "exact"
    assert t.p_value == pytest.approx(18 / 256, abs=1e-15)
    assert mcnemar_counts(7, 1).p_value == t.p_value  # symmetric
    assert mcnemar_counts(4, 4).p_value == 1.0  # capped at 1
    assert mcnemar_counts(0, 0).p_value == 1.0  # no discordant items, no evidence
    assert mcnemar_counts(0, 5).p_value == pytest.approx(2 / 32)


def test_mcnemar_chi_square_large_table() -> None:
    """30 vs 10: (|30-10|-1)^2/40 = 9.025; P(chi2_1 > 9.025) = 0.0026631..."""
    t = mcnemar_counts(30, 10)
    assert t.method == "chi2"
    assert t.p_value == pytest.approx(0.0026631192591385, rel=1e-9)


def test_mcnemar_from_arrays_counts_discordant_items() -> None:
    """Concordant items are ignored; bad arrays are refused with a clear message."""
    policy = np.array([1, 1, 1, 0, 0, 1, 1, 1])
    other = np.array([1, 0, 0, 0, 1, 0, 1, 0])
    t = mcnemar(policy, other)
    assert (t.policy_only, t.other_only) == (4, 1)
    assert t.p_value == pytest.approx(mcnemar_counts(4, 1).p_value)
    with pytest.raises(WorkbenchError, match="0/1"):
        mcnemar(np.array([0.5, 1.0]), np.array([1.0, 0.0]))
    with pytest.raises(WorkbenchError, match="equal length"):
        mcnemar(np.array([1, 0]), np.array([1]))
    with pytest.raises(WorkbenchError, match=">= 0"):
        mcnemar_counts(-1, 3)


# -- paired bootstrap -------------------------------------------------------------------------
def test_bootstrap_shares_resamples_and_handles_constants() -> None:
    """The same item indices for every array: an array scaled by 2 gets exactly twice the
    interval; a constant difference has a zero-width interval at the constant."""
    rng = np.random.default_rng(1)
    d = rng.normal(0.1, 1.0, size=200)
    (ci1, ci2, ci0), method = paired_bootstrap([d, 2 * d, np.full(200, 0.25)], seed=4)
    assert method == "bootstrap"
    assert ci2[0] == pytest.approx(2 * ci1[0]) and ci2[1] == pytest.approx(2 * ci1[1])
    assert ci0 == pytest.approx((0.25, 0.25))
    assert ci1[0] < d.mean() < ci1[1]
    again, _ = paired_bootstrap([d], seed=4)
    assert again[0] == ci1  # seeded: reproducible


def test_bootstrap_interval_covers_the_true_mean() -> None:
    """Over 200 seeded samples of a known distribution (paired 0/1 differences with mean
    0.1), the 95% interval covers the true mean in close to 95% of them."""
    covered = 0
    rng = np.random.default_rng(7)
    for rep in range(200):
        # per item: policy right with 0.8, other right with 0.7 (independent): E[d] = 0.1
        d = (rng.random(150) < 0.8).astype(float) - (rng.random(150) < 0.7).astype(float)
        (ci,), _ = paired_bootstrap([d], n_boot=400, seed=rep)
        covered += ci[0] <= 0.1 <= ci[1]
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_normal_beyond_the_cell_budget_and_bad_input() -> None:
    """Huge n x n_boot falls back to the normal approximation (same centre); NaN, empty
    arrays and bad levels are refused."""
    rng = np.random.default_rng(0)
    d = rng.normal(0.0, 1.0, size=30_000)
    (ci,), method = paired_bootstrap([d], n_boot=2000)
    assert method == "normal"
    half = 1.959963984540054 * d.std(ddof=1) / math.sqrt(d.size)
    assert ci == pytest.approx((d.mean() - half, d.mean() + half))
    with pytest.raises(WorkbenchError, match="NaN"):
        paired_bootstrap([np.array([0.0, np.nan])])
    with pytest.raises(WorkbenchError, match="at least one item"):
        paired_bootstrap([np.array([])])
    with pytest.raises(WorkbenchError, match="level"):
        paired_bootstrap([np.array([1.0, 0.0])], level=1.5)


# -- the random-mix frontier ------------------------------------------------------------------
POINTS = [Point("a", 0.5, 0.1), Point("b", 0.6, 0.5), Point("c", 0.9, 1.0),
          Point("d", 0.85, 2.0)]


def test_hull_drops_dominated_and_below_chord_models() -> None:
    """b lies below the chord a -> c (0.5 + 0.4 x 0.4/0.9 = 0.678 > 0.6); d costs more than c
    for less quality."""
    assert [p.model for p in hull(POINTS)] == ["a", "c"]
    on_chord = [Point("x", 0.0, 0.0), Point("y", 0.5, 1.0), Point("z", 1.0, 2.0)]
    assert [p.model for p in hull(on_chord)] == ["x", "z"]
    with pytest.raises(WorkbenchError, match="at least one"):
        hull([])
    with pytest.raises(WorkbenchError, match="finite"):
        hull([Point("n", math.nan, 1.0)])


def test_mix_interpolates_both_ways() -> None:
    """At cost 0.55 the mix is half a, half c: quality 0.7. Quality 0.8 needs 75% c: cost
    0.1 x 0.25 + 1.0 x 0.75 = 0.775. Outside the range: the end models, or None."""
    front = hull(POINTS)
    m = mix_at_cost(front, 0.55)
    assert (m.lower, m.upper) == ("a", "c")
    assert m.weight == pytest.approx(0.5) and m.quality == pytest.approx(0.7)
    assert m.label == "a/c (50%/50%)"
    assert mix_at_cost(front, 0.05).lower == "a" and mix_at_cost(front, 0.05).weight == 0.0
    top = mix_at_cost(front, 3.0)
    assert (top.lower, top.quality, top.cost) == ("c", 0.9, 1.0)
    assert mix_at_cost(front, 1.0).label == "c"
    q = cost_at_quality(front, 0.8)
    assert q is not None and q.cost == pytest.approx(0.775) and q.weight == pytest.approx(0.75)
    low = cost_at_quality(front, 0.3)
    assert low is not None and (low.lower, low.cost) == ("a", 0.1)
    assert cost_at_quality(front, 0.95) is None


# -- verdicts -----------------------------------------------------------------------------------
def _workload(n: int = 600, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two models: `cheap` right on 60% of items at $0.0001 with a confidence that tells its
    right answers from its wrong ones, `strong` right on 95% at $0.001 (no confidence)."""
    rng = np.random.default_rng(seed)
    ids = [f"i{k:04d}" for k in range(n)]
    cheap_ok = rng.random(n) < 0.6
    strong_ok = rng.random(n) < 0.95
    conf = np.where(cheap_ok, rng.uniform(0.7, 1.0, n), rng.uniform(0.0, 0.3, n))
    items = pl.DataFrame({"item_id": ids, "input": [f"question {k}" for k in range(n)]})
    outcomes = pl.concat([
        pl.DataFrame({"item_id": ids, "model": "cheap", "quality": cheap_ok.astype(float),
                      "cost_usd": 0.0001, "latency_ms": 100.0, "confidence": conf}),
        pl.DataFrame({"item_id": ids, "model": "strong", "quality": strong_ok.astype(float),
                      "cost_usd": 0.001, "latency_ms": 900.0,
                      "confidence": pl.Series([None] * n, dtype=pl.Float64)}),
    ])
    return items, outcomes


CASCADE = Policy.validate_data({
    "name": "cascade", "models": {"cheap": {"model": "openai/cheap"},
                                 "strong": {"model": "openai/strong"}},
    "tiers": [{"model": "cheap", "accept_above": 0.5}, {"model": "strong"}],
})


def test_a_policy_equal_to_one_model_does_not_pay() -> None:
    """Replaying `strong` alone: zero difference against itself and against the mix at its
    cost (it is the top of the hull), zero-width intervals, McNemar p = 1, ratio 1."""
    items, outcomes = _workload()
    v = routing_pays(rp.replay(single("strong"), items, outcomes), items, outcomes)
    assert not v.pays
    assert v.message.startswith("routing does not pay on this workload")
    assert v.n == 600
    assert v.best_single.against == "strong"
    assert v.best_single.difference == 0.0 and v.best_single.ci == (0.0, 0.0)
    assert v.best_single.mcnemar is not None and v.best_single.mcnemar.p_value == 1.0
    assert v.random_mix.difference == 0.0 and v.random_mix.ci == (0.0, 0.0)
    assert v.cost_ratio_single == pytest.approx(1.0) and v.single_at_quality == "strong"
    assert v.cost_ratio_mix == pytest.approx(1.0)
    # the cheap model alone is the bottom of the hull: no gain either
    cheap = routing_pays(rp.replay(single("cheap"), items, outcomes), items, outcomes)
    assert not cheap.pays and cheap.random_mix.ci == (0.0, 0.0)


def test_a_clearly_better_cascade_pays() -> None:
    """The cascade answers cheap's right answers itself and sends the rest to strong: about
    0.6 + 0.4 x 0.95 = 0.98 at $0.0001 + 0.4 x $0.001, where a random mix spending the same
    gets about 0.6 + 0.44 x 0.35 = 0.75. Strong alone costs ~2x for less quality."""
    items, outcomes = _workload()
    res = rp.replay(CASCADE, items, outcomes)
    v = routing_pays(res, items, outcomes)
    assert v.pays
    assert v.message.startswith("routing pays on this workload")
    assert v.policy_quality == pytest.approx(res.metrics.quality)
    assert v.policy_cost == pytest.approx(res.metrics.cost_per_request)
    assert v.random_mix.ci[0] > 0.15
    assert v.mix.lower == "cheap" and v.mix.upper == "strong" and 0 < v.mix.weight < 1
    # the mix's quality is the straight line between the two models at the policy's cost
    q = {p.model: p.quality for p in v.singles}
    assert v.random_mix.quality == pytest.approx(
        (1 - v.mix.weight) * q["cheap"] + v.mix.weight * q["strong"])
    assert v.best_single.against == "strong"
    assert v.best_single.ci[0] > 0 and v.best_single.mcnemar is not None
    # the cascade only loses strong's answer where cheap was right: every discordant item
    # favours the policy, so the exact p-value is 2 x (1/2)^discordant
    t = v.best_single.mcnemar
    assert t.other_only == 0 and t.policy_only > 0
    assert t.p_value == pytest.approx(2 * 0.5**t.policy_only)
    # nothing but the policy reaches its quality: no single model, no mix
    if v.policy_quality > q["strong"]:
        assert v.cost_ratio_single is None and v.cost_ratio_mix is None
    js = v.as_json()
    assert js["pays"] is True and js["vs_random_mix"]["mcnemar"] is None
    assert "McNemar applies to the best single model" in js["vs_random_mix"]["note"]


def test_cost_ratio_at_equal_quality() -> None:
    """A policy as good as the strong model at a third of its price: ratio ~3 against the
    single model; the mix reaches that quality only at the top, so also ~3."""
    n = 300
    q_strong = np.ones(n)
    q_cheap = np.r_[np.ones(200), np.zeros(100)]
    c_strong, c_cheap = np.full(n, 0.003), np.full(n, 0.0005)
    policy_q = np.ones(n)
    policy_c = np.full(n, 0.001)
    v = compare(policy_q, policy_c, {"strong": q_strong, "cheap": q_cheap},
                {"strong": c_strong, "cheap": c_cheap}, seed=1)
    assert v.cost_ratio_single == pytest.approx(3.0)
    assert v.single_at_quality == "strong"
    assert v.cost_ratio_mix == pytest.approx(3.0)
    assert v.pays  # 1.0 vs a mix at $0.001: 0.8 x 2/3 + 0.2 x 1 = 0.733
    assert v.random_mix.quality == pytest.approx(2 / 3 + 0.2 * (1 / 3))


def test_pairing_leaves_out_unscored_items_and_refuses_bad_input() -> None:
    """Unscored items (NaN) are dropped for every comparison at once, with a note; bad
    shapes, unknown references and missing models are clear errors."""
    q = np.array([1.0, 0.0, np.nan, 1.0])
    c = np.full(4, 0.1)
    v = compare(q, c, {"m": np.array([1.0, 1.0, 1.0, np.nan])}, {"m": np.full(4, 0.1)})
    assert v.n == 2 and "2 of 4 items left out" in v.notes[0]
    with pytest.raises(WorkbenchError, match="align"):
        compare(q, c, {"m": np.ones(3)}, {"m": np.ones(3)})
    with pytest.raises(WorkbenchError, match="reference model 'x'"):
        compare(q, c, {"m": np.ones(4)}, {"m": np.ones(4)}, reference="x")
    with pytest.raises(WorkbenchError, match="no single models"):
        compare(q, c, {}, {})
    with pytest.raises(WorkbenchError, match="cannot pair"):
        compare(np.full(4, np.nan), c, {"m": np.ones(4)}, {"m": np.ones(4)})
    items, outcomes = _workload(50)
    res = rp.replay(single("cheap"), items, outcomes)
    with pytest.raises(WorkbenchError, match="ghost"):
        routing_pays(res, items, outcomes, models=["cheap", "ghost"])


def test_fractional_quality_skips_mcnemar() -> None:
    """Judge scores in [0, 1] are compared by the bootstrap alone, and the report says why."""
    rng = np.random.default_rng(3)
    q = rng.random(100)
    v = compare(q, np.full(100, 0.2), {"m": rng.random(100)}, {"m": np.full(100, 0.2)})
    assert v.best_single.mcnemar is None and "0/1" in v.best_single.note


# -- real data ----------------------------------------------------------------------------------
def test_routerbench_arc_single_model_does_not_pay(tmp_path: Path) -> None:
    """On RouterBench ARC-Challenge test, Yi-34B alone is judged against the other ten models:
    no gain against itself, a finite cost ratio, every model placed."""
    csv = ROUTERBENCH / "arc_challenge_test.csv"
    if not csv.exists():
        pytest.skip(f"RouterBench data not present at {ROUTERBENCH}")
    from workbench.store import Store
    from workbench.workloads.importers import import_file

    s = Store(tmp_path / "wb.duckdb")
    import_file(s, csv, "arc_test", format="routerbench")
    items, outcomes = s.recorded_items("arc_test"), s.outcomes("arc_test")
    models = outcomes["model"].unique().to_list()
    yi = next(m for m in models if "yi-34b" in m.lower())
    v = routing_pays(rp.replay(single(yi), items, outcomes), items, outcomes)
    assert not v.pays
    assert len(v.singles) == len(models)
    assert v.random_mix.difference <= 1e-12
    s.close()


# -- the tuner, the CLI, the check gate and the Tune page ---------------------------------------
def _stored(path: Path, name: str, frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    """Write a workload with its outcomes into a fresh DuckDB store under `path`."""
    from workbench.store import Store

    s = Store(path / "workbench.duckdb")
    items, outcomes = frames
    s.add_workload_frame(name, items, task_type="classification", source="test",
                         synthetic=True)
    s.write_outcomes(name, outcomes)
    s.close()


def _tune(path: Path, name: str, **settings: object) -> object:
    from workbench import tune as tn
    from workbench.store import Store

    s = Store(path / "workbench.duckdb")
    try:
        return tn.tune(s, name, None, tn.StudySettings.create(
            "min-cost", quality_floor="95%", storage=tn.IN_MEMORY, **settings), record=False)
    finally:
        s.close()


def test_tune_reports_that_a_separating_cascade_pays(tmp_path: Path) -> None:
    """On a workload whose cheap model knows when it is right, the tuned cascade beats the
    random mix on the holdout: the verdict says so, the tuned policy stays the preferred one,
    and the verdict is in the JSON and the policy's provenance."""
    _stored(tmp_path, "sep", _workload(1000, seed=2))
    res = _tune(tmp_path, "sep", trials=20, seed=1)
    v = res.routing
    assert v is not None and v.pays
    assert v.n == res.holdout["n"]
    assert v.policy_quality == pytest.approx(res.holdout["quality"])
    assert v.policy_cost == pytest.approx(res.holdout["cost_per_request"])
    assert res.simpler_policy is None and res.preferred_policy is res.best_policy
    js = res.as_json()["routing"]
    assert js["pays"] and js["preferred"]["simpler"] is False
    assert js["vs_best_single"]["mcnemar"]["p_value"] < 0.05
    prov = res.best_policy.provenance
    assert prov is not None and prov.routing == v.as_json()
    # the exported file keeps the verdict; a file without it (older versions) still loads
    again = Policy.from_yaml(res.best_policy.to_yaml())
    assert again.provenance is not None and again.provenance.routing["pays"] is True
    bare = res.best_policy.model_copy(update={"provenance": prov.model_copy(
        update={"routing": None})})
    assert "routing" not in bare.to_yaml()
    assert Policy.from_yaml(bare.to_yaml()).provenance.routing is None


def test_tune_prefers_the_single_model_when_routing_does_not_pay(tmp_path: Path) -> None:
    """The cheap model's confidence is noise here: whatever the tuner finds is no better than
    a coin flip, so the verdict says routing does not pay and the preferred policy is the
    single model the objective picks on train (the cheapest meeting the floor)."""
    rng = np.random.default_rng(5)
    items, outcomes = _workload(1000, seed=5)
    outcomes = outcomes.with_columns(
        pl.when(pl.col("model") == "cheap").then(pl.lit(rng.random(2000)))
        .otherwise(pl.col("confidence")).alias("confidence"))
    _stored(tmp_path, "noise", (items, outcomes))
    res = _tune(tmp_path, "noise", trials=20, seed=1)
    v = res.routing
    assert v is not None and not v.pays
    assert v.message.startswith("routing does not pay on this workload")
    assert res.simpler_policy is not None and res.simpler_policy.tier_models == ("strong",)
    assert res.preferred_policy is res.simpler_policy
    assert res.simpler_train["quality"] >= res.quality_floor
    assert "preferring the simpler policy strong alone" in res.routing_note
    js = res.as_json()["routing"]
    assert js["preferred"] == {"policy": res.simpler_policy.name, "simpler": True,
                               "model": "strong", "train": res.simpler_train,
                               "holdout": res.simpler_holdout, "note": res.routing_note}
    assert res.simpler_policy.provenance.routing == v.as_json()  # type: ignore[union-attr]


def test_cli_tune_and_check_say_whether_routing_pays(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tune` prints the verdict and writes the simpler policy beside --out when routing
    does not pay; `tune --json` carries it; `check` prints it after its OK line, and
    `--require-routing-pays` turns it into a one-line FAIL."""
    import json

    from workbench.cli import main

    _stored(tmp_path, "sep", _workload(600, seed=3))
    single("cheap").to_file(tmp_path / "cheap.yaml")
    CASCADE.to_file(tmp_path / "cascade.yaml")
    home = ["--home", str(tmp_path)]
    assert main(["check", *home, "--policy", str(tmp_path / "cascade.yaml"),
                 "--workload", "sep", "--quality-floor", "0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("OK") and out[1] == "routing PAYS on this workload"
    assert any("vs random mix cheap/strong" in line for line in out)
    assert main(["check", *home, "--policy", str(tmp_path / "cheap.yaml"), "--workload", "sep",
                 "--require-routing-pays"]) == 1
    cap = capsys.readouterr()
    line = cap.out.strip()
    assert line.startswith("FAIL: routing does not pay on this workload") and "\n" not in line
    assert "routing does NOT pay" in cap.err

    assert main(["tune", *home, "--workload", "sep", "--objective", "min-cost",
                 "--quality-floor", "95%", "--trials", "10", "--storage",
                 f"sqlite:///{tmp_path / 's.db'}", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["routing"]["pays"] is True and data["simpler_out"] is None
    assert data["routing"]["n"] == data["holdout"]["n"]
    # a floor the cheap model alone meets: min-cost tuning finds nothing a coin flip cannot
    out_file = tmp_path / "best.yaml"
    assert main(["tune", *home, "--workload", "sep", "--objective", "min-cost",
                 "--quality-floor", "0.5", "--trials", "10", "--storage",
                 f"sqlite:///{tmp_path / 's.db'}", "--out", str(out_file)]) == 0
    text = capsys.readouterr().out
    assert "routing does NOT pay on this workload" in text
    assert "preferring the simpler policy cheap alone" in text
    simpler = Policy.from_file(tmp_path / "best.simpler.yaml")
    assert simpler.tier_models == ("cheap",)
    assert simpler.provenance is not None and simpler.provenance.routing["pays"] is False
    assert Policy.from_file(out_file).provenance.routing["pays"] is False  # type: ignore[union-attr]


def test_tune_page_shows_whether_routing_pays(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The Tune page states the verdict with both comparisons and their intervals."""
    from streamlit.testing.v1 import AppTest

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    _stored(home, "sep", _workload(600, seed=4))
    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.switch_page("pages/tune.py")
    at.run()
    at.number_input(key="tune_trials").set_value(20).run()
    at.button(key="tune_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(h.value == "Does routing pay here?" for h in at.subheader)
    assert any(s.value.startswith("Routing pays on this workload") for s in at.success)
    table = next(d.value for d in at.dataframe if "compared with" in d.value.columns)
    assert table["compared with"].tolist()[0] == "best single model strong"
    assert table["McNemar p"].notna().tolist() == [True, False]
