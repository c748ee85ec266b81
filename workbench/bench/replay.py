"""Replay speed: vectorized replay vs the per-item Python reference on synthetic outcomes.

Synthetic workload: N items (some holding emails, card numbers, IBANs), outcomes for 3 models
(quality, cost, latency, confidence, a few errors). Policy: governance (PII -> local models),
refusal (max input tokens), rules pre-routing, a 3-tier cascade, fallback and a strong-share
cap. Times: cold = first replay (scatter outcomes into matrices, regex detections, checksums);
warm = replay after a threshold change (detections cached, cascade math only). The reference
runs on the first `--reference-items` items and is scaled linearly to N; both are run on that
subset and must agree item by item. A second run adds recorded answers (option letters) and a
fourth, non-tier model as the agreement partner of the first tier, and is timed the same way.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.pipeline.oracle import decide_recorded
from workbench.policy import Policy
from workbench.replay import clear_cache, replay

MODELS = ("local-small", "hosted-medium", "hosted-large")
PARTNER = "hosted-mini"
TEXTS = (
    "where is my order, it has not arrived yet",
    "please summarise the attached meeting notes in three bullet points",
    "my card 4111 1111 1111 1111 was charged twice",
    "contact me at alex.smith@example.com about the refund",
    "transfer to IBAN GB82 WEST 1234 5698 7654 32 failed",
    "prove that the square root of two is irrational",
    "classify the sentiment of this review: great product, slow delivery",
    "translate 'good morning' into French",
    "card 4111 1111 1111 1112 declined, what now",
    "write a haiku about autumn leaves",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `workbench bench replay`."""
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--reference-items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="warm replays to take the median")
    parser.add_argument("--seed", type=int, default=0)


def synthetic(n: int, seed: int = 0, answers: bool = False
              ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Items and outcomes for the benchmark (vectorized generation); with `answers`, every
    outcome records an option letter (right when quality is 1) and a fourth model, the
    agreement partner, is added."""
    rng = np.random.default_rng(seed)
    ids = pl.Series("item_id", np.arange(n)).cast(pl.String).str.pad_start(8, "0")
    which = rng.integers(0, len(TEXTS), n)
    texts = pl.Series(TEXTS)[which]
    suffix = pl.Series(rng.integers(0, 10_000, n)).cast(pl.String)
    items = pl.DataFrame({
        "item_id": ids,
        "input": texts + " ref " + suffix,
        "difficulty": pl.Series(np.array(["easy", "hard"])[rng.integers(0, 2, n)]),
    })
    skill = np.array([0.55, 0.75, 0.9, 0.7])
    price = np.array([0.00002, 0.0004, 0.004, 0.0001])
    truth = rng.integers(0, 4, n)
    frames = []
    for j, model in enumerate(MODELS + ((PARTNER,) if answers else ())):
        err = rng.random(n) < 0.01
        quality = (rng.random(n) < skill[j]).astype(np.float64)
        conf = np.clip(quality * 0.3 + rng.random(n) * 0.7, 0, 1).round(3)
        frames.append(pl.DataFrame({
            "item_id": ids,
            "model": pl.Series([model]).gather(np.zeros(n, dtype=np.int64)),
            "quality": pl.Series(np.where(err, np.nan, quality), nan_to_null=True),
            "cost_usd": (price[j] * (0.5 + rng.random(n))).round(9),
            "latency_ms": (100.0 * (j + 1) * (0.5 + rng.random(n))).round(3),
            "error": pl.Series(np.where(err, "timeout", "")).replace("", None),
            "confidence": conf,
        }))
        if answers:
            letter = np.where(quality == 1.0, truth, (truth + rng.integers(1, 4, n)) % 4)
            frames[-1] = frames[-1].with_columns(
                output=pl.lit("['") + pl.Series(np.array(list("ABCD"))[letter]) + pl.lit("']"))
    return items, pl.concat(frames, how="diagonal")


def bench_policy() -> Policy:
    """The benchmark's cascade policy with governance, refusal, pre-routing and budgets."""
    return Policy.validate_data({
        "name": "bench",
        "models": {
            "local-small": {"kind": "local-gguf", "model": "gemma", "tags": ["local"]},
            "hosted-medium": {"model": "prov/medium", "input_price_per_mtok": 0.5},
            "hosted-large": {"model": "prov/large", "input_price_per_mtok": 5.0},
        },
        "governance": {"rules": [{
            "data_class": "pii", "detectors": ["email", "payment_card", "iban"],
            "allowed_tags": ["local"],
        }]},
        "refusal": {"max_input_tokens": 18},
        "preroute": {"kind": "rules", "preroute_below": 0.5,
                     "keyword_scores": {"prove": -0.6}},
        "tiers": [
            {"model": "local-small", "accept_above": 0.6},
            {"model": "hosted-medium", "accept_above": 0.7},
            {"model": "hosted-large"},
        ],
        "fallback": "hosted-large",
        "budgets": {"max_strong_share": 0.25},
    })


def agreement_policy() -> Policy:
    """The benchmark policy with the first tier accepted only when the partner agrees."""
    data = bench_policy().model_dump(mode="json")
    data["models"][PARTNER] = {"model": "prov/mini", "input_price_per_mtok": 0.1}
    data["tiers"][0] |= {"agree_with": PARTNER, "agree_on": "choice"}
    return Policy.validate_data(data, source="bench agreement policy")


def _timed(policy: Policy, items: pl.DataFrame, outcomes: pl.DataFrame, repeat: int,
           seed: int) -> tuple[Any, float, float]:
    """(result, cold seconds, median warm seconds after threshold changes)."""
    clear_cache()
    t0 = time.perf_counter()
    result = replay(policy, items, outcomes, seed=seed)
    cold_s = time.perf_counter() - t0
    warm = []
    for i in range(repeat):
        changed = policy.with_value("tiers.0.accept_above", 0.5 + 0.02 * (i + 1))
        t0 = time.perf_counter()
        replay(changed, items, outcomes, seed=seed)
        warm.append(time.perf_counter() - t0)
    return result, cold_s, statistics.median(warm)


def _reference(policy: Policy, items: pl.DataFrame, outcomes: pl.DataFrame, n_ref: int,
               seed: int) -> tuple[float, int]:
    """(reference seconds on the first n_ref items, items where replay differs from it)."""
    sub_items, sub_out = items.head(n_ref), outcomes.filter(
        pl.col("item_id").is_in(items["item_id"].head(n_ref).implode()))
    ours_sub = replay(policy, sub_items, sub_out, seed=seed).trace
    t0 = time.perf_counter()
    ref = decide_recorded(policy, sub_items, sub_out)
    ref_s = time.perf_counter() - t0
    return ref_s, _agree(ours_sub, ref)


def _agree(ours: pl.DataFrame, ref: list[dict]) -> int:
    """Number of items whose decisions differ between our trace and the reference."""
    theirs = pl.DataFrame({
        "item_id": [r["item_id"] for r in ref],
        "r_tried": [">".join(r["models_tried"]) or None for r in ref],
        "r_answered": [r["answered_by"] for r in ref],
        "r_reason": [r["refusal_reason"] for r in ref],
        "r_cost": [r["cost_usd"] for r in ref],
        "r_quality": [r["quality"] for r in ref],
    }, schema_overrides={"r_quality": pl.Float64, "r_cost": pl.Float64})
    joined = ours.join(theirs, on="item_id")
    diff = joined.filter(
        pl.col("models_tried").cast(pl.String).ne_missing(pl.col("r_tried"))
        | pl.col("answered_by").cast(pl.String).ne_missing(pl.col("r_answered"))
        | pl.col("refusal_reason").cast(pl.String).ne_missing(pl.col("r_reason"))
        | ((pl.col("cost_usd") - pl.col("r_cost")).abs() > 1e-12)
        | pl.col("quality").ne_missing(pl.col("r_quality"))
    )
    return diff.height + abs(ours.height - len(ref))


def run(args: argparse.Namespace) -> int:
    """Time cold and warm replay on N items and the reference on a subset; print RESULT."""
    n, n_ref = args.items, min(args.reference_items, args.items)
    if n < 1000:
        raise WorkbenchError("--items must be at least 1000")
    t0 = time.perf_counter()
    items, outcomes = synthetic(n, args.seed)
    gen_s = time.perf_counter() - t0
    policy = bench_policy()
    result, cold_s, warm_s = _timed(policy, items, outcomes, args.repeat, args.seed)
    ref_s, mismatches = _reference(policy, items, outcomes, n_ref, args.seed)
    ref_scaled = ref_s * n / n_ref
    del items, outcomes
    a_items, a_out = synthetic(n, args.seed, answers=True)
    a_policy = agreement_policy()
    a_result, a_cold_s, a_warm_s = _timed(a_policy, a_items, a_out, args.repeat, args.seed)
    a_ref_s, a_mismatches = _reference(a_policy, a_items, a_out, n_ref, args.seed)
    a_ref_scaled = a_ref_s * n / n_ref

    per_million = 1_000_000 / n * 1000
    m = result.metrics
    print(f"synthetic workload: {n:,} items x {len(MODELS)} models (generated in {gen_s:.2f} s)")
    print(f"policy: quality {m.quality:.4f}, cost/request ${m.cost_per_request:.6f}, "
          f"escalation {m.escalation_rate:.3f}, refusal {m.refusal_rate:.3f}, "
          f"strong share {m.strong_share:.3f}")
    print(f"{'run':44s} {'seconds':>10s} {'ms per 1M items':>16s}")
    print(f"{'ours, cold (scatter + detections + cascade)':44s} {cold_s:10.3f} "
          f"{cold_s * per_million:16.1f}")
    print(f"{'ours, warm (threshold change; median)':44s} {warm_s:10.3f} "
          f"{warm_s * per_million:16.1f}")
    print(f"{f'reference on {n_ref:,} items':44s} {ref_s:10.3f} "
          f"{ref_s * 1_000_000 / n_ref * 1000:16.1f}")
    print(f"{f'reference scaled to {n:,} items':44s} {ref_scaled:10.3f}")
    print(f"agreement on {n_ref:,} items: {n_ref - mismatches:,} equal, {mismatches} differ")
    print(f"ratio warm {ref_scaled / warm_s:.1f}x, cold {ref_scaled / cold_s:.1f}x")
    am = a_result.metrics
    print(f"with an agreement gate on tier 0 ({PARTNER} as partner): quality {am.quality:.4f}, "
          f"cost/request ${am.cost_per_request:.6f}, escalation {am.escalation_rate:.3f}")
    print(f"{'agreement, cold (+ answers normalised)':44s} {a_cold_s:10.3f} "
          f"{a_cold_s * per_million:16.1f}")
    print(f"{'agreement, warm (threshold change; median)':44s} {a_warm_s:10.3f} "
          f"{a_warm_s * per_million:16.1f}")
    print(f"agreement policy vs reference on {n_ref:,} items: {n_ref - a_mismatches:,} equal, "
          f"{a_mismatches} differ; ratio warm {a_ref_scaled / a_warm_s:.1f}x")
    if mismatches or a_mismatches:
        raise WorkbenchError(f"replay and the reference disagree on {mismatches} items "
                             f"({a_mismatches} with the agreement gate)")
    print(
        f"RESULT bench=replay ratio={ref_scaled / warm_s:.1f} "
        f"ours_ms_per_million={warm_s * per_million:.1f} "
        f"cold_ratio={ref_scaled / cold_s:.1f} cold_ms_per_million={cold_s * per_million:.1f} "
        f"agreement_ratio={a_ref_scaled / a_warm_s:.1f} "
        f"agreement_ms_per_million={a_warm_s * per_million:.1f}"
    )
    return 0
