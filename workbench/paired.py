"""Paired comparison of two models or policies on the same items.

Two quality figures with separate intervals hide most of what the data says: items differ in
difficulty far more than models do. Matching items by id and looking at per-item differences
cancels the difficulty, so the interval of the difference is much narrower. Here:

- a paired bootstrap interval of the quality difference (A - B) and of the cost difference,
  resampling items (seeded; the same resamples for both; `routing_pays.paired_bootstrap`);
- McNemar's test when both score 0/1 (`routing_pays.mcnemar`: the exact binomial test when
  fewer than 25 items are discordant, else the continuity-corrected chi-square);
- a verdict that says "within noise" when the interval contains 0, with the number of paired
  items that would detect a stated difference (`workbench.sample_size`).

An arm is a model's recorded outcomes or a policy replayed over them (`workbench.replay`), so
the figures follow replay's conventions: errors score 0, unscored items are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench import sample_size as ss
from workbench.errors import WorkbenchError
from workbench.metrics import bootstrap_mean_ci
from workbench.routing_pays import LEVEL, N_BOOT, McNemar, mcnemar, paired_bootstrap

ARM_COLUMNS = ("item_id", "quality", "cost_usd", "latency_ms")


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: a name, whether it is a 'model' or a 'policy', and its
    per-item results (ARM_COLUMNS; quality null = unscored)."""

    name: str
    kind: str
    frame: pl.DataFrame


@dataclass(frozen=True)
class PairedComparison:
    """A against B on the items both have (matched by id). Differences are A - B; `decisive`
    when the quality interval excludes 0; `items_needed`: paired items to detect a `detect`
    difference at 5% significance and 80% power; `verdict`: one plain sentence."""

    a: str
    b: str
    n: int
    n_only_a: int
    n_only_b: int
    n_unscored: int
    quality_a: float
    quality_b: float
    quality_a_ci: tuple[float, float]
    quality_b_ci: tuple[float, float]
    difference: float
    difference_ci: tuple[float, float]
    mcnemar: McNemar | None
    cost_a: float
    cost_b: float
    cost_difference: float
    cost_difference_ci: tuple[float, float]
    decisive: bool
    detect: float
    items_needed: int | None
    verdict: str
    notes: tuple[str, ...] = ()
    level: float = LEVEL
    n_boot: int = N_BOOT
    seed: int = 0
    method: str = "bootstrap"

    @property
    def better(self) -> str | None:
        """The name of the better arm when the interval excludes 0, else None."""
        if not self.decisive:
            return None
        return self.a if self.difference > 0 else self.b

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as None)."""
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "a": self.a, "b": self.b, "n": self.n, "n_only_a": self.n_only_a,
            "n_only_b": self.n_only_b, "n_unscored": self.n_unscored,
            "quality_a": num(self.quality_a), "quality_b": num(self.quality_b),
            "quality_a_ci": [num(v) for v in self.quality_a_ci],
            "quality_b_ci": [num(v) for v in self.quality_b_ci],
            "difference": self.difference, "difference_ci": list(self.difference_ci),
            "mcnemar": self.mcnemar.as_json() if self.mcnemar else None,
            "cost_a": self.cost_a, "cost_b": self.cost_b,
            "cost_difference": self.cost_difference,
            "cost_difference_ci": list(self.cost_difference_ci),
            "decisive": self.decisive, "better": self.better, "detect": self.detect,
            "items_needed": self.items_needed, "verdict": self.verdict,
            "notes": list(self.notes), "level": self.level, "n_boot": self.n_boot,
            "seed": self.seed, "method": self.method,
        }


# -- arms from the store ----------------------------------------------------------------------
def replayed_arm(name: str, kind: str, policy: Any, items: pl.DataFrame,
                 outcomes: pl.DataFrame) -> Arm:
    """An arm from replaying `policy` over the items that have outcomes of its models."""
    from workbench.replay import replay

    trace = replay(policy, items, outcomes, n_boot=1).trace
    frame = trace.select(pl.col("item_id").cast(pl.String),
                         pl.col("quality").cast(pl.Float64), pl.col("cost_usd").cast(pl.Float64),
                         pl.col("latency_ms").cast(pl.Float64))
    return Arm(name, kind, frame)


def model_arm(store: Any, workload: str, model: str) -> Arm:
    """A model's recorded outcomes on a workload, as a one-model policy replays them."""
    from workbench.policy import single

    known = store.models_of(workload)
    if model not in known:
        raise WorkbenchError(f"model {model!r} has no outcomes on workload {workload!r}; "
                             f"models with outcomes: {', '.join(known) or 'none'}")
    own = store.outcomes(workload, [model])
    ids = own["item_id"].cast(pl.String).unique().implode()
    items = store.recorded_items(workload)
    items = items.filter(pl.col("item_id").cast(pl.String).is_in(ids))
    return replayed_arm(model, "model", single(model), items, own)


def policy_arm(store: Any, workload: str, policy: Any, name: str | None = None) -> Arm:
    """A policy replayed over a workload's recorded outcomes."""
    return replayed_arm(name or policy.name, "policy", policy, store.recorded_items(workload),
                        store.outcomes(workload))


def resolve_arm(store: Any, workload: str, name: str, catalog: Any = None) -> Arm:
    """An arm by name: 'model:NAME', 'policy:NAME' (saved in the catalog), a policy file
    (.yaml/.yml/.json), or a bare name (a model with outcomes first, then a saved policy)."""
    from workbench.policy import Policy

    kind, _, rest = name.partition(":")
    if kind == "model" and rest:
        return model_arm(store, workload, rest)
    if kind == "policy" and rest:
        if catalog is None:
            raise WorkbenchError(f"{name!r}: no policy catalog to look saved policies up in")
        entry = catalog.get_policy(rest)
        return policy_arm(store, workload, Policy.from_yaml(entry.body), f"policy:{rest}")
    if name.lower().endswith((".yaml", ".yml", ".json")):
        path = Path(name)
        if not path.is_file():
            raise WorkbenchError(f"policy file {name!r} does not exist")
        return policy_arm(store, workload, Policy.from_file(path), path.name)
    store.workload(workload)  # unknown workload: the store's error lists the known ones
    if name in store.models_of(workload):
        return model_arm(store, workload, name)
    saved = [p.name for p in catalog.list_policies()] if catalog is not None else []
    if name in saved:
        entry = catalog.get_policy(name)
        return policy_arm(store, workload, Policy.from_yaml(entry.body), f"policy:{name}")
    models = ", ".join(store.models_of(workload)) or "none"
    raise WorkbenchError(f"{name!r} is neither a model with outcomes on workload {workload!r} "
                         f"(models: {models}) nor a saved policy (policies: "
                         f"{', '.join(saved) or 'none'}); a policy file ends in .yaml or .json")


# -- the comparison ---------------------------------------------------------------------------
def _items(k: int) -> str:
    return f"{k} item{'' if k == 1 else 's'}"


def _binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0.0) | (x == 1.0)))


def usd(value: float) -> str:
    """A signed dollar amount: +$0.001500, -$0.000099."""
    return f"{'-' if value < 0 else '+'}${abs(value):.6f}"


def _signed(ci: tuple[float, float], digits: int = 3) -> str:
    return f"{ci[0]:+.{digits}f} to {ci[1]:+.{digits}f}"


def compare_arms(a: Arm, b: Arm, *, detect: float = ss.DETECT, n_boot: int = N_BOOT,
                 level: float = LEVEL, seed: int = 0) -> PairedComparison:
    """A against B on the items both have, scored for both."""
    if a.name == b.name:
        raise WorkbenchError(f"compare two different models or policies, got {a.name!r} twice")
    if not 0.0 < detect < 1.0:
        raise WorkbenchError(f"the difference to detect must be between 0 and 1, got {detect}")
    fa = a.frame.select(pl.col("item_id").cast(pl.String), "quality", "cost_usd")
    fb = b.frame.select(pl.col("item_id").cast(pl.String), "quality", "cost_usd")
    for arm, f in ((a, fa), (b, fb)):
        if f["item_id"].is_duplicated().any():
            raise WorkbenchError(f"{arm.name!r} has more than one result for some item ids")
    joined = fa.join(fb, on="item_id", how="inner", suffix="_b")
    n_only_a = fa.height - joined.height
    n_only_b = fb.height - joined.height
    scored = joined.filter(pl.col("quality").is_not_null() & pl.col("quality_b").is_not_null()
                           & pl.col("quality").is_not_nan() & pl.col("quality_b").is_not_nan())
    n_unscored = joined.height - scored.height
    n = scored.height
    if n == 0:
        raise WorkbenchError(f"{a.name!r} and {b.name!r} have no scored item in common "
                             f"({joined.height} shared item ids); run both on the same items")
    qa = scored["quality"].cast(pl.Float64).to_numpy()
    qb = scored["quality_b"].cast(pl.Float64).to_numpy()
    ca = scored["cost_usd"].cast(pl.Float64).fill_null(0.0).to_numpy()
    cb = scored["cost_usd_b"].cast(pl.Float64).fill_null(0.0).to_numpy()
    dq, dc = qa - qb, ca - cb
    (ci_q, ci_c), method = paired_bootstrap([dq, dc], n_boot=n_boot, level=level, seed=seed)
    binary = _binary(qa) and _binary(qb)
    test = mcnemar(qa, qb) if binary else None
    notes: list[str] = []
    if n_only_a or n_only_b:
        notes.append(f"compared on the {n} items both have: {n_only_a} only in {a.name}, "
                     f"{n_only_b} only in {b.name} are left out")
    if n_unscored:
        notes.append(f"{n_unscored} shared items are unscored for one side and left out")
    if not binary:
        notes.append("McNemar's test needs right/wrong (0/1) scores; these are fractional, so "
                     "only the paired bootstrap applies")
    diff = float(dq.mean())
    decisive = ci_q[0] > 0.0 or ci_q[1] < 0.0
    needed = _items_needed(qa, qb, dq, detect)
    pct = f"{level:.0%}"
    figures = (f"{a.name} {qa.mean():.3f} vs {b.name} {qb.mean():.3f}, difference "
               f"{diff:+.3f} ({pct} CI {_signed(ci_q)}) on {n:,} paired items")
    if test is not None:
        figures += (f"; McNemar p={test.p_value:.3g} ({_items(test.policy_only)} only "
                    f"{a.name} got right, {test.other_only} only {b.name})")
    if decisive:
        better, worse = (a.name, b.name) if diff > 0 else (b.name, a.name)
        verdict = f"{better} is better than {worse}: {figures}"
    else:
        verdict = (f"within noise: {figures}. The interval includes 0, so these {n:,} items "
                   "cannot tell them apart")
        verdict += "; " + _needed_text(n, needed, detect)
    verdict += (f". Cost per request {a.name} ${ca.mean():.6f} vs {b.name} ${cb.mean():.6f} "
                f"(difference {usd(dc.mean())}, {pct} CI {usd(ci_c[0])} to {usd(ci_c[1])})")
    return PairedComparison(
        a=a.name, b=b.name, n=n, n_only_a=n_only_a, n_only_b=n_only_b, n_unscored=n_unscored,
        quality_a=float(qa.mean()), quality_b=float(qb.mean()),
        quality_a_ci=bootstrap_mean_ci(qa, n_boot=n_boot, level=level, seed=seed),
        quality_b_ci=bootstrap_mean_ci(qb, n_boot=n_boot, level=level, seed=seed + 1),
        difference=diff, difference_ci=ci_q, mcnemar=test, cost_a=float(ca.mean()),
        cost_b=float(cb.mean()), cost_difference=float(dc.mean()), cost_difference_ci=ci_c,
        decisive=decisive, detect=detect, items_needed=needed, verdict=verdict,
        notes=tuple(notes), level=level, n_boot=n_boot, seed=seed, method=method,
    )


def _needed_text(n: int, needed: int | None, detect: float) -> str:
    """What the sample can detect: enough items for a `detect` difference (so a real one is
    probably smaller), or how many it would take."""
    if needed is None:
        return "the two score the same on every item"
    if n >= needed:
        return (f"{n:,} items are enough to detect a difference of {ss.points(detect)} "
                f"(about {needed:,} needed at 5% significance and 80% power), so a real "
                "difference is probably smaller than that")
    return (f"detecting a difference of {ss.points(detect)} needs about {needed:,} paired "
            "items (5% significance, 80% power)")


def _items_needed(qa: np.ndarray, qb: np.ndarray, dq: np.ndarray, detect: float) -> int | None:
    """Paired items to detect a `detect` difference, with the discordance (0/1 scores) or the
    spread of differences (fractional) seen here; at least `detect` of items must disagree."""
    if _binary(qa) and _binary(qb):
        discordant = float(np.mean(qa != qb))
        psi = min(max(discordant, detect), 1.0)
        return ss.n_paired_proportions((psi + detect) / 2.0, (psi - detect) / 2.0)
    sd = float(np.std(dq, ddof=1)) if dq.size > 1 else 0.0
    if sd == 0.0:
        return None
    return ss.n_paired_mean(sd, detect)


def compare(store: Any, workload: str, a: str, b: str, *, catalog: Any = None,
            detect: float = ss.DETECT, n_boot: int = N_BOOT, level: float = LEVEL,
            seed: int = 0) -> PairedComparison:
    """Compare two models or policies (names as `resolve_arm` takes them) on a workload."""
    return compare_arms(resolve_arm(store, workload, a, catalog),
                        resolve_arm(store, workload, b, catalog),
                        detect=detect, n_boot=n_boot, level=level, seed=seed)


def describe(c: PairedComparison) -> list[str]:
    """The comparison as a few plain lines for a terminal, the answer first."""
    pct = f"{c.level:.0%}"
    head = (f"{c.better} is better" if c.better else
            "within noise: these items cannot tell them apart")
    lines = [
        head,
        f"  {c.a}: quality {c.quality_a:.4f} ({pct} CI {c.quality_a_ci[0]:.4f}-"
        f"{c.quality_a_ci[1]:.4f}), ${c.cost_a:.6g}/request",
        f"  {c.b}: quality {c.quality_b:.4f} ({pct} CI {c.quality_b_ci[0]:.4f}-"
        f"{c.quality_b_ci[1]:.4f}), ${c.cost_b:.6g}/request",
        f"  difference ({c.a} - {c.b}) on {c.n:,} paired items: quality {c.difference:+.4f} "
        f"({pct} CI {_signed(c.difference_ci, 4)}), cost {usd(c.cost_difference)}/request "
        f"({pct} CI {usd(c.cost_difference_ci[0])} to {usd(c.cost_difference_ci[1])})",
    ]
    if c.mcnemar is not None:
        m = c.mcnemar
        how = ("exact binomial" if m.method == "exact"
               else "chi-square, continuity-corrected")
        lines.append(f"  McNemar: p={m.p_value:.3g} ({how}; {m.policy_only} items only {c.a} "
                     f"got right, {m.other_only} only {c.b})")
    if not c.decisive:
        lines.append("  " + _needed_text(c.n, c.items_needed, c.detect))
    lines += [f"  note: {n}" for n in c.notes]
    return lines


__all__ = ["ARM_COLUMNS", "Arm", "PairedComparison", "compare", "compare_arms", "describe",
           "model_arm", "policy_arm", "replayed_arm", "resolve_arm"]
