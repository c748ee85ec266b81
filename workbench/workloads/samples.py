"""Built-in sample workloads, generated deterministically from a seed (no downloads).

Three synthetic workloads give a new user something to route right away:
- `support-triage` (classification): customer messages with a gold category, easy and genuinely
  ambiguous ones, about a quarter carrying PII (emails, phones, Luhn-valid cards, IBANs).
- `field-extraction` (extraction): free-text orders and invoices with gold JSON
  (customer, amount, currency, date, items).
- `arithmetic-qa` (qa): word problems with exact numeric answers in graded difficulty.

Every item carries `difficulty` (easy/medium/hard) and `data_class` (public/pii). Tags hold the
PII types and the channel or style, never the gold answer (a policy routing on tags must not be
able to read the answer). Metadata records the generator template and its slot values so that
answers can be re-derived independently.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

import polars as pl

from workbench.errors import WorkbenchError
from workbench.store import Store, WorkloadInfo

SAMPLE_NAMES: tuple[str, ...] = ("support-triage", "field-extraction", "arithmetic-qa")
GENERATOR_VERSION = 1

SUPPORT_LABELS: tuple[str, ...] = (
    "billing", "shipping", "technical", "account", "refund", "cancellation", "other",
)

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
# Shared slot fillers and PII generators
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
PRODUCTS = (
    "wireless earbuds", "standing desk", "coffee grinder", "4K monitor", "running shoes",
    "smart thermostat", "yoga mat", "hiking backpack", "mechanical keyboard", "air fryer",
    "phone case", "desk lamp", "blender", "e-reader", "bluetooth speaker", "winter jacket",
    "webcam", "water bottle", "office chair", "robot vacuum", "electric kettle", "gaming mouse",
)
PLANS = (
    "Pro plan", "Premium subscription", "Family plan", "Basic plan", "Team plan",
    "annual membership", "monthly box subscription", "Plus membership",
)
FEATURES = (
    "the mobile app", "the website", "the desktop app", "the checkout page", "the dashboard",
    "the iOS app", "the Android app", "the customer portal",
)
ERRORS = (
    "error 500", "a blank white screen", "'something went wrong'", "error code E42",
    "a spinner that never stops", "'session invalid'", "a 404 page", "'request timed out'",
)
CARRIERS = ("UPS", "DHL", "FedEx", "the courier", "Royal Mail", "USPS", "DPD")
COUNTRIES = ("Canada", "Ireland", "Norway", "Australia", "Portugal", "Japan", "Mexico", "Poland")
CITIES = ("Leeds", "Lyon", "Austin", "Munich", "Porto", "Osaka", "Denver", "Gdansk")
PLATFORMS = ("an iPhone 12", "Windows 11", "a Chromebook", "Android 14", "a Mac with Apple silicon")
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


# ---------------------------------------------------------------------------------------------
# support-triage
# ---------------------------------------------------------------------------------------------
# (template id, text); slots: product order amount date plan feature error carrier days
# country city platform month first
_ST_EASY: dict[str, tuple[str, ...]] = {
    "billing": (
        "Can you send me a copy of the invoice for order {order}? I need it for my expenses.",
        "My invoice for {month} shows {amount}, but the {plan} is supposed to cost less. "
        "Please check my billing.",
        "How do I update the payment method used for my {plan}?",
        "The VAT number on my invoice is wrong. Can you reissue the invoice for order {order}?",
        "Your billing page shows an outstanding balance of {amount} but I paid it {date}.",
        "I need the invoice for order {order} to show my company name instead of my own.",
        "Why does my bill for the {plan} include a {amount} charge I don't recognise?",
    ),
    "shipping": (
        "Where is my order {order}? The tracking hasn't updated in {days} days.",
        "Can I change the delivery address for order {order}? It hasn't shipped yet.",
        "My {product} was supposed to be delivered {date} but the tracking from {carrier} "
        "says it's still in transit.",
        "How long does shipping to {country} usually take?",
        "Do you offer express delivery for the {product}?",
        "{carrier} left a note that they couldn't deliver my package. How do I rearrange "
        "delivery for order {order}?",
        "My delivery for order {order} is late. When will it ship?",
    ),
    "technical": (
        "{feature_cap} crashes every time I open it. I get {error}.",
        "I can't upload files in {feature}, it shows {error}.",
        "The {product} won't connect to Wi-Fi after the latest firmware update.",
        "Bug report: {feature} shows {error} when I click save.",
        "The {product} app doesn't sync with my phone anymore. Is there a known bug?",
        "Push notifications stopped working in {feature} since the last update.",
        "{feature_cap} freezes on the loading screen with {error}. I've reinstalled it twice.",
    ),
    "account": (
        "I forgot my password and the reset email never arrives.",
        "How do I change the email address on my account?",
        "Please delete my account and all the personal data you hold about me.",
        "My account is locked after too many login attempts.",
        "I want to turn on two-factor authentication for my account. Where is the setting?",
        "Can I merge my two accounts into one? I accidentally signed up twice.",
        "How do I change the username on my profile?",
    ),
    "refund": (
        "I returned the {product} {date}. When will I get my refund?",
        "Please refund order {order}, I changed my mind and haven't opened it.",
        "I'd like a refund for the {product}, it's not what I expected.",
        "How long does a refund take to show up on my card?",
        "I was promised a refund of {amount} but haven't received it yet.",
        "Can I get a refund for the {plan}? I haven't used it at all.",
        "Refund request for order {order}: the {product} doesn't fit.",
    ),
    "cancellation": (
        "Please cancel my {plan} effective immediately.",
        "I want to cancel order {order} before it ships.",
        "How do I cancel my subscription?",
        "Cancel my auto-renewal please, I don't want the {plan} to renew next month.",
        "Please cancel my membership at the end of this billing period.",
        "I need to cancel the {product} I ordered {date}.",
    ),
    "other": (
        "Do you have a physical store in {city}?",
        "Are you hiring for customer support roles?",
        "What are your opening hours over the holidays?",
        "I just wanted to say the {product} is fantastic, thanks!",
        "Do you offer discounts for students?",
        "Can I become a reseller of your products in {country}?",
        "Who should I contact about a press interview with your founder?",
    ),
}
_ST_MEDIUM: dict[str, tuple[str, ...]] = {
    "billing": (
        "There's a {amount} line on my statement from you {date} that I can't place.",
        "The price went up this month without anyone telling me. Why am I paying {amount} "
        "now for the {plan}?",
        "My accountant says the document you sent for order {order} is missing the tax "
        "breakdown.",
        "I paid {date} but my account still says the payment is pending.",
        "Is the {plan} taken monthly or yearly? {amount} went out and I'm confused.",
        "The total at checkout was lower than the {amount} that actually left my bank.",
    ),
    "shipping": (
        "It's been {days} days since I ordered the {product} and still nothing at my door.",
        "{carrier} says the parcel was handed over, but my neighbours and I can't find it.",
        "Only half of order {order} turned up, the {product} is missing from the box.",
        "I'll be away next week, can the {product} be held somewhere until I'm back?",
        "The box arrived crushed. The {product} inside seems fine but I wanted you to know.",
        "Is there any way to get the {product} before the weekend? It's a birthday present.",
    ),
    "technical": (
        "Nothing happens when I press the button to export my data in {feature}, it just "
        "sits there.",
        "Since {date} everything loads really slowly and sometimes not at all in {feature}.",
        "The {product} turns itself off after about ten minutes of use.",
        "The screen flickers whenever I plug in the {product}.",
        "My settings keep resetting every time I restart {feature}.",
        "The {product} makes a clicking noise and the display shows random characters.",
    ),
    "account": (
        "I keep getting told my username doesn't exist, but I've been a customer for years.",
        "The verification code never comes through when I try to sign in.",
        "I'd like my partner to have access to my orders as well, is that possible?",
        "After my name change my profile still shows my old surname.",
        "I no longer have access to the email address I signed up with. How do I get in?",
        "It says a profile with my email already exists, but I've never been here before.",
    ),
    "refund": (
        "I sent the {product} back {days} days ago and still nothing has come back to my "
        "account.",
        "The {product} isn't for me. What do I need to do to send it back and get the "
        "{amount} returned?",
        "You said I'd be compensated {amount} for the late delivery, but I'm still waiting.",
        "The return label was scanned {date}, when is the money coming?",
        "Your store credit is no use to me, I'd prefer the {amount} back the way I paid.",
    ),
    "cancellation": (
        "I won't be needing the {plan} anymore after this month.",
        "Please stop the {plan} from renewing, I'm switching to another provider.",
        "I ordered the {product} by mistake an hour ago, can you stop it from going out?",
        "Don't send the {product}, I found it somewhere else.",
        "We're closing the office, so the {plan} for our team can end on the 30th.",
    ),
    "other": (
        "Is the {product} made from recycled materials?",
        "I'm writing a review of the {product}, could I get some photos from your press team?",
        "Will the {product} be back in stock before {month}?",
        "Do you do gift wrapping?",
        "Is there a warranty extension I can buy for the {product}?",
        "What's the difference between the {plan} and the Basic plan?",
    ),
}
# (gold label, confusable label, text): both labels are defensible; gold follows what the
# customer asks to be done.
_ST_HARD: tuple[tuple[str, str, str], ...] = (
    ("refund", "billing", "I was charged twice for order {order}, {amount} each time. I want my "
     "money back for the second one."),
    ("billing", "refund", "I see two charges of {amount} for order {order} on my statement. Can "
     "you look into it?"),
    ("billing", "refund", "You charged me {amount} for the {plan} after my free trial. I thought "
     "it was free until the end of the month?"),
    ("refund", "billing", "The discount code wasn't applied at checkout, so I paid {amount} too "
     "much. Please return the difference."),
    ("account", "billing", "I can't log in since I changed the card on my account."),
    ("billing", "account", "I updated my card in my profile, but the {plan} payment still failed "
     "{date}."),
    ("account", "billing", "Someone changed the billing address on my account and it wasn't me."),
    ("refund", "shipping", "My package never arrived and at this point I just want my money back."),
    ("shipping", "refund", "Tracking says my {product} was delivered {date}, but it's not here. "
     "What now?"),
    ("refund", "shipping", "The {product} was damaged in transit. I don't want a replacement, "
     "just the {amount} back."),
    ("technical", "account", "{feature_cap} keeps logging me out every few minutes with {error}."),
    ("account", "technical", "The password reset link you emailed me opens {error}."),
    ("technical", "account", "After the update my saved preferences and profile picture are gone."),
    ("cancellation", "refund", "Cancel my {plan} and refund this month please, I forgot to cancel "
     "before it renewed."),
    ("refund", "cancellation", "I cancelled the {plan} last week but was still charged {amount}. "
     "Please give it back."),
    ("cancellation", "billing", "Stop charging me every month for the {plan}, I don't use it."),
    ("billing", "cancellation", "Why was I charged {amount} for the {plan} when I cancelled it "
     "{date}?"),
    ("shipping", "technical", "The tracking link for order {order} shows {error}, so I have no "
     "idea where my parcel is."),
    ("technical", "shipping", "I can't finish checkout, the delivery options step shows {error}."),
    ("technical", "refund", "The {product} stopped working after two days. What are my options?"),
    ("refund", "technical", "The {product} was dead on arrival. I've already tried resetting it; "
     "I'd rather just return it for my money."),
    ("other", "technical", "Does the {product} work with {platform}?"),
    ("shipping", "other", "Do you deliver to {country}? I'm moving there next month and want to "
     "order the {product}."),
    ("cancellation", "account", "I want to close everything with you: the {plan} and the rest."),
    ("account", "cancellation", "Please remove my profile, I never use it, but keep my order "
     "{order} going."),
    ("billing", "shipping", "The {product} arrived late, which was annoying, but my real problem "
     "is that I was billed {amount} twice."),
    ("shipping", "billing", "I paid {amount} extra for next-day delivery and the {product} took "
     "{days} days. Where was it all this time?"),
    ("refund", "other", "I bought the {product} as a gift but they already have one. Can I do "
     "anything about that?"),
    ("other", "account", "Do I need an account to order the {product}, or can I check out as a "
     "guest?"),
    ("cancellation", "shipping", "Order {order} is taking forever. Forget it, I don't want it "
     "anymore."),
)
_ST_PII_SENTENCES: dict[str, tuple[str, ...]] = {
    "email": ("You can reach me at {email}.", "My account email is {email}.",
              "Please reply to {email}.", "(sent from {email})"),
    "phone": ("Call me on {phone} if that's easier.", "My number is {phone}.",
              "Text me at {phone} please.", "Best to phone me: {phone}."),
    "card": ("The card I paid with is {card}.", "I paid with card {card}.",
             "Card number {card}, in case you need it.", "Card on file: {card}."),
    "iban": ("Please send the money to my IBAN {iban}.", "My bank account is {iban}."),
}
_ST_PII_WEIGHTS: dict[str, dict[str, int]] = {
    "billing": {"email": 3, "phone": 2, "card": 4, "iban": 1},
    "refund": {"email": 3, "phone": 2, "card": 3, "iban": 3},
    "cancellation": {"email": 4, "phone": 2, "card": 2, "iban": 1},
    "shipping": {"email": 5, "phone": 4, "card": 1, "iban": 0},
    "account": {"email": 5, "phone": 3, "card": 1, "iban": 0},
}
_ST_GREETINGS = ("", "", "", "Hi,", "Hello,", "Hi there,", "Good morning,", "Dear support team,",
                 "Hey,", "Hello support,")
_ST_CLOSINGS = ("", "", "", "Thanks.", "Thanks, {first}", "Cheers, {first}", "Regards, {first}",
                "Thank you in advance!", "Please help.", "Kind regards, {first}")
_ST_COUNTS = {"billing": 80, "shipping": 75, "technical": 70, "account": 60, "refund": 60,
              "cancellation": 45, "other": 30}


def _st_slots(rng: random.Random) -> dict[str, str]:
    """Fresh slot values for one support message."""
    symbol = rng.choice(("$", "$", "€", "£"))
    amount = rng.choice((rng.randint(5, 300) + rng.choice((0, 0.99, 0.5, 0.49)),
                         rng.randint(5, 120)))
    amount_text = f"{symbol}{amount:.2f}" if isinstance(amount, float) and amount % 1 else \
        f"{symbol}{int(amount)}"
    order = rng.choice((f"#{rng.randint(100000, 999999)}", f"ORD-{rng.randint(10000, 99999)}",
                        f"A{rng.randint(1000000, 9999999)}"))
    when = rng.choice(("yesterday", "last week", "on Monday", "two weeks ago", "this morning",
                       f"on {rng.choice(MONTHS)} {rng.randint(1, 28)}",
                       f"on the {_ordinal(rng.randint(1, 28))}"))
    feature = rng.choice(FEATURES)
    return {
        "product": rng.choice(PRODUCTS), "order": order, "amount": amount_text, "date": when,
        "plan": rng.choice(PLANS), "feature": feature, "feature_cap": feature[0].upper() + feature[1:],
        "error": rng.choice(ERRORS), "carrier": rng.choice(CARRIERS),
        "days": str(rng.randint(3, 21)), "country": rng.choice(COUNTRIES),
        "city": rng.choice(CITIES), "platform": rng.choice(PLATFORMS),
        "month": rng.choice(MONTHS), "first": rng.choice(FIRST_NAMES),
    }


def _st_pii(rng: random.Random, category: str, first: str) -> dict[str, str]:
    """One or two PII values for a message, weighted by what fits the category."""
    # card numbers and IBANs only where money is the topic; contact details anywhere
    weights = _ST_PII_WEIGHTS.get(category, {"email": 5, "phone": 4, "card": 0, "iban": 0})
    kinds = [k for k, w in weights.items() if w > 0]
    chosen = rng.choices(kinds, weights=[weights[k] for k in kinds], k=1)
    if rng.random() < 0.3:
        other = rng.choice([k for k in kinds if k not in chosen])
        chosen.append(other)
    out: dict[str, str] = {}
    for kind in sorted(set(chosen)):
        if kind == "email":
            out["email"] = _email(rng, first, rng.choice(LAST_NAMES))
        elif kind == "phone":
            out["phone"] = _phone(rng)
        elif kind == "card":
            out["card"] = _card_number(rng)
        else:
            out["iban"] = _iban(rng)
    return out


def _support_triage(rng: random.Random) -> tuple[list[dict[str, Any]], str]:
    """Rows for support-triage and its description."""
    plan: list[tuple[str, str]] = []
    for category, n in _ST_COUNTS.items():
        # about 40% easy, 35% medium, 25% hard (hard ones come from the ambiguity table)
        n_easy, n_medium = round(n * 0.40), round(n * 0.35)
        plan += [(category, "easy")] * n_easy + [(category, "medium")] * n_medium
        plan += [(category, "hard")] * (n - n_easy - n_medium)
    hard_by_gold: dict[str, list[int]] = {}
    for idx, (gold, _, _) in enumerate(_ST_HARD):
        hard_by_gold.setdefault(gold, []).append(idx)
    rng.shuffle(plan)
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    for category, difficulty in plan:
        has_pii = rng.random() < 0.25

        def make(category: str = category, difficulty: str = difficulty,
                 has_pii: bool = has_pii) -> tuple[str, Any]:
            slots = _st_slots(rng)
            confusable = None
            if difficulty == "hard":
                idx = rng.choice(hard_by_gold[category])
                _, confusable, body = _ST_HARD[idx]
                template = f"hard-{idx:02d}"
            else:
                table = _ST_EASY if difficulty == "easy" else _ST_MEDIUM
                idx = rng.randrange(len(table[category]))
                body = table[category][idx]
                template = f"{difficulty}-{category}-{idx:02d}"
            text = body.format_map(slots)
            channel = rng.choice(("email", "email", "chat", "web_form"))
            pii = _st_pii(rng, category, slots["first"]) if has_pii else {}
            extra = [rng.choice(_ST_PII_SENTENCES[k]).format_map(pii) for k in sorted(pii)]
            rng.shuffle(extra)
            if channel == "chat":
                # chat is typed casually, but brand names like "UPS" keep their case
                casual = text[0].lower() + text[1:] if text[1:2].islower() or text[1] in " '" \
                    else text
                parts = [casual, *extra]
                text = " ".join(parts)
                if rng.random() < 0.5 and text.endswith("."):
                    text = text[:-1]
            else:
                greeting = rng.choice(_ST_GREETINGS)
                closing = rng.choice(_ST_CLOSINGS).format_map(slots)
                sep = "\n\n" if channel == "email" else " "
                text = sep.join(p for p in (greeting, " ".join([text, *extra]), closing) if p)
            meta = {"template": template, "channel": channel, "confusable_with": confusable,
                    "generator": f"workbench.samples/{GENERATOR_VERSION}"}
            return text, (sorted(pii), meta, channel)

        text, (pii_types, meta, channel) = _fresh(rng, seen, make)
        rows.append({
            "input": text,
            "reference": category,
            "labels": list(SUPPORT_LABELS),
            "difficulty": difficulty,
            "data_class": "pii" if pii_types else "public",
            "tags": _json({"pii_types": pii_types, "channel": channel}),
            "metadata": _json(meta),
        })
    description = (
        "Synthetic customer-support messages to classify into one of "
        f"{len(SUPPORT_LABELS)} categories ({', '.join(SUPPORT_LABELS)}). Hard items are "
        "genuinely ambiguous between two categories (gold follows what the customer asks to "
        "be done); about a quarter carry PII (emails, phones, card numbers, IBANs)."
    )
    return rows, description


# ---------------------------------------------------------------------------------------------
# field-extraction
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# arithmetic-qa
# ---------------------------------------------------------------------------------------------
def _num(x: Fraction | int) -> str:
    """A number as plain text: 42, 12.5, 3.75 (at most two decimals, no trailing zeros)."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    text = f"{float(x):.2f}".rstrip("0").rstrip(".")
    return text


def _usd(x: Fraction | int) -> str:
    """Dollar amount as text: $12 or $12.50."""
    x = Fraction(x)
    return f"${x.numerator}" if x.denominator == 1 else f"${float(x):.2f}"


# Each template: (id, difficulty, steps, sampler). A sampler draws operands and returns
# (question, answer, operands); answers are computed exactly with Fractions.
def _aq_templates() -> list[tuple[str, str, int, Callable[[random.Random, str], Any]]]:
    """The arithmetic-qa template table."""
    F = Fraction

    def e_add(r: random.Random, who: str) -> Any:
        a, b = r.randint(12, 480), r.randint(5, 260)
        thing = r.choice(("stickers", "marbles", "stamps", "seashells"))
        return (f"{who} has {a} {thing} and is given {b} more. How many {thing} does {who} "
                f"have now?", F(a + b), {"a": a, "b": b})

    def e_sub(r: random.Random, who: str) -> Any:
        a = r.randint(40, 900)
        b = r.randint(5, a - 1)
        return (f"A warehouse shelf holds {a} boxes. {who} moves {b} of them to a truck. How "
                f"many boxes are left on the shelf?", F(a - b), {"a": a, "b": b})

    def e_mul(r: random.Random, who: str) -> Any:
        a, b = r.randint(6, 48), r.randint(3, 25)
        return (f"Each crate holds {a} bottles. How many bottles are in {b} crates?",
                F(a * b), {"a": a, "b": b})

    def e_div(r: random.Random, who: str) -> Any:
        b, q = r.randint(3, 12), r.randint(4, 40)
        return (f"{who} shares {b * q} cookies equally among {b} children. How many cookies "
                f"does each child get?", F(q), {"total": b * q, "b": b})

    def e_price(r: random.Random, who: str) -> Any:
        p = F(r.randint(2, 60) * 4 + r.choice((0, 1, 2, 3)), 4)  # quarters of a dollar
        n = r.randint(2, 12)
        return (f"One notebook costs {_usd(p)}. How much do {n} notebooks cost, in dollars?",
                p * n, {"price": str(p), "n": n})

    def e_minutes(r: random.Random, who: str) -> Any:
        a, b = r.randint(15, 95), r.randint(10, 60)
        return (f"{who}'s train ride takes {a} minutes and the bus ride after it takes {b} "
                f"minutes. How many minutes does the whole trip take?", F(a + b),
                {"a": a, "b": b})

    def m_change(r: random.Random, who: str) -> Any:
        n = r.randint(2, 8)
        p = F(r.randint(1, 10) * 4 + r.choice((0, 1, 2, 3)), 4)
        bill = next(b for b in (10, 20, 50, 100) if b >= n * p)
        return (f"{who} buys {n} pens at {_usd(p)} each and pays with a ${bill} note. How much "
                f"change, in dollars, does {who} get?", bill - n * p,
                {"n": n, "price": str(p), "bill": bill})

    def m_average(r: random.Random, who: str) -> Any:
        a, b = r.randint(50, 100), r.randint(50, 100)
        c = r.randint(50, 100)
        while (a + b + c) % 3:
            c = r.randint(50, 100)
        return (f"{who} scored {a}, {b} and {c} on three tests. What is the average score?",
                F(a + b + c, 3), {"a": a, "b": b, "c": c})

    def m_cafe(r: random.Random, who: str) -> Any:
        p1 = F(r.randint(6, 20) * 25, 100)
        p2 = F(r.randint(4, 16) * 25, 100)
        n1, n2 = r.randint(1, 6), r.randint(1, 6)
        return (f"A cafe sells coffee at {_usd(p1)} a cup and muffins at {_usd(p2)} each. "
                f"{who} buys {n1} coffees and {n2} muffins. What is the total cost in dollars?",
                n1 * p1 + n2 * p2, {"p1": str(p1), "p2": str(p2), "n1": n1, "n2": n2})

    def m_tank(r: random.Random, who: str) -> Any:
        cap = r.randint(10, 40) * 10
        a = r.randint(cap // 4, cap - 10)
        b = r.randint(5, a // 2)
        return (f"A water tank holds {cap} litres. It contains {a} litres, and then {b} litres "
                f"are used. How many litres are needed to fill it to the top?",
                F(cap - (a - b)), {"cap": cap, "a": a, "b": b})

    def m_pages(r: random.Random, who: str) -> Any:
        a, d = r.randint(8, 40), r.randint(3, 9)
        p = a * d + r.randint(10, 250)
        return (f"A book has {p} pages. {who} reads {a} pages a day for {d} days. How many "
                f"pages are left to read?", F(p - a * d), {"p": p, "a": a, "d": d})

    def m_chairs(r: random.Random, who: str) -> Any:
        rows_, cols = r.randint(6, 30), r.randint(8, 25)
        t = r.randint(1, rows_ * cols - 1)
        return (f"A hall has {rows_} rows of {cols} chairs. {t} chairs are taken. How many "
                f"chairs are free?", F(rows_ * cols - t), {"rows": rows_, "cols": cols, "t": t})

    def m_split(r: random.Random, who: str) -> Any:
        n = r.randint(2, 8)
        total = F(r.randint(30, 300) * 4 + r.choice((0, 2)), 4)
        tip = r.randint(5, 40)
        return (f"A group of {n} friends has a bill of {_usd(total)} and adds a ${tip} tip. "
                f"They split the result equally. How much does each pay, in dollars?",
                (total + tip) / n, {"n": n, "total": str(total), "tip": tip})

    def h_discount_tax(r: random.Random, who: str) -> Any:
        p, d = r.randint(2, 60) * 10, r.choice((10, 15, 20, 25, 30, 40, 50))
        t = r.choice((5, 8, 10, 20))
        return (f"A jacket costs ${p}. It is discounted by {d}%, and then a sales tax of {t}% "
                f"is added to the discounted price. What is the final price in dollars?",
                F(p) * F(100 - d, 100) * F(100 + t, 100), {"p": p, "d": d, "t": t})

    def h_ride_km(r: random.Random, who: str) -> Any:
        v, m = r.randint(8, 36), r.choice((15, 20, 30, 45, 50, 75, 90, 105, 135))
        return (f"{who} cycles at a steady {v} km/h for {m} minutes. How many kilometres does "
                f"{who} cover?", F(v * m, 60), {"v": v, "m": m})

    def h_drive_minutes(r: random.Random, who: str) -> Any:
        v = r.choice((40, 45, 48, 50, 60, 75, 80, 90, 100, 120))
        d = r.randint(10, 300)
        return (f"A car travels {d} km at an average speed of {v} km/h. How many minutes does "
                f"the journey take?", F(d * 60, v), {"d": d, "v": v})

    def h_compound(r: random.Random, who: str) -> Any:
        principal, rate = r.randint(1, 50) * 100, r.choice((2, 3, 4, 5, 6, 10))
        return (f"{who} deposits ${principal} in an account paying {rate}% interest per year, "
                f"compounded yearly. What is the balance after 2 years, in dollars?",
                F(principal) * F(100 + rate, 100) ** 2, {"principal": principal, "rate": rate})

    def h_pct_change(r: random.Random, who: str) -> Any:
        a = r.choice((40, 50, 80, 120, 125, 160, 200, 250, 400, 500))
        b = a + r.choice((-1, 1, 1, 2)) * r.randint(1, a // 2)
        return (f"A shop sold {a} umbrellas in March and {b} in April. By what percent did "
                f"sales change from March to April? (Give a negative number for a decrease.)",
                F(b - a, a) * 100, {"a": a, "b": b})

    def h_unit_price(r: random.Random, who: str) -> Any:
        p1 = F(r.randint(3, 40) * 3, 4)  # 750 g pack
        p2 = F(r.randint(4, 60) * 6, 5)  # 1.2 kg pack
        return (f"Rice comes in a 750 g bag for {_usd(p1)} or a 1.2 kg bag for {_usd(p2)}. "
                f"What is the lower price per kilogram, in dollars?",
                min(p1 / F(3, 4), p2 / F(6, 5)), {"p1": str(p1), "p2": str(p2)})

    def h_bottling(r: random.Random, who: str) -> Any:
        rate = r.choice((20, 25, 30, 40, 50, 60, 75, 80, 100, 120))
        n = rate * r.randint(30, 600)
        return (f"A machine fills {rate} bottles per minute. How many hours does it take to "
                f"fill {n} bottles?", F(n, rate * 60), {"rate": rate, "n": n})

    def h_fuel(r: random.Random, who: str) -> Any:
        use = r.choice((4, 5, 6, 7, 8, 10))
        price = F(r.randint(120, 220), 100)
        dist = r.choice((50, 100, 150, 200, 250, 300, 400, 500))
        return (f"A car uses {use} litres of fuel per 100 km, and fuel costs {_usd(price)} per "
                f"litre. What does fuel for a {dist} km trip cost, in dollars?",
                F(use * dist, 100) * price, {"use": use, "price": str(price), "dist": dist})

    def h_overtime(r: random.Random, who: str) -> Any:
        wage = r.randint(12, 40)
        hours = r.randint(41, 55)
        return (f"{who} earns ${wage} per hour for the first 40 hours of a week and 1.5 times "
                f"that rate for every hour beyond 40. How much does {who} earn for a "
                f"{hours}-hour week, in dollars?", 40 * F(wage) + (hours - 40) * F(wage) * F(3, 2),
                {"wage": wage, "hours": hours})

    def h_flour(r: random.Random, who: str) -> Any:
        g, n = r.randint(15, 90) * 10, r.randint(2, 12)
        return (f"A recipe uses {g} g of flour per batch. A bakery makes {n} batches and buys "
                f"10% extra to allow for waste. How many kilograms of flour does it buy?",
                F(g * n, 1000) * F(11, 10), {"g": g, "n": n})

    def h_budget(r: random.Random, who: str) -> Any:
        m = r.randint(10, 60) * 100
        p, q = r.choice((20, 25, 30, 35, 40)), r.choice((10, 20, 25, 40, 50))
        return (f"{who} has ${m}. {who} spends {p}% of it on rent, then {q}% of what remains "
                f"on food. How many dollars are left?",
                F(m) * F(100 - p, 100) * F(100 - q, 100), {"m": m, "p": p, "q": q})

    def h_paint(r: random.Random, who: str) -> Any:
        a, b = r.randint(1, 5), r.randint(1, 5)
        total = (a + b) * r.randint(1, 12) * r.choice((1, 2, 5))
        return (f"Blue and white paint are mixed in the ratio {a}:{b}. How many litres of blue "
                f"paint are in {total} litres of the mix?", F(total * a, a + b),
                {"a": a, "b": b, "total": total})

    return [
        ("add", "easy", 1, e_add), ("sub", "easy", 1, e_sub), ("mul", "easy", 1, e_mul),
        ("div", "easy", 1, e_div), ("price", "easy", 1, e_price),
        ("minutes", "easy", 1, e_minutes),
        ("change", "medium", 2, m_change), ("average", "medium", 2, m_average),
        ("cafe", "medium", 3, m_cafe), ("tank", "medium", 2, m_tank),
        ("pages", "medium", 2, m_pages), ("chairs", "medium", 2, m_chairs),
        ("split", "medium", 2, m_split),
        ("discount_tax", "hard", 3, h_discount_tax), ("ride_km", "hard", 2, h_ride_km),
        ("drive_minutes", "hard", 2, h_drive_minutes), ("compound", "hard", 3, h_compound),
        ("pct_change", "hard", 3, h_pct_change), ("unit_price", "hard", 4, h_unit_price),
        ("bottling", "hard", 2, h_bottling), ("fuel", "hard", 3, h_fuel),
        ("overtime", "hard", 4, h_overtime), ("flour", "hard", 3, h_flour),
        ("budget", "hard", 4, h_budget), ("paint", "hard", 2, h_paint),
    ]


def _arithmetic_qa(rng: random.Random) -> tuple[list[dict[str, Any]], str]:
    """Rows for arithmetic-qa and its description."""
    templates = _aq_templates()
    by_level = {lvl: [t for t in templates if t[1] == lvl] for lvl in ("easy", "medium", "hard")}
    plan = ["easy"] * 80 + ["medium"] * 80 + ["hard"] * 80
    rng.shuffle(plan)
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    counters = dict.fromkeys(by_level, 0)
    for level in plan:
        # cycle through the templates of a level so each is well represented
        tid, _, steps, sampler = by_level[level][counters[level] % len(by_level[level])]
        counters[level] += 1

        def make(sampler: Callable[..., Any] = sampler, tid: str = tid) -> tuple[str, Any]:
            for _ in range(200):
                question, answer, operands = sampler(rng, rng.choice(FIRST_NAMES))
                # a percent change may be negative; every other answer is non-negative
                if (answer * 100).denominator == 1 and (answer >= 0 or tid == "pct_change"):
                    return question, (answer, operands)
            raise RuntimeError("no clean operands found")  # pragma: no cover

        question, (answer, operands) = _fresh(rng, seen, make)
        rows.append({
            "input": question,
            "reference": _num(answer),
            "labels": None,
            "difficulty": level,
            "data_class": "public",
            "tags": _json({"pii_types": [], "skill": tid}),
            "metadata": _json({"template": tid, "steps": steps, "operands": operands,
                               "generator": f"workbench.samples/{GENERATOR_VERSION}"}),
        })
    description = (
        "Synthetic arithmetic word problems with exact numeric answers (plain numbers, at most "
        "two decimals): easy one-step, medium two or three steps, hard multi-step with "
        "percentages, rates and unit conversions."
    )
    return rows, description


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
_GENERATORS: dict[str, tuple[str, str, tuple[str, ...] | None,
                             Callable[[random.Random], tuple[list[dict[str, Any]], str]]]] = {
    "support-triage": ("st", "classification", SUPPORT_LABELS, _support_triage),
    "field-extraction": ("fx", "extraction", None, _field_extraction),
    "arithmetic-qa": ("aq", "qa", None, _arithmetic_qa),
}


def generate(name: str, seed: int = 0) -> SampleWorkload:
    """Generate one built-in sample workload; the same (name, seed) always gives equal items."""
    if name not in _GENERATORS:
        raise WorkbenchError(
            f"unknown sample workload {name!r}; valid names: {', '.join(SAMPLE_NAMES)}"
        )
    prefix, task_type, label_set, build = _GENERATORS[name]
    # A string seed is hashed with SHA-512 by `random`, so it is stable across processes.
    rng = random.Random(f"workbench-sample:{name}:{seed}")
    rows, description = build(rng)
    for i, row in enumerate(rows, start=1):
        row["item_id"] = f"{prefix}-{i:04d}"
    items = pl.DataFrame(rows, schema=_ITEM_SCHEMA)
    return SampleWorkload(name, task_type, description, label_set, items)


def load_samples(store: Store, names: Sequence[str] | None = None,
                 replace: bool = True) -> list[WorkloadInfo]:
    """Generate and store sample workloads (all by default), each in its own transaction;
    with replace=False an existing workload of the same name raises ConflictError."""
    chosen = list(SAMPLE_NAMES if names is None else names)
    samples = [generate(n) for n in chosen]  # validate every name before writing anything
    return [
        store.add_workload_frame(
            s.name, s.items, task_type=s.task_type, source=f"synthetic:{s.name}",
            synthetic=True, description=s.description, label_set=s.label_set, replace=replace,
        )
        for s in samples
    ]
