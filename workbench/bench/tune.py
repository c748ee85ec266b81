"""Tune benchmark: 300 min-cost trials over 100k synthetic items vs the same sampler on a no-op.

Both studies use Optuna's in-memory storage: the point is the cost our objective adds per trial
(policy construction, cascade math over the train items, constraint and user attributes) on top
of the sampler's own per-trial work; an RDB round trip per trial would add the same constant to
both sides and hide that ratio. `seconds` is the whole tune() call (reading the store,
splitting, precomputation, the trials, and the final train/holdout replays with bootstrap
CIs); `overhead_ratio` is its trials phase per trial over the no-op study's per trial.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

MODELS = ("cheap", "mid", "strong")
QUALITY = (0.62, 0.80, 0.93)
COST = (0.0001, 0.0006, 0.005)
LATENCY = (120.0, 400.0, 1500.0)


def synthetic(n: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Items and outcomes for three models whose recorded confidence tracks correctness
    (a per-item difficulty drives every model), so thresholds trade cost against quality."""
    # a stream of its own: default_rng(seed) is also what split_items draws from, and equal
    # draws would make the holdout exactly the easiest items
    rng = np.random.default_rng([seed, 0x7E57])
    ids = pl.Series("item_id", np.arange(n)).cast(pl.String).str.zfill(7)
    difficulty = rng.random(n)
    kind = np.where(difficulty > 0.7, "hard", "easy")
    items = pl.DataFrame({
        "item_id": ids,
        "input": pl.Series(np.where(kind == "hard", "prove the theorem", "classify this")),
        "difficulty": kind,
    })
    frames = []
    for j, m in enumerate(MODELS):
        skill = QUALITY[j]
        p_correct = np.clip(skill + (0.5 - difficulty) * (1.2 - skill), 0.0, 1.0)
        correct = rng.random(n) < p_correct
        conf = np.clip(p_correct + rng.normal(0, 0.15, n), 0.0, 1.0)
        frames.append(pl.DataFrame({
            "item_id": ids, "model": m, "quality": correct.astype(np.float64),
            "cost_usd": COST[j] * rng.uniform(0.5, 1.5, n),
            "latency_ms": LATENCY[j] * rng.uniform(0.5, 1.5, n),
            "confidence": np.round(conf, 3),
        }))
    return items, pl.concat(frames)


def base_policy() -> object:
    """A three-tier cascade on recorded confidence with a rule pre-route on 'prove'."""
    from workbench.policy import Policy

    return Policy.validate_data({
        "name": "bench-cascade",
        "models": {m: {"model": m} for m in MODELS},
        "preroute": {"kind": "rules", "preroute_below": 0.5,
                     "keyword_scores": {"prove": -0.6}},
        "tiers": [{"model": "cheap", "accept_above": 0.7}, {"model": "mid", "accept_above": 0.7},
                  {"model": "strong"}],
    })


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Benchmark options."""
    parser.add_argument("--items", type=int, default=100_000, help="synthetic items")
    parser.add_argument("--trials", type=int, default=300, help="trials per study")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Time tune() (in-memory study) and a no-op objective under the same sampler."""
    import optuna

    from workbench import replay as rp
    from workbench import tune as tn
    from workbench.store import Store

    t_all = time.perf_counter()
    items, outcomes = synthetic(args.items, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        store.add_workload_frame("bench", items, task_type="classification", source="bench",
                                 synthetic=True)
        store.write_outcomes("bench", outcomes)
        t_setup = time.perf_counter() - t_all
        policy = base_policy()
        t0 = time.perf_counter()
        settings = tn.StudySettings.create(
            "min-cost", quality_floor="95%", trials=args.trials, storage=tn.IN_MEMORY,
            study_name="bench-tune", seed=args.seed)
        result = tn.tune(store, "bench", policy, settings, record=False)
        ours_s = time.perf_counter() - t0
        store.close()
    rp.clear_cache()
    optimize_s = result.timings["optimize_s"]

    space = tn.search_space(policy)
    from workbench.tune.storage import _quiet_optuna

    _quiet_optuna()
    noop_study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(), direction="minimize",
        sampler=tn.make_sampler("tpe", tn.sampler_seed(args.seed, 0, 0), args.trials),
    )

    def noop(trial: optuna.Trial) -> float:
        for p in space:
            p.suggest(trial)
        return 0.0

    t0 = time.perf_counter()
    noop_study.optimize(noop, n_trials=args.trials)
    noop_s = time.perf_counter() - t0
    ours_per = ours_s / args.trials
    opt_per = optimize_s / args.trials
    noop_per = noop_s / args.trials
    # per-trial overhead: the trials phase of tune() against the no-op study; the one-off
    # preparation and final report are shown separately (and as a whole-call ratio)
    ratio = opt_per / noop_per
    rows = [
        ("items (train + holdout)", f"{args.items}"),
        ("trials", f"{args.trials}"),
        ("setup: generate + store (s)", f"{t_setup:.2f}"),
        ("tune() total (s)", f"{ours_s:.2f}"),
        ("  of which trials (s)", f"{optimize_s:.2f}"),
        ("  of which prepare + report (s)", f"{ours_s - optimize_s:.2f}"),
        ("no-op study (s)", f"{noop_s:.2f}"),
        ("ours per trial, whole call (ms)", f"{ours_per * 1e3:.2f}"),
        ("ours per trial, trials only (ms)", f"{opt_per * 1e3:.2f}"),
        ("no-op per trial (ms)", f"{noop_per * 1e3:.2f}"),
        ("whole-call ratio (incl. prepare + report)", f"{ours_per / noop_per:.2f}"),
        ("best train quality / floor",
         f"{result.train['quality']:.4f} / {result.quality_floor:.4f}"),
        ("best train $/request", f"{result.train['cost_per_request']:.6f}"),
        ("holdout quality", f"{result.holdout['quality']:.4f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"RESULT bench=tune seconds={ours_s:.2f} overhead_ratio={ratio:.2f}")
    return 0
