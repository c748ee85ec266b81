"""Quality without gold labels (issue 15 item 5): silver references, the versioned label set of
reviews (append-only, concurrent saves), replay/report/export recomputed from reviews, the
review queue, bad input, the CLI and the Review page (AppTest)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workbench import label_quality as lq
from workbench import review_queue as rq
from workbench import reviews as rv
from workbench.errors import NotFoundError, WorkbenchError
from workbench.policy import single
from workbench.replay import evaluate_workload
from workbench.store import Store
from workbench.workloads.samples import SUPPORT_LABELS, load_samples

WL = "support-triage"
N = 40
MODELS = {"cheap": (0.0001, 0.55), "mid": (0.001, 0.75), "strong": (0.01, 0.92)}


def phrase(label: str, k: int) -> str:
    """Answers as models write them (the label inside a sentence), so scoring must read them."""
    return (f"The category is {label}.", f"{label.upper()}", f"Category: {label}",
            f"I think this is about {label}")[k % 4]


def record(store: Store, n: int = N, seed: int = 7) -> pl.DataFrame:
    """Outcomes of three models on the first `n` items of the support-triage sample, each right
    with its own probability, with a confidence signal, scored against gold as the runner does."""
    load_samples(store, [WL])
    items = store.items(WL).head(n)
    rng = np.random.default_rng(seed)
    rows = []
    for j, (model, (cost, p_right)) in enumerate(MODELS.items()):
        for k, (iid, gold) in enumerate(zip(items["item_id"], items["reference"], strict=True)):
            right = rng.random() < p_right
            label = gold if right else str(rng.choice([x for x in SUPPORT_LABELS if x != gold]))
            rows.append({"item_id": iid, "model": model, "output": phrase(label, k + j),
                         "quality": float(right), "cost_usd": cost, "latency_ms": 100.0 * (j + 1),
                         "confidence": float(np.round(rng.uniform(0.6, 1.0), 3))})
    store.write_outcomes(WL, pl.DataFrame(rows))
    return items


def predicted(output: str) -> str:
    """The label an answer names (independent of the scorer: the test's own reading)."""
    low = output.lower()
    return next(lab for lab in SUPPORT_LABELS if lab in low)


# -- silver references --------------------------------------------------------------------------
def test_silver_scores_every_model_as_agreement_with_the_reference(store: Store) -> None:
    record(store)
    out = store.outcomes(WL)
    scored = lq.quality_outcomes(store, WL, silver="strong")
    assert scored.basis.describe() == "agreement with strong, not accuracy"
    assert scored.basis.as_json()["silver_reference"] == "strong"
    ref = {r["item_id"]: predicted(r["output"])
           for r in out.filter(pl.col("model") == "strong").iter_rows(named=True)}
    for model in MODELS:
        mine = out.filter(pl.col("model") == model)
        expected = np.mean([predicted(o) == ref[i]
                            for i, o in zip(mine["item_id"], mine["output"], strict=True)])
        got = scored.outcomes.filter(pl.col("model") == model)["quality"].mean()
        assert got == pytest.approx(expected), model
    # the reference agrees with itself; the stored (gold) quality is untouched
    assert scored.outcomes.filter(pl.col("model") == "strong")["quality"].min() == 1.0
    assert store.outcomes(WL).equals(out)


def test_silver_leaves_items_without_a_reference_answer_unscored(store: Store) -> None:
    record(store)
    first = store.items(WL)["item_id"][0]
    store.write_outcomes(WL, pl.DataFrame({"item_id": [first], "model": ["strong"],
                                           "output": [None], "error": ["timeout"],
                                           "quality": [0.0], "cost_usd": [0.01]}))
    scored = lq.quality_outcomes(store, WL, silver="strong")
    assert scored.basis.n_silver_missing == 1
    assert scored.outcomes.filter(pl.col("item_id") == first)["quality"].null_count() == 3


def test_silver_on_numeric_answers_reuses_the_numeric_scorer(store: Store) -> None:
    load_samples(store, ["arithmetic-qa"])
    ids = store.items("arithmetic-qa").head(4)["item_id"].to_list()
    outs = {"a": ["12", "The answer is 1,000.", "7", "x"],
            "b": ["12.0", "1000", "8", "y"]}
    store.write_outcomes("arithmetic-qa", pl.DataFrame([
        {"item_id": i, "model": m, "output": o, "quality": None, "cost_usd": 0.0}
        for m, col in outs.items() for i, o in zip(ids, col, strict=True)]))
    scored = lq.quality_outcomes(store, "arithmetic-qa", silver="b").outcomes
    q = dict(zip(scored.filter(pl.col("model") == "a")["item_id"],
                 scored.filter(pl.col("model") == "a")["quality"], strict=True))
    assert [q[i] for i in ids] == [1.0, 1.0, 0.0, 0.0]


def test_a_reference_model_without_answers_is_refused_and_writes_nothing(store: Store) -> None:
    record(store)
    before = store.outcomes_version(WL)
    with pytest.raises(NotFoundError, match="'ghost' has no answers.*cheap, mid, strong"):
        lq.quality_outcomes(store, WL, silver="ghost")
    # a model whose every call failed has rows but no answers
    ids = store.items(WL).head(N)["item_id"].to_list()
    store.write_outcomes(WL, pl.DataFrame({"item_id": ids, "model": "broken", "output": None,
                                           "error": "rate limited", "quality": 0.0,
                                           "cost_usd": 0.0}))
    before = store.outcomes_version(WL)
    with pytest.raises(NotFoundError, match="reference model 'broken' has no answers"):
        lq.quality_outcomes(store, WL, silver="broken")
    assert store.outcomes_version(WL) == before
    with pytest.raises(NotFoundError, match="unknown workload 'nope'"):
        lq.quality_outcomes(store, "nope", silver="strong")


def test_real_arc_agreement_with_gpt4_ranks_models_as_gold_accuracy_does(store: Store
                                                                         ) -> None:
    """RouterBench ARC (445 questions, 11 models with recorded answers): agreement with GPT-4,
    reading the option letter from answers spelled "['A\\n']" or "['A']", is within 2 points
    of each model's gold accuracy and orders the models the same way (rank correlation 0.99)."""
    from tests.conftest import shared_file
    from workbench.workloads.importers import import_file

    import_file(store, shared_file("routerbench", "arc_challenge_test.csv"), "arc",
                format="routerbench")
    reference = "gpt-4-1106-preview"
    scored = lq.quality_outcomes(store, "arc", silver=reference)
    assert scored.basis.n_silver_missing == 0
    gold = store.outcomes("arc").group_by("model").agg(pl.col("quality").mean().alias("gold"))
    both = (scored.outcomes.group_by("model").agg(pl.col("quality").mean().alias("agree"))
            .join(gold, on="model").filter(pl.col("model") != reference).sort("model"))
    assert both.height == 10
    assert (both["agree"] - both["gold"]).abs().max() < 0.02
    rank = np.corrcoef(both["gold"].rank().to_numpy(), both["agree"].rank().to_numpy())[0, 1]
    assert rank > 0.95


# -- the label set --------------------------------------------------------------------------
def test_every_save_is_a_new_version_with_reviewer_and_time(store: Store) -> None:
    record(store)
    iid = store.items(WL)["item_id"][0]
    a = rv.save_review(store, WL, iid, reviewer="ana", model="cheap", verdict=True)
    b = rv.save_review(store, WL, iid, reviewer="bo", model="cheap", verdict=False)
    c = rv.save_review(store, WL, iid, reviewer="ana", answer="billing")
    assert (a.version, b.version, c.version) == (1, 2, 3)
    assert a.output == store.outcomes(WL).filter(
        (pl.col("item_id") == iid) & (pl.col("model") == "cheap"))["output"][0]
    assert rv.latest_version(store, WL) == 3
    v1, v2 = rv.label_set(store, WL, 1), rv.label_set(store, WL, 2)
    assert v1.verdicts["verdict"].to_list() == [True]
    assert v2.verdicts["verdict"].to_list() == [False]  # the later save wins
    latest = rv.label_set(store, WL)
    assert latest.version == 3 and latest.reviewers == ("ana", "bo")
    assert latest.answers.to_dicts() == [{"item_id": iid, "answer": "billing"}]
    assert latest.as_provenance() == {"workload": WL, "version": 3, "reviewers": ["ana", "bo"],
                                      "n_reviews": 3, "n_items": 1}
    history = rv.reviews(store, WL)
    assert history["version"].to_list() == [3, 2, 1]  # nothing overwritten
    assert history["created"].null_count() == 0
    assert "bo marked cheap's answer wrong" in b.describe()


def test_two_reviewers_saving_the_same_item_at_once_both_keep_their_saves(
        store: Store) -> None:
    record(store)
    iid = store.items(WL)["item_id"][3]
    rv.ensure_schema(store)
    per_thread = 15
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def reviewer(name: str, verdict: bool) -> None:
        try:
            barrier.wait(timeout=60)
            for _ in range(per_thread):
                rv.save_review(store, WL, iid, reviewer=name, model="mid", verdict=verdict)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=reviewer, args=(n, v))
               for n, v in (("ana", True), ("bo", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    saved = rv.reviews(store, WL)
    assert sorted(saved["version"].to_list()) == list(range(1, 2 * per_thread + 1))
    assert saved.group_by("reviewer").len().sort("reviewer").rows() == [
        ("ana", per_thread), ("bo", per_thread)]
    # the label set's verdict is the save with the highest version
    top = saved.sort("version")[-1]
    assert rv.label_set(store, WL).verdicts["verdict"][0] == top["verdict"][0]


SAVER = """
import sys, time
from pathlib import Path
from workbench.reviews import save_review
from workbench.store import open_store
home, name, verdict, n, go = sys.argv[1], sys.argv[2], sys.argv[3] == "right", int(sys.argv[4]), Path(sys.argv[5])
deadline = time.monotonic() + 300
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
store = open_store(home)
for _ in range(n):
    save_review(store, "support-triage", "st-0002", reviewer=name, model="mid", verdict=verdict)
print("saved", n, flush=True)
"""


def test_two_processes_saving_the_same_item_at_once_both_keep_their_saves(
        home: Path, store: Store, tmp_path: Path) -> None:
    """The app and a command (or two commands) share a data directory: saves from two
    processes interleave through the store's file lease and none is lost."""
    import os
    import subprocess
    import sys

    record(store)
    rv.ensure_schema(store)
    store.close()
    go, per_process = tmp_path / "go", 10
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_LOCK_WAIT_S": "300"}
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(home), name, verdict,
                               str(per_process), str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for name, verdict in (("ana", "right"), ("bo", "wrong"))]
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        assert out.strip() == f"saved {per_process}"
    saved = rv.reviews(store, WL)
    assert sorted(saved["version"].to_list()) == list(range(1, 2 * per_process + 1))
    assert saved.group_by("reviewer").len().sort("reviewer").rows() == [
        ("ana", per_process), ("bo", per_process)]
    assert saved.filter(pl.col("reviewer") == "ana")["verdict"].all()
    print("\nsave order:", "".join(r[0] for r in saved.sort("version")["reviewer"]))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"item_id": "st-9999", "model": "cheap", "verdict": True},
     "item 'st-9999' is not in workload"),
    ({"item_id": None, "model": "ghost", "verdict": True}, "model 'ghost' has no recorded"),
    ({"item_id": None, "answer": "  "}, "written answer is empty"),
    ({"item_id": None, "model": "cheap", "verdict": None}, "right or wrong"),
    ({"item_id": None, "model": "cheap", "verdict": True, "answer": "x"}, "not both"),
    ({"item_id": None, "answer": "billing", "reviewer": " "}, "reviewer's name"),
    ({"item_id": None, "answer": "bill"}, "'bill' is not one of this workload's labels"),
])
def test_bad_reviews_are_refused_and_write_nothing(store: Store, kwargs: dict,
                                                   message: str) -> None:
    record(store)
    kwargs = dict(kwargs)
    kwargs["item_id"] = kwargs["item_id"] or store.items(WL)["item_id"][0]
    reviewer = kwargs.pop("reviewer", "ana")
    iid = kwargs.pop("item_id")
    with pytest.raises(WorkbenchError, match=message):
        rv.save_review(store, WL, iid, reviewer=reviewer, **kwargs)
    assert rv.latest_version(store, WL) == 0


def test_reviews_of_a_deleted_workload_or_item_are_refused(store: Store) -> None:
    record(store)
    iid = store.items(WL)["item_id"][0]
    rv.save_review(store, WL, iid, reviewer="ana", answer="billing")
    store.delete_workload(WL)
    with pytest.raises(NotFoundError, match="unknown workload 'support-triage'"):
        rv.save_review(store, WL, iid, reviewer="ana", answer="billing")
    with pytest.raises(NotFoundError, match="unknown workload"):
        rv.label_set(store, WL)
    # loaded again with the same content, the earlier reviews still describe these items
    record(store)
    assert rv.label_set(store, WL).answers["answer"].to_list() == ["billing"]
    with pytest.raises(NotFoundError, match="no label-set version 5"):
        rv.label_set(store, WL, 5)
    # loaded again from an edited file: a dropped item's reviews stop counting, an edited
    # item's too (its input changed), the unchanged items' reviews stay; a review of the
    # dropped item is refused
    items = store.items(WL)
    second, third = items["item_id"][1], items["item_id"][2]
    rv.save_review(store, WL, second, reviewer="bo", answer="refund")
    rv.save_review(store, WL, third, reviewer="bo", answer="shipping")
    edited = (items.filter(pl.col("item_id") != iid)
              .with_columns(pl.when(pl.col("item_id") == third).then(pl.lit("new text"))
                            .otherwise(pl.col("input")).alias("input")))
    store.add_workload_frame(WL, edited, task_type="classification", source="upload",
                             label_set=list(SUPPORT_LABELS), replace=True)
    kept = rv.label_set(store, WL)
    assert kept.answers.to_dicts() == [{"item_id": second, "answer": "refund"}]
    assert kept.version == 3 and kept.n_reviews == 1 and kept.reviewers == ("bo",)
    with pytest.raises(NotFoundError, match=f"item {iid!r} is not in workload"):
        rv.save_review(store, WL, iid, reviewer="ana", answer="billing")
    assert rv.latest_version(store, WL) == 3
    with pytest.raises(WorkbenchError, match="a number or 'latest'"):
        rv.label_set(store, WL, "newest")


# -- quality and replay recomputed from reviews ---------------------------------------------
def test_one_flipped_answer_changes_the_policy_quality_by_exactly_one_over_n(
        store: Store) -> None:
    record(store)
    n = store.recorded_items(WL).height
    before = evaluate_workload(store, WL, single("cheap")).metrics.quality
    out = store.outcomes(WL).filter(pl.col("model") == "cheap")
    right = out.filter(pl.col("quality") == 1.0)["item_id"][0]
    wrong = out.filter(pl.col("quality") == 0.0)["item_id"][0]
    rv.save_review(store, WL, right, reviewer="ana", model="cheap", verdict=False)
    v1 = evaluate_workload(store, WL, single("cheap"), label_set="latest").metrics.quality
    assert v1 == pytest.approx(before - 1 / n, abs=1e-12)
    rv.save_review(store, WL, wrong, reviewer="bo", model="cheap", verdict=True)
    v2 = evaluate_workload(store, WL, single("cheap"), label_set=2).metrics.quality
    assert v2 == pytest.approx(before, abs=1e-12)
    # version 1 is still there to replay against
    assert evaluate_workload(store, WL, single("cheap"), label_set=1).metrics.quality == \
        pytest.approx(v1, abs=1e-12)
    # the stored quality never changed
    assert evaluate_workload(store, WL, single("cheap")).metrics.quality == before


def test_a_written_answer_rescores_every_model_on_a_workload_without_gold(
        store: Store) -> None:
    ids = [f"q{i}" for i in range(5)]
    items = pl.DataFrame({"item_id": ids, "input": [f"ticket {i}" for i in range(5)]})
    store.add_workload_frame("mine", items, task_type="classification", source="upload",
                             label_set=list(SUPPORT_LABELS))
    store.write_outcomes("mine", pl.DataFrame([
        {"item_id": i, "model": m, "output": o, "cost_usd": c}
        for m, o, c in (("cheap", "The category is refund.", 0.001),
                        ("strong", "billing", 0.01)) for i in ids]))
    assert store.outcomes("mine")["quality"].null_count() == 10  # nothing to score against
    rv.save_review(store, "mine", "q0", reviewer="ana", answer="Billing")
    scored = lq.quality_outcomes(store, "mine", label_set="latest")
    q0 = scored.outcomes.filter(pl.col("item_id") == "q0").sort("model")
    assert q0["quality"].to_list() == [0.0, 1.0]
    assert scored.basis.n_relabelled == 2
    # a verdict on the answer as recorded beats the written answer
    rv.save_review(store, "mine", "q0", reviewer="bo", model="cheap", verdict=True)
    q0 = lq.quality_outcomes(store, "mine", label_set="latest").outcomes.filter(
        pl.col("item_id") == "q0").sort("model")
    assert q0["quality"].to_list() == [1.0, 1.0]
    # a re-run that changed the answer drops the stale verdict (the written answer holds)
    store.write_outcomes("mine", pl.DataFrame({"item_id": ["q0"], "model": ["cheap"],
                                               "output": ["shipping"], "cost_usd": [0.001]}))
    q0 = lq.quality_outcomes(store, "mine", label_set="latest").outcomes.filter(
        pl.col("item_id") == "q0").sort("model")
    assert q0["quality"].to_list() == [0.0, 1.0]


def test_a_team_without_gold_labels_gets_quality_from_reviews_of_real_answers(
        store: Store) -> None:
    """The bundled model (real llama.cpp inference) answers 8 support tickets uploaded without
    labels: nothing is scored. A person reviews 4 answers (judging them against what they
    know) and writes the answer to a fifth; the one-model policy's replayed quality is then the
    share of right answers among those 5, and its provenance names the label set."""
    from workbench.catalog import bundled_model_path
    from workbench.export import provenance_from_store
    from workbench.models import ModelSpec
    from workbench.runner import run

    load_samples(store, [WL])
    sample = store.items(WL).head(8)
    truth = dict(zip(sample["item_id"], sample["reference"], strict=True))
    store.add_workload_frame("tickets", sample.drop("reference"), task_type="classification",
                             source="upload", label_set=list(SUPPORT_LABELS))
    cfg = ModelSpec(name="gemma-local", kind="local-gguf", model=str(bundled_model_path()),
                    threads=1)  # one thread: see tests/test_runner.py local_config
    run(store, "tickets", [cfg])
    out = store.outcomes("tickets")
    assert out.height == 8 and out["error"].null_count() == 8
    assert out["quality"].null_count() == 8  # no gold: nothing to score against
    assert evaluate_workload(store, "tickets", single(cfg.name)).metrics.n_scored == 0

    answers = dict(zip(out["item_id"], out["output"], strict=True))
    ids = sorted(answers)
    for iid in ids[:4]:
        rv.save_review(store, "tickets", iid, reviewer="ana", model=cfg.name,
                       verdict=answers[iid] == truth[iid])
    rv.save_review(store, "tickets", ids[4], reviewer="bo", answer=truth[ids[4]].upper())
    m = evaluate_workload(store, "tickets", single(cfg.name), label_set="latest").metrics
    right = sum(answers[i] == truth[i] for i in ids[:5])
    assert m.n_scored == 5 and m.quality == pytest.approx(right / 5)
    policy = provenance_from_store(single(cfg.name), store, "tickets", label_set="latest")
    assert policy.provenance is not None
    assert policy.provenance.label_set == {"workload": "tickets", "version": 5,
                                           "reviewers": ["ana", "bo"], "n_reviews": 5,
                                           "n_items": 5}
    assert policy.provenance.train_metrics["quality"] == pytest.approx(right / 5)
    print(f"\nbundled model on 8 unlabelled tickets: {right}/5 right among the reviewed")


def test_silver_and_label_set_together_say_both(store: Store) -> None:
    record(store)
    iid = store.items(WL)["item_id"][0]
    rv.save_review(store, WL, iid, reviewer="ana", model="cheap", verdict=True)
    basis = lq.quality_outcomes(store, WL, silver="strong", label_set=1).basis
    assert basis.describe().startswith("agreement with strong, not accuracy; corrected by "
                                       "label set v1 of support-triage")


def test_report_and_export_provenance_follow_the_label_set(store: Store, tmp_path: Path
                                                           ) -> None:
    from workbench.export import export_policy, provenance_from_store
    from workbench.headline import HeadlineSettings
    from workbench.policy import Policy
    from workbench.report import ReportSettings, build_report

    record(store)
    settings = ReportSettings(headline=HeadlineSettings(n_boot=50))
    gold = build_report(store, WL, settings)
    assert gold.basis is None and gold.as_json()["quality_basis"] is None
    silver = build_report(store, WL, settings, silver="strong")
    assert silver.as_json()["quality_basis"]["basis"] == "agreement with strong, not accuracy"
    row = silver.models.filter(pl.col("model") == "strong")
    assert row["quality"][0] == 1.0

    cheap = store.outcomes(WL).filter((pl.col("model") == "cheap") & (pl.col("quality") == 1))
    rv.save_review(store, WL, cheap["item_id"][0], reviewer="ana", model="cheap", verdict=False)
    policy = single("cheap")
    plain = provenance_from_store(policy, store, WL)
    reviewed = provenance_from_store(policy, store, WL, label_set="latest")
    assert plain.provenance is not None and plain.provenance.label_set is None
    assert reviewed.provenance is not None
    assert reviewed.provenance.label_set == {"workload": WL, "version": 1, "reviewers": ["ana"],
                                             "n_reviews": 1, "n_items": 1}
    n = store.recorded_items(WL).height
    assert reviewed.provenance.train_metrics["quality"] == pytest.approx(
        plain.provenance.train_metrics["quality"] - 1 / n)
    path = export_policy(reviewed, tmp_path / "p.yaml")
    again = Policy.from_file(path)
    assert again.provenance is not None and again.provenance.label_set["version"] == 1


# -- the queue ------------------------------------------------------------------------------
def test_queue_puts_confident_wrong_cheap_answers_first_and_skips_reviewed(
        store: Store) -> None:
    record(store)
    out = store.outcomes(WL)
    queue = rq.build_queue(store, WL, min_confidence=0.9)
    assert queue.cheap == "cheap" and queue.agree_on == "label"
    cheap = out.filter(pl.col("model") == "cheap")
    cw = set(cheap.filter((pl.col("confidence") >= 0.9) & (pl.col("quality") < 0.5))["item_id"])
    labels = out.with_columns(pl.col("output").map_elements(predicted, return_dtype=pl.String))
    disagree = set(labels.group_by("item_id").agg(pl.col("output").n_unique().alias("k"))
                   .filter(pl.col("k") > 1)["item_id"])
    assert set(queue.items["item_id"]) == cw | disagree
    head = queue.items.head(len(cw))
    assert set(head["item_id"]) == cw
    assert head["cheap_confidence"].to_list() == sorted(head["cheap_confidence"], reverse=True)
    first = queue.items["item_id"][0]
    rv.save_review(store, WL, first, reviewer="ana", answer="billing")
    again = rq.build_queue(store, WL, min_confidence=0.9)
    assert first not in set(again.items["item_id"])
    assert again.size == queue.size - 1
    view = rq.item_view(store, WL, first, silver="strong")
    assert view.written_answer == "billing" and view.silver_model == "strong"
    assert view.answers["model"].to_list() == ["cheap", "mid", "strong"]
    assert view.history.height == 1
    with pytest.raises(NotFoundError, match="'zz' is not in workload"):
        rq.item_view(store, WL, "zz")
    with pytest.raises(NotFoundError, match="model 'ghost' has no answers"):
        rq.build_queue(store, WL, cheap="ghost")


# -- the command line -----------------------------------------------------------------------
def test_cli_agreement_queue_save_versions_and_replay(home: Path, store: Store,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    import json

    from workbench.cli import main

    record(store)
    h = ["--home", str(home)]
    assert main(["labels", "agreement", "--workload", WL, "--reference", "strong", "--json",
                 *h]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["basis"] == "agreement with strong, not accuracy"
    assert {r["model"]: r["quality"] for r in got["models"]}["strong"] == 1.0
    assert main(["labels", "agreement", "--workload", WL, "--reference", "strong", *h]) == 0
    text = capsys.readouterr().out
    assert "agreement with strong, not accuracy" in text and "(reference)" in text

    assert main(["labels", "queue", "--workload", WL, "--json", *h]) == 0
    queue = json.loads(capsys.readouterr().out)
    first = queue["items"][0]["item_id"]
    assert queue["cheap"] == "cheap" and queue["size"] == len(queue["items"])

    before = json.loads(_run_json(main, ["evaluate", "--workload", WL, "--single", "cheap",
                                         *h], capsys))["quality"]
    wrong_or_right = store.outcomes(WL).filter(
        (pl.col("model") == "cheap") & (pl.col("item_id") == first))["quality"][0]
    flag = "--wrong" if wrong_or_right == 1.0 else "--right"
    assert main(["labels", "save", "--workload", WL, "--item", first, "--reviewer", "ana",
                 flag, "cheap", *h]) == 0
    assert "v1: ana marked cheap's answer" in capsys.readouterr().out
    after = json.loads(_run_json(main, ["evaluate", "--workload", WL, "--single", "cheap",
                                        "--label-set", "latest", *h], capsys))["quality"]
    n = store.recorded_items(WL).height
    assert after - before == pytest.approx((1 if flag == "--right" else -1) / n)
    assert main(["labels", "versions", "--workload", WL, *h]) == 0
    assert f"item {first}" in capsys.readouterr().out

    assert main(["report", "--workload", WL, "--silver", "strong", "--n-boot", "50", *h]) == 0
    assert capsys.readouterr().out.startswith(
        "quality here is agreement with strong, not accuracy")

    assert main(["compare", "--workload", WL, "--silver", "strong", "--label-set", "1",
                 *h]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("quality here is agreement with strong, not accuracy; corrected by "
                        "label set v1 of support-triage: 1 review of 1 item by ana")
    assert lines[1].split()[:3] == ["model", "n", "agreement"]
    assert main(["compare", "--workload", WL, "--silver", "strong", "--model", "cheap",
                 "--json", *h]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["model"] == "cheap" and row["quality_basis"].startswith("agreement with strong")
    silver = lq.quality_outcomes(store, WL, silver="strong").outcomes
    assert row["quality"] == pytest.approx(
        silver.filter(pl.col("model") == "cheap")["quality"].mean())


def _run_json(main: object, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main([*argv, "--json"]) == 0  # type: ignore[operator]
    return capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["labels", "agreement", "--workload", WL, "--reference", "ghost"],
     "reference model 'ghost' has no answers"),
    (["labels", "agreement", "--workload", "nope", "--reference", "strong"],
     "unknown workload 'nope'"),
    (["labels", "save", "--workload", WL, "--item", "st-9999", "--reviewer", "ana",
      "--answer", "billing"], "item 'st-9999' is not in workload"),
    (["labels", "save", "--workload", "nope", "--item", "st-0001", "--reviewer", "ana",
      "--answer", "billing"], "unknown workload 'nope'"),
    (["evaluate", "--workload", WL, "--single", "cheap", "--label-set", "3"],
     "has no label-set version 3"),
    (["report", "--workload", WL, "--silver", "ghost"], "reference model 'ghost'"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(home: Path, store: Store,
                                                      capsys: pytest.CaptureFixture[str],
                                                      argv: list[str], message: str) -> None:
    from workbench.cli import main

    record(store)
    before = store.outcomes_version(WL)
    assert main([*argv, "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert rv.latest_version(store, WL) == 0
    assert store.outcomes_version(WL) == before


def test_cli_export_names_the_label_set_version(home: Path, store: Store, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.cli import main
    from workbench.export import export_policy
    from workbench.policy import Policy

    record(store)
    src = export_policy(single("cheap"), tmp_path / "src.yaml")
    iid = store.items(WL)["item_id"][0]
    rv.save_review(store, WL, iid, reviewer="ana", answer="billing")
    rv.save_review(store, WL, iid, reviewer="bo", answer="shipping")
    out = tmp_path / "out.yaml"
    assert main(["export", "--policy", str(src), "--workload", WL, "--label-set", "1",
                 "--out", str(out), "--home", str(home)]) == 0
    prov = Policy.from_file(out).provenance
    assert prov is not None and prov.label_set == {
        "workload": WL, "version": 1, "reviewers": ["ana"], "n_reviews": 1, "n_items": 1}
    capsys.readouterr()
    assert main(["export", "--policy", str(src), "--label-set", "1", "--out", str(out),
                 "--home", str(home)]) == 2
    assert "--label-set needs --workload" in capsys.readouterr().err


# -- the Review page ------------------------------------------------------------------------
def test_review_page_marks_answers_writes_one_and_moves_on(home: Path, store: Store) -> None:
    from streamlit.testing.v1 import AppTest

    record(store)
    expected = rq.build_queue(store, WL).items["item_id"].to_list()
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=120)
    at.switch_page("pages/review.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value == f"Item 1 of {len(expected)}: {expected[0]}"
    assert at.button(key="rv_right_1").disabled  # no reviewer name yet: nothing can be saved
    at.text_input(key="rv_reviewer").set_value("ana").run()
    first = expected[0]

    at.button(key="rv_wrong_1").click().run()  # answer 1 is the cheap model's (by name)
    assert not at.exception, [e.value for e in at.exception]
    assert any("v1: ana marked cheap's answer wrong" in s.value for s in at.success)
    at.button(key="rv_right_3").click().run()
    at.text_area(key=f"rv_answer_{first}").set_value("billing").run()
    at.button(key="rv_save_answer").click().run()
    assert not at.exception, [e.value for e in at.exception]
    saved = rv.reviews(store, WL).sort("version")
    assert saved.select("version", "item_id", "model", "verdict", "answer",
                        "reviewer").rows() == [
        (1, first, "cheap", False, None, "ana"), (2, first, "strong", True, None, "ana"),
        (3, first, None, None, "billing", "ana")]
    # the page shows the reviews and what the label set does to each model's quality
    assert any("label set v3" in c.value for c in at.caption)
    assert any("reviewed: **wrong**" in m.value for m in at.markdown)

    at.button(key="rv_next").click().run()
    assert at.subheader[0].value == f"Item 2 of {len(expected)}: {expected[1]}"
    at.button(key="rv_back").click().run()
    assert at.subheader[0].value.startswith("Item 1 of")

    # a silver reference: the page says what the figures are
    at.selectbox(key="rv_silver").set_value("strong").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("agreement with strong, not accuracy" in i.value for i in at.info)
    agree = at.dataframe[0].value
    assert agree.loc[agree["model"] == "strong", "agreement with strong"].iloc[0] == 1.0


def test_review_page_says_when_nothing_is_left(home: Path, store: Store) -> None:
    from streamlit.testing.v1 import AppTest

    load_samples(store, [WL])
    ids = store.items(WL).head(3)["item_id"].to_list()
    store.write_outcomes(WL, pl.DataFrame([
        {"item_id": i, "model": m, "output": "billing", "quality": 1.0, "cost_usd": c,
         "confidence": 0.99} for i in ids for m, c in (("cheap", 0.001), ("strong", 0.01))]))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=120)
    at.switch_page("pages/review.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Nothing to review" in s.value for s in at.success)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Chromium is absent")
def test_review_keyboard_shortcuts_in_a_real_browser(home: Path, store: Store,
                                                     tmp_path: Path) -> None:
    """`streamlit run app.py` driven by Chromium: Alt+1 marks answer 1 wrong, 2 marks answer 2
    right, N moves on, Ctrl+Enter saves the answer typed in the box; the store holds each."""
    from playwright.sync_api import expect, sync_playwright

    from tests.browser import streamlit_app
    from tests.test_e2e_browser import CHROMIUM_ARGS, _wait_idle

    record(store)
    expected = rq.build_queue(store, WL).items["item_id"].to_list()
    store.close()
    with streamlit_app(home, tmp_path / "streamlit.log", timeout_s=90) as url, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(url, wait_until="networkidle")
        page.get_by_role("link", name="Review").click()
        page.wait_for_selector(f"text=Item 1 of {len(expected)}", timeout=120_000)
        page.get_by_role("textbox", name="Your name").fill("ana")
        page.keyboard.press("Enter")
        # the rerun with the name has happened once the buttons are enabled (a shortcut
        # pressed on a disabled button does nothing)
        expect(page.locator("button:has-text('Wrong')").first).to_be_enabled(
            timeout=120_000)
        _wait_idle(page)
        page.locator("h1").first.click()  # leave the text box: plain keys act again
        page.keyboard.press("Alt+1")
        page.wait_for_selector("text=ana marked cheap's answer wrong", timeout=120_000)
        _wait_idle(page)
        page.keyboard.press("2")
        page.wait_for_selector("text=ana marked mid's answer right", timeout=120_000)
        _wait_idle(page)
        page.keyboard.press("n")
        page.wait_for_selector(f"text=Item 2 of {len(expected)}", timeout=120_000)
        _wait_idle(page)
        page.get_by_role("textbox", name="The correct answer").fill("shipping")
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("text=ana wrote the answer 'shipping'", timeout=120_000)
        browser.close()
    saved = rv.reviews(store, WL).sort("version")
    assert saved.select("item_id", "model", "verdict", "answer").rows() == [
        (expected[0], "cheap", False, None), (expected[0], "mid", True, None),
        (expected[1], None, None, "shipping")]


def test_review_page_edge_cases(home: Path, store: Store) -> None:
    """An empty data directory, then a numeric workload where one model only failed: the page
    explains itself and never shows a traceback."""
    from streamlit.testing.v1 import AppTest

    app = str(Path(__file__).resolve().parents[1] / "app.py")
    at = AppTest.from_file(app, default_timeout=120)
    at.switch_page("pages/review.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("No workload has recorded outcomes" in i.value for i in at.info)

    load_samples(store, ["arithmetic-qa"])
    ids = store.items("arithmetic-qa").head(3)["item_id"].to_list()
    store.write_outcomes("arithmetic-qa", pl.DataFrame(
        [{"item_id": i, "model": "cheap", "output": o, "quality": None, "cost_usd": 0.001,
          "confidence": 0.9} for i, o in zip(ids, ["The answer is 12.", "1,000", "7"],
                                             strict=True)]
        + [{"item_id": i, "model": "strong", "output": o, "quality": None, "cost_usd": 0.01}
           for i, o in zip(ids, ["12", "1000.0", "8"], strict=True)]
        + [{"item_id": i, "model": "broken", "output": None, "error": "timeout",
            "quality": 0.0, "cost_usd": 0.0} for i in ids]))
    queue = rq.build_queue(store, "arithmetic-qa")
    assert queue.agree_on == "number" and queue.items["item_id"].to_list() == [ids[2]]
    assert queue.cheap == "cheap"  # not "broken": it costs nothing but never answered
    at = AppTest.from_file(app, default_timeout=120)
    at.switch_page("pages/review.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value == f"Item 1 of 1: {ids[2]}"
    at.selectbox(key="rv_silver").set_value("broken").run()
    assert any("reference model 'broken' has no answers" in e.value for e in at.error)
    at.selectbox(key="rv_silver").set_value("strong").run()
    assert not at.exception, [e.value for e in at.exception]
    # against strong (no gold scores here), the cheap model's 7 is confidently wrong
    assert at.subheader[0].value == f"Item 1 of 1: {ids[2]}"
    assert any(c.value == "Why it is here: cheap model confident and wrong; models disagree."
               for c in at.caption)


def test_reviews_are_queryable_in_the_sql_box(home: Path, store: Store) -> None:
    """The SQL box sees the reviews table once there is one (and says plainly when not)."""
    record(store)
    with pytest.raises(WorkbenchError, match="reviews"):
        store.read_only_query("SELECT count(*) AS n FROM reviews")
    item = rq.build_queue(store, WL).items["item_id"][0]
    rv.save_review(store, WL, item, reviewer="ana", model="cheap", verdict=False)
    got = store.read_only_query("SELECT reviewer, verdict FROM reviews")
    assert got.rows() == [("ana", False)]
