"""Tests for workbench.tune: the per-trial kernel equals replay, search spaces, objectives with
constraints, persisted and resumable studies, held-out reporting, the CLI and RouterBench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import polars as pl
import pytest

from workbench import replay as rp
from workbench import tune as tn
from workbench.bench.tune import base_policy, synthetic
from workbench.cli import main
from workbench.errors import ConflictError, WorkbenchError
from workbench.policy import Policy
from workbench.store import Store

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROUTERBENCH = DATA / "routerbench"


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    """A real DuckDB store holding a 3000-item synthetic workload with 3 models."""
    s = Store(tmp_path / "workbench.duckdb")
    items, outcomes = synthetic(3000, seed=3)
    s.add_workload_frame("syn", items, task_type="classification", source="test",
                         synthetic=True)
    s.write_outcomes("syn", outcomes)
    yield s
    s.close()


def run_tune(store: Store, workload: str, base: Policy | None, *, objective: str,
             progress: Any = None, should_stop: Any = None, home: Any = None,
             record: bool = True, **settings: Any) -> tn.TuneResult:
    """tune() with the study settings given as keywords."""
    return tn.tune(store, workload, base, tn.StudySettings.create(objective, **settings),
                   progress=progress, should_stop=should_stop, home=home, record=record)


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


# -- search space and parameters ---------------------------------------------------------
def test_search_space_from_policy_and_fixed() -> None:
    """Non-final tiers' accept_above, the pre-route threshold and candidate tier models are
    searched; fixed paths are left out; unknown fixed paths are a clear error."""
    policy = base_policy()
    paths = [p.path for p in tn.search_space(policy)]
    assert paths == ["tiers.0.accept_above", "tiers.1.accept_above", "preroute.preroute_below"]
    space = tn.search_space(policy, fixed={"tiers.1.accept_above": 0.9},
                            candidates=["cheap", "mid", "strong"])
    by_path = {p.path: p for p in space}
    assert "tiers.1.accept_above" not in by_path
    assert by_path["tiers.2.model"].choices == ("cheap", "mid", "strong")
    with pytest.raises(WorkbenchError, match="tiers.7.accept_above"):
        tn.search_space(policy, fixed={"tiers.7.accept_above": 0.1})
    with pytest.raises(WorkbenchError, match="cannot fill 3 distinct tiers"):
        tn.search_space(policy, candidates=["cheap", "mid"])


def test_apply_params_validates() -> None:
    """Sampled values produce a validated policy; duplicate tier models are refused."""
    policy = base_policy()
    p = tn.apply_params(policy, {"tiers.0.accept_above": 0.25, "preroute.preroute_below": 0.4})
    assert p.tiers[0].accept_above == 0.25
    assert p.preroute.preroute_below == 0.4  # type: ignore[union-attr]
    with pytest.raises(WorkbenchError, match="appears in two tiers"):
        tn.apply_params(policy, {"tiers.0.model": "mid"})


def test_parse_floor() -> None:
    """Floors: absolute numbers, percentages of the strong model, 'rel:' shares; junk fails."""
    assert tn.parse_floor(0.9) == (0.9, None)
    assert tn.parse_floor("95%") == (None, pytest.approx(0.95))
    assert tn.parse_floor("rel:0.9") == (None, 0.9)
    with pytest.raises(WorkbenchError, match="not a number"):
        tn.parse_floor("ninety")


# -- studies -----------------------------------------------------------------------------
def test_min_cost_relative_floor_study(store: Store, tmp_path: Path) -> None:
    """95% of the strong model's quality at least cost: the best trial is feasible, infeasible
    trials are marked by their constraints, every trial stores its policy, and the reported
    train figures are replay's on the train split."""
    url = _url(tmp_path)
    res = run_tune(store, "syn", base_policy(), objective="min-cost", quality_floor="95%",
                  trials=30, storage=url, study_name="s1", seed=1, home=tmp_path)
    split = tn.make_split(store, "syn", holdout=0.3, seed=1)
    singles = {m: rp.evaluate_single(m, split.train_items, split.train_outcomes).metrics
               for m in ("cheap", "mid", "strong")}
    best_q = max(m.quality for m in singles.values())
    assert res.quality_floor == pytest.approx(0.95 * best_q)
    assert res.train["quality"] >= res.quality_floor - 1e-12
    assert res.train["cost_per_request"] < singles["strong"].cost_per_request
    assert res.train["n"] == split.train_items.height
    assert res.holdout["n"] == split.holdout_items.height
    assert set(res.train) >= {"quality", "quality_ci", "cost_per_request", "cost_per_success",
                              "latency_p95_ms", "escalation_rate", "refusal_rate",
                              "answered_by", "n"}
    lo, hi = res.holdout["quality_ci"]
    assert lo <= res.holdout["quality"] <= hi

    study = tn.load_study(url, "s1")
    trials = study.get_trials()
    assert len(trials) == 30 == res.n_trials
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        feasible = all(v <= 0 for v in t.constraints.values())
        assert t.user_attrs["feasible"] == feasible
        assert "quality_floor" in t.constraints
    assert any(not t.user_attrs["feasible"] for t in trials)
    assert res.trials.filter(pl.col("feasible")).height == sum(
        t.user_attrs["feasible"] for t in trials)

    # the best trial's stored policy replays to the stored trial metrics
    best = tn.trial_policy(url, "s1", res.best_trial)
    again = rp.replay(best, split.train_items, split.train_outcomes).metrics
    assert again.quality == pytest.approx(res.train["quality"])
    assert again.cost_per_request == pytest.approx(res.train["cost_per_request"])
    assert res.best_policy.provenance is not None
    assert res.best_policy.provenance.trial == res.best_trial
    assert res.best_policy.provenance.holdout_metrics == res.holdout
    rep = tn.evaluate_trial(store, res, res.best_trial)
    assert rep.train == res.train and rep.holdout == res.holdout

    # single models and oracle for the plots; the catalog knows the study
    assert set(res.singles["split"]) == {"train", "holdout"}
    assert res.oracle["holdout"]["quality"] >= max(
        res.singles.filter(pl.col("split") == "holdout")["quality"])
    from workbench.catalog import Catalog

    entry = Catalog(tmp_path).get_study("s1")
    assert entry.workload == "syn" and entry.objective == "min-cost"


def test_seeded_runs_reproduce_and_resume_adds_new_points(store: Store, tmp_path: Path) -> None:
    """The same seed gives the same trials in a fresh study; resuming a study adds trials with
    new numbers and new parameter values (no duplicates)."""
    url = tn.IN_MEMORY
    kwargs = dict(objective="min-cost", quality_floor=0.8, storage=url, seed=5, record=False)
    a = run_tune(store, "syn", base_policy(), trials=12, study_name="seed-a", **kwargs)
    b = run_tune(store, "syn", base_policy(), trials=12, study_name="seed-b", **kwargs)
    assert a.trials["params"].to_list() == b.trials["params"].to_list()
    assert a.best_policy.tiers == b.best_policy.tiers

    c = run_tune(store, "syn", base_policy(), trials=10, study_name="seed-a", **kwargs)
    assert c.n_trials == 22
    assert c.trials["number"].to_list() == list(range(22))
    assert c.trials["params"].n_unique() == 22
    with pytest.raises(ConflictError, match="different objective"):
        run_tune(store, "syn", base_policy(), objective="min-cost", quality_floor=0.7,
                storage=url, study_name="seed-a", seed=5, trials=1, record=False)


def test_max_quality_weighted_and_pareto(store: Store, tmp_path: Path) -> None:
    """Budget-constrained quality, the weighted objective, and a Pareto front (with latency)
    whose rows do not dominate each other and carry their policies."""
    url = tn.IN_MEMORY
    mq = run_tune(store, "syn", base_policy(), objective="max-quality", budget=0.002,
                 trials=25, storage=url, study_name="mq", record=False)
    assert mq.train["cost_per_request"] <= 0.002
    w = run_tune(store, "syn", base_policy(), objective="weighted", weight=50.0, trials=25,
                storage=url, study_name="w", record=False)
    assert w.best_trial is not None
    best_w = w.trials.filter(pl.col("number") == w.best_trial)
    value = best_w["quality"][0] - 50.0 * best_w["cost_per_request"][0]
    assert value == pytest.approx(max(
        q - 50.0 * c for q, c in w.trials.select("quality", "cost_per_request").iter_rows()))

    pa = run_tune(store, "syn", base_policy(), objective="pareto", latency=True, trials=30,
                 storage=url, study_name="pa", record=False, sampler="nsga2")
    study = tn.load_study(url, "pa")
    assert len(study.directions) == 3
    front = pa.pareto
    assert front.height >= 2
    q = front["quality"].to_numpy()
    c = front["cost_per_request"].to_numpy()
    for i in range(front.height):
        dominated = (q >= q[i]) & (c <= c[i]) & ((q > q[i]) | (c < c[i]))
        assert not dominated.any()
    for text in front["policy"].to_list():
        Policy.from_json(text)
    assert front["holdout_quality"].is_not_null().all()


def test_charts_and_front_comparison(store: Store, tmp_path: Path) -> None:
    """Pareto figure carries the policy summary in its hover data, single models and oracle;
    history marks the best feasible value; importances come from the stored study."""
    from workbench import tune_charts as tc

    url = _url(tmp_path)
    res = run_tune(store, "syn", base_policy(), objective="min-cost", quality_floor=0.85,
                  trials=20, storage=url, study_name="charts", record=False)
    fig = tc.pareto_figure(res)
    names = [t.name for t in fig.data]
    assert "single models" in names and "oracle" in names
    front_trace = next(t for t in fig.data if t.name.startswith("tuned policies"))
    assert any("->" in str(row[1]) for row in front_trace.customdata)
    hist = tc.history_figure(res)
    best_line = [y for y in hist.data[1].y if y == y]
    assert best_line and min(best_line) == pytest.approx(res.train["cost_per_request"])
    imp = tc.importance_figure(url, "charts")
    assert set(imp.data[0].y) <= {p.path for p in tn.search_space(base_policy())}
    cmp = tn.front_vs_singles(res, "train")
    assert set(cmp["model"]) == {"cheap", "mid", "strong"}
    for _model, q, c, matched, dominated in cmp.iter_rows():
        fq, fc = res.pareto["quality"].to_numpy(), res.pareto["cost_per_request"].to_numpy()
        assert matched == bool(((fq >= q - 1e-9) & (fc <= c + 1e-9)).any())
        assert not dominated or matched


def test_progress_and_stop(store: Store) -> None:
    """The progress callback sees every trial with the feasible share; should_stop ends the
    run after the current trial and the finished trials are reported."""
    seen: list[tn.TuneProgress] = []
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    res = run_tune(store, "syn", base_policy(), objective="min-cost", quality_floor=0.8,
                  trials=50, storage=tn.IN_MEMORY, study_name="stop", record=False,
                  progress=seen.append, should_stop=stop)
    assert res.n_trials == 3
    assert [p.done for p in seen] == [1, 2, 3]
    assert all(p.total == 50 and 0.0 <= p.feasible_share <= 1.0 for p in seen)


def test_bad_requests_are_clear(store: Store, tmp_path: Path) -> None:
    """Missing constraint values, unknown candidates and unknown workloads name the problem."""
    with pytest.raises(WorkbenchError, match="needs a quality floor"):
        run_tune(store, "syn", base_policy(), objective="min-cost", storage=tn.IN_MEMORY)
    with pytest.raises(WorkbenchError, match="needs a budget"):
        run_tune(store, "syn", base_policy(), objective="max-quality", storage=tn.IN_MEMORY)
    with pytest.raises(WorkbenchError, match="gpt-9"):
        run_tune(store, "syn", base_policy(), objective="min-cost", quality_floor=0.8,
                candidates=["cheap", "gpt-9", "strong"], storage=tn.IN_MEMORY)
    with pytest.raises(WorkbenchError, match="unknown workload"):
        run_tune(store, "nope", base_policy(), objective="min-cost", quality_floor=0.8,
                storage=tn.IN_MEMORY)


def test_candidates_pick_tier_models(store: Store, tmp_path: Path) -> None:
    """With candidates, tier models are searched; duplicate picks are infeasible trials with
    the reason recorded, not crashes."""
    res = run_tune(store, "syn", base_policy(), objective="min-cost", quality_floor=0.8,
                  candidates=["cheap", "mid", "strong"], trials=30, storage=tn.IN_MEMORY,
                  study_name="cands", record=False)
    params = [json.loads(p) for p in res.trials["params"].to_list()]
    assert all("tiers.0.model" in p for p in params)
    bad = res.trials.filter(pl.col("error").is_not_null())
    assert bad.height > 0 and not bad["feasible"].any()
    assert bad["error"].str.contains("appears in two tiers").all()


def test_default_base_policy(store: Store, tmp_path: Path) -> None:
    """With recorded confidence the default is a cascade over the frontier, cheapest first."""
    policy = tn.default_base_policy(store, "syn", home=tmp_path)
    assert policy.tier_models == ("cheap", "mid", "strong")
    assert policy.preroute is None


def test_cli_json(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`workbench tune --json` prints train and holdout with the evaluate keys and writes the
    policy file."""
    store.close()
    out = tmp_path / "best.yaml"
    base = tmp_path / "base.yaml"
    base_policy().to_file(base)
    code = main(["tune", "--home", str(tmp_path), "--workload", "syn", "--objective",
                 "min-cost", "--quality-floor", "95%", "--trials", "15", "--policy", str(base),
                 "--out", str(out), "--json", "--seed", "2"])
    assert code == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    for split in ("train", "holdout"):
        assert set(data[split]) >= {"quality", "quality_ci", "cost_per_request",
                                    "cost_per_success", "latency_p95_ms", "escalation_rate",
                                    "refusal_rate", "answered_by", "n"}
    assert data["n_trials"] == 15 and data["study"].startswith("tune-syn-min-cost-")
    assert "trial 15/15" in captured.err
    assert Policy.from_file(out).provenance.study == data["study"]  # type: ignore[union-attr]
    code = main(["tune-trial", "--home", str(tmp_path), "--study", data["study"],
                 "--number", str(data["best_trial"]), "--out", str(tmp_path / "t.yaml")])
    assert code == 0
    assert Policy.from_file(tmp_path / "t.yaml").tiers == Policy.from_file(out).tiers


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both --test-workload and --holdout: one clear line, exit 2."""
    code = main(["tune", "--home", str(tmp_path), "--workload", "x", "--test-workload", "y",
                 "--holdout", "0.2", "--objective", "pareto", "--trials", "1"])
    assert code == 2
    assert "either --test-workload or --holdout" in capsys.readouterr().err


# -- real data ---------------------------------------------------------------------------
@pytest.mark.slow
def test_routerbench_holdout_is_test_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """ARC-Challenge: tune on the train file against the test file. Holdout metrics cover
    test items only (minus items also in train), and the learned router is fitted and
    cross-fitted on train items only."""
    train_csv = ROUTERBENCH / "arc_challenge_train.csv"
    test_csv = ROUTERBENCH / "arc_challenge_test.csv"
    if not (train_csv.exists() and test_csv.exists()):
        pytest.skip(f"RouterBench data not present at {ROUTERBENCH}")
    from workbench.workloads.importers import import_file

    s = Store(tmp_path / "workbench.duckdb")
    import_file(s, train_csv, "arc_train", format="routerbench")
    import_file(s, test_csv, "arc_test", format="routerbench")
    train_ids = set(s.items("arc_train")["item_id"].to_list())
    train_inputs = set(s.items("arc_train")["input"].to_list())
    test_items = s.items("arc_test")
    fresh = test_items.filter(~pl.col("item_id").is_in(list(train_ids))
                              & ~pl.col("input").is_in(list(train_inputs)))
    seen: dict[str, list[set[str]]] = {"fit": [], "cross_fit": []}
    from workbench.tune import evaluate as tune_evaluate

    real_fit, real_xfit = tune_evaluate._fit_router, tune_evaluate._train_predictions

    def spy_fit(items: pl.DataFrame, *a: object) -> object:
        seen["fit"].append(set(items["item_id"].to_list()))
        return real_fit(items, *a)  # type: ignore[arg-type]

    def spy_xfit(items: pl.DataFrame, *a: object) -> pl.DataFrame:
        seen["cross_fit"].append(set(items["item_id"].to_list()))
        return real_xfit(items, *a)  # type: ignore[arg-type]

    for module in ("problem", "reports"):  # where the study and its reports call them
        monkeypatch.setattr(f"workbench.tune.{module}._fit_router", spy_fit, raising=False)
        monkeypatch.setattr(f"workbench.tune.{module}._train_predictions", spy_xfit,
                            raising=False)
    from workbench.tune.base import default_base_policy

    learned = default_base_policy(s, "arc_train", home=tmp_path, agreement=False)
    res = run_tune(s, "arc_train", learned, objective="pareto", trials=20,
                  test_workload="arc_test", storage=tn.IN_MEMORY, study_name="arc",
                  home=tmp_path, record=False)
    assert res.best_policy.router is not None
    assert seen["fit"] and seen["cross_fit"]
    for ids in seen["fit"] + seen["cross_fit"]:
        assert ids == train_ids
    assert res.holdout["n"] == fresh.height
    assert res.train["n"] == len(train_ids)
    hold_singles = res.singles.filter(pl.col("split") == "holdout")
    assert hold_singles.height == 11
    rep = tn.evaluate_trial(s, res, res.best_trial)
    assert rep.train == res.train and rep.holdout == res.holdout
    s.close()


def test_base_policy_with_unrecorded_models_is_a_clear_error(tmp_path) -> None:
    """A policy saved for another workload names models without outcomes here."""
    import polars as pl

    from workbench.errors import WorkbenchError
    from workbench.policy import Policy
    from workbench.store import open_store
    store = open_store(tmp_path)
    ids = [f"i{k}" for k in range(40)]
    store.add_workload_frame("w", pl.DataFrame({"item_id": ids, "input": ids}),
                             task_type="qa", source="t")
    store.write_outcomes("w", pl.DataFrame({"item_id": ids, "model": ["a"] * 40,
                                            "quality": [1.0] * 40, "cost_usd": [0.1] * 40}))
    other = Policy.validate_data({"models": {"x": {"model": "x"}, "y": {"model": "y"}},
                                  "tiers": [{"model": "x", "accept_above": 0.5},
                                            {"model": "y"}]})
    with pytest.raises(WorkbenchError, match="no recorded outcomes on 'w': x, y"):
        run_tune(store, "w", other, objective="min-cost", quality_floor="95%", trials=2,
                 home=tmp_path)
    store.close()
