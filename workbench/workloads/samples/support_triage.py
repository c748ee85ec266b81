"""The `support-triage` sample (classification): customer messages with a gold category, easy
and genuinely ambiguous ones, about a quarter carrying PII."""

from __future__ import annotations

import random
from typing import Any

from workbench.workloads.samples.common import (
    FIRST_NAMES,
    GENERATOR_VERSION,
    LAST_NAMES,
    MONTHS,
    _card_number,
    _email,
    _fresh,
    _iban,
    _json,
    _ordinal,
    _phone,
)

SUPPORT_LABELS: tuple[str, ...] = (
    "billing", "shipping", "technical", "account", "refund", "cancellation", "other",
)

# Slot fillers of the support messages
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

