"""Tests for the built-in sample workloads: determinism, coverage, PII, gold answers, loading."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from datetime import date
from fractions import Fraction as F
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from workbench.errors import ConflictError, WorkbenchError
from workbench.store import Store
from workbench.workloads.samples import (
    SAMPLE_NAMES,
    SUPPORT_LABELS,
    SampleWorkload,
    generate,
    load_samples,
)

# --- independent PII detectors ---------------------------------------------------------------
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE_RE = re.compile(r"(?<!\w)\+?\(?\d[\d ().-]{8,}\d(?!\w)")
CARD_RE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b")
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    s = text.replace(" ", "")
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def detect_pii(text: str) -> set[str]:
    found: set[str] = set()
    if EMAIL_RE.search(text):
        found.add("email")
    for m in PHONE_RE.finditer(text):
        if 10 <= sum(c.isdigit() for c in m.group()) <= 12:
            found.add("phone")
    for m in CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            found.add("card")
    for m in IBAN_RE.finditer(text):
        if iban_valid(m.group()):
            found.add("iban")
    return found


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def samples() -> dict[str, SampleWorkload]:
    return {name: generate(name) for name in SAMPLE_NAMES}


def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts()


# --- generic shape and determinism -----------------------------------------------------------
def test_luhn_and_iban_helpers_accept_known_values() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE88 3704 0044 0532 0130 00")


def test_same_seed_same_frames_and_other_seed_differs(samples: dict[str, SampleWorkload]) -> None:
    for name in SAMPLE_NAMES:
        again = generate(name, seed=0)
        assert again.items.equals(samples[name].items)
        assert again.description == samples[name].description
        other = generate(name, seed=1)
        assert not other.items["input"].equals(samples[name].items["input"])


def test_generation_is_stable_across_processes(samples: dict[str, SampleWorkload]) -> None:
    code = (
        "import hashlib\n"
        "from workbench.workloads.samples import generate, SAMPLE_NAMES\n"
        "h = hashlib.sha256()\n"
        "for n in SAMPLE_NAMES:\n"
        "    h.update(generate(n).items.write_ndjson().encode())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    h = hashlib.sha256()
    for n in SAMPLE_NAMES:
        h.update(samples[n].items.write_ndjson().encode())
    assert out == h.hexdigest()


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(WorkbenchError) as info:
        generate("support")
    for name in SAMPLE_NAMES:
        assert name in str(info.value)


def test_common_columns(samples: dict[str, SampleWorkload]) -> None:
    prefixes = {"support-triage": "st-", "field-extraction": "fx-", "arithmetic-qa": "aq-"}
    task_types = {"support-triage": "classification", "field-extraction": "extraction",
                  "arithmetic-qa": "qa"}
    for name, sample in samples.items():
        items = sample.items
        assert sample.name == name and sample.task_type == task_types[name]
        assert items.columns == ["item_id", "input", "reference", "labels", "difficulty",
                                 "data_class", "tags", "metadata"]
        assert items["item_id"].is_unique().all()
        assert items["item_id"].str.starts_with(prefixes[name]).all()
        assert items["input"].is_unique().all(), f"{name}: duplicate inputs"
        assert items.select(pl.all().exclude("labels").is_null().any()).row(0) == (False,) * 7
        assert set(items["difficulty"].unique()) == {"easy", "medium", "hard"}
        assert set(items["data_class"].unique()) <= {"public", "pii"}
        for tags, meta in zip(items["tags"], items["metadata"], strict=True):
            assert isinstance(json.loads(tags)["pii_types"], list)
            assert "template" in json.loads(meta)


def test_pii_items_really_carry_pii_and_public_items_carry_none(
    samples: dict[str, SampleWorkload],
) -> None:
    for name, sample in samples.items():
        for row in rows(sample.items):
            declared = set(json.loads(row["tags"])["pii_types"])
            found = detect_pii(row["input"])
            if row["data_class"] == "pii":
                assert declared, row
                assert declared <= found, (row["item_id"], declared, found, row["input"])
                # emails are unambiguous to detect: present exactly when declared
                assert ("email" in found) == ("email" in declared), row["input"]
            else:
                assert not declared
                assert not found, (name, row["item_id"], found, row["input"])


# --- support-triage --------------------------------------------------------------------------
def test_support_triage_counts_labels_and_pii(samples: dict[str, SampleWorkload]) -> None:
    st = samples["support-triage"]
    items = st.items
    assert items.height >= 360
    assert st.label_set == SUPPORT_LABELS and len(SUPPORT_LABELS) >= 6
    assert {"billing", "shipping", "technical", "account", "refund", "other"} <= set(SUPPORT_LABELS)
    assert all(labels == list(SUPPORT_LABELS) for labels in items["labels"].to_list())
    assert set(items["reference"]) == set(SUPPORT_LABELS)
    # every category has easy, medium and hard items
    combos = items.group_by("reference", "difficulty").len()
    assert combos.height == len(SUPPORT_LABELS) * 3
    pii_share = (items["data_class"] == "pii").mean()
    assert 0.18 <= pii_share <= 0.32
    pii_types = {t for tags in items["tags"] for t in json.loads(tags)["pii_types"]}
    assert pii_types == {"email", "phone", "card", "iban"}


def test_support_triage_hard_items_are_ambiguous(samples: dict[str, SampleWorkload]) -> None:
    for row in rows(samples["support-triage"].items):
        meta = json.loads(row["metadata"])
        if row["difficulty"] == "hard":
            assert meta["confusable_with"] in SUPPORT_LABELS
            assert meta["confusable_with"] != row["reference"]
        else:
            assert meta["confusable_with"] is None
    texts = samples["support-triage"].items.filter(pl.col("difficulty") == "hard")["input"]
    assert texts.str.contains("charged twice").any()


def test_support_triage_easy_items_use_clear_keywords(samples: dict[str, SampleWorkload]) -> None:
    keywords = {
        "billing": ("invoice", "bill", "payment", "charge", "VAT"),
        "shipping": ("deliver", "shipping", "tracking", "ship", "courier", "package"),
        "technical": ("crash", "error", "bug", "update", "Wi-Fi", "freezes", "sync", "upload"),
        "account": ("account", "password", "login", "profile", "username"),
        "refund": ("refund",),
        "cancellation": ("cancel",),
        "other": ("store", "hiring", "hours", "thanks", "discount", "reseller", "press"),
    }
    easy = samples["support-triage"].items.filter(pl.col("difficulty") == "easy")
    for row in rows(easy):
        text = row["input"].lower()
        assert any(k.lower() in text for k in keywords[row["reference"]]), row


# --- field-extraction ------------------------------------------------------------------------
ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen"]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
WORD_VALUES = {w: i for i, w in enumerate(ONES)} | {w: 10 * (i + 2) for i, w in enumerate(TENS)}


def words_to_int(text: str) -> int:
    total, current = 0, 0
    for token in text.replace("-", " ").split():
        if token == "and":
            continue
        if token == "hundred":
            current *= 100
        elif token in ("thousand", "million"):
            total += current * (1000 if token == "thousand" else 1_000_000)
            current = 0
        else:
            current += WORD_VALUES[token]
    return total + current


def date_variants(d: date) -> list[str]:
    m = MONTHS[d.month - 1]
    suffix = "th" if 10 <= d.day <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(d.day % 10, "th")
    return [d.isoformat(), f"{d.day} {m} {d.year}", f"{m} {d.day}, {d.year}",
            f"{m[:3]} {d.day}, {d.year}", d.strftime("%Y/%m/%d"), d.strftime("%d.%m.%Y"),
            f"{d.day}{suffix} of {m} {d.year}"]


def test_field_extraction_gold_json(samples: dict[str, SampleWorkload]) -> None:
    fx = samples["field-extraction"]
    assert fx.items.height >= 220 and fx.label_set is None
    assert fx.items["labels"].is_null().all()
    currencies, templates = set(), set()
    for row in rows(fx.items):
        gold = json.loads(row["reference"])
        assert list(gold) == ["customer", "amount", "currency", "date", "items"]
        assert isinstance(gold["customer"], str) and gold["customer"] in row["input"]
        assert isinstance(gold["amount"], int | float) and not isinstance(gold["amount"], bool)
        assert gold["amount"] > 0
        assert re.fullmatch(r"[A-Z]{3}", gold["currency"])
        currencies.add(gold["currency"])
        d = date.fromisoformat(gold["date"])
        assert any(v in row["input"] for v in date_variants(d)), row["input"]
        assert gold["items"] and all(isinstance(i, str) and i in row["input"]
                                     for i in gold["items"])
        meta = json.loads(row["metadata"])
        templates.add(meta["template"])
        # gold amount equals the stored minor units (yen have none)
        scale = 1 if gold["currency"] == "JPY" else 100
        assert round(gold["amount"] * scale) == meta["total_minor"]
        line_sum = sum(q * p for _, q, p in meta["lines"])
        if row["difficulty"] != "hard" or meta["template"] in ("hard-words", "hard-correction"):
            assert meta["total_minor"] == line_sum
        else:  # tax (and shipping) come on top of the lines
            assert meta["total_minor"] > line_sum
        if row["difficulty"] == "easy":
            assert gold["date"] in row["input"] and gold["currency"] in row["input"]
        if meta["template"] == "hard-words":
            spoken = re.search(r"will pay ([a-z -]+?) (?:dollars|euros|pounds|yen|Swiss|Canadian)",
                               row["input"])
            assert spoken and words_to_int(spoken.group(1)) == gold["amount"], row["input"]
    assert currencies >= {"USD", "EUR", "GBP", "JPY"}
    assert {"hard-invoice", "hard-words", "hard-correction", "hard-net-gross"} <= templates
    pii_share = (fx.items["data_class"] == "pii").mean()
    assert 0.15 <= pii_share <= 0.45


def test_field_extraction_hard_items_show_several_amounts(
    samples: dict[str, SampleWorkload],
) -> None:
    hard = samples["field-extraction"].items.filter(pl.col("difficulty") == "hard")
    multi = [r for r in rows(hard)
             if len(re.findall(r"\d[\d.,' ]*\d|\d", r["input"])) >= 4]
    assert len(multi) >= hard.height // 2


# --- arithmetic-qa ---------------------------------------------------------------------------
def q(value: Any) -> F:
    return F(str(value))


FORMULAS = {
    "add": lambda o: q(o["a"]) + o["b"],
    "sub": lambda o: q(o["a"]) - o["b"],
    "mul": lambda o: q(o["a"]) * o["b"],
    "div": lambda o: q(o["total"]) / o["b"],
    "price": lambda o: q(o["price"]) * o["n"],
    "minutes": lambda o: q(o["a"]) + o["b"],
    "change": lambda o: o["bill"] - o["n"] * q(o["price"]),
    "average": lambda o: q(o["a"] + o["b"] + o["c"]) / 3,
    "cafe": lambda o: o["n1"] * q(o["p1"]) + o["n2"] * q(o["p2"]),
    "tank": lambda o: q(o["cap"]) - o["a"] + o["b"],
    "pages": lambda o: q(o["p"]) - o["a"] * o["d"],
    "chairs": lambda o: q(o["rows"]) * o["cols"] - o["t"],
    "split": lambda o: (q(o["total"]) + o["tip"]) / o["n"],
    "discount_tax": lambda o: q(o["p"]) * (100 - o["d"]) * (100 + o["t"]) / 10000,
    "ride_km": lambda o: q(o["v"]) * o["m"] / 60,
    "drive_minutes": lambda o: q(o["d"]) / o["v"] * 60,
    "compound": lambda o: q(o["principal"]) * (1 + q(o["rate"]) / 100) ** 2,
    "pct_change": lambda o: (q(o["b"]) - o["a"]) / o["a"] * 100,
    "unit_price": lambda o: min(q(o["p1"]) / q("0.75"), q(o["p2"]) / q("1.2")),
    "bottling": lambda o: q(o["n"]) / o["rate"] / 60,
    "fuel": lambda o: q(o["use"]) / 100 * o["dist"] * q(o["price"]),
    "overtime": lambda o: 40 * q(o["wage"]) + (o["hours"] - 40) * q(o["wage"]) * q("1.5"),
    "flour": lambda o: q(o["g"]) * o["n"] * q("1.1") / 1000,
    "budget": lambda o: q(o["m"]) * (100 - o["p"]) * (100 - o["q"]) / 10000,
    "paint": lambda o: q(o["total"]) * o["a"] / (o["a"] + o["b"]),
}


def test_arithmetic_answers_are_correct(samples: dict[str, SampleWorkload]) -> None:
    aq = samples["arithmetic-qa"]
    assert aq.items.height >= 220
    assert (aq.items["data_class"] == "public").all()
    seen: dict[str, set[str]] = {}
    for row in rows(aq.items):
        assert re.fullmatch(r"-?\d+(\.\d{1,2})?", row["reference"]), row["reference"]
        assert not row["reference"].endswith(".0")
        meta = json.loads(row["metadata"])
        expected = FORMULAS[meta["template"]](meta["operands"])
        assert F(row["reference"]) == expected, (row["input"], row["reference"], expected)
        for value in meta["operands"].values():
            if isinstance(value, int):
                assert str(value) in row["input"], (value, row["input"])
        seen.setdefault(row["difficulty"], set()).add(meta["template"])
        steps = meta["steps"]
        assert (steps == 1) == (row["difficulty"] == "easy")
        if row["difficulty"] == "medium":
            assert 2 <= steps <= 3
    assert set(FORMULAS) == set().union(*seen.values())
    counts = dict(aq.items.group_by("difficulty").len().iter_rows())
    assert min(counts.values()) >= 60
    hard_text = " ".join(aq.items.filter(pl.col("difficulty") == "hard")["input"])
    for marker in ("%", "km/h", "kilograms", "minutes", "hours"):
        assert marker in hard_text


# --- loading into a real store ---------------------------------------------------------------
def test_load_samples_counts_fingerprints_and_replace(tmp_path: Path,
                                                      samples: dict[str, SampleWorkload]) -> None:
    store = Store(tmp_path / "a" / "workbench.duckdb")
    try:
        infos = load_samples(store)
        assert [i.name for i in infos] == list(SAMPLE_NAMES)
        for info in infos:
            sample = samples[info.name]
            assert info.n_items == sample.items.height
            assert info.synthetic and info.source == f"synthetic:{info.name}"
            assert info.task_type == sample.task_type
            assert info.label_set == (sample.label_set or ())
        stored = store.items("support-triage")
        assert stored.height == samples["support-triage"].items.height
        assert stored["labels"][0].to_list() == list(SUPPORT_LABELS)
        first = json.loads(stored["tags"][0])
        assert isinstance(first["pii_types"], list)
        fingerprints = {i.name: i.fingerprint for i in infos}

        # replace=True is idempotent: same counts, same fingerprints, still three workloads
        again = load_samples(store)
        assert {i.name: i.fingerprint for i in again} == fingerprints
        assert len(store.workloads()) == 3
        assert {w.name: w.n_items for w in store.workloads()} == {
            i.name: i.n_items for i in infos}

        # replace=False refuses and leaves the stored items untouched
        with pytest.raises(ConflictError):
            load_samples(store, ["arithmetic-qa"], replace=False)
        assert store.workload("arithmetic-qa").n_items == samples["arithmetic-qa"].items.height

        # an unknown name fails before anything is written
        store.delete_workload("field-extraction")
        with pytest.raises(WorkbenchError):
            load_samples(store, ["field-extraction", "nope"])
        assert not store.exists("field-extraction")
    finally:
        store.close()

    other = Store(tmp_path / "b" / "workbench.duckdb")
    try:
        infos_b = load_samples(other, ["support-triage"])
        assert infos_b[0].fingerprint == fingerprints["support-triage"]
    finally:
        other.close()
