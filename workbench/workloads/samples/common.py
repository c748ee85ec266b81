"""Shared parts of the sample generators: the item schema, name and date fillers, PII
generators (Luhn-valid cards, checksum-valid IBANs, fictional phones, example.* emails) and
the helpers that keep generated items distinct and byte-identical run to run."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import polars as pl

GENERATOR_VERSION = 1

_ITEM_SCHEMA: dict[str, Any] = {
    "item_id": pl.String,
    "input": pl.String,
    "reference": pl.String,
    "labels": pl.List(pl.String),
    "difficulty": pl.String,
    "data_class": pl.String,
    "tags": pl.String,
    "metadata": pl.String,
}


@dataclass(frozen=True)
class SampleWorkload:
    """One generated sample workload: its name, task type, description, label set and items."""

    name: str
    task_type: str
    description: str
    label_set: tuple[str, ...] | None
    items: pl.DataFrame


# ---------------------------------------------------------------------------------------------
# Slot fillers used by more than one generator
# ---------------------------------------------------------------------------------------------
FIRST_NAMES = (
    "Maria", "James", "Aiko", "Lukas", "Priya", "Tom", "Fatima", "Chen", "Olivia", "Mateo",
    "Sofia", "Noah", "Amara", "Jonas", "Elena", "Ravi", "Grace", "Omar", "Hannah", "Diego",
    "Yuki", "Leila", "Ben", "Ingrid", "Kwame", "Chloe", "Marek", "Nadia", "Sam", "Ana",
)
LAST_NAMES = (
    "Lopez", "O'Connor", "Tanaka", "Meier", "Sharma", "Becker", "Haddad", "Wang", "Smith",
    "Rossi", "Novak", "Okafor", "Larsen", "Dubois", "Kowalski", "Silva", "Nguyen", "Andersson",
    "Murphy", "Petrova", "Costa", "Fischer", "Mensah", "Ito", "Garcia", "Brown",
)
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.co.uk")


def _luhn_check_digit(payload: str) -> str:
    """Check digit that makes `payload + digit` pass the Luhn test."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _card_number(rng: random.Random) -> str:
    """A Luhn-valid payment card number (Visa, Mastercard or Amex shape), formatted."""
    kind = rng.choice(("visa", "visa", "mc", "amex"))
    if kind == "amex":
        payload = rng.choice(("34", "37")) + "".join(rng.choice("0123456789") for _ in range(12))
        num = payload + _luhn_check_digit(payload)
        return f"{num[:4]} {num[4:10]} {num[10:]}"
    prefix = "4" if kind == "visa" else str(rng.randint(51, 55))
    payload = prefix + "".join(rng.choice("0123456789") for _ in range(15 - len(prefix)))
    num = payload + _luhn_check_digit(payload)
    sep = rng.choice((" ", "-", ""))
    return sep.join(num[i:i + 4] for i in range(0, 16, 4))


def _iban(rng: random.Random) -> str:
    """A checksum-valid German or British IBAN, printed in groups of four."""
    if rng.random() < 0.5:
        country, bban = "DE", "".join(rng.choice("0123456789") for _ in range(18))
    else:
        bank = rng.choice(("NWBK", "BARC", "LOYD", "MIDL"))
        country, bban = "GB", bank + "".join(rng.choice("0123456789") for _ in range(14))
    rearranged = bban + country + "00"
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    check = 98 - int(numeric) % 97
    iban = f"{country}{check:02d}{bban}"
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


def _phone(rng: random.Random) -> str:
    """A phone number in fictional ranges, in one of several national formats (10-12 digits)."""
    style = rng.randrange(5)
    if style == 0:
        return f"+1 {rng.randint(201, 989)} 555 01{rng.randint(0, 99):02d}"
    if style == 1:
        return f"({rng.randint(201, 989)}) 555-01{rng.randint(0, 99):02d}"
    if style == 2:
        return f"+44 7700 900{rng.randint(0, 999):03d}"
    if style == 3:
        return f"+49 30 {rng.randint(1000000, 9999999)}"
    return f"020 7946 0{rng.randint(0, 999):03d}"


def _email(rng: random.Random, first: str, last: str) -> str:
    """An email address on a reserved example domain, built from a person's name."""
    last = last.replace("'", "").lower()
    first = first.lower()
    local = rng.choice((
        f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", f"{first}.{last}{rng.randint(1, 99)}",
        f"{first}_{last}",
    ))
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def _random_date(rng: random.Random) -> date:
    """A date between 2023-01-01 and 2025-12-31."""
    return date(2023, 1, 1) + timedelta(days=rng.randrange(365 * 3))


def _ordinal(n: int) -> str:
    """1 -> 1st, 22 -> 22nd, 13 -> 13th."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _json(value: Any) -> str:
    """Compact, key-sorted JSON so that generated text is byte-identical run to run."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _fresh(rng: random.Random, seen: set[str], make: Callable[[], tuple[str, Any]],
           attempts: int = 50) -> tuple[str, Any]:
    """Call `make` until it yields an input text not generated before (keeps items distinct)."""
    for _ in range(attempts):
        text, extra = make()
        if text not in seen:
            seen.add(text)
            return text, extra
    raise RuntimeError("sample generator could not produce a distinct item")  # pragma: no cover

