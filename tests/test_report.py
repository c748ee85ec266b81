"""The cost-first report (issue 15): the headline answer and its definition, slices with BH
flags, failure modes, the HTML report, `workbench report` and `workbench bench report`, bad
input, and the real RouterBench ARC workload (skipped when ../shared/data is absent)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import shared_file
from workbench.bench import report as bench_report
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.failures import MODES, classify, failure_counts, failure_table
from workbench.headline import DAYS_PER_MONTH, HeadlineSettings, cheaper_options
from workbench.report import ReportSettings, build_report, report_from_frames
from workbench.report_charts import report_figures, write_html
from workbench.slicing_stats import benjamini_hochberg, breakdown, slice_keys
from workbench.store import Store


def two_slice_workload(n_per_slice: int = 20) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Slice A: the cheap model is always right; slice B: always wrong; strong always right."""
    ids = [str(i) for i in range(2 * n_per_slice)]
    klass = ["A"] * n_per_slice + ["B"] * n_per_slice
    items = pl.DataFrame({"item_id": ids, "input": ["q"] * len(ids), "data_class": klass})
    cheap = pl.DataFrame({"item_id": ids, "model": "cheap",
                          "quality": [1.0] * n_per_slice + [0.0] * n_per_slice,
                          "cost_usd": 0.001, "latency_ms": 10.0})
    strong = pl.DataFrame({"item_id": ids, "model": "strong", "quality": 1.0,
                           "cost_usd": 0.01, "latency_ms": 100.0})
    return items, pl.concat([cheap, strong])


# -- the headline --------------------------------------------------------------------------
def test_headline_moves_exactly_the_slice_the_cheap_model_holds() -> None:
    items, outcomes = two_slice_workload()
    settings = HeadlineSettings(keep_quality=0.95, requests_per_day=1000, route_by="data_class",
                                n_boot=200)
    strong, options = cheaper_options(items, outcomes, settings)
    assert strong == "strong"
    (opt,) = options
    assert (opt.model, opt.rule, opt.moved_slices) == ("cheap", "slices", ("A",))
    assert opt.share == pytest.approx(0.5)
    assert opt.cost_ratio == pytest.approx(10.0)
    assert opt.quality_kept == pytest.approx(1.0)
    # all to strong costs 0.01; routed: half at 0.001, half at 0.01
    assert opt.monthly_saving_usd == pytest.approx(1000 * DAYS_PER_MONTH * (0.01 - 0.0055))
    assert opt.routed_quality == pytest.approx(0.5 + 0.5)
    lo, hi = opt.monthly_saving_ci
    assert lo <= opt.monthly_saving_usd <= hi


def test_traffic_mix_reweights_the_share_and_the_saving() -> None:
    items, outcomes = two_slice_workload()
    settings = HeadlineSettings(route_by="data_class", mix={"A": 9, "B": 1},
                                mix_by="data_class", requests_per_day=1000, n_boot=50)
    _, (opt,) = cheaper_options(items, outcomes, settings)
    assert opt.share == pytest.approx(0.9) and opt.moved_slices == ("A",)
    assert opt.monthly_saving_usd == pytest.approx(1000 * DAYS_PER_MONTH * 0.9 * 0.009)


def test_slices_without_traffic_or_with_too_few_items_never_move() -> None:
    items, outcomes = two_slice_workload()
    # B has no traffic in the mix: its (zero) margin must not carry it into the moved list
    settings = HeadlineSettings(route_by="data_class", mix={"A": 1}, mix_by="data_class",
                                n_boot=50)
    _, (opt,) = cheaper_options(items, outcomes, settings)
    assert opt.moved_slices == ("A",) and opt.share == pytest.approx(1.0)
    # a third slice C of 3 items where the cheap model is right: too few items to trust
    extra_items = pl.DataFrame({"item_id": ["c1", "c2", "c3"], "input": "q", "data_class": "C"})
    extra = pl.DataFrame({"item_id": ["c1", "c2", "c3"] * 2, "model": ["cheap"] * 3 + [
        "strong"] * 3, "quality": 1.0, "cost_usd": [0.001] * 3 + [0.01] * 3,
        "latency_ms": 1.0})
    _, (opt,) = cheaper_options(pl.concat([items, extra_items]), pl.concat([outcomes, extra]),
                                HeadlineSettings(route_by="data_class", n_boot=50))
    assert opt.moved_slices == ("A",)


def test_moved_share_keeps_the_target_quality_on_random_workloads() -> None:
    """The definition, as an invariant: on the moved requests the cheap model keeps >= Z of
    the strong model's quality, so the routed mix does too, for every rule chosen."""
    items, outcomes = bench_report.synthetic(3000, seed=3)
    for z in (0.8, 0.9, 0.97):
        settings = HeadlineSettings(keep_quality=z, n_boot=50)
        _, options = cheaper_options(items, outcomes, settings,
                                     columns=("tag", "difficulty", "input_length"))
        assert options
        for opt in options:
            assert 0.0 <= opt.share <= 1.0
            if opt.share > 0:
                assert opt.quality_kept >= z - 1e-9
                assert opt.routed_quality >= z * opt.strong_quality - 1e-9
            assert opt.share_ci[0] <= opt.share_ci[1]


def test_report_agrees_with_the_row_by_row_reference() -> None:
    items, outcomes = bench_report.synthetic(2500, seed=1)
    settings = ReportSettings(headline=HeadlineSettings(n_boot=50),
                              slice_columns=bench_report.COLUMNS)
    ours = report_from_frames(items, outcomes, settings)
    assert bench_report._compare(ours, bench_report.reference(items, outcomes, settings)) == []


def test_report_is_deterministic_for_a_seed() -> None:
    items, outcomes = bench_report.synthetic(1500, seed=2)
    settings = ReportSettings(headline=HeadlineSettings(n_boot=100, seed=7))
    a = report_from_frames(items, outcomes, settings).as_json()
    b = report_from_frames(items, outcomes, settings).as_json()
    assert a == b


def test_what_if_recomputes_the_headline_like_a_fresh_report() -> None:
    items, outcomes = bench_report.synthetic(1500, seed=5)
    base = report_from_frames(items, outcomes, ReportSettings(
        headline=HeadlineSettings(n_boot=100)))
    changed = base.what_if(keep_quality=0.9, requests_per_day=123.0, mix={"pii": 1, "public": 3},
                           mix_by="data_class")
    fresh = report_from_frames(items, outcomes, ReportSettings(headline=HeadlineSettings(
        keep_quality=0.9, requests_per_day=123.0, mix={"pii": 1, "public": 3},
        mix_by="data_class", n_boot=100)))
    assert changed.options == fresh.options and changed.sentence == fresh.sentence
    assert changed.slices.equals(base.slices)
    with pytest.raises(WorkbenchError, match="requests per day must be a positive number"):
        base.what_if(requests_per_day=-1)


# -- slices ---------------------------------------------------------------------------------
def test_benjamini_hochberg_matches_the_hand_computation() -> None:
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.20])
    # ranks 1..4 of the 4 tests: 0.01*4/1, 0.03*4/2, 0.04*4/3, 0.20*4/4; then each q is the
    # minimum over its rank and above, so 0.03's 0.06 becomes 0.04's 0.0533
    expected = np.array([0.04, 0.16 / 3, 0.16 / 3, np.nan, 0.20])
    np.testing.assert_allclose(benjamini_hochberg(p), expected)


def test_a_truly_worse_slice_is_flagged_and_equal_slices_are_not() -> None:
    n = 400
    ids = [str(i) for i in range(n)]
    tags = ['["hard"]' if i % 4 == 0 else '["easy"]' for i in range(n)]
    items = pl.DataFrame({"item_id": ids, "input": ["x" * (i % 50 + 1) for i in range(n)],
                          "tags": tags,
                          "difficulty": ["d1" if (i // 4) % 2 else "d2" for i in range(n)]})
    # model m: wrong on every 'hard' item, right elsewhere; equal on both difficulty halves
    q = [0.0 if i % 4 == 0 else 1.0 for i in range(n)]
    outcomes = pl.DataFrame({"item_id": ids, "model": "m", "quality": q, "cost_usd": 0.001,
                             "latency_ms": 5.0})
    frame = breakdown(items, outcomes, ["tag", "difficulty"], n_boot=100)
    flagged = frame.filter("flagged")
    assert flagged.select("column", "slice").rows() == [("tag", "hard")]
    hard = frame.filter(pl.col("slice") == "hard").row(0, named=True)
    assert (hard["n"], hard["quality"], hard["rest_quality"]) == (100, 0.0, 1.0)
    assert not frame.filter(pl.col("column") == "difficulty")["flagged"].any()


def test_tags_given_as_a_json_object_become_key_value_slices() -> None:
    items = pl.DataFrame({"item_id": ["1", "2"], "input": ["a", "b"],
                          "tags": ['{"eval_name": "arc"}', '["x", "y"]']})
    keys = slice_keys(items, "tag")
    assert keys.rows() == [("1", "eval_name=arc"), ("2", "x"), ("2", "y")]


# -- failure modes ---------------------------------------------------------------------------
def test_every_failure_mode_is_classified_from_the_outcome_columns() -> None:
    rows = [  # (output, quality, error, expected mode)
        ("Paris", 1.0, None, "ok"),
        ("Lyon", 0.0, None, "wrong_answer"),
        ("maybe", 0.0, None, "invalid_format"),  # item 3 lists labels yes/no
        ("I'm sorry, but I cannot help with that.", 0.0, None, "refusal"),
        ("['']", 0.0, None, "empty_output"),
        (None, 0.0, "context_window", "context_overflow"),
        (None, 0.0, "timeout", "timeout"),
        (None, 0.0, "rate_limit", "rate_limit"),
        (None, 0.0, "connection", "provider_error"),
        (None, 0.0, "content_policy", "refusal"),
        ("Berlin", None, None, "unscored"),
    ]
    ids = [str(i) for i in range(len(rows))]
    items = pl.DataFrame({"item_id": ids, "input": ["q"] * len(rows),
                          "labels": [["yes", "no"] if i == 2 else None
                                     for i in range(len(rows))]},
                         schema_overrides={"labels": pl.List(pl.String)})
    outcomes = pl.DataFrame({"item_id": ids, "model": "m", "output": [r[0] for r in rows],
                             "quality": [r[1] for r in rows], "error": [r[2] for r in rows]},
                            schema_overrides={"output": pl.String, "error": pl.String,
                                              "quality": pl.Float64})
    got = dict(classify(items, outcomes).select("item_id", "mode").iter_rows())
    assert [got[i] for i in ids] == [r[3] for r in rows]
    table = failure_table(classify(items, outcomes))
    refusals = table.filter(pl.col("mode") == "refusal").row(0, named=True)
    assert refusals["count"] == 2 and refusals["examples"] == ["3", "9"]
    assert refusals["rate"] == pytest.approx(2 / len(rows))
    wide = failure_counts(table)
    assert wide.columns == ["model", *MODES] and int(wide.select(MODES).sum_horizontal()[0]) == 11


# -- HTML, CLI, bench, bad input --------------------------------------------------------------
def _store_synthetic(store: Store, name: str = "syn", n: int = 2000) -> None:
    items, outcomes = bench_report.synthetic(n, seed=4)
    store.add_workload_frame(name, items.drop("labels"), task_type="generation", source="test")
    store.write_outcomes(name, outcomes)


def test_html_report_is_standalone_and_small(store: Store, tmp_path: Path) -> None:
    _store_synthetic(store)
    report = build_report(store, "syn", ReportSettings(headline=HeadlineSettings(n_boot=100)))
    figs = report_figures(report)
    assert {"share", "saving", "cost_quality", "failures"} <= set(figs)
    assert any(k.startswith("slices:") for k in figs)
    size = write_html(report, tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    assert size < 5_000_000
    assert report.sentence.split(" (")[0] in text
    assert text.count("Plotly.newPlot") == len(figs)
    assert "<script src=" not in text  # plotly.js is inline: no network needed


def test_cli_report_json_gives_the_library_figures(store: Store, home: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _store_synthetic(store)
    out = tmp_path / "out.html"
    code = main(["report", "--workload", "syn", "--json", "--keep", "90",
                 "--requests-per-day", "2500", "--n-boot", "100", "--html", str(out)])
    assert code == 0 and out.exists()
    data = json.loads(capsys.readouterr().out)
    report = build_report(store, "syn", ReportSettings(headline=HeadlineSettings(
        keep_quality=0.9, requests_per_day=2500, n_boot=100)))
    assert data["sentence"] == report.sentence
    assert data["headline"]["monthly_saving_usd"] == pytest.approx(
        report.headline.monthly_saving_usd)
    assert data["settings"]["requests_per_day"] == 2500
    assert {"options", "models", "slices", "flagged_slices", "failures"} <= set(data)


@pytest.mark.parametrize("args, message", [
    (["--slices", "colour"], "unknown slice column 'colour'"),
    (["--route-by", "colour"], "unknown routing column 'colour'"),
    (["--requests-per-day", "-5"], "--requests-per-day must be a positive number, got '-5'"),
    (["--requests-per-day", "0"], "--requests-per-day must be a positive number"),
    (["--requests-per-day", "lots"], "--requests-per-day must be a positive number"),
    (["--requests-per-day", "nan"], "--requests-per-day must be a positive number"),
    (["--keep", "120"], "--keep is a percentage"),
    (["--mix", "A=1", "--mix-by", "data_class"], "traffic mix names data_class slice 'A'"),
    (["--mix", "public"], "is not SLICE=WEIGHT"),
    (["--mix", "a=1"], "a traffic mix needs the slice column it is given over"),
    (["--mix", "billing=1", "--mix-by", "tag"], "a traffic mix needs one slice per item"),
    (["--mix", "pii=-1", "--mix-by", "data_class"], "must be a number >= 0, got -1.0"),
    (["--strong", "gpt-9"], "strong model 'gpt-9' has no outcomes on this workload"),
    (["--alpha", "2"], "the false discovery rate must be in (0, 1)"),
    (["--n-boot", "0"], "n_boot must be a whole number >= 1, got 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(
        store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    _store_synthetic(store, n=1000)
    out = tmp_path / "never.html"
    code = main(["report", "--workload", "syn", "--html", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_library_rejects_a_volume_that_is_not_a_positive_number() -> None:
    for bad in (0, -1.0, math.nan, math.inf, "100", True):
        with pytest.raises(WorkbenchError, match="requests per day must be a positive number"):
            HeadlineSettings(requests_per_day=bad).validate()  # type: ignore[arg-type]


def test_breakdown_rejects_an_unknown_column() -> None:
    items, outcomes = two_slice_workload()
    with pytest.raises(WorkbenchError, match="unknown slice column 'region'; choose one of"):
        breakdown(items, outcomes, ["region"])


def test_bench_report_prints_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "report", "--items", "2000", "--reference-items", "1000",
                 "--repeat", "1", "--n-boot", "50"])
    out = capsys.readouterr().out
    assert code == 0
    assert "agreement on 1,000 items: equal" in out
    result = next(line for line in out.splitlines() if line.startswith("RESULT bench=report"))
    fields = dict(part.split("=", 1) for part in result.split()[1:])
    assert float(fields["ratio"]) > 0 and float(fields["html_mb"]) < 5


# -- real data ---------------------------------------------------------------------------------
def test_real_routerbench_arc_headline(store: Store) -> None:
    from workbench.workloads.importers import import_file

    import_file(store, shared_file("routerbench", "arc_challenge_test.csv"), "arc",
                format="routerbench")
    report = build_report(store, "arc", ReportSettings(headline=HeadlineSettings(n_boot=200)))
    assert report.strong == "gpt-4-1106-preview"
    best = report.headline
    assert best is not None and best.model == "zero-one-ai/Yi-34B-Chat"
    # Yi-34B keeps 0.918 / 0.957 = 95.9% of GPT-4's quality over all 445 items at 1/12.6 the cost
    assert (best.rule, best.share) == ("everything", 1.0)
    assert best.quality_kept == pytest.approx(0.9595, abs=5e-4)
    assert best.cost_ratio == pytest.approx(12.6, abs=0.05)
    assert best.share_ci[0] < best.share  # so close to 95% that resamples can fall below it
    modes = failure_counts(report.failures)
    assert int(modes.filter(pl.col("model") == "gpt-4-1106-preview")["ok"][0]) > 400


def test_readme_report_commands_run(store: Store, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The README's report examples, run as written on a synthetic 'traffic' workload."""
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## The cost-first report", 1)[1].split("```bash", 1)[1]
    commands = [line for line in block.split("```", 1)[0].strip().splitlines() if line]
    assert len(commands) == 2
    _store_synthetic(store, "traffic", n=1500)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "workbench"
        assert main([*argv[1:], "--n-boot", "50"]) == 0, command
    assert (tmp_path / "report.html").exists()
    out = capsys.readouterr().out
    data = json.loads(out[out.index("{"):])  # the first command prints text, the second JSON
    assert data["settings"]["mix"] == {"public": 7.0, "pii": 3.0}


@pytest.mark.slow
@pytest.mark.e2e
def test_html_report_renders_offline_in_chromium(store: Store, tmp_path: Path) -> None:
    """Opened from disk in a real browser with the network blocked, every figure draws and
    the page raises no script error."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"{chromium} is absent (Debian package chromium)")
    from playwright import sync_api

    _store_synthetic(store)
    report = build_report(store, "syn", ReportSettings(headline=HeadlineSettings(n_boot=100)))
    path = tmp_path / "report.html"
    write_html(report, path)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            requests: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.route("http*://**", lambda route: route.abort())
            page.goto(path.as_uri())
            page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
            n_plots = page.locator(".plotly-graph-div").count()
            drawn = page.evaluate(
                "[...document.querySelectorAll('.plotly-graph-div')]"
                ".filter(d => d.querySelector('.main-svg')).length")
            headline_text = page.locator(".headline").inner_text()
        finally:
            browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith("file:")] == []
    assert n_plots == len(report_figures(report)) and drawn == n_plots
    assert headline_text == report.sentence


def test_real_arc_headline_prefers_the_saving_that_holds_in_every_resample(store: Store
                                                                          ) -> None:
    """At 90% mixtral saves a little more than Yi-34B at its point estimate, but keeps 90.2%
    of GPT-4's quality and falls below 90% in many resamples; Yi-34B (96%) holds in all."""
    from workbench.workloads.importers import import_file

    import_file(store, shared_file("routerbench", "arc_challenge_test.csv"), "arc",
                format="routerbench")
    report = build_report(store, "arc", ReportSettings(headline=HeadlineSettings(
        keep_quality=0.9, n_boot=200)))
    by_model = {o.model: o for o in report.options}
    mixtral, yi = by_model["mistralai/mixtral-8x7b-chat"], by_model["zero-one-ai/Yi-34B-Chat"]
    assert mixtral.monthly_saving_usd > yi.monthly_saving_usd
    assert mixtral.monthly_saving_ci[0] < yi.monthly_saving_ci[0]
    assert report.headline is yi and yi.share_ci == (1.0, 1.0)
