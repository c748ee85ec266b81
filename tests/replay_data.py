"""Random items, outcomes and policies for the replay tests (seeded numpy, no hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from workbench.policy import Policy

MODELS = ("tiny", "small", "medium", "large")
TAGS = {"tiny": ["local", "cheap"], "small": ["local"], "medium": ["hosted"],
        "large": ["hosted", "strong"]}
PII = [
    "write to jane.roe@example.org", "card 4111 1111 1111 1111", "card 4111 1111 1111 1112",
    "IBAN GB82 WEST 1234 5698 7654 32", "ssn 123-45-6789", "call (555) 123-4567",
    "IBAN GB82 WEST 1234 5698 7654 33",
]
WORDS = ["please", "summarise", "prove", "the", "theorem", "classify", "this", "refund",
         "order", "account", "urgent"]
LABELS = ["A", "B", "C", "D"]


def make_items(n: int, rng: np.random.Generator) -> pl.DataFrame:
    """Items with random texts (some holding PII), tags, difficulty and labels."""
    rows = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(1, 12))))
        if rng.random() < 0.3:
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(PII)))
        tag_kind = rng.integers(0, 4)
        tags = (None, json.dumps(["pii"]), json.dumps({"task": "math"}),
                json.dumps(["x", "y"]))[tag_kind]
        rows.append({
            "item_id": f"it{i:04d}",
            "input": " ".join(words),
            "labels": LABELS if rng.random() < 0.8 else None,
            "difficulty": str(rng.choice(["easy", "hard"])),
            "data_class": "pii" if rng.random() < 0.05 else None,
            "tags": tags,
        })
    return pl.DataFrame(rows, schema_overrides={"labels": pl.List(pl.String)})


def make_outcomes(items: pl.DataFrame, rng: np.random.Generator,
                  models: tuple[str, ...] = MODELS, with_confidence: bool = True,
                  error_rate: float = 0.05) -> pl.DataFrame:
    """Outcomes for every item x model with random quality, cost, errors and confidence."""
    rows = []
    for iid in items["item_id"].to_list():
        for j, m in enumerate(models):
            err = rng.random() < error_rate
            q = float(rng.random() < 0.4 + 0.15 * j)
            if rng.random() < 0.05:
                q = None
            out = str(rng.choice(LABELS + ["E", "42", '{"a": 1}', "[1,2", " b. "]))
            rows.append({
                "item_id": iid, "model": m,
                "output": None if err else out,
                "quality": None if err else q,
                "cost_usd": float(np.round(rng.random() * 10.0 ** (j - 4), 8)),
                "latency_ms": float(np.round(rng.random() * 100 * (j + 1), 3))
                if rng.random() < 0.95 else None,
                "error": str(rng.choice(["timeout", "rate_limit"])) if err else None,
                "confidence": float(np.round(rng.random(), 3))
                if with_confidence and rng.random() < 0.8 else None,
            })
    return pl.DataFrame(rows, schema_overrides={
        "quality": pl.Float64, "latency_ms": pl.Float64, "confidence": pl.Float64,
        "output": pl.String, "error": pl.String,
    })


def random_policy(rng: np.random.Generator, allow_router: bool = False) -> Policy:
    """A random valid policy over MODELS exercising every stage."""
    models = {m: {"model": f"prov/{m}", "tags": TAGS[m], "input_price_per_mtok": j * 1.0}
              for j, m in enumerate(MODELS)}
    k = int(rng.integers(1, 4))
    tier_models = sorted(rng.choice(MODELS, size=k, replace=False), key=MODELS.index)
    sources = ["auto", "recorded", "verifier"] + (["router"] if allow_router else [])
    tiers = [{
        "model": str(m),
        "accept_above": float(np.round(rng.random(), 2)),
        "verifier": str(rng.choice(["none", "none", "valid_label", "json", "number"])),
        "confidence": str(rng.choice(sources)),
        "labels": ["A", "B"] if rng.random() < 0.5 else [],
    } for m in tier_models]
    for i, tier in enumerate(tiers):  # agreement gates: an earlier tier or a non-tier model
        partners = [str(m) for m in tier_models[:i]] + [m for m in MODELS
                                                         if m not in tier_models]
        if partners and rng.random() < 0.35:
            tier["agree_with"] = str(rng.choice(partners))
            tier["agree_on"] = str(rng.choice(["label", "choice", "number", "json", "text"]))
    data: dict[str, Any] = {"models": models, "tiers": tiers}
    if allow_router:
        data["router"] = {"method": "knn", "k": 5, "folds": 3}
    rules = []
    if rng.random() < 0.7:
        rules.append({
            "data_class": "pii",
            "detectors": [str(d) for d in rng.choice(
                ["email", "phone", "payment_card", "iban", "national_id"],
                size=int(rng.integers(1, 4)), replace=False)],
            "item_tags": ["pii"] if rng.random() < 0.5 else [],
            "allowed_tags": ["local"] if rng.random() < 0.8 else [],
            "allowed_models": ["medium"] if rng.random() < 0.3 else [],
        })
    if rng.random() < 0.3:
        rules.append({"data_class": "math", "item_tags": ["task=math"],
                      "allowed_models": [str(rng.choice(MODELS))]})
    data["governance"] = {"rules": rules}
    refusal: dict[str, Any] = {}
    if rng.random() < 0.3:
        refusal["deny_patterns"] = ["(?i)urgent refund"]
    if rng.random() < 0.3:
        refusal["max_input_tokens"] = int(rng.integers(5, 30))
    data["refusal"] = refusal
    r = rng.random()
    if r < 0.4:
        data["preroute"] = {
            "kind": "rules", "preroute_below": float(np.round(rng.random(), 2)),
            "long_input_chars": int(rng.integers(20, 80)),
            "length_penalty": float(np.round(rng.random(), 2)),
            "tag_scores": {"hard": -0.3, "pii": 0.1},
            "keyword_scores": {"prove": -0.5, "classify": 0.2},
        }
    elif r < 0.6 and allow_router:
        data["preroute"] = {"kind": "learned", "cost_weight": float(rng.choice([0, 10, 1000]))}
    if rng.random() < 0.5:
        data["fallback"] = str(rng.choice(MODELS))
    budgets: dict[str, Any] = {}
    if rng.random() < 0.3:
        budgets["max_cost_per_request"] = float(rng.choice([1e-4, 1e-3, 5e-3]))
    if rng.random() < 0.4:
        budgets["max_strong_share"] = float(np.round(rng.random(), 2))
    data["budgets"] = budgets
    return Policy.validate_data(data)


def compare(trace: pl.DataFrame, ref: list[dict[str, Any]]) -> list[str]:
    """Differences between a replay trace and reference decisions (empty when equal)."""
    problems = []
    rows = trace.to_dicts()
    assert len(rows) == len(ref)
    for got, want in zip(rows, ref, strict=True):
        tried = ">".join(want["models_tried"]) or None
        pairs = [
            ("models_tried", got["models_tried"], tried),
            ("answered_by", got["answered_by"], want["answered_by"]),
            ("refusal_reason", got["refusal_reason"], want["refusal_reason"]),
            ("governance_block", got["governance_block"], want["governance_block"]),
        ]
        for name, a, b in pairs:
            if a != b:
                problems.append(f"{want['item_id']} {name}: replay {a!r} reference {b!r}")
        for name in ("quality", "cost_usd", "latency_ms"):
            a, b = got[name], want[name]
            if (a is None) != (b is None) or (a is not None and not np.isclose(a, b)):
                problems.append(f"{want['item_id']} {name}: replay {a!r} reference {b!r}")
    return problems
