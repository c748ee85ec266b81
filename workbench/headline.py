"""The headline answer: what share of the requests a cheaper model can take at >= Z% of the
strong model's quality, and what that saves per month.

Definition. Fix the strong model S, a target Z (e.g. 0.95) and a traffic weight per item
(uniform, or a what-if mix per slice). For a cheaper model C (mean cost per request below
S's) and a *routing rule* that a router can apply at request time, the rule's moved set M is
the largest share of traffic such that, on M, C's mean quality is at least Z times S's mean
quality on the same requests (paired: both models scored on the same items):

    sum_{i in M} w_i q_C(i)  >=  Z * sum_{i in M} w_i q_S(i).

The rest stays on S. Since S keeps its own quality on the rest, the routed mix also keeps at
least Z of S's overall quality. Rules (each chooses M from information a router has):
- `slices`: route whole slices of a slice column (tag = the item's first tag, data_class,
  difficulty, label, input-length bucket) to C. Slices are taken in order of C's margin
  q_C - Z q_S per unit of traffic, while the running margin stays >= 0 (the fractional-knapsack
  order: it maximises the moved share). Slices with fewer than `min_slice_items` items are never
  moved; a lucky tiny slice is not evidence.
- `everything`: all or nothing (the whole workload as one slice).
- `confidence`: a cascade. C answers every request and keeps the ones where its own
  confidence is at or above a threshold, the lowest threshold (largest share) for which the
  inequality holds over the kept requests; it costs C on every request plus S on the rest.
  Thresholds are at confidence quantiles (at most `CONFIDENCE_BINS` of them).

Y ("times cheaper") is S's mean cost per request over C's on the same (weighted) requests. The
monthly saving is N requests/day x 30 days x (S's cost per request - the routed cost per
request). For each model the rule with the largest saving is reported. The headline is the
model whose saving is largest at the lower end of its 95% interval (the saving a team can count
on), then by the point saving: a model that clears Z only just, and in half the resamples does
not, does not headline over one that clears it in every resample.

Intervals. Items are resampled (Poisson bootstrap: each item counted k ~ Poisson(1) times), and
in every replicate the rule's selection is redone, so the interval includes the noise of
choosing the slices or the threshold (not of choosing which rule). Replicates act on block
sums (a block is a slice or a confidence bin): disjoint blocks are independent under the
Poisson bootstrap, and a block's replicate sum has mean sum(u) and covariance sum(u u^T) over
its items' vectors u = w (1, q_C, q_S, c_C, c_S). Blocks of at least `NORMAL_MIN` items draw that
sum from the normal with those moments; smaller blocks draw the Poisson counts item by item.
These figures are in-sample: confirm a routing decision on a held-out split.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.metrics import json_ready
from workbench.slicing_stats import SLICE_COLUMNS, check_column

if TYPE_CHECKING:
    from workbench.report_data import Prepared

DAYS_PER_MONTH = 30
CONFIDENCE_BINS = 200
NORMAL_MIN = 50
LEVEL = 0.95
RULES = ("slices", "everything", "confidence")
# u = w * (1, q_cheap, q_strong, c_cheap, c_strong)
W, QC, QS, CC, CS = range(5)


@dataclass(frozen=True)
class HeadlineSettings:
    """What the user sets. `keep_quality` is Z as a fraction (0.95 = 95%); `requests_per_day`
    is N; `mix` maps slices of `mix_by` to relative traffic weights (slices not named get
    none); `route_by` limits the rule to one slice column or 'confidence' (None: try every
    available slice column, everything, and confidence)."""

    strong: str | None = None
    keep_quality: float = 0.95
    requests_per_day: float = 10_000.0
    route_by: str | None = None
    mix: Mapping[str, float] | None = None
    mix_by: str | None = None
    min_slice_items: int = 10
    n_boot: int = 1000
    seed: int = 0

    def validate(self) -> None:
        """One-line errors for values that cannot be right."""
        n = self.requests_per_day
        if isinstance(n, bool) or not isinstance(n, int | float) or not math.isfinite(n) or n <= 0:
            raise WorkbenchError(f"requests per day must be a positive number, got {n!r}")
        z = self.keep_quality
        if not isinstance(z, int | float) or not 0 < z <= 1:
            raise WorkbenchError(f"the quality to keep must be in (0, 100]%, got {z!r}")
        for name in ("n_boot", "min_slice_items"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise WorkbenchError(f"{name} must be a whole number >= 1, got {v!r}")
        if self.route_by is not None and self.route_by not in (*SLICE_COLUMNS, "confidence",
                                                               "everything"):
            raise WorkbenchError(
                f"unknown routing column {self.route_by!r}; choose one of "
                f"{', '.join((*SLICE_COLUMNS, 'confidence', 'everything'))}")
        if self.mix is not None:
            if self.mix_by is None:
                raise WorkbenchError("a traffic mix needs the slice column it is given over "
                                     "(mix_by / --mix-by)")
            check_column(self.mix_by)
            bad = {k: v for k, v in self.mix.items()
                   if isinstance(v, bool) or not isinstance(v, int | float)
                   or not math.isfinite(v) or v < 0}
            if bad:
                k, v = next(iter(bad.items()))
                raise WorkbenchError(f"traffic weight of slice {k!r} must be a number >= 0, "
                                     f"got {v!r}")
            if sum(self.mix.values()) <= 0:
                raise WorkbenchError("the traffic mix gives no slice any weight")


@dataclass(frozen=True)
class Option:
    """The best rule found for one cheaper model (see the module docstring). Shares and
    qualities are fractions of traffic; costs are USD per request; `*_ci` are 95% bootstrap
    intervals."""

    model: str
    rule: str
    route_by: str | None
    moved_slices: tuple[str, ...]
    confidence_threshold: float | None
    n_items: int
    share: float
    share_ci: tuple[float, float]
    cost_ratio: float
    quality_kept: float
    routed_quality: float
    routed_quality_ci: tuple[float, float]
    strong_quality: float
    cost_per_request: float
    strong_cost_per_request: float
    monthly_saving_usd: float
    monthly_saving_ci: tuple[float, float]
    rules_tried: tuple[str, ...] = field(default=())

    @property
    def rule_text(self) -> str:
        """How a router picks the moved requests, in words."""
        if self.rule == "confidence":
            if self.confidence_threshold is None or not math.isfinite(self.confidence_threshold):
                return "on every request" if self.share > 0 else "on no request"
            return f"when its confidence is >= {self.confidence_threshold:.3g} (cascade)"
        if self.rule == "everything":
            return "on every request" if self.share > 0 else "on no request"
        shown = ", ".join(self.moved_slices[:6]) + (" ..." if len(self.moved_slices) > 6 else "")
        return f"on {self.route_by} {shown}" if self.moved_slices else "on no slice"

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists, NaN and infinity become None)."""
        out = json_ready(self)
        out["rule_text"] = self.rule_text
        return out


def pick_strong(prep: Prepared) -> str:
    """The strong model by default: highest mean quality, then highest cost, then name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a model with no scored outcome
        q = np.nanmean(prep.Q, axis=0)
        c = np.nanmean(prep.C, axis=0)
    ranked = sorted((m for m in range(len(prep.models)) if np.isfinite(q[m])),
                    key=lambda m: (-q[m], -np.nan_to_num(c[m]), prep.models[m]))
    if not ranked:
        raise WorkbenchError("no scored outcomes: score the outputs before asking for a headline")
    return prep.models[ranked[0]]


def item_weights(prep: Prepared, settings: HeadlineSettings) -> np.ndarray:
    """Traffic weight per item: 1, or mix[slice] / items in the slice under a what-if mix
    (slices not named get 0). Raises on a slice of the mix the workload does not have."""
    if settings.mix is None:
        return np.ones(prep.n_items)
    assert settings.mix_by is not None
    sc = prep.codes(settings.mix_by)
    if not sc.single:
        raise WorkbenchError(f"a traffic mix needs one slice per item; {settings.mix_by} gives "
                             "some items several (use a single-valued column)")
    unknown = [k for k in settings.mix if k not in sc.names]
    if unknown:
        raise WorkbenchError(
            f"traffic mix names {settings.mix_by} slice {unknown[0]!r}, which the workload does "
            f"not have; it has {', '.join(sc.names[:12])}")
    total = sum(settings.mix.values())
    share = np.array([settings.mix.get(name, 0.0) / total for name in sc.names])
    counts = np.bincount(sc.codes, minlength=len(sc.names))
    w = np.zeros(prep.n_items)
    w[sc.rows] = share[sc.codes] / counts[sc.codes]
    return w


@dataclass(frozen=True)
class _Blocks:
    """Items grouped into the blocks a rule moves whole (in the rule's order for confidence)."""

    names: tuple[str, ...]
    n: np.ndarray  # items per block
    sums: np.ndarray  # (blocks, 5) sum of u
    block_of: np.ndarray  # block index per item
    u: np.ndarray  # (items, 5)
    ordered: bool  # confidence: the order is fixed (descending confidence)
    thresholds: np.ndarray | None  # confidence: lowest confidence of each block


def _blocks(u: np.ndarray, block_of: np.ndarray, names: Sequence[str], ordered: bool,
            thresholds: np.ndarray | None = None) -> _Blocks:
    nb = len(names)
    sums = np.column_stack([np.bincount(block_of, u[:, j], minlength=nb) for j in range(5)])
    n = np.bincount(block_of, minlength=nb)
    return _Blocks(tuple(names), n, sums, block_of, u, ordered, thresholds)


def select(sums: np.ndarray, n: np.ndarray, z: float, ordered: bool, min_items: int
           ) -> np.ndarray:
    """Moved-block mask (…, blocks) for block sums `sums` (…, blocks, 5): the largest prefix
    (in confidence order, or by margin per unit of traffic) whose running margin
    sum(q_C) - z sum(q_S) stays >= 0. Vectorized over leading replicate axes."""
    margin = sums[..., QC] - z * sums[..., QS]
    weight = sums[..., W]
    eligible = np.broadcast_to(n >= (0 if ordered else min_items), margin.shape)
    if not ordered:  # a slice without traffic (not in the what-if mix) is never listed as moved
        eligible = eligible & (weight > 0)
    if ordered:
        order = np.broadcast_to(np.arange(margin.shape[-1]), margin.shape)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            per_unit = np.where(weight > 0, margin / weight, -np.inf)
        per_unit = np.where(eligible, per_unit, -np.inf)
        order = np.argsort(-per_unit, axis=-1, kind="stable")
    m_sorted = np.take_along_axis(np.where(eligible, margin, -np.inf), order, axis=-1)
    csum = np.cumsum(m_sorted, axis=-1)
    with np.errstate(invalid="ignore"):  # -inf marks a block that may not move
        ok = np.isfinite(csum) & (csum >= -1e-12 * np.maximum(1.0, np.abs(csum)))
    # largest prefix length k with csum[k-1] >= 0 (0 when none)
    idx = np.arange(1, margin.shape[-1] + 1)
    k = np.max(np.where(ok, idx, 0), axis=-1, keepdims=True)
    moved_sorted = idx <= k
    moved = np.zeros(margin.shape, dtype=bool)
    np.put_along_axis(moved, order, moved_sorted, axis=-1)
    return moved


def figures(sums: np.ndarray, moved: np.ndarray, cascade: bool, n_per_month: float
            ) -> dict[str, np.ndarray]:
    """Share, routed quality and cost, strong quality and cost, kept quality and monthly
    saving from block sums and the moved mask (vectorized over replicate axes)."""
    tot = sums.sum(axis=-2)
    mv = (sums * moved[..., None]).sum(axis=-2)
    rest = tot - mv
    with np.errstate(divide="ignore", invalid="ignore"):
        share = mv[..., W] / tot[..., W]
        routed_q = (mv[..., QC] + rest[..., QS]) / tot[..., W]
        strong_q = tot[..., QS] / tot[..., W]
        routed_c = ((tot[..., CC] if cascade else mv[..., CC]) + rest[..., CS]) / tot[..., W]
        strong_c = tot[..., CS] / tot[..., W]
        kept = mv[..., QC] / mv[..., QS]
        ratio = tot[..., CS] / tot[..., CC]
    return {"share": share, "routed_quality": routed_q, "strong_quality": strong_q,
            "cost_per_request": routed_c, "strong_cost_per_request": strong_c,
            "quality_kept": kept, "cost_ratio": ratio,
            "monthly_saving_usd": n_per_month * (strong_c - routed_c)}


def replicate_sums(blocks: _Blocks, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, blocks, 5) Poisson-bootstrap block sums: normal with the exact moments for
    blocks of >= NORMAL_MIN items, item-level Poisson counts for smaller blocks."""
    nb = len(blocks.names)
    out = np.empty((n_boot, nb, 5))
    big = blocks.n >= NORMAL_MIN
    if big.any():
        bi = np.flatnonzero(big)
        second = np.zeros((nb, 5, 5))
        for j in range(5):  # sum of u u^T per block, by bincount (vectorized over items)
            for k in range(j, 5):
                second[:, j, k] = second[:, k, j] = np.bincount(
                    blocks.block_of, blocks.u[:, j] * blocks.u[:, k], minlength=nb)
        vals, vecs = np.linalg.eigh(second[bi])
        root = vecs * np.sqrt(np.clip(vals, 0.0, None))[:, None, :]
        z = rng.standard_normal((n_boot, bi.size, 5))
        # per block: (n_boot x 5) @ root^T, one batched matmul over blocks
        draw = (z.transpose(1, 0, 2) @ root.transpose(0, 2, 1)).transpose(1, 0, 2)
        out[:, bi, :] = blocks.sums[bi] + draw
    if (~big).any():
        small_items = np.flatnonzero(~big[blocks.block_of])
        counts = rng.poisson(1.0, (n_boot, small_items.size)).astype(np.float64)
        out[:, ~big, :] = 0.0
        order = np.argsort(blocks.block_of[small_items], kind="stable")
        sub_block = blocks.block_of[small_items][order]
        counts, u_small = counts[:, order], blocks.u[small_items][order]
        starts = np.flatnonzero(np.r_[True, sub_block[1:] != sub_block[:-1]])
        ends = np.r_[starts[1:], sub_block.size]
        for a, e in zip(starts, ends, strict=True):  # one small matmul per small block
            out[:, sub_block[a], :] = counts[:, a:e] @ u_small[a:e]
    return out


def _candidate_blocks(rule: str, column: str | None, prep: Prepared, paired: np.ndarray,
                      conf: np.ndarray, u: np.ndarray) -> _Blocks | None:
    """Blocks of one rule over the paired items (None when the rule does not apply)."""
    n = u.shape[0]
    if rule == "everything":
        return _Blocks(("(all)",), np.array([n]), u.sum(axis=0)[None, :],
                       np.zeros(n, dtype=np.int64), u, ordered=False, thresholds=None)
    if rule == "confidence":
        if np.isnan(conf).mean() > 0.05:
            return None
        conf = np.nan_to_num(conf, nan=-np.inf)
        uniq = np.unique(conf)[::-1]  # descending
        if uniq.size > CONFIDENCE_BINS:
            edges = np.unique(np.quantile(conf, np.linspace(0, 1, CONFIDENCE_BINS + 1)[1:-1],
                                          method="lower"))[::-1]
            uniq = np.concatenate([edges, [conf.min()]]) if conf.min() < edges[-1] else edges
        # block b holds confidences in [uniq[b], uniq[b-1]): the highest cut <= conf
        block_of = np.searchsorted(-uniq, -conf, side="left")
        return _blocks(u, block_of, [f">={t:.4g}" for t in uniq], ordered=True, thresholds=uniq)
    assert column is not None
    sc = prep.codes(column)
    block_of = sc.first()[paired]
    if np.count_nonzero(np.bincount(block_of, minlength=len(sc.names))) < 2:
        return None
    return _blocks(u, block_of, list(sc.names), ordered=False)


def cheaper_options(items: pl.DataFrame, outcomes: pl.DataFrame, settings: HeadlineSettings,
                    *, columns: Sequence[str] | None = None) -> tuple[str, list[Option]]:
    """(strong model, one Option per cheaper model: the rule with the largest monthly saving,
    with bootstrap intervals), best first (the lower end of the saving's interval, then the
    point saving). `columns`: the slice
    columns to try when `settings.route_by` is None (default: every slice column)."""
    from workbench.report_data import prepare

    settings.validate()
    return cheaper_options_prepared(prepare(items, outcomes), settings, columns=columns)


def cheaper_options_prepared(prep: Prepared, settings: HeadlineSettings, *,
                             columns: Sequence[str] | None = None
                             ) -> tuple[str, list[Option]]:
    """`cheaper_options` on prepared arrays."""
    settings.validate()
    models = list(prep.models)
    strong = settings.strong or pick_strong(prep)
    if strong not in models:
        raise WorkbenchError(f"strong model {strong!r} has no outcomes on this workload; it has "
                             f"{', '.join(models)}")
    s = models.index(strong)
    weights = item_weights(prep, settings)
    per_month = settings.requests_per_day * DAYS_PER_MONTH
    rng = np.random.default_rng(settings.seed)
    if settings.route_by is None:
        rules = [("everything", None), ("confidence", None)] + [
            ("slices", c) for c in (columns if columns is not None else SLICE_COLUMNS)]
    elif settings.route_by in ("confidence", "everything"):
        rules = [(settings.route_by, None)]
    else:
        rules = [("slices", settings.route_by)]
    options = []
    for j, model in enumerate(models):
        if j == s:
            continue
        paired = ~np.isnan(prep.Q[:, j]) & ~np.isnan(prep.Q[:, s])
        w = weights[paired]
        if w.size == 0 or w.sum() <= 0:
            continue
        w = w / w.sum()
        u = w[:, None] * np.column_stack([
            np.ones(w.size), prep.Q[paired, j], prep.Q[paired, s],
            np.nan_to_num(prep.C[paired, j]), np.nan_to_num(prep.C[paired, s])])
        if u[:, CC].sum() >= u[:, CS].sum():
            continue  # not cheaper on these requests
        best = None
        for rule, column in rules:
            blocks = _candidate_blocks(rule, column, prep, paired, prep.K[paired, j], u)
            if blocks is None:
                continue
            moved = select(blocks.sums, blocks.n, settings.keep_quality, blocks.ordered,
                           settings.min_slice_items)
            if rule == "slices" and moved[blocks.n > 0].all():
                continue  # the same as "everything", which is simpler to state and to run
            fig = figures(blocks.sums, moved, rule == "confidence", per_month)
            key = (float(fig["monthly_saving_usd"]), float(fig["share"]))
            if best is None or better_option(key, best[0]):
                best = (key, rule, column, blocks, moved, fig)
        if best is None:
            continue
        _, rule, column, blocks, moved, fig = best
        reps = replicate_sums(blocks, settings.n_boot, rng)
        rmoved = select(reps, blocks.n, settings.keep_quality, blocks.ordered,
                        settings.min_slice_items)
        rfig = figures(reps, rmoved, rule == "confidence", per_month)
        threshold = None
        if rule == "confidence" and moved.any():
            assert blocks.thresholds is not None
            threshold = float(blocks.thresholds[np.flatnonzero(moved).max()])
        options.append(Option(
            model=model, rule=rule, route_by=column,
            moved_slices=tuple(n for n, m in zip(blocks.names, moved, strict=True) if m)
            if rule == "slices" else (),
            confidence_threshold=threshold, n_items=int(paired.sum()),
            share=float(fig["share"]), share_ci=_ci(rfig["share"]),
            cost_ratio=float(fig["cost_ratio"]), quality_kept=float(fig["quality_kept"]),
            routed_quality=float(fig["routed_quality"]),
            routed_quality_ci=_ci(rfig["routed_quality"]),
            strong_quality=float(fig["strong_quality"]),
            cost_per_request=float(fig["cost_per_request"]),
            strong_cost_per_request=float(fig["strong_cost_per_request"]),
            monthly_saving_usd=float(fig["monthly_saving_usd"]),
            monthly_saving_ci=_ci(rfig["monthly_saving_usd"]),
            rules_tried=tuple(f"{r}:{c}" if c else r for r, c in rules),
        ))
    options.sort(key=_rank)
    return strong, options


def _rank(o: Option) -> tuple[float, float, float, str]:
    """Order of the options: the lower end of the saving's interval, then the point saving."""
    lo = o.monthly_saving_ci[0]
    return (-(lo if math.isfinite(lo) else -math.inf), -o.monthly_saving_usd, -o.share, o.model)


def better_option(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether (saving, share) `a` beats `b` by more than float noise (earlier, simpler rules
    win ties)."""
    for x, y in zip(a, b, strict=True):
        if abs(x - y) > 1e-9 * max(1.0, abs(x), abs(y)):
            return x > y
    return False


def _ci(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(x, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return (float(lo), float(hi))


def sentence(strong: str, option: Option | None, settings: HeadlineSettings) -> str:
    """The headline in words (the figures of `option`, or why there is none)."""
    z = f"{settings.keep_quality:.0%}"
    n = f"{settings.requests_per_day:,.0f}"
    if option is None or option.share <= 0:
        return (f"No cheaper model keeps >= {z} of {strong}'s quality on any share of the "
                "requests a router can pick out; keep everything on it.")
    ratio = ("at no per-call cost" if not math.isfinite(option.cost_ratio)
             else f"{option.cost_ratio:.1f}x cheaper than {strong}")
    lo, hi = option.share_ci
    s_lo, s_hi = option.monthly_saving_ci
    return (f"{option.share:.0%} of requests (95% CI {lo:.0%}-{hi:.0%}) can be answered by "
            f"{option.model}, {ratio}, {option.rule_text}, at >= {z} of its quality "
            f"(kept {option.quality_kept:.1%}); at {n} requests per day that saves "
            f"${option.monthly_saving_usd:,.0f} per month (95% CI ${s_lo:,.0f}-${s_hi:,.0f}).")
