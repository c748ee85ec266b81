"""The `arithmetic-qa` sample (qa): word problems with exact numeric answers in graded
difficulty, computed with Fractions."""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from workbench.workloads.samples.common import FIRST_NAMES, GENERATOR_VERSION, _fresh, _json


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

