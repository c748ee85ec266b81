"""The vectorized kernel: `workbench.pipeline.spec`'s rules over column arrays of many items.

Replay and the tuner run this; the conformance test holds it to the specification item by
item. Inputs are facts as columns (`ColumnFacts`: detections, recorded outcomes per model,
verifier results; `workbench.replay.Workload` is the implementation); outputs are the per-item
decisions (`Decisions`) and their accounting (`Accounts`). Threshold-independent arrays (the
gate, each tier's confidence) are memoised on the facts, so a threshold change re-runs only a
few passes per tier: no Python loop over items, no fancy indexing on the common path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from workbench.pipeline.spec import REFUSAL_REASONS, strong_share_limit
from workbench.policy import GovernanceRule, LearnedPreroute, Policy, RulesPreroute

GOV, DENY, TOKENS, BUDGET, STRONG = (REFUSAL_REASONS.index(r) + 1 for r in (
    "governance", "deny_pattern", "max_input_tokens", "max_cost_per_request",
    "max_strong_share"))

# (predicted success (n, k) of the tier models, mean cost per tier model (k,))
Predictions = tuple[np.ndarray, np.ndarray]


class ColumnFacts(Protocol):
    """Facts about n items as columns (read-only arrays), memoised by `cached`."""

    n: int

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Memoise a derived value under `key`."""
        ...

    def rule_mask(self, rule: GovernanceRule) -> np.ndarray:
        """Items a governance rule's detectors, patterns or item tags hit."""
        ...

    def pattern(self, pattern: str) -> np.ndarray:
        """Items whose input matches `pattern`."""
        ...

    def chars(self) -> np.ndarray:
        """Characters of each input."""
        ...

    def tag(self, tag: str) -> np.ndarray:
        """Items carrying `tag`."""
        ...

    def keyword(self, word: str) -> np.ndarray:
        """Items whose input contains `word` (case-insensitive)."""
        ...

    def verifier(self, model: str, kind: str, labels: tuple[str, ...]) -> np.ndarray:
        """Whether each item's recorded answer of `model` passes verifier `kind`."""
        ...

    def agreement(self, model: str, other: str, kind: str) -> np.ndarray:
        """Whether the two models' recorded answers agree after normalising by `kind`."""
        ...

    def col_of(self, what: str, model: str) -> np.ndarray:
        """One model's recorded column: quality, cost, latency, confidence, error or has."""
        ...


# -- 1-2. gate --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gate:
    """Governance and refusal per item: models allowed (one mask per used model, in
    `policy.used_models` order), governance classes as bits, refusal code (0 = none)."""

    allowed: tuple[np.ndarray, ...]
    class_bits: np.ndarray
    reason: np.ndarray
    active: np.ndarray


def gate(policy: Policy, facts: ColumnFacts) -> Gate:
    """The gate of `policy` over the items (memoised per governance/refusal configuration)."""
    used = policy.used_models
    key = ("gate", policy.governance.model_dump_json(), policy.refusal.model_dump_json(),
           used, len(policy.tiers))

    def compute() -> Gate:
        n, k = facts.n, len(policy.tiers)
        allowed = [np.ones(n, dtype=bool) for _ in used]
        class_bits = np.zeros(n, dtype=np.int64)
        for r, rule in enumerate(policy.governance.rules):
            hit = facts.rule_mask(rule)
            ok_models = policy.allowed_for(rule)
            for j, m in enumerate(used):
                if m not in ok_models:
                    allowed[j] = allowed[j] & ~hit
            class_bits |= hit.astype(np.int64) << r
        any_tier = np.logical_or.reduce(allowed[:k]) if k > 1 else allowed[0].copy()
        reason = np.zeros(n, dtype=np.int8)
        reason[~any_tier] = GOV
        deny = np.zeros(n, dtype=bool)
        for pattern in policy.refusal.deny_patterns:
            deny |= facts.pattern(pattern)
        reason[(reason == 0) & deny] = DENY
        if policy.refusal.max_input_tokens is not None:
            tokens = np.ceil(facts.chars() / policy.refusal.chars_per_token)
            reason[(reason == 0) & (tokens > policy.refusal.max_input_tokens)] = TOKENS
        active = reason == 0
        for a in (*allowed, class_bits, reason, active):
            a.setflags(write=False)
        return Gate(tuple(allowed), class_bits, reason, active)

    return facts.cached(key, compute)


# -- 3. pre-routing ---------------------------------------------------------------------------
def rules_score(facts: ColumnFacts, pre: RulesPreroute) -> np.ndarray:
    """Rule score per item (memoised per rule set; preroute_below does not enter)."""

    def compute() -> np.ndarray:
        score = np.full(facts.n, pre.base_score, dtype=np.float64)
        if pre.long_input_chars is not None:
            score -= np.where(facts.chars() > pre.long_input_chars, pre.length_penalty, 0.0)
        for tag, delta in pre.tag_scores.items():
            score += np.where(facts.tag(tag), delta, 0.0)
        for word, delta in pre.keyword_scores.items():
            score += np.where(facts.keyword(word), delta, 0.0)
        out = np.clip(score, 0.0, 1.0)
        out.setflags(write=False)
        return out

    return facts.cached(("score", pre.model_dump_json(exclude={"preroute_below"})), compute)


def entry(policy: Policy, facts: ColumnFacts, g: Gate, preds: Predictions | None
          ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(entry tier per item, pre-route key per item); (None, None) without pre-routing."""
    pre = policy.preroute
    k = len(policy.tiers)
    if isinstance(pre, RulesPreroute):
        score = rules_score(facts, pre)
        # a byte multiply, not np.where: selects on random masks are slow
        return (score < pre.preroute_below).view(np.int8) * np.int8(k - 1), score
    if isinstance(pre, LearnedPreroute):
        if preds is None:
            raise ValueError("learned pre-routing needs router predictions")
        p, mean_cost = preds
        value = p - pre.cost_weight * mean_cost[None, :]
        value = np.where(np.column_stack(g.allowed[:k]), value, -np.inf)
        return np.argmax(value, axis=1), p[:, 0]
    return None, None


def cascade_avail(g: Gate, k: int, start: np.ndarray | None, strong_open: bool = True,
                  rows: np.ndarray | None = None) -> list[np.ndarray]:
    """Tiers the cascade may visit per item (spec.cascade_order), for `rows` when given."""
    allowed = [g.allowed[t] if rows is None else g.allowed[t][rows] for t in range(k)]
    if not strong_open and k >= 2:
        allowed[k - 1] = np.zeros_like(allowed[k - 1])
    if start is None:
        return allowed
    s = start if rows is None else start[rows]
    avail = [allowed[t] & (s <= t) for t in range(k)]
    none_after = ~np.logical_or.reduce(avail) if k > 1 else ~avail[0]
    return [a | (none_after & allowed[t]) for t, a in enumerate(avail)]


# -- 4. confidence ----------------------------------------------------------------------------
def tier_confidence(policy: Policy, facts: ColumnFacts, t: int, preds: Predictions | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, no error and verifier passes) of tier t; memoised unless it depends on
    router predictions (which change between calls)."""
    tier = policy.tiers[t]
    use_router = preds is not None and tier.confidence in ("auto", "router")
    key = ("conf", tier.model, tier.confidence, tier.verifier, tier.labels)

    def compute() -> tuple[np.ndarray, np.ndarray]:
        ver = facts.verifier(tier.model, tier.verifier, tier.labels)
        recorded = facts.col_of("confidence", tier.model)
        if tier.confidence == "recorded":
            c = recorded
        elif tier.confidence == "verifier":
            c = ver.astype(np.float64)
        elif tier.confidence == "router":
            c = (np.ascontiguousarray(preds[0][:, t]) if preds is not None
                 else np.full(facts.n, np.nan))
        else:
            fill = (np.ascontiguousarray(preds[0][:, t]) if use_router and preds is not None
                    else ver.astype(np.float64))
            c = np.where(np.isnan(recorded), fill, recorded)
        return c, ~facts.col_of("error", tier.model) & ver

    return compute() if use_router else facts.cached(key, compute)


# -- 5-6. the cascade -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Partner:
    """Tier t's agreement partner: its model, where governance allows it, its cost."""

    model: str
    allowed: np.ndarray
    cost: np.ndarray

    def rows(self, rows: np.ndarray) -> _Partner:
        """The same partner restricted to `rows`."""
        return _Partner(self.model, self.allowed[rows], self.cost[rows])


def _cascade(models: list[str], avail: list[np.ndarray], ok: list[np.ndarray],
             err: list[np.ndarray], cost: list[np.ndarray], partners: list[_Partner | None],
             cap: float | None, fb_ok: np.ndarray | None, fb_cost: np.ndarray | None,
             ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], np.ndarray,
                        np.ndarray]:
    """One pass per tier: (attempted per tier, stopped here per tier, partner called with
    the tier, fallback used, refused for budget). A tier is attempted while the expected
    cost so far (with its partner's, when the partner has not answered yet) stays within
    `cap`; it stops the cascade when accepted, when its error goes to a usable fallback, or
    when it is the last affordable tier."""
    k = len(avail)
    n = avail[0].size
    eff: list[np.ndarray] = []
    paired: list[np.ndarray] = []
    spent_after: list[np.ndarray | None] = []
    spent = np.zeros(n) if cap is not None else None
    called: dict[str, np.ndarray] = {}  # who has answered, for an item that reaches tier t
    for t in range(k):
        p = partners[t]
        need = None
        if p is not None:
            before = called.get(p.model)
            need = p.allowed if before is None else p.allowed & ~before
        if spent is not None and cap is not None:
            step = cost[t] if need is None else cost[t] + need * p.cost  # type: ignore[union-attr]
            spent = spent + avail[t] * step
            eff.append(avail[t] & (spent <= cap))
        else:
            eff.append(avail[t])
        spent_after.append(spent)
        called[models[t]] = called[models[t]] | eff[t] if models[t] in called else eff[t]
        pair = np.zeros(n, dtype=bool) if need is None else eff[t] & need
        if p is not None:
            called[p.model] = called[p.model] | pair if p.model in called else pair
        paired.append(pair)
    is_last: list[np.ndarray] = [eff[0]] * k
    later = np.zeros(n, dtype=bool)
    for t in range(k - 1, -1, -1):
        is_last[t] = eff[t] & ~later
        later = later | eff[t]
    done = np.zeros(n, dtype=bool)
    use_fb = np.zeros(n, dtype=bool)
    attempted: list[np.ndarray] = []
    stopped: list[np.ndarray] = []
    for t in range(k):
        att = eff[t] & ~done
        stop = ok[t] | is_last[t]
        if fb_ok is not None:
            usable = fb_ok
            sa = spent_after[t]
            if cap is not None and sa is not None and fb_cost is not None:
                usable = usable & (sa + fb_cost <= cap)
            to_fb = att & err[t] & usable
            stop = stop | to_fb
            use_fb |= to_fb
        stop = stop & att
        attempted.append(att)
        stopped.append(stop)
        paired[t] = paired[t] & att
        done |= stop
    no_tier = np.logical_or.reduce(avail) if k > 1 else avail[0]
    return attempted, stopped, paired, use_fb, ~later & no_tier


def agreement(policy: Policy, facts: ColumnFacts, t: int, g: Gate) -> np.ndarray | None:
    """Tier t's agreement gate per item: its partner is allowed, neither errs and their
    answers agree (None when the tier has no gate)."""
    tier = policy.tiers[t]
    partner = tier.agree_with
    if partner is None:
        return None
    same = facts.agreement(tier.model, partner, tier.agree_on)
    both_ok = ~facts.col_of("error", tier.model) & ~facts.col_of("error", partner)
    return same & both_ok & g.allowed[policy.used_models.index(partner)]


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
class Decisions:
    """Per-item decisions: tiers attempted and the tier where the cascade stopped (one mask
    per tier), fallback used, refusal code (0 none, else 1 + REFUSAL_REASONS index),
    governance class bits, and the items the strong-share cap closed the strong tier to."""

    attempted: tuple[np.ndarray, ...]
    stopped: tuple[np.ndarray, ...]
    use_fb: np.ndarray
    reason: np.ndarray
    class_bits: np.ndarray
    strong_closed: np.ndarray
    paired: tuple[np.ndarray, ...] = ()  # per tier: its agreement partner was called with it


def decide(policy: Policy, facts: ColumnFacts, preds: Predictions | None = None) -> Decisions:
    """Decisions of `policy` over every item (spec.decide_all, vectorized). `preds` are the
    learned router's predictions for policies that use one."""
    tiers = policy.tiers
    k = len(tiers)
    used = policy.used_models
    models = list(policy.tier_models)
    g = gate(policy, facts)
    reason = g.reason.copy()
    conf: list[np.ndarray] = []
    ok: list[np.ndarray] = []
    partners: list[_Partner | None] = []
    for t, tier in enumerate(tiers):
        c, passing = tier_confidence(policy, facts, t, preds)
        conf.append(c)
        accept = passing & (c >= tier.accept_above)
        agree = agreement(policy, facts, t, g)
        ok.append(accept if agree is None else accept & agree)
        partner = tier.agree_with
        partners.append(None if partner is None else _Partner(
            partner, g.allowed[used.index(partner)], facts.col_of("cost", partner)))
    err = [facts.col_of("error", m) for m in models]
    cost = [facts.col_of("cost", m) for m in models]
    start, prekey = entry(policy, facts, g, preds)
    avail = [a & g.active for a in cascade_avail(g, k, start)]
    cap = policy.budgets.max_cost_per_request
    fb_ok = fb_cost = None
    if policy.fallback is not None:
        fb_ok = g.allowed[used.index(policy.fallback)]
        fb_cost = facts.col_of("cost", policy.fallback)
    attempted, stopped, paired, use_fb, budget = _cascade(
        models, avail, ok, err, cost, partners, cap, fb_ok, fb_cost)
    reason[budget] = BUDGET

    closed = np.zeros(facts.n, dtype=bool)
    limit = strong_share_limit(policy, facts.n)
    if limit is not None and int(np.count_nonzero(attempted[k - 1])) > limit:
        cand = np.flatnonzero(attempted[k - 1])
        fallback_key = prekey[cand] if prekey is not None else np.zeros(cand.size)
        key = np.nan_to_num(np.where(attempted[0][cand], conf[0][cand], fallback_key), nan=0.0)
        capped = cand[~_keep_lowest(key, limit)]
        closed[capped] = True
        avail2 = cascade_avail(g, k, start, strong_open=False, rows=capped)
        sub = _cascade(models, avail2, [o[capped] for o in ok], [e[capped] for e in err],
                       [c[capped] for c in cost],
                       [None if p is None else p.rows(capped) for p in partners], cap,
                       None if fb_ok is None else fb_ok[capped],
                       None if fb_cost is None else fb_cost[capped])
        for t in range(k):
            attempted[t][capped] = sub[0][t]
            stopped[t][capped] = sub[1][t]
            paired[t][capped] = sub[2][t]
        use_fb[capped] = sub[3]
        nothing = ~np.logical_or.reduce(avail2)
        reason[capped[nothing]] = STRONG
        reason[capped[sub[4]]] = BUDGET
    return Decisions(tuple(attempted), tuple(stopped), use_fb, reason, g.class_bits, closed,
                     tuple(paired))


# -- accounting -------------------------------------------------------------------------------
def _outcome_columns(facts: ColumnFacts, model: str
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(error, quality with NaN as 0, quality missing, latency with NaN as 0, latency
    missing) of one model, memoised."""

    def compute() -> tuple[np.ndarray, ...]:
        q = facts.col_of("quality", model)
        lat = facts.col_of("latency", model)
        return (facts.col_of("error", model), np.nan_to_num(q, nan=0.0), np.isnan(q),
                np.nan_to_num(lat, nan=0.0), np.isnan(lat))

    return facts.cached(("outcome-columns", model), compute)


def _payments(policy: Policy, d: Decisions
              ) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """Who is paid and whose answer is final, per model called: (model, paid mask, final
    mask, index into used_models). Every attempted tier is paid; the tier where the cascade
    stopped gives the final answer unless the fallback answered, which is then paid too.
    Agreement partners are paid separately (`_partner_payments`)."""
    used = policy.used_models
    not_fb = ~d.use_fb
    out = [(tier.model, d.attempted[t], d.stopped[t] & not_fb, t)
           for t, tier in enumerate(policy.tiers)]
    if policy.fallback is not None and d.use_fb.any():
        out.append((policy.fallback, d.use_fb, d.use_fb, used.index(policy.fallback)))
    return out


def _partner_payments(policy: Policy, d: Decisions) -> list[tuple[str, str, np.ndarray]]:
    """(partner model, tier model, called-with-the-tier mask) for each agreement gate whose
    partner was called on some item; the pair runs at once (latency: the slower)."""
    return [(tier.agree_with, tier.model, d.paired[t]) for t, tier in enumerate(policy.tiers)
            if tier.agree_with is not None and d.paired and d.paired[t].any()]


@dataclass(frozen=True)
class Accounts:
    """Per-item results (spec.account, vectorized): quality (NaN = unscored), cost, latency
    (NaN = unrecorded; 0 when refused), who answered (index into `policy.used_models`, -1 =
    nobody) and the flags the metrics count."""

    quality: np.ndarray
    cost: np.ndarray
    latency: np.ndarray | None
    answered: np.ndarray
    refused: np.ndarray
    failed: np.ndarray
    escalated: np.ndarray
    strong: np.ndarray


def account(policy: Policy, facts: ColumnFacts, d: Decisions, *,
            latency: bool = True) -> Accounts:
    """Per-item quality, cost and latency of decisions `d` (see `_payments`): latencies add
    up; refusals score 0 at no cost; an error as the final answer scores 0 and nobody
    answered."""
    n = facts.n
    q = np.zeros(n)
    qnan = np.zeros(n, dtype=bool)
    final_err = np.zeros(n, dtype=bool)
    cost = np.zeros(n)
    lat = np.zeros(n) if latency else None
    latnan = np.zeros(n, dtype=bool)
    answered = np.zeros(n, dtype=np.uint8)  # 1 + index into used_models; 0 = nobody
    tried = np.zeros(n, dtype=np.int8)
    tmp = np.empty(n)
    good = np.empty(n, dtype=bool)
    mask = np.empty(n, dtype=bool)
    for model, paid, final, code in _payments(policy, d):
        # in place, on preallocated buffers: this runs per tier on every replay
        e, qval, qmiss, lat0, lmiss = _outcome_columns(facts, model)
        cost += np.multiply(paid, facts.col_of("cost", model), out=tmp)
        if lat is not None:
            lat += np.multiply(paid, lat0, out=tmp)
            latnan |= np.logical_and(paid, lmiss, out=mask)
        np.greater(final, e, out=good)  # final answer without an error
        q += np.multiply(good, qval, out=tmp)
        qnan |= np.logical_and(good, qmiss, out=mask)
        final_err |= np.logical_and(final, e, out=mask)
        # arithmetic, not a masked copy: at most one final answer per item, and masked
        # writes on random masks cost ~30x a byte multiply
        answered += good.view(np.uint8) * np.uint8(code + 1)
    for partner, tier_model, paid in _partner_payments(policy, d):
        cost += np.multiply(paid, facts.col_of("cost", partner), out=tmp)
        if lat is not None:
            p_lat0, p_miss = _outcome_columns(facts, partner)[3:]
            t_lat0 = _outcome_columns(facts, tier_model)[3]
            lat += paid * np.maximum(p_lat0 - t_lat0, 0.0)  # max(tier, partner) in all
            latnan |= paid & p_miss
    for t in range(len(policy.tiers)):
        tried += d.attempted[t]
    q[qnan] = np.nan
    if lat is not None:
        lat[latnan] = np.nan  # refused items attempted nothing: their latency stays 0
    return Accounts(q, cost, lat, answered.astype(np.int64) - 1, d.reason != 0, final_err,
                    tried > 1, d.attempted[len(policy.tiers) - 1].copy())


@dataclass(frozen=True)
class Totals:
    """Sums over the items (what a tuning trial needs; `Accounts` summed, without per-item
    arrays): quality over scored items, cost, counts of flags."""

    n: int
    quality_sum: float
    n_scored: int
    cost_sum: float
    n_refused: int
    n_escalated: int
    n_strong: int

    @property
    def quality(self) -> float:
        """Mean quality over scored items (NaN when none is scored)."""
        return self.quality_sum / self.n_scored if self.n_scored else float("nan")


def totals(policy: Policy, facts: ColumnFacts, d: Decisions) -> Totals:
    """`account` summed over the items, by reductions (no per-item arrays)."""
    q_sum = cost_sum = 0.0
    n_unscored = 0
    good = np.empty(facts.n, dtype=bool)
    for model, paid, final, _ in _payments(policy, d):
        e, qval, qmiss, _, _ = _outcome_columns(facts, model)
        cost_sum += float(np.einsum("i,i->", paid, facts.col_of("cost", model)))
        np.greater(final, e, out=good)
        q_sum += float(np.einsum("i,i->", good, qval))
        n_unscored += int(np.count_nonzero(good & qmiss))
    for partner, _, paid in _partner_payments(policy, d):
        cost_sum += float(np.einsum("i,i->", paid, facts.col_of("cost", partner)))
    tried = d.attempted[0].view(np.int8).copy()
    for t in range(1, len(policy.tiers)):
        tried += d.attempted[t]
    return Totals(
        n=facts.n, quality_sum=q_sum, n_scored=facts.n - n_unscored, cost_sum=cost_sum,
        n_refused=int(np.count_nonzero(d.reason)), n_escalated=int(np.count_nonzero(tried > 1)),
        n_strong=int(np.count_nonzero(d.attempted[len(policy.tiers) - 1])),
    )


__all__ = [
    "BUDGET", "DENY", "GOV", "STRONG", "TOKENS", "Accounts", "ColumnFacts", "Decisions", "Gate",
    "Predictions", "Totals", "account", "cascade_avail", "decide", "entry", "gate",
    "rules_score", "tier_confidence", "totals",
]
