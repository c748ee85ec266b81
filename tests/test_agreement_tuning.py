"""Tuning over agreement gates: the default agreement cascade, the partner in the search space,
the screen of discrete choices, the agreement kind inferred from recorded answers, and the
held-out ARC target on real RouterBench data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workbench import tune as tn
from workbench.agreement import infer_kind
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.policy import Policy
from workbench.store import Store
from workbench.tune.base import answering_models, default_base_policy
from workbench.tune.space import apply_params, search_space

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROUTERBENCH = DATA / "routerbench"
LETTERS = np.array(list("ABCD"))


def _answers(rng: np.random.Generator, truth: np.ndarray, accuracy: float) -> np.ndarray:
    """Letters right with probability `accuracy`, else a uniformly drawn wrong letter."""
    right = rng.random(truth.size) < accuracy
    shift = rng.integers(1, 4, truth.size)
    wrong = LETTERS[(np.searchsorted(LETTERS, truth) + shift) % 4]
    return np.where(right, truth, wrong)


def _store(tmp_path: Path, n: int = 600, seed: int = 7) -> Store:
    """Multiple choice: two independent cheap models (75% right), a weak one and a strong one.
    When the cheap two agree they are right ~96% of the time, so 'cheap+partner else strong'
    is about as good as the strong model at about half its price."""
    rng = np.random.default_rng(seed)
    truth = LETTERS[rng.integers(0, 4, n)]
    ids = [f"q{i}" for i in range(n)]
    s = Store(tmp_path / "workbench.duckdb")
    s.add_workload_frame("mc", pl.DataFrame({"item_id": ids, "input": [f"question {i}" for i in
                                                                       range(n)]}),
                         task_type="generation", source="test")
    frames = []
    for model, acc, cost in (("cheap-a", 0.75, 0.001), ("cheap-b", 0.75, 0.0012),
                             ("weak", 0.4, 0.0005), ("strong", 0.95, 0.02)):
        out = _answers(rng, truth, acc)
        frames.append(pl.DataFrame({
            "item_id": ids, "model": [model] * n, "output": [f"['{a}\\n']" for a in out],
            "quality": (out == truth).astype(float), "cost_usd": [cost] * n}))
    s.write_outcomes("mc", pl.concat(frames))
    return s


def test_infer_kind_from_recorded_answers() -> None:
    """Short letters -> choice, numbers -> number, JSON -> json, prose or code -> text, and
    classification -> label whatever the answers look like."""
    assert infer_kind(pl.Series(["['C\\n']", "B", "The answer is A"])) == "choice"
    assert infer_kind(pl.Series(["so 12 apples", "#### 1,200", "3.5"])) == "number"
    assert infer_kind(pl.Series(['{"a": 1}', "[1, 2]", '{"b": "x"}'])) == "json"
    assert infer_kind(pl.Series(["def f(x):\n    return x", "print('hi')", "no idea"])) == "text"
    assert infer_kind(pl.Series(["B", "C"]), "classification") == "label"
    assert infer_kind(pl.Series([None, None], dtype=pl.String)) == "text"


def test_default_base_is_an_agreement_cascade_and_partner_is_searched(tmp_path: Path) -> None:
    """Recorded answers and no confidence: a cheaper model gated by a partner, then the
    strongest; the partner (or none) is searched among the answering models, and a sampled
    partner that is the tier itself or a later tier means no gate."""
    s = _store(tmp_path)
    base = default_base_policy(s, "mc", home=tmp_path)
    assert [t.model for t in base.tiers][-1] == "strong"
    assert base.tiers[0].agree_with is not None and base.tiers[0].agree_on == "choice"
    assert answering_models(s.outcomes("mc")) == ["cheap-a", "cheap-b", "strong", "weak"]
    space = {p.path: p for p in search_space(base, partners=["cheap-a", "cheap-b", "weak"])}
    assert space["tiers.0.agree_with"].choices == (None, "cheap-a", "cheap-b", "weak")
    selfish = apply_params(base, {"tiers.0.agree_with": base.tiers[0].model})
    assert selfish.tiers[0].agree_with is None
    later = apply_params(base, {"tiers.0.agree_with": "strong"})
    assert later.tiers[0].agree_with is None
    paired = apply_params(base, {"tiers.0.model": "weak", "tiers.0.agree_with": "cheap-b"})
    assert paired.tiers[0].agree_with == "cheap-b" and "cheap-b" in paired.models
    s.close()


def test_tuner_finds_the_agreeing_pair(tmp_path: Path) -> None:
    """Min-cost at 98% of the strong model: the study (screen, then TPE) lands on the two
    independent cheap models agreeing, well under the strong model's cost, on train and on
    the holdout."""
    s = _store(tmp_path)
    res = tn.tune(s, "mc", None, tn.StudySettings.create(
        "min-cost", quality_floor="98%", trials=30, storage=tn.IN_MEMORY, study_name="mc"),
        home=tmp_path, record=False)
    tier = res.best_policy.tiers[0]
    assert {tier.model, tier.agree_with} == {"cheap-a", "cheap-b"}
    assert res.best_policy.tiers[-1].model == "strong"
    strong_cost = 0.02
    assert res.train["cost_per_request"] < 0.6 * strong_cost
    assert res.holdout["cost_per_request"] < 0.6 * strong_cost
    hold_strong = res.singles.filter((pl.col("split") == "holdout")
                                     & (pl.col("model") == "strong"))["quality"][0]
    assert res.holdout["quality"] >= 0.95 * hold_strong
    s.close()


def test_agreement_partner_without_outcomes_is_a_clear_error(tmp_path: Path) -> None:
    """A base policy whose agreement partner has no recorded outcomes names it."""
    s = _store(tmp_path)
    pol = Policy.validate_data({
        "models": {m: {"model": m} for m in ("cheap-a", "ghost", "strong")},
        "tiers": [{"model": "cheap-a", "agree_with": "ghost", "agree_on": "choice"},
                  {"model": "strong"}]})
    with pytest.raises(WorkbenchError, match="ghost"):
        tn.tune(s, "mc", pol, tn.StudySettings.create("min-cost", quality_floor=0.9, trials=2,
                                                      storage=tn.IN_MEMORY), home=tmp_path,
                record=False)
    from workbench.replay import replay

    with pytest.raises(WorkbenchError, match="ghost"):
        replay(pol, s.items("mc"), s.outcomes("mc"))
    s.close()


def test_arc_target_held_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """RouterBench ARC-Challenge: `tune --objective min-cost --quality-floor 98%` on the train
    file, scored on the test file, reaches test quality >= 0.940 at <= $0.0016 per query,
    at least 3x cheaper than GPT-4 on the same items."""
    train, test = ROUTERBENCH / "arc_challenge_train.csv", ROUTERBENCH / "arc_challenge_test.csv"
    if not (train.exists() and test.exists()):
        pytest.skip(f"RouterBench data not present at {ROUTERBENCH}")
    home = str(tmp_path)
    for path, name in ((train, "arc_train"), (test, "arc_test")):
        assert main(["load", "--home", home, str(path), "--name", name,
                     "--format", "routerbench"]) == 0
    capsys.readouterr()
    assert main(["tune", "--home", home, "--workload", "arc_train", "--test-workload",
                 "arc_test", "--objective", "min-cost", "--quality-floor", "98%",
                 "--trials", "60", "--out", str(tmp_path / "policy.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    hold = out["holdout"]
    assert hold["quality"] >= 0.940
    assert hold["cost_per_request"] <= 0.0016
    singles = {r["model"]: r for r in out["singles"] if r["split"] == "holdout"}
    gpt4 = singles["gpt-4-1106-preview"]
    assert gpt4["cost_per_request"] / hold["cost_per_request"] >= 3.0
    policy = Policy.from_file(tmp_path / "policy.yaml")
    assert policy.tiers[0].agree_with is not None


def test_compare_without_recorded_latency(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Outcomes without latencies (as RouterBench's) print '-' instead of failing."""
    _store(tmp_path).close()
    assert main(["compare", "--home", str(tmp_path), "--workload", "mc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    strong = next(line for line in lines if line.startswith("strong"))
    assert strong.split()[-3:-1] == ["-", "-"]


def test_relative_home_is_taken_from_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--home data2` means ./data2, like any command-line path."""
    from workbench import settings

    monkeypatch.chdir(tmp_path)
    assert settings.home("data2") == tmp_path / "data2"
    assert (tmp_path / "data2").is_dir()


def test_replay_bench_runs_with_an_agreement_gate(capsys: pytest.CaptureFixture[str]) -> None:
    """`workbench bench replay` on a small workload: both policies (plain and with an agreement
    gate) equal the per-item specification item by item, and the RESULT line reports both."""
    assert main(["bench", "replay", "--items", "3000", "--reference-items", "1500",
                 "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "1,500 equal, 0 differ" in out
    assert "1,500 equal, 0 differ; ratio warm" in out
    result = next(line for line in out.splitlines() if line.startswith("RESULT bench=replay"))
    fields = dict(kv.split("=") for kv in result.split()[1:])
    assert float(fields["agreement_ms_per_million"]) > 0
