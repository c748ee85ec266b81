"""Scorers: each one on ordinary and edge cases; registry errors; defaults per task type."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench import scoring
from workbench.errors import NotFoundError, WorkbenchError
from workbench.scoring import (
    SCORERS,
    default_scorer,
    first_json_object,
    get_scorer,
    json_f1_one,
    normalize_date,
    parse_judge_reply,
    score,
)


def test_registry_and_defaults() -> None:
    assert {"exact", "label", "numeric", "json_f1", "regex", "contains", "judge"} <= set(SCORERS)
    assert default_scorer("classification") == "label"
    assert default_scorer("extraction") == "json_f1"
    assert default_scorer("qa") == "numeric"
    assert default_scorer("generation") == "exact"
    with pytest.raises(NotFoundError, match="contains, exact, json_f1"):
        get_scorer("fuzzy")
    with pytest.raises(NotFoundError, match="classification"):
        default_scorer("poetry")
    with pytest.raises(WorkbenchError, match="2 outputs but 1 references"):
        score("generation", ["a", "b"], ["a"])
    assert score("generation", [], []).shape == (0,)


def test_exact() -> None:
    q = score("generation", ["  Paris. ", "paris", "London", None, "New  York"],
              ["paris", "Paris!", "Paris", "Paris", "new york"])
    assert q.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]


def test_label_match_picks_label_in_output() -> None:
    labels = ["billing", "shipping", "technical", "card payment", "card"]
    outputs = [
        "Billing",                                  # case
        "The category is: shipping.",               # label inside a sentence
        "technical_issue? no: billing",             # the earliest label named wins
        "card payment",                             # longest label on the same position
        "card",
        "I don't know",                             # no label at all
        None,                                       # error row
        "SHIPPING!!!",
    ]
    refs = ["billing", "shipping", "technical", "card payment", "card payment", "billing",
            "billing", "shipping"]
    q = score("classification", outputs, refs, labels=labels)
    assert q.tolist() == [1, 1, 1, 1, 0, 0, 0, 1]


def test_label_match_without_label_set_uses_references() -> None:
    q = score("classification", ["refund please", "Account", "xyz"],
              ["refund", "account", "refund"])
    assert q.tolist() == [1, 1, 0]


def test_label_match_with_underscored_labels() -> None:
    q = score("classification", ["card_arrival", "Card arrival", "card_linking"],
              ["card_arrival"] * 3, labels=["card_arrival", "card_linking"])
    assert q.tolist() == [1, 1, 0]


def test_numeric() -> None:
    outputs = ["The answer is 42.", "$1,234.50", "so 3 + 4 = 7", "50%", "-3.5", "no number",
               None, "1,000,000 widgets", "12.0", "about 41.99"]
    refs = ["42", "1234.5", "7", "50", "-3.5", "3", "3", "1000000", "12", "42"]
    q = score("qa", outputs, refs)
    assert q.tolist() == [1, 1, 1, 1, 1, 0, 0, 1, 1, 0]
    assert score("qa", ["about 41.99"], ["42"], rel_tol=0.01).tolist() == [1.0]


def test_contains_and_regex() -> None:
    q = score("generation", ["Refunds take 5 days", "no", None, "anything"],
              ["5 DAYS", "yes", "x", ""], scorer="contains")
    assert q.tolist() == [1, 0, 0, 0]
    q = score("generation", ["Order #12345 shipped", "order 12"], [r"#\d{5}", r"#\d{5}"],
              scorer="regex")
    assert q.tolist() == [1, 0]
    q = score("generation", ["ok", "bad ("], ["x", "x"], scorer="regex", pattern=r"^ok$")
    assert q.tolist() == [1, 0]
    # An invalid per-row pattern scores 0 instead of failing the batch.
    assert score("generation", ["a(b"], ["a(b"], scorer="regex").tolist() == [0.0]
    with pytest.raises(WorkbenchError, match="invalid pattern"):
        score("generation", ["x"], ["x"], scorer="regex", pattern="(")


def test_first_json_object() -> None:
    assert first_json_object('Sure! ```json\n{"a": 1, "b": {"c": 2}}\n``` done') == {
        "a": 1, "b": {"c": 2}}
    assert first_json_object("{broken {\"x\": 1}") == {"x": 1}
    assert first_json_object("[1, 2]") is None
    assert first_json_object(None) is None


def test_normalize_date() -> None:
    for text in ("2024-03-05", "2024/03/05", "March 5, 2024", "5 March 2024", "Mar 5th, 2024",
                 "05.03.2024", "03/05/2024"):
        assert normalize_date(text) == "2024-03-05", text
    assert normalize_date("soon") is None


def test_json_f1() -> None:
    gold = {"customer": "Ada Lovelace", "amount": 1234.5, "currency": "USD",
            "date": "2024-03-05", "items": ["Widget", "Gadget"]}
    ref = json.dumps(gold)
    perfect = ('Here you go: {"customer": "ada lovelace", "amount": "$1,234.50", '
               '"currency": "$", "date": "March 5, 2024", "items": ["gadget", "widget"]}')
    assert json_f1_one(perfect, ref) == pytest.approx(1.0)
    # One wrong field of five, one extra field: precision 4/6, recall 4/5.
    partial = json.dumps({**gold, "amount": 99, "note": "x"})
    assert json_f1_one(partial, ref) == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))
    # Items as a set: half the items right gives that field set-F1 2/3.
    half = json.dumps({**gold, "items": ["Widget"]})
    assert json_f1_one(half, ref) == pytest.approx((4 + 2 / 3) / 5)
    assert json_f1_one("no json here", ref) == 0.0
    assert json_f1_one(None, ref) == 0.0
    q = score("extraction", [perfect, None, "{}"], [ref, ref, ref])
    assert q.tolist() == [pytest.approx(1.0), 0.0, 0.0]


def test_judge_reply_parsing() -> None:
    assert parse_judge_reply("Score: 7", "0-10") == pytest.approx(0.7)
    assert parse_judge_reply("10/10 great", "0-10") == 1.0
    assert parse_judge_reply("8.5", "0-10") == pytest.approx(0.85)
    assert parse_judge_reply("nothing", "0-10") == 0.0
    assert parse_judge_reply("Yes, it does.", "yes/no") == 1.0
    assert parse_judge_reply("No.", "yes/no") == 0.0
    assert parse_judge_reply(None, "yes/no") == 0.0


def test_judge_needs_model_and_valid_scale() -> None:
    with pytest.raises(WorkbenchError, match="judge model"):
        score("generation", ["a"], ["a"], scorer="judge")
    from workbench.models import ModelSpec

    cfg = ModelSpec(name="j", kind="litellm", model="openai/x")
    with pytest.raises(WorkbenchError, match="unknown judge scale"):
        scoring.make_judge(cfg, "be right", scale="1-5")
    with pytest.raises(WorkbenchError, match="rubric"):
        scoring.make_judge(cfg, " ")


@pytest.mark.slow
def test_judge_with_bundled_model() -> None:
    """The judge runs the real bundled model and returns quality in [0, 1] per row."""
    from workbench.catalog import bundled_model_path
    from workbench.models import ModelSpec

    cfg = ModelSpec(name="judge", kind="local-gguf", model=str(bundled_model_path()),
                    max_tokens=4)
    judge = scoring.make_judge(cfg, "The answer gives the same number as the reference.",
                               scale="yes/no")
    q = judge(["4", "I like turtles", None], ["4", "4", "4"], inputs=["2+2?"] * 3)
    assert q.shape == (3,) and np.all((q >= 0) & (q <= 1)) and q[2] == 0.0
