"""Does routing pay here? A tuned policy judged, item by item, against what needs no router.

Two things a team can do without a router:
- send everything to one model (the *best single model*);
- flip a biased coin between two models (the *random-mix frontier*: the upper convex hull of
  the single models in (cost, quality); a mix of two adjacent hull models at a given cost has
  the quality on the straight line between them).

A policy is worth running only if it beats the random mix at its own cost. The comparison is
paired: every figure is computed on the same items, so the per-item differences cancel the
items' difficulty and the intervals are much tighter than two separate intervals would be.

- Paired bootstrap: item indices are resampled together for every comparison (same items,
  same resamples), and the 95% interval is the percentile interval of the mean difference.
- McNemar's test on the items where exactly one of the policy and the best single model is
  right: the exact two-sided binomial test for fewer than `EXACT_BELOW` discordant items, the
  continuity-corrected chi-square otherwise. It needs 0/1 quality; the random mix is fractional
  per item (an expectation over the coin), so only the bootstrap applies to it.
- Cost ratio at equal quality: what the cheapest single model (or hull mix) reaching the
  policy's quality costs, divided by the policy's cost.

Routing *pays* when the lower end of the interval of the gain over the random mix at equal
cost is above zero; otherwise the gain is inside the noise and the simpler policy is as good.
Pure numpy/polars; the policy's per-item outcomes come from `workbench.replay`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError

N_BOOT = 2000
LEVEL = 0.95
# below this many discordant items McNemar's chi-square approximation is poor: use the exact test
EXACT_BELOW = 25
# above this many resampled values the index bootstrap is replaced by the normal approximation of
# the paired mean difference (for such n it differs from the bootstrap by less than its noise)
MAX_BOOT_CELLS = 50_000_000
_CHUNK_CELLS = 2_000_000


# -- the statistics -------------------------------------------------------------------------
@dataclass(frozen=True)
class McNemar:
    """McNemar's test of paired 0/1 outcomes. `policy_only`: items the policy got right and the
    other did not; `other_only`: the reverse; `p_value` two-sided; `method` 'exact' (binomial)
    or 'chi2' (continuity-corrected, 1 degree of freedom)."""

    policy_only: int
    other_only: int
    p_value: float
    method: str

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"policy_only": self.policy_only, "other_only": self.other_only,
                "p_value": self.p_value, "method": self.method}


def mcnemar(policy_correct: np.ndarray, other_correct: np.ndarray, *,
            exact_below: int = EXACT_BELOW) -> McNemar:
    """McNemar's test on two paired 0/1 arrays (True/1 = correct). Only discordant items
    carry information; under the null each is equally likely to favour either side, so
    `policy_only` ~ Binomial(discordant, 1/2)."""
    a = np.asarray(policy_correct)
    b = np.asarray(other_correct)
    if a.shape != b.shape or a.ndim != 1:
        raise WorkbenchError(f"McNemar needs two 1-d arrays of equal length, got shapes "
                             f"{a.shape} and {b.shape}")
    for name, x in (("policy", a), ("other", b)):
        if not np.all((x == 0) | (x == 1)):
            raise WorkbenchError(f"McNemar needs 0/1 outcomes; the {name} array has other values")
    a, b = a.astype(bool), b.astype(bool)
    n10 = int(np.count_nonzero(a & ~b))
    n01 = int(np.count_nonzero(~a & b))
    return mcnemar_counts(n10, n01, exact_below=exact_below)


def mcnemar_counts(policy_only: int, other_only: int, *,
                   exact_below: int = EXACT_BELOW) -> McNemar:
    """McNemar's test from the two discordant counts."""
    if policy_only < 0 or other_only < 0:
        raise WorkbenchError(f"discordant counts must be >= 0, got {policy_only}, {other_only}")
    n = policy_only + other_only
    if n == 0:
        return McNemar(policy_only, other_only, 1.0, "exact")
    if n < exact_below:
        k = min(policy_only, other_only)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
        return McNemar(policy_only, other_only, min(1.0, 2.0 * tail), "exact")
    stat = (abs(policy_only - other_only) - 1.0) ** 2 / n
    # chi-square with 1 degree of freedom: P(X > s) = erfc(sqrt(s / 2))
    return McNemar(policy_only, other_only, math.erfc(math.sqrt(stat / 2.0)), "chi2")


def paired_bootstrap(differences: Sequence[np.ndarray], *, n_boot: int = N_BOOT,
                     level: float = LEVEL, seed: int = 0
                     ) -> tuple[list[tuple[float, float]], str]:
    """Percentile intervals of the means of several per-item difference arrays over the same
    items, every array resampled with the *same* item indices (so the intervals are of one
    experiment, not of independent ones). Returns (intervals, method): 'bootstrap', or
    'normal' when n x n_boot exceeds MAX_BOOT_CELLS (mean +- z sd / sqrt(n))."""
    if not differences:
        return [], "bootstrap"
    d = np.vstack([np.asarray(x, dtype=np.float64) for x in differences])
    if d.ndim != 2 or d.shape[1] == 0:
        raise WorkbenchError("paired bootstrap needs at least one item")
    if np.isnan(d).any():
        raise WorkbenchError("paired bootstrap got NaN differences; pair scored items only")
    if not 0.0 < level < 1.0:
        raise WorkbenchError(f"interval level must be strictly between 0 and 1, got {level}")
    if n_boot < 1:
        raise WorkbenchError(f"n_boot must be >= 1, got {n_boot}")
    k, n = d.shape
    alpha = (1.0 - level) / 2.0
    if n * n_boot > MAX_BOOT_CELLS:
        from statistics import NormalDist

        z = NormalDist().inv_cdf(1.0 - alpha)
        means = d.mean(axis=1)
        half = z * d.std(axis=1, ddof=1) / math.sqrt(n)
        return [(float(m - h), float(m + h)) for m, h in zip(means, half, strict=True)], "normal"
    rng = np.random.default_rng(seed)
    boot = np.empty((k, n_boot))
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        for j in range(k):  # the same resampled items for every comparison
            boot[j, start:stop] = d[j][idx].mean(axis=1)
    qs = np.quantile(boot, [alpha, 1.0 - alpha], axis=1)
    return [(float(lo), float(hi)) for lo, hi in qs.T], "bootstrap"


# -- the random-mix frontier ------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One single model's mean quality and cost per request on the paired items."""

    model: str
    quality: float
    cost: float


@dataclass(frozen=True)
class Mix:
    """A random mix sending a share `weight` of requests to `upper` and the rest to `lower`
    (equal models and weight 0 when the mix is one model)."""

    lower: str
    upper: str
    weight: float
    quality: float
    cost: float

    @property
    def label(self) -> str:
        """'A' or 'A/B (70%/30%)'."""
        if self.lower == self.upper or self.weight <= 0.0:
            return self.lower
        if self.weight >= 1.0:
            return self.upper
        return f"{self.lower}/{self.upper} ({1 - self.weight:.0%}/{self.weight:.0%})"

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"lower": self.lower, "upper": self.upper, "weight": self.weight,
                "quality": self.quality, "cost": self.cost, "label": self.label}


def hull(points: Sequence[Point]) -> list[Point]:
    """The upper convex hull of the points in (cost, quality), cheapest first: the models a
    random mix is drawn from. Dominated models, and models on or below the chord between their
    neighbours, are left out (a coin flip between the neighbours does at least as well)."""
    if not points:
        raise WorkbenchError("the random-mix frontier needs at least one single model")
    for p in points:
        if not (math.isfinite(p.quality) and math.isfinite(p.cost)):
            raise WorkbenchError(f"model {p.model!r} has no finite quality and cost")
    ordered = sorted(points, key=lambda p: (p.cost, -p.quality, p.model))
    front: list[Point] = []
    for p in ordered:  # non-dominated: quality strictly rising with cost
        if not front or p.quality > front[-1].quality:
            front.append(p)
    out: list[Point] = []
    for p in front:
        while len(out) >= 2:
            a, b = out[-2], out[-1]
            # drop b when it lies on or below the chord a -> p
            if (b.quality - a.quality) * (p.cost - a.cost) <= (p.quality - a.quality) * (
                    b.cost - a.cost):
                out.pop()
            else:
                break
        out.append(p)
    return out


def _close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15)


def mix_at_cost(frontier: Sequence[Point], cost: float) -> Mix:
    """The best random mix spending `cost` per request: linear interpolation between the two
    adjacent hull models around `cost`; below the cheapest (above the dearest) hull model, that
    model alone (no mix can spend less than the cheapest model, and spending more than the
    best model buys nothing)."""
    if not frontier:
        raise WorkbenchError("the random-mix frontier is empty")
    if not math.isfinite(cost):
        raise WorkbenchError(f"cost must be finite, got {cost}")
    first, last = frontier[0], frontier[-1]
    if cost <= first.cost or _close(cost, first.cost):
        return Mix(first.model, first.model, 0.0, first.quality, first.cost)
    if cost >= last.cost or _close(cost, last.cost):
        return Mix(last.model, last.model, 0.0, last.quality, last.cost)
    for a, b in zip(frontier, frontier[1:], strict=False):
        if _close(cost, b.cost):
            return Mix(b.model, b.model, 0.0, b.quality, b.cost)
        if a.cost <= cost < b.cost:
            w = (cost - a.cost) / (b.cost - a.cost)
            return Mix(a.model, b.model, w, (1 - w) * a.quality + w * b.quality, cost)
    raise AssertionError("unreachable: cost inside the hull's range")  # pragma: no cover


def cost_at_quality(frontier: Sequence[Point], quality: float) -> Mix | None:
    """The cheapest random mix reaching `quality` (the hull read the other way round), or None
    when even the best model is below it."""
    if not frontier:
        raise WorkbenchError("the random-mix frontier is empty")
    first = frontier[0]
    if quality <= first.quality:
        return Mix(first.model, first.model, 0.0, first.quality, first.cost)
    for a, b in zip(frontier, frontier[1:], strict=False):
        if _close(quality, b.quality):
            return Mix(b.model, b.model, 0.0, b.quality, b.cost)
        if a.quality < quality < b.quality:
            w = (quality - a.quality) / (b.quality - a.quality)
            return Mix(a.model, b.model, w, quality, (1 - w) * a.cost + w * b.cost)
    return None


# -- the verdict ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """The policy against one alternative on the paired items: mean quality of each, the
    alternative's cost, the mean paired difference (policy - other) with its interval, and
    McNemar's test where it applies."""

    against: str
    quality: float
    cost: float
    difference: float
    ci: tuple[float, float]
    mcnemar: McNemar | None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"against": self.against, "quality": self.quality, "cost": self.cost,
                "difference": self.difference, "ci": list(self.ci),
                "mcnemar": self.mcnemar.as_json() if self.mcnemar else None, "note": self.note}


@dataclass(frozen=True)
class RoutingVerdict:
    """Does routing pay? The policy's quality and cost on `n` paired items, the comparisons
    with the best single model and with the random mix at the policy's cost, the cost ratios
    at equal quality (None: no single model / mix reaches the policy's quality), and a plain
    sentence saying whether it pays."""

    pays: bool
    message: str
    n: int
    policy_quality: float
    policy_cost: float
    best_single: Comparison
    random_mix: Comparison
    mix: Mix
    cost_ratio_single: float | None
    single_at_quality: str | None
    cost_ratio_mix: float | None
    mix_at_quality: Mix | None
    frontier: tuple[Point, ...]
    singles: tuple[Point, ...]
    level: float = LEVEL
    n_boot: int = N_BOOT
    method: str = "bootstrap"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (the `routing` block of `tune --json` and of a policy's provenance)."""
        return {
            "pays": self.pays, "message": self.message, "n": self.n,
            "policy_quality": self.policy_quality, "policy_cost": self.policy_cost,
            "vs_best_single": self.best_single.as_json(),
            "vs_random_mix": self.random_mix.as_json(), "mix": self.mix.as_json(),
            "cost_ratio_single": self.cost_ratio_single,
            "single_at_quality": self.single_at_quality,
            "cost_ratio_mix": self.cost_ratio_mix,
            "mix_at_quality": self.mix_at_quality.as_json() if self.mix_at_quality else None,
            "frontier": [p.model for p in self.frontier],
            "singles": [{"model": p.model, "quality": p.quality, "cost": p.cost}
                        for p in self.singles],
            "level": self.level, "n_boot": self.n_boot, "method": self.method,
            "notes": list(self.notes),
        }


def _binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0.0) | (x == 1.0)))


def _ratio(other_cost: float, policy_cost: float) -> float | None:
    if policy_cost > 0:
        return other_cost / policy_cost
    return math.inf if other_cost > 0 else 1.0


def _fmt_ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "unreachable"
    return "free" if math.isinf(r) else f"{r:.2f}x"


def compare(
    policy_quality: np.ndarray,
    policy_cost: np.ndarray,
    single_quality: Mapping[str, np.ndarray],
    single_cost: Mapping[str, np.ndarray],
    *,
    reference: str | None = None,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> RoutingVerdict:
    """The verdict from per-item arrays aligned on the same items (NaN quality = unscored,
    NaN cost = no outcome). Items where the policy or any single model is unscored are left
    out, so every comparison is on the same items. `reference`: the best single model, chosen
    elsewhere (e.g. on the train split, so the holdout is not used to pick it); None = the
    highest-quality model on these items (ties: the cheaper)."""
    pq = np.asarray(policy_quality, dtype=np.float64)
    pc = np.asarray(policy_cost, dtype=np.float64)
    if pq.ndim != 1 or pq.shape != pc.shape:
        raise WorkbenchError(f"policy quality and cost must be 1-d arrays of one length, got "
                             f"{pq.shape} and {pc.shape}")
    if not single_quality:
        raise WorkbenchError("no single models to compare the policy with")
    if set(single_quality) != set(single_cost):
        raise WorkbenchError("single-model quality and cost name different models")
    models = sorted(single_quality)
    sq = {m: np.asarray(single_quality[m], dtype=np.float64) for m in models}
    sc = {m: np.asarray(single_cost[m], dtype=np.float64) for m in models}
    for m in models:
        if sq[m].shape != pq.shape or sc[m].shape != pq.shape:
            raise WorkbenchError(f"model {m!r}: arrays of shape {sq[m].shape}/{sc[m].shape}, "
                                 f"expected {pq.shape} (align them on the policy's items)")
    if reference is not None and reference not in sq:
        raise WorkbenchError(f"reference model {reference!r} is not among the single models: "
                             f"{', '.join(models)}")
    mask = ~np.isnan(pq) & ~np.isnan(pc)
    for m in models:
        mask &= ~np.isnan(sq[m]) & ~np.isnan(sc[m])
    n = int(np.count_nonzero(mask))
    notes: list[str] = []
    if n == 0:
        raise WorkbenchError("no item is scored for the policy and every single model; "
                             "cannot pair them")
    if n < pq.size:
        notes.append(f"{pq.size - n} of {pq.size} items left out: unscored for the policy or "
                     "without an outcome for some single model")
    pq, pc = pq[mask], pc[mask]
    sq = {m: v[mask] for m, v in sq.items()}
    sc = {m: v[mask] for m, v in sc.items()}
    points = [Point(m, float(sq[m].mean()), float(sc[m].mean())) for m in models]
    frontier = hull(points)
    q_pol, c_pol = float(pq.mean()), float(pc.mean())
    by_name = {p.model: p for p in points}
    ref = reference or max(points, key=lambda p: (p.quality, -p.cost, p.model)).model

    mix = mix_at_cost(frontier, c_pol)
    mix_q = (1.0 - mix.weight) * sq[mix.lower] + mix.weight * sq[mix.upper]
    mix_note = "McNemar does not apply to the random mix (fractional per item): paired " \
               "bootstrap only; McNemar applies to the best single model"
    if c_pol < frontier[0].cost and not _close(c_pol, frontier[0].cost):
        mix_note += f"; the policy is cheaper than every model, compared with {mix.lower}"
    d_single, d_mix = pq - sq[ref], pq - mix_q
    (ci_single, ci_mix), method = paired_bootstrap([d_single, d_mix], n_boot=n_boot,
                                                   level=level, seed=seed)
    test = None
    single_note = ""
    if _binary(pq) and _binary(sq[ref]):
        test = mcnemar(pq, sq[ref])
    else:
        single_note = "McNemar needs 0/1 quality; these scores are fractional"
    best = Comparison(against=ref, quality=by_name[ref].quality, cost=by_name[ref].cost,
                      difference=float(d_single.mean()), ci=ci_single, mcnemar=test,
                      note=single_note)
    vs_mix = Comparison(against=f"random mix {mix.label}", quality=float(mix_q.mean()),
                        cost=mix.cost, difference=float(d_mix.mean()), ci=ci_mix, mcnemar=None,
                        note=mix_note)

    reaching = [p for p in points if p.quality >= q_pol or _close(p.quality, q_pol)]
    cheapest = min(reaching, key=lambda p: (p.cost, -p.quality)) if reaching else None
    ratio_single = _ratio(cheapest.cost, c_pol) if cheapest else None
    at_q = cost_at_quality(frontier, q_pol)
    ratio_mix = _ratio(at_q.cost, c_pol) if at_q else None

    pays = ci_mix[0] > 0.0
    pct = f"{level:.0%}"
    p_text = f", McNemar p={test.p_value:.3g} ({test.method})" if test else ""
    figures = (
        f"policy quality {q_pol:.3f} at ${c_pol:.6g}/request on {n} paired items; "
        f"vs a random mix {mix.label} at the same cost ({vs_mix.quality:.3f}): "
        f"{vs_mix.difference:+.3f}, {pct} CI {_fmt_ci(ci_mix)}; "
        f"vs the best single model {ref} ({best.quality:.3f} at ${best.cost:.6g}): "
        f"{best.difference:+.3f}, {pct} CI {_fmt_ci(ci_single)}{p_text}; "
        f"cost of equal quality: cheapest single model "
        f"{(cheapest.model + ' ') if cheapest else ''}{_fmt_ratio(ratio_single)}, "
        f"random mix {_fmt_ratio(ratio_mix)} the policy's cost"
    )
    if pays:
        message = (f"routing pays on this workload: {vs_mix.difference:+.3f} quality over a "
                   f"random mix at the same cost ({pct} CI {_fmt_ci(ci_mix)}); {figures}")
    elif ci_mix[1] < 0.0:
        message = ("routing does not pay on this workload: a random mix at the same cost does "
                   f"better ({vs_mix.difference:+.3f}, {pct} CI {_fmt_ci(ci_mix)}); {figures}")
    else:
        message = ("routing does not pay on this workload: the gain over a random mix at the "
                   f"same cost is inside the noise ({pct} CI {_fmt_ci(ci_mix)}); {figures}")
    return RoutingVerdict(
        pays=pays, message=message, n=n, policy_quality=q_pol, policy_cost=c_pol,
        best_single=best, random_mix=vs_mix, mix=mix, cost_ratio_single=ratio_single,
        single_at_quality=cheapest.model if cheapest else None, cost_ratio_mix=ratio_mix,
        mix_at_quality=at_q, frontier=tuple(frontier), singles=tuple(points), level=level,
        n_boot=n_boot, method=method, notes=tuple(notes),
    )


def describe(verdict: RoutingVerdict) -> list[str]:
    """The verdict as a few plain lines for a terminal: the answer first, then each figure."""
    v, pct = verdict, f"{verdict.level:.0%}"
    b, m = v.best_single, v.random_mix
    test = b.mcnemar
    mc = (f"McNemar p={test.p_value:.3g} ({test.method}; {test.policy_only} items only the "
          f"policy got right, {test.other_only} only {b.against})") if test else b.note
    single_at = (f"{v.single_at_quality} {_fmt_ratio(v.cost_ratio_single)}"
                 if v.single_at_quality else "none reaches it")
    lines = [
        ("routing PAYS on this workload" if v.pays else
         "routing does NOT pay on this workload"),
        f"  policy: quality {v.policy_quality:.4f} at ${v.policy_cost:.6g}/request "
        f"({v.n} paired items)",
        f"  vs best single model {b.against} ({b.quality:.4f} at ${b.cost:.6g}): "
        f"{b.difference:+.4f}, {pct} CI {_fmt_ci(b.ci)}; {mc}",
        f"  vs random mix {v.mix.label} at the same cost ({m.quality:.4f}): "
        f"{m.difference:+.4f}, {pct} CI {_fmt_ci(m.ci)} (paired bootstrap; McNemar applies "
        "to the best single model)",
        f"  cost of the policy's quality, as a multiple of its cost: cheapest single model "
        f"{single_at}; random mix {_fmt_ratio(v.cost_ratio_mix)}",
    ]
    lines += [f"  note: {n}" for n in v.notes]
    return lines


# -- from recorded outcomes -------------------------------------------------------------------
def routing_pays(
    policy_replay: Any,
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    *,
    reference: str | None = None,
    models: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> RoutingVerdict:
    """The verdict for a policy already replayed over `items` (a `workbench.replay`
    ReplayResult): each single model (`models`, default every model with outcomes) is replayed
    as a one-model policy over the items it has outcomes for, and all are paired with the
    policy's per-item trace by item id."""
    from workbench import replay as rp
    from workbench.policy import single

    trace = policy_replay.trace
    ids = trace["item_id"].cast(pl.String)
    base = pl.DataFrame({"item_id": ids})
    names = list(dict.fromkeys(models)) if models is not None else sorted(
        outcomes["model"].drop_nulls().unique().to_list())
    if not names:
        raise WorkbenchError("no single models with recorded outcomes to compare the policy with")
    known = set(outcomes["model"].drop_nulls().unique().to_list())
    unknown = [m for m in names if m not in known]
    if unknown:
        raise WorkbenchError(f"model(s) {', '.join(unknown)} have no recorded outcomes; "
                             f"models with outcomes: {', '.join(sorted(known)) or 'none'}")
    item_key = items.with_columns(pl.col("item_id").cast(pl.String).alias("_id"))
    out_key = outcomes.with_columns(pl.col("item_id").cast(pl.String))
    sq: dict[str, np.ndarray] = {}
    sc: dict[str, np.ndarray] = {}
    for m in names:
        own = out_key.filter(pl.col("model") == m)
        have = own["item_id"].unique()
        sub = item_key.filter(pl.col("_id").is_in(have.implode())).drop("_id")
        if sub.height == 0:
            continue
        t = rp.replay(single(m), sub, own, seed=seed, n_boot=1).trace
        aligned = base.join(
            t.select(pl.col("item_id").cast(pl.String), "quality", "cost_usd"),
            on="item_id", how="left")
        sq[m] = aligned["quality"].cast(pl.Float64).to_numpy()
        sc[m] = aligned["cost_usd"].cast(pl.Float64).to_numpy()
    if not sq:
        raise WorkbenchError("no single model has outcomes on the policy's items")
    if reference is not None and reference not in sq:
        reference = None
    return compare(
        trace["quality"].cast(pl.Float64).to_numpy(),
        trace["cost_usd"].cast(pl.Float64).to_numpy(),
        sq, sc, reference=reference, n_boot=n_boot, level=level, seed=seed,
    )


__all__ = [
    "EXACT_BELOW", "LEVEL", "N_BOOT", "Comparison", "McNemar", "Mix", "Point", "RoutingVerdict",
    "compare", "cost_at_quality", "describe", "hull", "mcnemar", "mcnemar_counts", "mix_at_cost",
    "paired_bootstrap", "routing_pays",
]
