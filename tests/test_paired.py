"""Paired comparisons (workbench.paired), sample sizes (workbench.sample_size), the
`workbench paired` command and Compare's paired view, on a real DuckDB store."""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest

from tests.conftest import shared_file
from workbench import sample_size as ss
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.paired import Arm, compare, compare_arms, describe
from workbench.store import Store, open_store


def _arm(name: str, quality: list[float | None], ids: list[str] | None = None,
         cost: float = 0.001) -> Arm:
    ids = ids or [f"q{i:03d}" for i in range(len(quality))]
    return Arm(name, "model", pl.DataFrame(
        {"item_id": ids, "quality": quality, "cost_usd": [cost] * len(ids),
         "latency_ms": [10.0] * len(ids)},
        schema={"item_id": pl.String, "quality": pl.Float64, "cost_usd": pl.Float64,
                "latency_ms": pl.Float64}))


def _discordant(a_only: int, b_only: int, both: int, neither: int) -> tuple[Arm, Arm]:
    qa = [1.0] * a_only + [0.0] * b_only + [1.0] * both + [0.0] * neither
    qb = [0.0] * a_only + [1.0] * b_only + [1.0] * both + [0.0] * neither
    return _arm("A", qa, cost=0.002), _arm("B", qb, cost=0.0005)


# -- McNemar, checked by hand ---------------------------------------------------------------
def test_mcnemar_exact_when_few_items_disagree() -> None:
    a, b = _discordant(8, 2, 15, 5)
    r = compare_arms(a, b, n_boot=500)
    assert r.mcnemar is not None and r.mcnemar.method == "exact"
    assert (r.mcnemar.policy_only, r.mcnemar.other_only) == (8, 2)
    # two-sided exact binomial: 2 x P(X <= 2 | n=10, p=1/2) = 2 x (1 + 10 + 45) / 1024
    assert r.mcnemar.p_value == pytest.approx(112 / 1024, abs=1e-12)
    assert r.n == 30 and r.difference == pytest.approx(6 / 30)


def test_mcnemar_chi_square_with_continuity_correction() -> None:
    a, b = _discordant(30, 10, 40, 20)
    r = compare_arms(a, b, n_boot=500)
    assert r.mcnemar is not None and r.mcnemar.method == "chi2"
    # (|30 - 10| - 1)^2 / 40 = 9.025; P(chi2_1 > 9.025) = 2 (1 - Phi(sqrt(9.025))) = 0.002663
    assert r.mcnemar.p_value == pytest.approx(
        2 * (1 - NormalDist().cdf(math.sqrt(9.025))), rel=1e-9)
    assert r.mcnemar.p_value == pytest.approx(0.002663, abs=2e-6)


# -- the paired bootstrap -----------------------------------------------------------------------
def test_items_are_matched_by_id_and_unmatched_ones_left_out() -> None:
    a = _arm("A", [1.0, 0.0, 1.0, None, 1.0], ["x", "y", "z", "w", "only-a"])
    b = _arm("B", [0.0, 1.0, 1.0, 1.0], ["z", "y", "x", "w"])  # another order, no 'only-a'
    r = compare_arms(a, b, n_boot=200)
    assert (r.n, r.n_only_a, r.n_only_b, r.n_unscored) == (3, 1, 0, 1)
    # pairs by id: x (1 vs 1), y (0 vs 1), z (1 vs 0)
    assert r.quality_a == pytest.approx(2 / 3) and r.quality_b == pytest.approx(2 / 3)
    assert r.difference == 0.0
    assert any("only in A" in n for n in r.notes)


def test_clear_difference_is_decisive_and_seeded() -> None:
    a, b = _discordant(60, 5, 100, 35)
    r1 = compare_arms(a, b, seed=3)
    r2 = compare_arms(a, b, seed=3)
    assert r1.difference_ci == r2.difference_ci  # same seed, same resamples
    lo, hi = r1.difference_ci
    assert 0 < lo < r1.difference < hi
    assert r1.decisive and r1.better == "A"
    assert r1.verdict.startswith("A is better than B")
    # cost: A costs 0.0015 more on every item, so the interval is that exactly
    assert r1.cost_difference == pytest.approx(0.0015)
    assert r1.cost_difference_ci == pytest.approx((0.0015, 0.0015))


def test_twelve_items_are_within_noise_with_items_needed() -> None:
    a, b = _discordant(3, 1, 7, 1)  # 12 items, A right on 10, B on 8
    r = compare_arms(a, b, detect=0.05)
    assert r.n == 12 and not r.decisive and r.better is None
    assert r.difference_ci[0] < 0 < r.difference_ci[1]
    assert r.verdict.startswith("within noise")
    # discordance seen: 4/12 = 1/3; Connor's formula for a 5-point difference
    psi, d = 1 / 3, 0.05
    z = NormalDist().inv_cdf
    by_hand = ((z(0.975) * math.sqrt(psi) + z(0.8) * math.sqrt(psi - d * d)) / d) ** 2
    assert r.items_needed == math.ceil(by_hand)
    assert f"{r.items_needed:,} paired items" in r.verdict
    text = "\n".join(describe(r))
    assert text.startswith("within noise") and "McNemar: p=0.625" in text  # 2 x 5/16


def test_enough_items_for_the_stated_difference_say_so() -> None:
    a, b = _discordant(10, 12, 500, 78)  # 600 items, 22 discordant: -0.3 points
    r = compare_arms(a, b, detect=0.05)
    assert not r.decisive
    # psi = max(22/600, 0.05) = 0.05, delta = 0.05:
    # (1.95996 sqrt(.05) + 0.84162 sqrt(.0475))^2 / .0025 = 154.6 -> 155
    assert r.items_needed == 155
    assert "600 items are enough to detect a difference of 5 points" in r.verdict
    assert "probably smaller than that" in r.verdict


def test_fractional_scores_use_the_bootstrap_only() -> None:
    rng = np.random.default_rng(0)
    a = _arm("A", list(rng.uniform(0.4, 1.0, 50)))
    b = _arm("B", list(rng.uniform(0.0, 0.6, 50)))
    r = compare_arms(a, b)
    assert r.mcnemar is None and r.decisive
    assert any("McNemar" in n for n in r.notes)
    sd = float(np.std(a.frame["quality"].to_numpy() - b.frame["quality"].to_numpy(), ddof=1))
    assert r.items_needed == ss.n_paired_mean(sd, 0.05)


def test_bad_comparisons_are_clear_errors() -> None:
    a = _arm("A", [1.0, 0.0])
    with pytest.raises(WorkbenchError, match="twice"):
        compare_arms(a, a)
    with pytest.raises(WorkbenchError, match="no scored item in common"):
        compare_arms(a, _arm("B", [1.0], ["elsewhere"]))
    with pytest.raises(WorkbenchError, match="difference to detect"):
        compare_arms(a, _arm("B", [1.0, 1.0]), detect=0.0)


# -- sample sizes against textbook values -------------------------------------------------------
def test_two_proportions_textbook_values() -> None:
    # Fleiss (no continuity correction): 50% vs 60% needs 388 per group; 65% vs 85%, 73.
    # by hand for 0.5 vs 0.6: (1.95996 sqrt(2 x .55 x .45) + 0.84162 sqrt(.25 + .24))^2 / .01
    #   = (1.37900 + 0.58914)^2 / 0.01 = 387.4 -> 388
    assert ss.n_two_proportions(0.5, 0.6) == 388
    assert ss.n_two_proportions(0.6, 0.5) == 388
    assert ss.n_two_proportions(0.65, 0.85) == 73
    assert ss.n_two_proportions(0.5, 0.6, power=0.9) == 519


def test_paired_proportions_and_means() -> None:
    # Connor: psi = 0.3, delta = 0.1: (1.95996 sqrt(.3) + 0.84162 sqrt(.29))^2 / .01 = 233.1
    assert ss.n_paired_proportions(0.2, 0.1) == 234
    # (z_.975 + z_.8)^2 = 7.849; x (0.5 / 0.1)^2 = 196.2 -> 197
    assert ss.n_paired_mean(0.5, 0.1) == 197
    assert ss.n_paired_mean(0.5, -0.1) == 197
    for bad in ({"alpha": 0.0}, {"power": 1.0}):
        with pytest.raises(WorkbenchError):
            ss.n_two_proportions(0.5, 0.6, **bad)
    with pytest.raises(WorkbenchError, match="non-zero"):
        ss.n_two_proportions(0.5, 0.5)
    with pytest.raises(WorkbenchError, match="between 0 and 1"):
        ss.n_two_proportions(1.2, 0.5)


def test_precision_says_when_an_interval_is_too_wide() -> None:
    wide = ss.precision(0.83, (0.50, 1.00), 12)
    assert not wide.decisive
    assert "too few items to decide" in wide.message and "n=12" in wide.message
    assert wide.items_needed == ss.n_two_proportions(0.83, 0.78)
    narrow = ss.precision(0.90, (0.88, 0.92), 900)
    assert narrow.decisive and "precise enough" in narrow.message
    assert ss.points(0.05) == "5 points" and ss.points(0.01) == "1 point"


# -- on a real store ----------------------------------------------------------------------------
def _recorded(store: Store, *, n: int | None = None) -> list[str]:
    """support-triage with seeded outcomes of 'cheap' (confidence-driven) and 'strong'."""
    from workbench.workloads.samples import load_samples

    load_samples(store, names=["support-triage"])
    ids = store.items("support-triage")["item_id"].to_list()[:n]
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, len(ids))
    cheap_q = (rng.uniform(0, 1, len(ids)) < 0.4 + 0.6 * conf).astype(float)
    strong_q = (rng.uniform(0, 1, len(ids)) < 0.95).astype(float)
    store.write_outcomes("support-triage", pl.DataFrame({
        "item_id": ids * 2,
        "model": ["cheap"] * len(ids) + ["strong"] * len(ids),
        "output": ["billing"] * (2 * len(ids)),
        "quality": np.concatenate([cheap_q, strong_q]),
        "cost_usd": [0.0001] * len(ids) + [0.002] * len(ids),
        "latency_ms": np.concatenate([rng.uniform(20, 80, len(ids)),
                                      rng.uniform(500, 1500, len(ids))]),
        "confidence": np.concatenate([conf, np.full(len(ids), 0.99)]),
    }))
    return ids


def test_models_and_a_saved_policy_from_the_store(store: Store, home: Path) -> None:
    from workbench.catalog import Catalog
    from workbench.policy import Policy

    ids = _recorded(store)
    r = compare(store, "support-triage", "strong", "cheap")
    assert r.n == len(ids) and r.decisive and r.better == "strong"
    assert r.mcnemar is not None and r.mcnemar.p_value < 1e-6
    catalog = Catalog(home)
    pol = Policy.validate_data({
        "name": "c", "models": {m: {"model": f"openai/{m}"} for m in ("cheap", "strong")},
        "tiers": [{"model": "cheap", "accept_above": 0.6}, {"model": "strong"}]})
    catalog.save_policy("c", pol.to_yaml(), workload="support-triage")
    p = compare(store, "support-triage", "policy:c", "strong", catalog=catalog)
    assert p.a == "policy:c" and p.n == len(ids)
    assert p.cost_a < p.cost_b  # the cascade keeps part of the traffic on the cheap model
    bare = compare(store, "support-triage", "c", "model:strong", catalog=catalog)
    assert bare.difference == p.difference
    with pytest.raises(WorkbenchError, match="neither a model .* nor a saved policy"):
        compare(store, "support-triage", "nobody", "strong", catalog=catalog)
    with pytest.raises(WorkbenchError, match="unknown policy"):
        compare(store, "support-triage", "policy:nope", "strong", catalog=catalog)


def test_cli_paired_prints_and_json(store: Store, home: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    _recorded(store, n=12)
    store.close()
    assert main(["paired", "cheap", "strong", "--workload", "support-triage",
                 "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "12 paired items" in out
    assert main(["paired", "cheap", "strong", "--workload", "support-triage", "--json",
                 "--detect", "0.1", "--home", str(home)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n"] == 12 and data["detect"] == 0.1
    assert data["decisive"] is (data["difference_ci"][0] > 0 or data["difference_ci"][1] < 0)
    assert main(["paired", "cheap", "ghost", "--workload", "support-triage",
                 "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 'ghost' is neither a model")


def test_real_routerbench_arc_paired(store: Store) -> None:
    """ARC-Challenge test split: GPT-4 beats Yi-34B by 3.9 points on the 439 items both
    have scored; McNemar on the 9 vs 26 discordant items is significant."""
    from workbench.workloads.importers import import_file

    import_file(store, shared_file("routerbench", "arc_challenge_test.csv"), "arc",
                format="routerbench")
    r = compare(store, "arc", "gpt-4-1106-preview", "zero-one-ai/Yi-34B-Chat")
    assert r.n == 439 and r.n_unscored == 6
    assert r.mcnemar is not None and (r.mcnemar.policy_only, r.mcnemar.other_only) == (26, 9)
    stat = (abs(26 - 9) - 1) ** 2 / 35
    assert r.mcnemar.p_value == pytest.approx(math.erfc(math.sqrt(stat / 2)), rel=1e-12)
    assert r.difference == pytest.approx(17 / 439)
    assert r.decisive and r.better == "gpt-4-1106-preview"
    assert r.cost_difference > 0


# -- the Compare page -------------------------------------------------------------------------
def _sizes(at: object) -> object:
    """The sample-size table (the data frame with the items-needed column)."""
    return next(d.value for d in at.dataframe if "items needed" in d.value.columns)  # type: ignore[attr-defined]


def test_compare_page_paired_view(home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    _recorded(open_store(home), n=12)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=180)
    at.switch_page("pages/compare.py")
    at.session_state["current_workload"] = "support-triage"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    sizes = _sizes(at)
    assert list(sizes["n"]) == [12, 12]
    assert set(sizes["tells 5 points?"]) == {"too few items"}
    assert "items/s (one at a time)" in sizes.columns and "latency p99 ms" in sizes.columns
    assert at.selectbox(key="cmp_paired_a").value == "cheap"
    assert at.selectbox(key="cmp_paired_b").value == "strong"
    # 12 items: cheap 0.750 vs strong 0.833 is inside the noise, so no arrow on the difference
    diff = next(m for m in at.metric if m.label == "Quality A − B")
    assert diff.value == "-0.083" and not diff.delta
    warn = [w.value for w in at.warning if w.value.startswith("within noise")]
    assert warn and "on 12 paired items" in warn[0] and "needs about 783 paired items" in warn[0]
    at.selectbox(key="cmp_paired_a").set_value("strong").run()
    assert any(i.value == "Pick two different models or policies." for i in at.info)
    at.selectbox(key="cmp_paired_b").set_value("cheap").run()
    assert next(m for m in at.metric if m.label == "Quality A − B").value == "+0.083"
    at.number_input(key="cmp_paired_detect").set_value(20).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "tells 20 points?" in _sizes(at).columns


def test_compare_page_shows_a_difference_outside_the_noise(home: Path) -> None:
    """ARC-Challenge: GPT-4 against Yi-34B is outside the noise, so the difference gets its
    arrow and the verdict names the better model."""
    from streamlit.testing.v1 import AppTest

    from workbench.workloads.importers import import_file

    import_file(open_store(home), shared_file("routerbench", "arc_challenge_test.csv"), "arc",
                format="routerbench")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=240)
    at.switch_page("pages/compare.py")
    at.session_state["current_workload"] = "arc"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="cmp_paired_a").set_value("gpt-4-1106-preview").run()
    at.selectbox(key="cmp_paired_b").set_value("zero-one-ai/Yi-34B-Chat").run()
    assert not at.exception, [e.value for e in at.exception]
    diff = next(m for m in at.metric if m.label == "Quality A − B")
    assert diff.value == "+0.039" and diff.delta == "+0.039 (outside the noise)"
    assert any(s.value.startswith("gpt-4-1106-preview is better than zero-one-ai/Yi-34B-Chat")
               for s in at.success)
    assert any("McNemar's test (chi-square with continuity correction)" in c.value
               for c in at.caption)
