"""The `field-extraction` sample (extraction): free-text orders and invoices with gold JSON
(customer, amount, currency, date, items)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from workbench.workloads.samples.common import (
    FIRST_NAMES,
    GENERATOR_VERSION,
    LAST_NAMES,
    MONTHS,
    WEEKDAYS,
    _email,
    _fresh,
    _json,
    _ordinal,
    _phone,
    _random_date,
)

COMPANIES = (
    "Acme Logistics GmbH", "Northwind Traders", "Blue Harbor Cafe", "Kestrel Design Ltd",
    "Oakridge Dental", "Silvergate Studios", "Pine & Co.", "Meridian Labs", "Hanse Marine AG",
    "Luna Bakery", "Redwood Architects", "Tidewater Books", "Brightside Yoga", "Copperleaf Hotel",
    "Fjord Outdoor AS", "Sakura Florists", "Atlas Print Shop", "Greenfield Farm Supply",
    "Orbit Robotics", "Vellum & Ink", "Harbourview Clinic", "Quarry Lane Brewing",
)
# product name, base unit price in US cents
CATALOG: tuple[tuple[str, int], ...] = (
    ("toner cartridge", 4990), ("A4 printer paper (5 reams)", 2450), ("ergonomic mouse", 3900),
    ("USB-C hub", 3500), ("espresso beans 1kg", 2190), ("standing desk", 42900),
    ("office chair", 18900), ("27-inch monitor", 24900), ("laptop stand", 4500),
    ("whiteboard markers (12 pack)", 1290), ("label printer", 11900), ("desk lamp", 3290),
    ("noise-cancelling headset", 15900), ("wireless keyboard", 5900), ("filing cabinet", 16900),
    ("coffee machine", 38900), ("water filter jug", 2990), ("first aid kit", 3490),
    ("packing tape (6 rolls)", 1590), ("shipping boxes (25)", 2790), ("webcam", 6900),
    ("extension cord 5m", 1890), ("paper shredder", 8900), ("bookshelf", 12900),
)
CURRENCIES: dict[str, dict[str, Any]] = {
    # factor from US cents; symbol; name (plural) for amounts in words; minor units
    "USD": {"factor": 1.0, "symbol": "$", "name": "dollars", "minor": 2},
    "EUR": {"factor": 0.92, "symbol": "€", "name": "euros", "minor": 2},
    "GBP": {"factor": 0.8, "symbol": "£", "name": "pounds", "minor": 2},
    "JPY": {"factor": 1.5, "symbol": "¥", "name": "yen", "minor": 0},  # 1 US cent -> 1.5 yen
    "CHF": {"factor": 0.9, "symbol": "CHF ", "name": "Swiss francs", "minor": 2},
    "CAD": {"factor": 1.35, "symbol": "C$", "name": "Canadian dollars", "minor": 2},
}
_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_words(n: int) -> str:
    """English words for 0 <= n < 10**9 ("one thousand two hundred and fifty")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    for size, word in ((10**6, "million"), (1000, "thousand")):
        if n >= size:
            rest = n % size
            head = number_words(n // size) + " " + word
            if rest == 0:
                return head
            return head + (" and " if rest < 100 else " ") + number_words(rest)
    raise ValueError(n)  # pragma: no cover


def _group(whole: int, sep: str) -> str:
    """Digits of `whole` with a thousands separator."""
    return f"{whole:,}".replace(",", sep)


def _money(minor: int, ccy: str, style: str) -> str:
    """Format an amount given in minor units (cents; yen for JPY) in one of several styles."""
    info = CURRENCIES[ccy]
    decimals = info["minor"]
    whole, frac = divmod(minor, 10**decimals) if decimals else (minor, 0)
    frac_txt = f"{frac:0{decimals}d}" if decimals else ""
    if style == "plain":  # 1250.00 (no separators)
        return f"{whole}.{frac_txt}" if decimals else str(whole)
    if style == "symbol":  # $1,250.00 / CHF 1,250.00
        body = _group(whole, ",") + (f".{frac_txt}" if decimals else "")
        return f"{info['symbol']}{body}"
    if style == "code":  # USD 1,250.00
        return f"{ccy} " + _group(whole, ",") + (f".{frac_txt}" if decimals else "")
    if style == "european":  # 1.250,00 € / CHF 1'250.00 / 1 250,00 EUR
        if ccy == "CHF":
            return "CHF " + _group(whole, "'") + f".{frac_txt}"
        if ccy == "EUR":
            return _group(whole, ".") + f",{frac_txt} €"
        body = _group(whole, " ") + (f",{frac_txt}" if decimals else "")
        return f"{body} {ccy}"
    if style == "words":
        text = number_words(whole) + " " + info["name"]
        if frac:
            text += f" and {number_words(frac)} cents"
        return text
    raise ValueError(style)  # pragma: no cover


def _amount_number(minor: int, ccy: str) -> int | float:
    """The gold JSON number for an amount in minor units (integer when whole)."""
    if CURRENCIES[ccy]["minor"] == 0:
        return minor
    return minor // 100 if minor % 100 == 0 else round(minor / 100, 2)


def _date_text(d: date, style: str) -> str:
    """A date written in one of several styles (all unambiguous)."""
    month = MONTHS[d.month - 1]
    if style == "iso":
        return d.isoformat()
    if style == "long":
        return f"{d.day} {month} {d.year}"
    if style == "us":
        return f"{month} {d.day}, {d.year}"
    if style == "short":
        return f"{month[:3]} {d.day}, {d.year}"
    if style == "slash_iso":
        return f"{d.year}/{d.month:02d}/{d.day:02d}"
    if style == "dotted":
        return f"{d.day:02d}.{d.month:02d}.{d.year}"
    if style == "ordinal":
        return f"the {_ordinal(d.day)} of {month} {d.year}"
    if style == "weekday":
        return f"{WEEKDAYS[d.weekday()]}, {d.day} {month} {d.year}"
    raise ValueError(style)  # pragma: no cover


def _fx_lines(rng: random.Random, ccy: str, whole_units: bool) -> list[tuple[str, int, int]]:
    """1-4 distinct catalog items as (name, quantity, unit price in minor units)."""
    picks = rng.sample(CATALOG, k=rng.choice((1, 1, 2, 2, 3, 4)))
    info = CURRENCIES[ccy]
    out = []
    for name, base in picks:
        price = round(base * info["factor"])
        if info["minor"] and whole_units:
            price = max(100, round(price / 100) * 100)
        elif info["minor"]:
            price = max(50, round(price / 10) * 10 - rng.choice((0, 0, 10)))
        else:
            price = max(100, round(price / 10) * 10)
        out.append((name, rng.choice((1, 1, 1, 2, 3, 5)), price))
    return out


def _qty_list(lines: Sequence[tuple[str, int, int]]) -> str:
    """'2 x toner cartridge, 1 x webcam and 3 x desk lamp'."""
    parts = [f"{q} x {n}" for n, q, _ in lines]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _fx_contact(rng: random.Random, person: tuple[str, str] | None) -> tuple[dict[str, str], str]:
    """PII values (email and/or phone) and the contact line that carries them."""
    first, last = person or (rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))
    pii: dict[str, str] = {}
    roll = rng.random()
    if roll < 0.45 or roll >= 0.75:
        pii["email"] = _email(rng, first, last)
    if roll >= 0.45:
        pii["phone"] = _phone(rng)
    bits = []
    if "email" in pii:
        bits.append(rng.choice((f"Email: {pii['email']}", f"{first} {last} <{pii['email']}>",
                                f"reach {first} at {pii['email']}")))
    if "phone" in pii:
        bits.append(rng.choice((f"Tel. {pii['phone']}", f"Phone: {pii['phone']}",
                                f"call back on {pii['phone']}")))
    line = rng.choice(("; ", " / ")).join(bits)
    return pii, line[0].upper() + line[1:]


def _fx_easy(rng: random.Random, c: dict[str, Any]) -> tuple[str, str]:
    """Labelled fields, ISO date, plain amount."""
    style = rng.randrange(3)
    names = [n for n, _, _ in c["lines"]]
    amt = _money(c["total"], c["ccy"], "plain")
    iso = c["date"].isoformat()
    if style == 0:
        text = (f"ORDER {c['ref']}\nCustomer: {c['customer']}\nDate: {iso}\n"
                f"Items: {', '.join(names)}\nTotal: {amt} {c['ccy']}")
    elif style == 1:
        text = (f"Client: {c['customer']}\nOrder date: {iso}\nProducts: {'; '.join(names)}\n"
                f"Amount due: {c['ccy']} {amt}\nReference: {c['ref']}")
    else:
        text = (f"customer={c['customer']} | date={iso} | items={'; '.join(names)} | "
                f"amount={amt} | currency={c['ccy']}")
    return f"easy-form-{style}", text


def _fx_medium(rng: random.Random, c: dict[str, Any]) -> tuple[str, str]:
    """Prose (email, chat note, web form, confirmation) with symbols and written-out dates."""
    style = rng.randrange(4)
    money = _money(c["total"], c["ccy"], rng.choice(("symbol", "symbol", "code")))
    d = _date_text(c["date"], rng.choice(("long", "us", "short", "slash_iso")))
    items = _qty_list(c["lines"])
    if style == 0:
        text = (f"Subject: New order from {c['customer']}\n\nHello,\n\nplease book the following "
                f"for {c['customer']}: {items}. The total comes to {money}, and the order was "
                f"placed on {d}.\n\nThanks,\n{c['sender']}")
    elif style == 1:
        text = (f"{d} - {c['customer']} rang up and ordered {items}. Quoted {money} all in, "
                f"they're happy with that.")
    elif style == 2:
        text = (f"Hi, this is {c['customer']}. On {d} we ordered {items} from you and paid "
                f"{money}. Could you confirm it went through?")
    else:
        bullets = "\n".join(f"- {n} (x{q})" for n, q, _ in c["lines"])
        text = (f"Thanks for your order, {c['customer']}!\nWe received your payment of {money} "
                f"on {d} for:\n{bullets}")
    return f"medium-prose-{style}", text


def _fx_hard(rng: random.Random, c: dict[str, Any]) -> tuple[str, str]:
    """Invoices with subtotal/tax/shipping, amounts in words, corrections, other date styles."""
    style = c["hard_style"]
    ccy = c["ccy"]
    d = _date_text(c["date"], rng.choice(("dotted", "ordinal", "weekday", "dotted")))
    if style == 0:  # itemised invoice: only the grand total counts
        fmt = rng.choice(("european", "symbol"))
        rows = "\n".join(
            f"  {q} x {n} .... {_money(q * p, ccy, fmt)}" for n, q, p in c["lines"]
        )
        due = _date_text(c["date"] + timedelta(days=30), "dotted")
        text = (f"INVOICE {c['ref']}\nBill to: {c['customer']}\nInvoice date: "
                f"{_date_text(c['date'], 'dotted')}    Due: {due}\n{rows}\n"
                f"Subtotal: {_money(c['subtotal'], ccy, fmt)}\n"
                f"VAT {c['vat_rate']}%: {_money(c['vat'], ccy, fmt)}\n"
                f"Shipping: {_money(c['shipping'], ccy, fmt)}\n"
                f"TOTAL DUE: {_money(c['total'], ccy, fmt)}")
    elif style == 1:  # amount in words plus a deposit distractor
        names = [n for n, _, _ in c["lines"]]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        text = (f"As agreed on the phone on {d}, {c['customer']} will pay "
                f"{_money(c['total'], ccy, 'words')} in total for the {listed}. A deposit of "
                f"{_money(c['deposit'], ccy, 'symbol')} has already been received; the rest is "
                f"due on delivery.")
    elif style == 2:  # chat with a correction: the last total counts
        first_lines, extra = c["lines"][:-1], c["lines"][-1]
        text = (f"[{d}]\n{c['customer']}: hi, can we get {_qty_list(first_lines)}?\n"
                f"agent: sure, that's {_money(c['first_total'], ccy, 'symbol')}\n"
                f"{c['customer']}: oh and add {extra[1]} x {extra[0]} please\n"
                f"agent: done, new total {_money(c['total'], ccy, 'european')}")
    else:  # net + VAT = gross, European separators, the gross total counts
        text = (f"Order for {c['customer']}, dated {d}: {_qty_list(c['lines'])}. "
                f"Net {_money(c['subtotal'], ccy, 'european')}, plus {c['vat_rate']}% VAT "
                f"({_money(c['vat'], ccy, 'european')}) makes "
                f"{_money(c['total'], ccy, 'european')} gross, payable within 14 days.")
    return f"hard-{('invoice', 'words', 'correction', 'net-gross')[style]}", text


def _field_extraction(rng: random.Random) -> tuple[list[dict[str, Any]], str]:
    """Rows for field-extraction and its description."""
    plan = ["easy"] * 80 + ["medium"] * 80 + ["hard"] * 80
    rng.shuffle(plan)
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    for difficulty in plan:
        has_pii = rng.random() < 0.3

        def make(difficulty: str = difficulty, has_pii: bool = has_pii) -> tuple[str, Any]:
            ccy = rng.choice(("USD", "USD", "EUR", "EUR", "GBP", "JPY", "CHF", "CAD"))
            hard_style = rng.randrange(4) if difficulty == "hard" else -1
            if hard_style == 2:  # a correction needs at least two lines
                lines = []
                while len(lines) < 2:
                    lines = _fx_lines(rng, ccy, whole_units=False)
            else:
                lines = _fx_lines(rng, ccy, whole_units=hard_style == 1)
            subtotal = sum(q * p for _, q, p in lines)
            person = None
            if has_pii and rng.random() < 0.5:
                person = (rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))
            c: dict[str, Any] = {
                "ccy": ccy, "lines": lines, "date": _random_date(rng),
                "customer": f"{person[0]} {person[1]}" if person else rng.choice(COMPANIES),
                "ref": f"{rng.choice(('PO', 'INV', 'SO'))}-{rng.randint(2023, 2025)}-"
                       f"{rng.randint(1, 9999):04d}",
                "sender": rng.choice(("Sales desk", "Order team", "Front office", "Accounts")),
                "hard_style": hard_style, "subtotal": subtotal, "total": subtotal,
            }
            if hard_style in (0, 3):
                c["vat_rate"] = rng.choice((5, 7, 8, 10, 19, 20))
                c["vat"] = round(subtotal * c["vat_rate"] / 100)
                c["shipping"] = 0
                if hard_style == 0:
                    c["shipping"] = rng.choice(
                        (0, 500, 800, 1200) if ccy == "JPY" else (0, 495, 990, 1500))
                c["total"] = subtotal + c["vat"] + c["shipping"]
            if hard_style == 1:
                c["deposit"] = (subtotal // 4) // 100 * 100 or 100
            if hard_style == 2:
                c["first_total"] = sum(q * p for _, q, p in lines[:-1])
            maker = {"easy": _fx_easy, "medium": _fx_medium, "hard": _fx_hard}[difficulty]
            template, text = maker(rng, c)
            pii: dict[str, str] = {}
            if has_pii:
                pii, contact = _fx_contact(rng, person)
                text = f"{text}\n{contact}"
            gold = {
                "customer": c["customer"],
                "amount": _amount_number(c["total"], ccy),
                "currency": ccy,
                "date": c["date"].isoformat(),
                "items": [n for n, _, _ in lines],
            }
            meta = {"template": template, "total_minor": c["total"],
                    "lines": [[n, q, p] for n, q, p in lines],
                    "generator": f"workbench.samples/{GENERATOR_VERSION}"}
            return text, (gold, sorted(pii), meta, template)

        text, (gold, pii_types, meta, template) = _fresh(rng, seen, make)
        rows.append({
            "input": text,
            # key order fixed by the gold schema (customer, amount, currency, date, items)
            "reference": json.dumps(gold, ensure_ascii=False),
            "labels": None,
            "difficulty": difficulty,
            "data_class": "pii" if pii_types else "public",
            "tags": _json({"pii_types": pii_types, "style": template.split("-")[1]}),
            "metadata": _json(meta),
        })
    description = (
        "Synthetic orders, chat notes and invoices; extract JSON with customer, amount (the "
        "final total, a number), currency (ISO 4217 code), date (order/invoice date, "
        "YYYY-MM-DD) and items (product names without quantities). Hard items write amounts "
        "in words or with European separators, show several amounts or several dates."
    )
    return rows, description

