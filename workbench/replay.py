"""Replay a routing policy over recorded outcomes, vectorized (no model calls, no item loop).

Outcomes are scattered once per (items, outcomes) pair into item x model matrices; governance
detections, refusal masks, verifier results and learned-router predictions are cached with
them, so a threshold change re-runs only the cascade math (a handful of numpy passes).

Decision rules, in pipeline order (tests/reference_replay.py states the same per item):
1. Governance: an item in a data class may only reach the models the class allows (all its
   classes' sets intersected). No allowed tier -> refused ("governance").
2. Refusal: a deny pattern matches -> "deny_pattern"; ceil(chars / chars_per_token) >
   max_input_tokens -> "max_input_tokens".
3. Pre-routing picks the entry tier: rules score < preroute_below -> the strong (last) tier;
   learned -> the allowed tier maximising predicted success - cost_weight x mean cost (ties to
   the cheaper). Entry tier not allowed -> the next allowed tier up, else the first allowed.
4. Cascade over allowed tiers from the entry tier: a tier's answer is accepted when it has no
   error, its verifier passes and its confidence >= accept_above; the last tier reached always
   answers. Confidence "auto" = recorded confidence, else the learned router's predicted
   success (when the policy has a router), else the verifier (pass 1, fail 0).
5. Fallback: when a tier errors and the fallback model is allowed (and affordable), the
   fallback answers and the item stops; otherwise the error escalates like a rejection. An
   error on the final answer counts as quality 0.
6. Budgets: a tier is attempted only while the recorded cost so far plus its own stays within
   max_cost_per_request (no tier affordable -> refused "max_cost_per_request"). When more than
   floor(max_strong_share x n) items reach the strong tier, those with the lowest cheap-tier
   confidence keep it (ties: item order); the others run again without pre-routing and without
   the strong tier (refused "max_strong_share" when nothing else is allowed). The cheap-tier
   confidence of an item that did not try the cheap tier is its pre-route score (rules), the
   router's predicted success of the cheap tier (learned), or 0. Ignored with a single tier.
Every attempted tier is paid for and its latency adds up. Quality of an unscored answer (null)
is left out of the quality mean; refusals and errors count 0 (see workbench.metrics).
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from workbench import governance as gov
from workbench.errors import PolicyError, WorkbenchError
from workbench.metrics import N_BOOT, Metrics, aggregate
from workbench.policy import LearnedPreroute, Policy, RulesPreroute, single
from workbench.verifiers import CODE_FENCE_CLOSE, CODE_FENCE_OPEN, ESCAPED_WS, LABEL_STRIP

REFUSAL_REASONS = (
    "governance", "deny_pattern", "max_input_tokens", "max_cost_per_request", "max_strong_share",
)
_GOV, _DENY, _TOKENS, _BUDGET, _STRONG = 1, 2, 3, 4, 5
TRACE_COLUMNS = (
    "item_id", "models_tried", "answered_by", "refused", "refusal_reason", "governance_block",
    "quality", "cost_usd", "latency_ms", "escalated", "error", "reached_strong",
)


class MissingOutcomesError(WorkbenchError):
    """Items lack recorded outcomes for a model the policy may call."""


# -- per-workload cache ------------------------------------------------------------------
class Workload:
    """Items and outcomes scattered into item x model matrices, plus memoised derived masks.

    Built once per (items, outcomes) frame pair and reused while both frames are the same
    objects; treat the arrays as read-only.
    """

    def __init__(self, items: pl.DataFrame, outcomes: pl.DataFrame) -> None:
        for col in ("item_id", "input"):
            if col not in items.columns:
                raise WorkbenchError(f"items frame has no {col!r} column")
        for col in ("item_id", "model", "quality", "cost_usd"):
            if col not in outcomes.columns:
                raise WorkbenchError(f"outcomes frame has no {col!r} column")
        self.items = items
        self.outcomes = outcomes
        self.n = items.height
        if self.n == 0:
            raise WorkbenchError("no items to replay")
        ids = items["item_id"].cast(pl.String)
        if ids.is_duplicated().any():
            dupes = ids.filter(ids.is_duplicated()).unique().head(5).to_list()
            raise WorkbenchError(f"duplicate item ids in the items frame: {dupes}")
        self.item_ids = ids
        self.models: tuple[str, ...] = tuple(sorted(outcomes["model"].unique().drop_nulls()))
        self.col = {m: j for j, m in enumerate(self.models)}
        self.memo: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self._scatter()

    def _scatter(self) -> None:
        n, m = self.n, len(self.models)
        index = pl.DataFrame({"item_id": self.item_ids, "_row": np.arange(n, dtype=np.int64)})
        o = self.outcomes
        extra = [c for c in ("latency_ms", "error", "confidence") if c in o.columns]
        joined = (
            o.select("item_id", "model", "quality", "cost_usd", *extra)
            .with_columns(pl.col("item_id").cast(pl.String))
            .join(index, on="item_id", how="inner")
            .with_columns(pl.col("model").cast(pl.Enum(self.models)).to_physical().alias("_col"))
        )
        rows = joined["_row"].to_numpy()
        cols = joined["_col"].to_numpy().astype(np.int64)
        self.joined_rows, self.joined_cols = rows, cols

        def mat(values: np.ndarray, fill: float) -> np.ndarray:
            out = np.full((n, m), fill, dtype=np.float64)
            out[rows, cols] = values
            out.setflags(write=False)
            return out

        def num(name: str) -> np.ndarray:
            if name not in joined.columns:
                return np.full(joined.height, np.nan)
            return joined[name].cast(pl.Float64).to_numpy()

        self.quality = mat(num("quality"), np.nan)
        self.cost = mat(np.nan_to_num(num("cost_usd"), nan=0.0), 0.0)
        self.latency = mat(num("latency_ms"), np.nan)
        self.confidence = mat(num("confidence"), np.nan)
        err = (
            joined["error"].is_not_null().to_numpy() if "error" in joined.columns
            else np.zeros(joined.height, dtype=bool)
        )
        self.error = np.zeros((n, m), dtype=bool)
        self.error[rows, cols] = err
        self.has = np.zeros((n, m), dtype=bool)
        self.has[rows, cols] = True
        for a in (self.error, self.has):
            a.setflags(write=False)

    def cached(self, key: Any, compute: Any) -> Any:
        """Memoise a derived array under `key`."""
        try:
            return self.memo[key]
        except KeyError:
            value = compute()
            with self._lock:
                self.memo[key] = value
            return value

    def col_of(self, what: str, model: str) -> np.ndarray:
        """One model's column of a matrix ('quality', 'cost', 'latency', 'confidence',
        'error', 'has') as a contiguous read-only vector (cached)."""

        def compute() -> np.ndarray:
            col = np.ascontiguousarray(getattr(self, what)[:, self.col[model]])
            col.setflags(write=False)
            return col

        return self.cached(("col", what, model), compute)

    def has_col(self, model: str) -> np.ndarray:
        """Whether each item has an outcome for `model`."""
        return self.col_of("has", model)

    # -- item-level masks (cached) --------------------------------------------------------
    def texts(self) -> pl.Series:
        return self.cached("texts", lambda: self.items["input"].cast(pl.String).fill_null(""))

    def chars(self) -> np.ndarray:
        return self.cached("chars", lambda: self.texts().str.len_chars().to_numpy())

    def detector(self, name: str) -> np.ndarray:
        return self.cached(("detector", name), lambda: gov.detect(self.texts(), name))

    def pattern(self, pattern: str) -> np.ndarray:
        return self.cached(("pattern", pattern), lambda: gov.pattern_mask(self.texts(), pattern))

    def tag(self, tag: str) -> np.ndarray:
        return self.cached(("tag", tag), lambda: gov.tag_mask(self.items, tag))

    def keyword(self, word: str) -> np.ndarray:
        lower = self.cached("lower", lambda: self.texts().str.to_lowercase())
        return self.cached(
            ("keyword", word),
            lambda: lower.str.contains(word.lower(), literal=True).to_numpy(),
        )

    def verifier(self, model: str, kind: str, labels: tuple[str, ...]) -> np.ndarray:
        """Verifier pass per item for one model's recorded output (False without output)."""
        return self.cached(("verifier", model, kind, labels),
                           lambda: self._verify(model, kind, labels))

    def _verify(self, model: str, kind: str, labels: tuple[str, ...]) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        j = self.col[model]
        if kind == "none":
            out[:] = self.has[:, j]
            return out
        if "output" not in self.outcomes.columns:
            return out
        frame = (
            self.outcomes.filter(pl.col("model") == model)
            .select(pl.col("item_id").cast(pl.String), pl.col("output").cast(pl.String))
            .join(
                pl.DataFrame({"item_id": self.item_ids, "_row": np.arange(self.n)}),
                on="item_id",
            )
        )
        rows = frame["_row"].to_numpy()
        text = frame["output"].fill_null("")
        if kind == "number":
            ok = text.str.contains("[0-9]").to_numpy()
        elif kind == "json":
            ok = gov_json_valid(text)
        elif kind == "valid_label":
            norm = (text.str.replace_all(ESCAPED_WS, " ").str.strip_chars(LABEL_STRIP)
                    .str.to_lowercase())
            item_labels = self.item_labels().gather(rows)
            fallback = [lab.strip(LABEL_STRIP).lower() for lab in labels]
            chk = pl.DataFrame({"out": norm, "labels": item_labels}).select(
                pl.when(pl.col("labels").list.len() > 0)
                .then(pl.col("labels").list.contains(pl.col("out")))
                .otherwise(pl.col("out").is_in(fallback))
                .fill_null(False)
            )
            ok = chk.to_series().to_numpy()
        else:
            raise PolicyError(f"unknown verifier {kind!r}")
        out[rows] = ok
        return out

    def item_labels(self) -> pl.Series:
        def compute() -> pl.Series:
            if "labels" not in self.items.columns:
                return pl.Series("labels", [None] * self.n, dtype=pl.List(pl.String))
            return self.items.select(
                pl.col("labels").cast(pl.List(pl.String))
                .list.eval(pl.element().str.strip_chars(LABEL_STRIP).str.to_lowercase())
                .fill_null([])
            ).to_series()

        return self.cached("labels", compute)




def gov_json_valid(text: pl.Series) -> np.ndarray:
    """JSON verifier: after stripping a Markdown code fence, the output is a valid JSON object
    or array (checked by DuckDB's json_valid, vectorized)."""
    import duckdb

    stripped = (
        text.str.strip_chars()
        .str.replace(CODE_FENCE_OPEN, "")
        .str.replace(CODE_FENCE_CLOSE, "")
        .str.strip_chars()
    )
    frame = pl.DataFrame({"t": stripped}).to_arrow()
    con = duckdb.connect()
    try:
        con.register("_outputs", frame)
        res = con.execute(
            "SELECT coalesce(json_valid(t) AND (left(t, 1) IN ('{', '[')), false) FROM _outputs"
        ).fetchnumpy()
    finally:
        con.close()
    return np.asarray(next(iter(res.values())), dtype=bool)


_SLOTS: OrderedDict[tuple[int, int], Workload] = OrderedDict()
_SLOTS_LOCK = threading.Lock()
MAX_CACHED_WORKLOADS = 4


def prepare(items: pl.DataFrame, outcomes: pl.DataFrame) -> Workload:
    """The cached Workload for these two frames (built on first use; LRU of a few)."""
    key = (id(items), id(outcomes))
    with _SLOTS_LOCK:
        slot = _SLOTS.get(key)
        if slot is not None and slot.items is items and slot.outcomes is outcomes:
            _SLOTS.move_to_end(key)
            return slot
    slot = Workload(items, outcomes)
    with _SLOTS_LOCK:
        _SLOTS[key] = slot
        while len(_SLOTS) > MAX_CACHED_WORKLOADS:
            _SLOTS.popitem(last=False)
    return slot


def clear_cache() -> None:
    """Forget cached workloads (frees memory; the next replay recomputes detections)."""
    with _SLOTS_LOCK:
        _SLOTS.clear()


# -- result ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayResult:
    """Outcome of replaying a policy: metrics now; decision trace and baselines on first use."""

    policy: Policy
    metrics: Metrics
    _workload: Workload = field(repr=False, compare=False)
    _arrays: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    _context: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @functools.cached_property
    def trace(self) -> pl.DataFrame:
        """Per-item decisions: TRACE_COLUMNS (models_tried as 'a>b>fallback:c')."""
        return _build_trace(self.policy, self._workload, self._arrays)

    @functools.cached_property
    def baselines(self) -> dict[str, Metrics]:
        """Each single model ('single:<model>'), 'random' at the same strong share, 'oracle'."""
        return baselines(
            self._workload,
            strong_share=self.metrics.strong_share,
            cheap=self.policy.tier_models[0],
            strong=self.policy.tier_models[-1],
            seed=self._context.get("seed", 0),
            n_boot=self._context.get("n_boot", N_BOOT),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready metrics dict (the `workbench evaluate --json` keys)."""
        return self.metrics.as_dict()


# -- the cascade kernel ------------------------------------------------------------------
def _cascade(
    avail: list[np.ndarray],
    ok: list[np.ndarray],
    err: list[np.ndarray],
    cost: list[np.ndarray],
    cap: float | None,
    fb_ok: np.ndarray | None,
    fb_cost: np.ndarray | None,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Vectorized cascade, one pass per tier over item vectors: returns (attempted per tier,
    answering tier (-1 none), fallback used, refused for budget)."""
    k = len(avail)
    n = avail[0].size
    spent = np.zeros(n)
    eff: list[np.ndarray] = []
    fb_usable: list[np.ndarray | None] = []
    last = np.full(n, -1, dtype=np.int8)
    for t in range(k):
        spent = spent + np.where(avail[t], cost[t], 0.0) if cap is not None else spent
        e = avail[t] & (spent <= cap) if cap is not None else avail[t]
        eff.append(e)
        last[e] = t
        if fb_ok is None or fb_cost is None:
            fb_usable.append(None)
        elif cap is None:
            fb_usable.append(fb_ok)
        else:
            fb_usable.append(fb_ok & (spent + fb_cost <= cap))
    stopped = np.zeros(n, dtype=bool)
    first = np.full(n, -1, dtype=np.int8)
    use_fb = np.zeros(n, dtype=bool)
    attempted: list[np.ndarray] = []
    for t in range(k):
        cand = eff[t] & ~stopped
        attempted.append(cand)
        fbu = fb_usable[t]
        to_fb = err[t] & fbu if fbu is not None else None
        stop_reason = ok[t] | (last == t)
        if to_fb is not None:
            stop_reason |= to_fb
            use_fb |= cand & to_fb
        stop = cand & stop_reason
        first[stop] = t
        stopped |= stop
    any_avail = avail[0].copy()
    for t in range(1, k):
        any_avail |= avail[t]
    budget_refused = (last < 0) & any_avail
    return attempted, first, use_fb, budget_refused


def _keep_lowest(key: np.ndarray, limit: int) -> np.ndarray:
    """Mask of the `limit` smallest keys, ties broken by position (O(n), no full sort)."""
    keep = np.zeros(key.size, dtype=bool)
    if limit <= 0:
        return keep
    if limit >= key.size:
        keep[:] = True
        return keep
    thr = np.partition(key, limit - 1)[limit - 1]
    keep = key < thr
    need = limit - int(keep.sum())
    keep[np.flatnonzero(key == thr)[:need]] = True
    return keep


@dataclass(frozen=True)
class _Gate:
    """Governance and refusal outcome per item (cached per policy gate configuration)."""

    allowed: list[np.ndarray]  # per used model
    class_bits: np.ndarray
    reason: np.ndarray
    active: np.ndarray


def _gate(policy: Policy, wl: Workload) -> _Gate:
    used = policy.used_models
    key = ("gate", policy.governance.model_dump_json(), policy.refusal.model_dump_json(),
           used, len(policy.tiers))

    def compute() -> _Gate:
        n, k = wl.n, len(policy.tiers)
        allowed = [np.ones(n, dtype=bool) for _ in used]
        class_bits = np.zeros(n, dtype=np.int64)
        for r, rule in enumerate(policy.governance.rules):
            det = _rule_mask(wl, rule)
            ok_models = policy.allowed_for(rule)
            for j, m in enumerate(used):
                if m not in ok_models:
                    allowed[j] = allowed[j] & ~det
            class_bits |= det.astype(np.int64) << r
        any_tier = np.zeros(n, dtype=bool)
        for t in range(k):
            any_tier |= allowed[t]
        reason = np.zeros(n, dtype=np.int8)
        reason[~any_tier] = _GOV
        deny = np.zeros(n, dtype=bool)
        for pattern in policy.refusal.deny_patterns:
            deny |= wl.pattern(pattern)
        reason[(reason == 0) & deny] = _DENY
        if policy.refusal.max_input_tokens is not None:
            tokens = np.ceil(wl.chars() / policy.refusal.chars_per_token)
            reason[(reason == 0) & (tokens > policy.refusal.max_input_tokens)] = _TOKENS
        active = reason == 0
        missing = [allowed[j] & active & ~wl.has_col(m) for j, m in enumerate(used)]
        if any(mm.any() for mm in missing):
            raise _missing_error(wl, used, np.column_stack(missing))
        for a in (*allowed, class_bits, reason, active):
            a.setflags(write=False)
        return _Gate(allowed, class_bits, reason, active)

    return wl.cached(key, compute)


def _tier_confidence(policy: Policy, wl: Workload, t: int,
                     preds: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, no-error-and-verifier-pass) of tier t (cached; thresholds not involved)."""
    tier = policy.tiers[t]
    use_router = preds is not None and tier.confidence in ("auto", "router")
    key = ("conf", tier.model, tier.confidence, tier.verifier, tier.labels,
           id(preds[0]) if use_router and preds is not None else None, t if use_router else -1)

    def compute() -> tuple[np.ndarray, np.ndarray]:
        ver = wl.verifier(tier.model, tier.verifier, tier.labels)
        recorded = wl.col_of("confidence", tier.model)
        if tier.confidence == "recorded":
            c = recorded
        elif tier.confidence == "verifier":
            c = ver.astype(np.float64)
        elif tier.confidence == "router":
            assert preds is not None
            c = np.ascontiguousarray(preds[0][:, t])
        else:
            fill = (np.ascontiguousarray(preds[0][:, t]) if preds is not None
                    else ver.astype(np.float64))
            c = np.where(np.isnan(recorded), fill, recorded)
        passing = ~wl.col_of("error", tier.model) & ver
        return c, passing

    if use_router:  # cheap, and router predictions change between calls
        return compute()
    return wl.cached(key, compute)


def replay(
    policy: Policy,
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    *,
    router: Any = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> ReplayResult:
    """Evaluate `policy` over recorded `outcomes` of `items` (see the module docstring).

    `router`: a fitted `LearnedRouter` or a predictions frame (item_id + one column per model)
    for policies with a learned router; when None, out-of-fold predictions are cross-fitted on
    these items so no item is scored by a router trained on it. The decision trace is built
    on first access of `.trace`; metrics are computed from arrays straight away.
    """
    wl = prepare(items, outcomes)
    n = wl.n
    tiers = policy.tiers
    k = len(tiers)
    used = policy.used_models
    missing_models = [m for m in used if m not in wl.col]
    if missing_models:
        raise MissingOutcomesError(
            f"no recorded outcomes at all for model(s) {', '.join(missing_models)} used by the "
            f"policy; models with outcomes: {', '.join(wl.models) or 'none'}"
        )
    gate = _gate(policy, wl)
    reason = gate.reason.copy()
    preds = _predictions(policy, wl, router, seed) if policy.uses_router() else None
    conf: list[np.ndarray] = []
    ok: list[np.ndarray] = []
    for t, tier in enumerate(tiers):
        c, passing = _tier_confidence(policy, wl, t, preds)
        conf.append(c)
        ok.append(passing & (c >= tier.accept_above))
    err = [wl.col_of("error", m) for m in policy.tier_models]
    cost = [wl.col_of("cost", m) for m in policy.tier_models]

    # pre-routing: entry tier per item
    start: np.ndarray | None = None
    prekey: np.ndarray | None = None
    pre = policy.preroute
    if isinstance(pre, RulesPreroute):
        score = rules_score(wl, pre)
        start = np.where(score < pre.preroute_below, k - 1, 0)
        prekey = score
    elif isinstance(pre, LearnedPreroute):
        assert preds is not None
        p, mean_cost = preds
        value = p - pre.cost_weight * mean_cost[None, :]
        value = np.where(np.column_stack(gate.allowed[:k]), value, -np.inf)
        start = np.argmax(value, axis=1)
        prekey = p[:, 0]
    if start is None:
        avail = [gate.allowed[t] & gate.active for t in range(k)]
    else:
        avail = [gate.allowed[t] & (start <= t) for t in range(k)]
        none_after = ~np.logical_or.reduce(avail) if k > 1 else ~avail[0]
        avail = [(a | (none_after & gate.allowed[t])) & gate.active
                 for t, a in enumerate(avail)]

    cap = policy.budgets.max_cost_per_request
    fb_ok = fb_cost = None
    if policy.fallback is not None:
        fb_ok = gate.allowed[used.index(policy.fallback)]
        fb_cost = wl.col_of("cost", policy.fallback)
    attempted, first, use_fb, budget_refused = _cascade(avail, ok, err, cost, cap, fb_ok, fb_cost)
    reason[budget_refused] = _BUDGET

    share = policy.budgets.max_strong_share
    if k >= 2 and share is not None:
        reach = attempted[k - 1]
        limit = int(math.floor(share * n + 1e-9))
        if int(np.count_nonzero(reach)) > limit:
            fallback_key = prekey if prekey is not None else np.zeros(n)
            cand = np.flatnonzero(reach)
            key = np.where(attempted[0][cand], conf[0][cand], fallback_key[cand])
            key = np.nan_to_num(key, nan=0.0)
            capped = cand[~_keep_lowest(key, limit)]
            avail2 = [gate.allowed[t][capped] for t in range(k - 1)] + [np.zeros(capped.size,
                                                                               dtype=bool)]
            sub = _cascade(
                avail2, [o[capped] for o in ok], [e[capped] for e in err],
                [c[capped] for c in cost], cap,
                None if fb_ok is None else fb_ok[capped],
                None if fb_cost is None else fb_cost[capped],
            )
            for t in range(k):
                attempted[t][capped] = sub[0][t]
            first[capped], use_fb[capped] = sub[1], sub[2]
            reason[capped[~np.logical_or.reduce(avail2)]] = _STRONG
            reason[capped[sub[3]]] = _BUDGET

    return _assemble(policy, wl, used, reason, gate.class_bits, attempted, first, use_fb,
                     seed, n_boot)


def _rule_mask(wl: Workload, rule: Any) -> np.ndarray:
    mask = np.zeros(wl.n, dtype=bool)
    for name in rule.detectors:
        mask |= wl.detector(name)
    for pattern in rule.patterns:
        mask |= wl.pattern(pattern)
    for tag in rule.item_tags:
        mask |= wl.tag(tag)
    return mask


def rules_score(wl: Workload, pre: RulesPreroute) -> np.ndarray:
    """Rule score in [0,1] that the cheap tier will do (see RulesPreroute); cached per rule
    set (the preroute_below threshold does not enter)."""
    key = ("score", pre.model_dump_json(exclude={"preroute_below"}))
    return wl.cached(key, lambda: _rules_score(wl, pre))


def _rules_score(wl: Workload, pre: RulesPreroute) -> np.ndarray:
    score = np.full(wl.n, pre.base_score, dtype=np.float64)
    if pre.long_input_chars is not None:
        score = score - np.where(wl.chars() > pre.long_input_chars, pre.length_penalty, 0.0)
    for tag, delta in pre.tag_scores.items():
        score = score + np.where(wl.tag(tag), delta, 0.0)
    for word, delta in pre.keyword_scores.items():
        score = score + np.where(wl.keyword(word), delta, 0.0)
    return np.clip(score, 0.0, 1.0)


def _predictions(
    policy: Policy, wl: Workload, router: Any, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted success (n, K) for the tier models, mean cost per tier model)."""
    models = list(policy.tier_models)
    if router is None:
        spec = policy.router
        assert spec is not None

        def compute() -> tuple[np.ndarray, np.ndarray]:
            from workbench.learned import cross_fit_predict

            frame = cross_fit_predict(wl.items, wl.outcomes, models, spec)
            p = _align(frame, wl, models)
            mean_cost = np.array([wl.cost[wl.has[:, wl.col[m]], wl.col[m]].mean() for m in models])
            return p, mean_cost

        return wl.cached(("xfit", spec.model_dump_json(), tuple(models)), compute)
    key = ("router", id(router), tuple(models))
    entry = wl.memo.get(key)
    if entry is not None and entry[0] is router:  # same object: reuse its predictions
        return entry[1], entry[2]
    if isinstance(router, pl.DataFrame):
        p = _align(router, wl, models)
        mean_cost = np.array([wl.cost[wl.has[:, wl.col[m]], wl.col[m]].mean() for m in models])
    else:
        absent = [m for m in models if m not in router.models]
        if absent:
            raise PolicyError(
                f"the learned router was not trained on tier model(s) {', '.join(absent)}; "
                f"it knows {', '.join(router.models)}"
            )
        p = _align(router.predict(wl.items), wl, models)
        mean_cost = np.array([router.mean_cost[m] for m in models])
    with wl._lock:
        stale = [k for k in wl.memo if isinstance(k, tuple) and k and k[0] == "router"]
        for k in stale[:-3]:  # keep predictions of the last few routers only
            del wl.memo[k]
        wl.memo[key] = (router, p, mean_cost)
    return p, mean_cost


def _align(frame: pl.DataFrame, wl: Workload, models: Sequence[str]) -> np.ndarray:
    absent = [m for m in models if m not in frame.columns]
    if absent:
        raise PolicyError(f"router predictions lack model column(s): {', '.join(absent)}")
    joined = pl.DataFrame({"item_id": wl.item_ids}).join(
        frame.with_columns(pl.col("item_id").cast(pl.String)), on="item_id", how="left",
        maintain_order="left",
    )
    p = joined.select(models).to_numpy().astype(np.float64)
    if np.isnan(p).any():
        raise PolicyError("router predictions are missing for some items")
    return p


def _missing_error(wl: Workload, used: Sequence[str], need: np.ndarray) -> MissingOutcomesError:
    rows, cols = np.nonzero(need)
    per_model = np.bincount(cols, minlength=len(used))
    counts = ", ".join(f"{used[j]}: {c}" for j, c in enumerate(per_model) if c)
    examples = ", ".join(
        f"{wl.item_ids[int(r)]!s} ({used[int(c)]})" for r, c in zip(rows[:5], cols[:5], strict=True)
    )
    return MissingOutcomesError(
        f"{rows.size} item/model pairs lack recorded outcomes for models the policy may call "
        f"({counts}); e.g. {examples}. Run those models on the workload, or restrict the "
        "policy (governance, tiers) so it does not call them there."
    )


def _enum_column(name: str, codes: np.ndarray, labels: Sequence[str]) -> pl.Series:
    """Categorical column from integer codes into `labels` (-1 -> null), via one gather."""
    uniq = list(dict.fromkeys(labels))
    lookup = np.array([uniq.index(lab) for lab in labels], dtype=np.int64)
    idx = pl.Series(name, np.where(codes >= 0, lookup[np.maximum(codes, 0)], 0), pl.UInt32)
    series = pl.Series(name, uniq, dtype=pl.Enum(uniq)).gather(idx)
    if (codes < 0).any():
        series = series.scatter(np.flatnonzero(codes < 0), None)
    return series.alias(name)


def _bits_codes(bits: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(present codes, dense index per item) for small non-negative integer codes, O(n)."""
    counts = np.bincount(bits, minlength=1 << width)
    present = np.flatnonzero(counts)
    dense = np.zeros(counts.size, dtype=np.int64)
    dense[present] = np.arange(present.size)
    return present, dense[bits]


def _assemble(
    policy: Policy, wl: Workload, used: Sequence[str], reason: np.ndarray,
    class_bits: np.ndarray, attempted: list[np.ndarray], first: np.ndarray,
    use_fb: np.ndarray, seed: int, n_boot: int,
) -> ReplayResult:
    n = wl.n
    k = len(attempted)
    refused = reason != 0
    models = policy.tier_models
    pick = np.maximum(first, 0)
    ans_q = np.choose(pick, [wl.col_of("quality", m) for m in models])
    ans_err = np.choose(pick, [wl.col_of("error", m) for m in models]) & (first >= 0)
    cost = np.zeros(n)
    latency = np.zeros(n)
    n_tried = np.zeros(n, dtype=np.int8)
    for t, m in enumerate(models):
        cost += wl.col_of("cost", m) * attempted[t]
        latency += np.where(attempted[t], wl.col_of("latency", m), 0.0)
        n_tried += attempted[t]
    answered = np.where(refused, -1, first.astype(np.int64))
    failed = ans_err & ~use_fb & ~refused
    if policy.fallback is not None:
        fb = policy.fallback
        fb_err = wl.col_of("error", fb)
        ans_q = np.where(use_fb, wl.col_of("quality", fb), ans_q)
        ans_err = np.where(use_fb, fb_err, ans_err)
        cost += np.where(use_fb, wl.col_of("cost", fb), 0.0)
        latency += np.where(use_fb, wl.col_of("latency", fb), 0.0)
        answered = np.where(use_fb, used.index(fb), answered)
        failed |= use_fb & fb_err
    answered = np.where(failed, -1, answered)
    quality = np.where(refused | ans_err, 0.0, ans_q)
    escalated = n_tried > 1
    strong = attempted[k - 1]
    latency = np.where(refused, 0.0, latency)
    metrics = aggregate(
        quality, cost, latency, refused=refused, escalated=escalated, errored=failed,
        strong=strong, answered_codes=answered, answered_names=tuple(used), n_boot=n_boot,
        seed=seed,
    )
    arrays = {
        "attempted": attempted, "use_fb": use_fb, "reason": reason, "class_bits": class_bits,
        "answered": answered, "quality": quality, "cost": cost, "latency": latency,
        "escalated": escalated, "failed": failed, "strong": strong,
    }
    return ReplayResult(policy=policy, metrics=metrics, _workload=wl, _arrays=arrays,
                        _context={"seed": seed, "n_boot": n_boot})


def _build_trace(policy: Policy, wl: Workload, a: dict[str, Any]) -> pl.DataFrame:
    """The per-item decision trace from replay arrays (small code tables, one gather each)."""
    used = policy.used_models
    k = len(a["attempted"])
    refused = a["reason"] != 0
    bits = np.zeros(wl.n, dtype=np.int64)
    for t in range(k):
        bits |= a["attempted"][t].astype(np.int64) << t
    bits |= a["use_fb"].astype(np.int64) << k
    present, inv = _bits_codes(bits, k + 1)
    names = [
        ">".join([used[t] for t in range(k) if b >> t & 1]
                 + ([f"fallback:{policy.fallback}"] if b >> k & 1 else []))
        for b in present.tolist()
    ]
    tried = _enum_column("models_tried", np.where(refused, -1, inv), names)
    rules = policy.governance.rules
    cls_present, cls_inv = _bits_codes(a["class_bits"], max(len(rules), 1))
    cls_names = [",".join(r.data_class for i, r in enumerate(rules) if b >> i & 1) or "-"
                 for b in cls_present.tolist()]
    cls_codes = np.where(a["class_bits"] == 0, -1, cls_inv)
    return pl.DataFrame([
        wl.item_ids.alias("item_id"),
        tried,
        _enum_column("answered_by", a["answered"], list(used)),
        pl.Series("refused", refused),
        _enum_column("refusal_reason", a["reason"].astype(np.int64) - 1, REFUSAL_REASONS),
        _enum_column("governance_block", cls_codes, cls_names),
        pl.Series("quality", a["quality"], nan_to_null=True),
        pl.Series("cost_usd", a["cost"]),
        pl.Series("latency_ms", a["latency"], nan_to_null=True),
        pl.Series("escalated", a["escalated"]),
        pl.Series("error", a["failed"]),
        pl.Series("reached_strong", a["strong"]),
    ])


# -- baselines ---------------------------------------------------------------------------
def _single_arrays(wl: Workload, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                       np.ndarray]:
    j = wl.col[model]
    rows = wl.has[:, j]
    q = np.where(wl.error[rows, j], 0.0, wl.quality[rows, j])
    return q, wl.cost[rows, j], wl.latency[rows, j], wl.error[rows, j]


def baselines(
    wl: Workload, *, strong_share: float, cheap: str, strong: str, seed: int = 0,
    n_boot: int = N_BOOT,
) -> dict[str, Metrics]:
    """Single models (over the items each has outcomes for), random routing between `cheap`
    and `strong` at `strong_share`, and the oracle (per item the highest quality, cheapest
    among ties: the cheapest correct model, or the cheapest overall when none is correct)."""

    def compute_fixed() -> dict[str, Metrics]:
        out: dict[str, Metrics] = {}
        for m in wl.models:
            q, c, lat, e = _single_arrays(wl, m)
            if q.size:
                out[f"single:{m}"] = aggregate(
                    q, c, lat, errored=e, strong=np.ones(q.size, dtype=bool),
                    answered_codes=np.zeros(q.size, dtype=np.int64), answered_names=(m,),
                    n_boot=n_boot, seed=seed,
                )
        # oracle: unscored or errored answers count as not correct when choosing
        qz = np.where(wl.has & ~wl.error, np.nan_to_num(wl.quality, nan=0.0), 0.0)
        qz = np.where(wl.has, qz, -np.inf)
        rows = wl.has.any(axis=1)
        best = qz.max(axis=1)
        cost_pick = np.where(qz == best[:, None], wl.cost, np.inf)
        pick = np.argmin(cost_pick, axis=1)
        r = np.arange(wl.n)
        out["oracle"] = aggregate(
            best[rows], wl.cost[r, pick][rows], wl.latency[r, pick][rows],
            answered_codes=pick[rows], answered_names=wl.models, n_boot=n_boot, seed=seed,
        )
        return out

    result = dict(wl.cached(("baselines", seed, n_boot), compute_fixed))
    if cheap in wl.col and strong in wl.col:
        jc, js = wl.col[cheap], wl.col[strong]
        rows = np.flatnonzero(wl.has[:, jc] & wl.has[:, js])
        if rows.size:
            rng = np.random.default_rng(seed)
            n_strong = int(round(strong_share * rows.size))
            to_strong = np.zeros(rows.size, dtype=bool)
            to_strong[rng.permutation(rows.size)[:n_strong]] = True
            col = np.where(to_strong, js, jc)
            q = np.where(wl.error[rows, col], 0.0, wl.quality[rows, col])
            result["random"] = aggregate(
                q, wl.cost[rows, col], wl.latency[rows, col], errored=wl.error[rows, col],
                strong=to_strong, answered_codes=to_strong.astype(np.int64),
                answered_names=(cheap, strong), n_boot=n_boot, seed=seed,
            )
    return result


# -- conveniences ------------------------------------------------------------------------
def evaluate_single(
    model: str, items: pl.DataFrame, outcomes: pl.DataFrame, *, seed: int = 0
) -> ReplayResult:
    """Replay the one-model policy `model` (every item answered by it)."""
    return replay(single(model), items, outcomes, seed=seed)


def evaluate_workload(
    store: Any, workload: str, policy: Policy, *, router: Any = None, seed: int = 0
) -> ReplayResult:
    """Replay `policy` over a stored workload's recorded items (those with any outcome)."""
    return replay(policy, store.recorded_items(workload), store.outcomes(workload), router=router,
                  seed=seed)


def sweep(
    policy: Policy,
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    param: str,
    values: Sequence[float],
    *,
    router: Any = None,
    seed: int = 0,
    n_boot: int = 200,
) -> pl.DataFrame:
    """Quality and cost of `policy` with `param` (dotted path, e.g. 'tiers.0.accept_above')
    set to each value; detections and matrices are computed once."""
    rows = []
    for value in values:
        m = replay(policy.with_value(param, value), items, outcomes, router=router, seed=seed,
                   n_boot=n_boot).metrics
        rows.append({
            "value": float(value), "quality": m.quality, "quality_lo": m.quality_ci[0],
            "quality_hi": m.quality_ci[1], "cost_per_request": m.cost_per_request,
            "escalation_rate": m.escalation_rate, "refusal_rate": m.refusal_rate,
            "strong_share": m.strong_share,
        })
    return pl.DataFrame(rows)


def split_items(
    items: pl.DataFrame,
    holdout: float = 0.3,
    seed: int = 0,
    stratify: Sequence[str] = ("difficulty",),
) -> tuple[list[str], list[str]]:
    """Seeded stratified split of item ids into (train, holdout): within each stratum (the
    given columns that exist; tags JSON counts as text), round(holdout x size) go to holdout."""
    if not 0.0 < holdout < 1.0:
        raise WorkbenchError(f"holdout share must be strictly between 0 and 1, got {holdout}")
    unknown = [c for c in stratify if c not in items.columns]
    if unknown:
        raise WorkbenchError(
            f"cannot stratify by unknown column(s) {', '.join(unknown)}; "
            f"columns: {', '.join(items.columns)}"
        )
    n = items.height
    rng = np.random.default_rng(seed)
    frame = items.select(
        pl.col("item_id").cast(pl.String),
        *[pl.col(c).cast(pl.String).fill_null("") for c in stratify],
    ).with_columns(pl.Series("_r", rng.random(n)))
    keys = list(stratify) or [pl.lit(0).alias("_all")]
    frame = frame.with_columns(
        (pl.col("_r").rank("ordinal").over(keys) - 1).alias("_rank"),
        pl.len().over(keys).alias("_size"),
    )
    frame = frame.with_columns(
        (pl.col("_rank") < (pl.col("_size").cast(pl.Float64) * holdout).round(0)).alias("_hold")
    ).sort("_r")
    hold = frame.filter(pl.col("_hold"))["item_id"].to_list()
    train = frame.filter(~pl.col("_hold"))["item_id"].to_list()
    return train, hold


def to_json(result: ReplayResult, with_baselines: bool = True) -> dict[str, Any]:
    """JSON-ready dict of a replay: metrics keys at top level, baselines under 'baselines'."""
    out = result.metrics.as_dict()
    if with_baselines:
        out["baselines"] = {k: v.as_dict() for k, v in result.baselines.items()}
    return out


__all__ = [
    "REFUSAL_REASONS", "MissingOutcomesError", "ReplayResult", "Workload", "baselines",
    "clear_cache", "evaluate_single", "evaluate_workload", "prepare", "replay", "rules_score",
    "split_items", "sweep", "to_json",
]
