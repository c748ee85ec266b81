"""The specification: what a policy does to one item, stated once, in plain Python.

The live router runs these functions on each request (calling models as the cascade asks);
the per-item oracle runs them over recorded outcomes; `workbench.pipeline.kernel` is the
vectorized form that replay and the tuner run, and a conformance test holds it to this module.
Nothing here reads text or calls a model: facts about the item (`ItemFacts`) and about each
model's answer (`Attempt`) come from the caller.

Rules, in pipeline order:
1. Governance: an item in a data class may only reach the models the class allows (all its
   classes' sets intersected). No allowed tier -> refused "governance".
2. Refusal: a deny pattern matches -> "deny_pattern"; ceil(chars / chars_per_token) >
   max_input_tokens -> "max_input_tokens".
3. Pre-routing picks the entry tier: rules score < preroute_below -> the strong (last) tier;
   learned -> the allowed tier maximising predicted success - cost_weight x mean cost (ties to
   the cheaper). The cascade runs over the allowed tiers from the entry tier up; when there is
   none, over every allowed tier.
4. Cascade: a tier's answer is accepted when it has no error, its verifier passes and its
   confidence >= accept_above; the last tier reached always answers. Confidence "auto" = the
   answer's own confidence, else the learned router's predicted success (when the policy has
   a router), else the verifier (pass 1, fail 0). A tier with an agreement gate
   (`agree_with`) also needs its partner model's answer to be the same after normalising by
   `agree_on`; a partner that has not answered yet (not an earlier tier, nor another tier's
   partner) is called with the tier and paid for (their latency: the slower of the two); a
   partner that errs, or that governance does not allow, never agrees.
5. Fallback: when a tier errors and the fallback model is allowed (and affordable), the
   fallback answers and the item stops; otherwise the error escalates like a rejection. An
   error on the final answer counts as quality 0.
6. Budgets: a tier is attempted only while the cost so far plus its expected cost stays within
   max_cost_per_request (none affordable -> refused "max_cost_per_request"); the last
   affordable tier answers. max_strong_share: when the strong tier is closed to an item, the
   cascade runs without it (refused "max_strong_share" when nothing else is allowed). Replay
   closes it, after a first pass, for the items reaching it beyond floor(share x n), keeping it
   for those with the lowest `share_key` (ties: item order); the live router closes it online.
Every attempted tier is paid for and its latency adds up; a refused item costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from workbench.agreement import agree_one
from workbench.errors import PolicyError
from workbench.policy import LearnedPreroute, Policy, RulesPreroute, Tier
from workbench.verifiers import verify_one

REFUSAL_REASONS = (
    "governance", "deny_pattern", "max_input_tokens", "max_cost_per_request", "max_strong_share",
)


class ItemFacts(Protocol):
    """What the rules read about one item: detections, text length, tags, keywords and (for
    policies with a learned router) predicted success and mean cost per model."""

    @property
    def chars(self) -> int:
        """Characters of the input text."""
        ...

    def rule_hit(self, rule_index: int) -> bool:
        """Whether governance rule `rule_index` (its detectors, patterns or item tags) hits."""
        ...

    def pattern(self, pattern: str) -> bool:
        """Whether the regular expression `pattern` matches the input."""
        ...

    def tag(self, tag: str) -> bool:
        """Whether the item carries `tag` (data_class, difficulty or a tags entry)."""
        ...

    def keyword(self, word: str) -> bool:
        """Whether the input contains `word` (case-insensitive)."""
        ...

    def predicted(self, model: str) -> float | None:
        """The learned router's predicted success of `model` (None without a router)."""
        ...

    def mean_cost(self, model: str) -> float | None:
        """The learned router's mean cost of `model` (None without a router)."""
        ...


@dataclass(frozen=True)
class Attempt:
    """What one call of a model gave: error, verifier result, its own confidence, cost, the
    answer (for agreement gates) and, when recorded, quality and latency."""

    error: bool
    verifier_pass: bool
    confidence: float | None
    cost: float
    quality: float | None = None
    latency_ms: float | None = None
    output: str | None = None


@dataclass(frozen=True)
class Step:
    """One cascade step: the tier (or fallback) model, what happened, the confidence seen and
    the agreement gate's result."""

    model: str
    action: str  # accept | escalate | final | error | fallback
    confidence: float | None = None
    verifier_pass: bool = True
    agreed: bool | None = None  # the agreement gate's result (None: the tier has none)
    partner_called: str | None = None  # the partner model called alongside this tier


@dataclass(frozen=True)
class ItemDecision:
    """What the policy did to one item. `tried` lists attempted tier indexes in order;
    `answer` is the tier whose answer stands (None when refused or when the fallback
    answered); `start` and `prekey` are the entry tier and pre-route key, `order` the tiers
    the cascade could visit, `share_key` orders items for the strong-share cap."""

    classes: tuple[int, ...]
    allowed: frozenset[str]
    refusal: str | None
    start: int = 0
    prekey: float = 0.0
    order: tuple[int, ...] = ()
    tried: tuple[int, ...] = ()
    answer: int | None = None
    fallback: bool = False
    share_key: float = 0.0
    confidences: tuple[float, ...] = ()
    steps: tuple[Step, ...] = ()
    strong_closed: bool = False
    paired: tuple[bool, ...] = ()  # per tried tier: its agreement partner was called with it

    def reached(self, tier: int) -> bool:
        """Whether tier index `tier` was attempted."""
        return tier in self.tried


Call = Callable[[str], Attempt]
CallPair = Callable[[str, str], tuple[Attempt, Attempt]]
CostOf = Callable[[str], float]


# -- 1-2. gate --------------------------------------------------------------------------------
def governance(policy: Policy, item: ItemFacts) -> tuple[tuple[int, ...], frozenset[str]]:
    """(indexes of the governance rules the item falls under, models it may reach)."""
    classes = tuple(r for r in range(len(policy.governance.rules)) if item.rule_hit(r))
    allowed = set(policy.models)
    for r in classes:
        allowed &= policy.allowed_for(policy.governance.rules[r])
    return classes, frozenset(allowed)


def refusal(policy: Policy, item: ItemFacts, allowed: frozenset[str]) -> str | None:
    """The refusal reason before any model is called (governance, deny pattern, length)."""
    if not any(t.model in allowed for t in policy.tiers):
        return "governance"
    if any(item.pattern(p) for p in policy.refusal.deny_patterns):
        return "deny_pattern"
    limit = policy.refusal.max_input_tokens
    if limit is not None and estimated_tokens(policy, item.chars) > limit:
        return "max_input_tokens"
    return None


def estimated_tokens(policy: Policy, chars: int) -> int:
    """The refusal stage's token estimate: ceil(characters / chars_per_token)."""
    return math.ceil(chars / policy.refusal.chars_per_token)


# -- 3. pre-routing ---------------------------------------------------------------------------
def rules_score(pre: RulesPreroute, item: ItemFacts) -> float:
    """Rule score in [0, 1] that the cheap tier will do (see RulesPreroute)."""
    score = pre.base_score
    if pre.long_input_chars is not None and item.chars > pre.long_input_chars:
        score -= pre.length_penalty
    for tag, delta in pre.tag_scores.items():
        if item.tag(tag):
            score += delta
    for word, delta in pre.keyword_scores.items():
        if item.keyword(word):
            score += delta
    return min(max(score, 0.0), 1.0)


def entry(policy: Policy, item: ItemFacts, tier_allowed: Sequence[bool]) -> tuple[int, float]:
    """(entry tier index, pre-route key): the key is the rules score, the router's predicted
    success of the cheap tier, or 0 without pre-routing."""
    pre = policy.preroute
    k = len(policy.tiers)
    if isinstance(pre, RulesPreroute):
        score = rules_score(pre, item)
        return (k - 1 if score < pre.preroute_below else 0), score
    if isinstance(pre, LearnedPreroute):
        best, start = -math.inf, 0
        for t, tier in enumerate(policy.tiers):
            if not tier_allowed[t]:
                continue
            value = _need(item.predicted(tier.model)) - pre.cost_weight * _need(
                item.mean_cost(tier.model))
            if value > best:
                best, start = value, t
        return start, _need(item.predicted(policy.tiers[0].model))
    return 0, 0.0


def _need(value: float | None) -> float:
    if value is None:
        raise PolicyError("the policy's learned router gave no prediction for this item")
    return value


def cascade_order(tier_allowed: Sequence[bool], start: int, strong_open: bool) -> list[int]:
    """Tier indexes the cascade may visit: allowed ones from `start` up, else every allowed
    one; the strong (last) tier only while it is open."""
    k = len(tier_allowed)
    allowed = [t for t in range(k) if tier_allowed[t] and (strong_open or k < 2 or t < k - 1)]
    return [t for t in allowed if t >= start] or allowed


# -- 4. confidence and acceptance -------------------------------------------------------------
def tier_confidence(policy: Policy, tier: Tier, attempt: Attempt,
                    predicted: float | None) -> float:
    """The confidence a tier's acceptance compares with accept_above (NaN = unknown, never
    accepted). `predicted` is the learned router's predicted success of the tier model."""
    recorded = math.nan if attempt.confidence is None else float(attempt.confidence)
    if tier.confidence == "recorded":
        return recorded
    if tier.confidence == "verifier":
        return 1.0 if attempt.verifier_pass else 0.0
    use_router = policy.uses_router() and predicted is not None
    if tier.confidence == "router":
        return float(predicted) if use_router and predicted is not None else math.nan
    if not math.isnan(recorded):
        return recorded
    if use_router and predicted is not None:
        return float(predicted)
    return 1.0 if attempt.verifier_pass else 0.0


def accepted(tier: Tier, attempt: Attempt, confidence: float) -> bool:
    """A tier's answer is accepted: no error, verifier passes, confidence >= accept_above."""
    return (not attempt.error) and attempt.verifier_pass and confidence >= tier.accept_above


def verify(tier: Tier, output: str | None, item_labels: Sequence[str] | None) -> bool:
    """The tier's verifier on one answer; label checks use the item's labels, else the
    tier's own."""
    return verify_one(tier.verifier, output, list(item_labels or ()) or list(tier.labels))


def partner_index(policy: Policy, t: int) -> int | None:
    """The tier index of tier t's agreement partner when the partner is an earlier tier."""
    partner = policy.tiers[t].agree_with
    if partner is None or partner not in policy.tier_models:
        return None
    return policy.tier_models.index(partner)


def agrees(tier: Tier, answer: Attempt, partner: Attempt | None) -> bool:
    """The agreement gate: the partner answered without error and both answers are the same
    after normalising by `tier.agree_on` (always true for a tier without a partner)."""
    if tier.agree_with is None:
        return True
    if partner is None or partner.error or answer.error:
        return False
    return agree_one(tier.agree_on, answer.output, partner.output)


# -- 5-6. the cascade -------------------------------------------------------------------------
def decide(
    policy: Policy,
    item: ItemFacts,
    call: Call,
    expected_cost: CostOf,
    *,
    strong_open: bool = True,
    call_pair: CallPair | None = None,
) -> ItemDecision:
    """Run the pipeline for one item. `call(model)` attempts a model (live: calls it;
    replay: reads the recorded outcome); `expected_cost(model)` is what a call is expected to
    cost before it is made (replay: the recorded cost; live: an estimate). A tier whose
    agreement partner has not answered yet calls both, through `call_pair` when given (live:
    at once)."""
    classes, allowed = governance(policy, item)
    reason = refusal(policy, item, allowed)
    if reason is not None:
        return ItemDecision(classes, allowed, reason)
    tiers = policy.tiers
    tier_allowed = [t.model in allowed for t in tiers]
    start, prekey = entry(policy, item, tier_allowed)
    order = cascade_order(tier_allowed, start, strong_open)
    closed = not strong_open and len(tiers) >= 2 and tier_allowed[-1]
    if not order:
        return ItemDecision(classes, allowed, "max_strong_share", start, prekey,
                            strong_closed=closed)
    cap = policy.budgets.max_cost_per_request
    fallback = policy.fallback if policy.fallback in allowed else None
    answers: dict[str, Attempt] = {}  # tier answers so far, by model (for sequential partners)

    def partner_call(t: int) -> str | None:
        """The partner model tier t must call alongside itself (None: none, not allowed, or
        it already answered as an earlier tier)."""
        partner = tiers[t].agree_with
        if partner is None or partner not in allowed or partner in answers:
            return None
        return partner

    def step_cost(t: int) -> float:
        partner = partner_call(t)
        return expected_cost(tiers[t].model) + (
            expected_cost(partner) if partner is not None else 0.0)

    def affordable(spent: float, cost: float) -> bool:
        return cap is None or spent + cost <= cap

    spent = 0.0
    tried: list[int] = []
    paired: list[bool] = []
    confs: list[float] = []
    steps: list[Step] = []
    answer: int | None = None
    used_fb = False
    for pos, t in enumerate(order):
        tier = tiers[t]
        if not affordable(spent, step_cost(t)):
            break
        partner = partner_call(t)
        if partner is None:
            att, p_att = call(tier.model), None
        elif call_pair is not None:
            att, p_att = call_pair(tier.model, partner)
        else:
            att, p_att = call(tier.model), call(partner)
        tried.append(t)
        paired.append(partner is not None)
        spent += att.cost + (p_att.cost if p_att is not None else 0.0)
        if p_att is None and tier.agree_with is not None:
            p_att = answers.get(tier.agree_with)  # an earlier tier's answer, or not allowed
        answers[tier.model] = att
        if partner is not None and p_att is not None:
            answers[partner] = p_att  # a later tier with the same partner reuses it
        conf = tier_confidence(policy, tier, att, item.predicted(tier.model))
        confs.append(conf)
        agreed = agrees(tier, att, p_att) if tier.agree_with is not None else None
        if accepted(tier, att, conf) and agreed is not False:
            steps.append(Step(tier.model, "accept", conf, att.verifier_pass, agreed, partner))
            answer = t
            break
        if att.error and fallback is not None and affordable(spent, expected_cost(fallback)):
            steps.append(Step(tier.model, "error", conf, att.verifier_pass, agreed, partner))
            steps.append(Step(fallback, "fallback"))
            call(fallback)
            used_fb = True
            break
        last = pos == len(order) - 1 or not affordable(spent, step_cost(order[pos + 1]))
        if last:
            steps.append(Step(tier.model, "error" if att.error else "final", conf,
                              att.verifier_pass, agreed, partner))
            answer = t
            break
        steps.append(Step(tier.model, "escalate", conf, att.verifier_pass, agreed, partner))
    if not tried:
        return ItemDecision(classes, allowed, "max_cost_per_request", start, prekey,
                            tuple(order), strong_closed=closed)
    key = confs[0] if tried[0] == 0 else prekey
    return ItemDecision(
        classes, allowed, None, start, prekey, tuple(order), tuple(tried), answer, used_fb,
        0.0 if math.isnan(key) else key, tuple(confs), tuple(steps), closed, tuple(paired),
    )


def strong_share_limit(policy: Policy, n: int) -> int | None:
    """How many of `n` items may reach the strong tier (None: no cap applies)."""
    share = policy.budgets.max_strong_share
    if share is None or len(policy.tiers) < 2:
        return None
    return int(math.floor(share * n + 1e-9))


def decide_all(
    policy: Policy,
    items: Sequence[ItemFacts],
    calls: Sequence[Call],
    expected_costs: Sequence[CostOf],
) -> list[ItemDecision]:
    """Decisions for a whole workload, with replay's strong-share cap: a first pass with the
    strong tier open; when more than the limit reach it, those with the lowest share_key
    (ties: item order) keep it and the others run again with it closed."""
    out = [decide(policy, item, call, cost)
           for item, call, cost in zip(items, calls, expected_costs, strict=True)]
    limit = strong_share_limit(policy, len(items))
    strong = len(policy.tiers) - 1
    if limit is None:
        return out
    reach = [i for i, d in enumerate(out) if d.reached(strong)]
    if len(reach) <= limit:
        return out
    ranked = sorted(reach, key=lambda i: (out[i].share_key, i))
    for i in ranked[limit:]:
        out[i] = decide(policy, items[i], calls[i], expected_costs[i], strong_open=False)
    return out


@dataclass(frozen=True)
class ItemOutcome:
    """The accounting of one decision: who answered, quality (None = unscored), cost,
    latency (None = unrecorded), and whether the final answer was an error."""

    answered_by: str | None
    quality: float | None
    cost: float
    latency_ms: float | None
    failed: bool
    models_tried: tuple[str, ...]


def account(policy: Policy, decision: ItemDecision, made: Sequence[Attempt]) -> ItemOutcome:
    """Quality, cost and latency of a decision from the calls it made, in order (each tried
    tier, then its agreement partner when called with it, then the fallback): every call is
    paid for; latencies add up, a tier and its partner (called at once) counting as the
    slower of the two; a refusal costs nothing and scores 0; an error as the final answer
    scores 0 and nobody answered."""
    if decision.refusal is not None:
        return ItemOutcome(None, 0.0, 0.0, 0.0, False, ())
    names: list[str] = []
    lats: list[float | None] = []
    calls = iter(made)
    n_calls = 0
    cost = 0.0
    for t, with_partner in zip(decision.tried, decision.paired or (False,) * len(
            decision.tried), strict=True):
        tier = policy.tiers[t]
        own = next(calls)
        n_calls += 1
        cost += own.cost
        lat = own.latency_ms
        name = tier.model
        if with_partner:
            other = next(calls)
            n_calls += 1
            cost += other.cost
            lat = _slower(lat, other.latency_ms)
            name = f"{tier.model}+{tier.agree_with}"
        names.append(name)
        lats.append(lat)
    final_model = policy.tiers[decision.tried[-1]].model
    final = made[n_calls - 1 - (1 if decision.paired and decision.paired[-1] else 0)]
    if decision.fallback:
        assert policy.fallback is not None
        fb = next(calls)
        n_calls += 1
        cost += fb.cost
        lats.append(fb.latency_ms)
        names.append(f"fallback:{policy.fallback}")
        final_model, final = policy.fallback, fb
    if n_calls != len(made):
        raise ValueError(f"{len(made)} calls recorded for a decision that made {n_calls}")
    latency = None if any(v is None or math.isnan(v) for v in lats) else sum(
        v for v in lats if v is not None)
    if final.error:
        return ItemOutcome(None, 0.0, cost, latency, True, tuple(names))
    q = final.quality
    quality = None if q is None or math.isnan(q) else q
    return ItemOutcome(final_model, quality, cost, latency, False, tuple(names))


def _slower(a: float | None, b: float | None) -> float | None:
    """Latency of two calls made at once (unknown when either is)."""
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return None
    return max(a, b)


__all__ = [
    "REFUSAL_REASONS", "Attempt", "ItemDecision", "ItemFacts", "ItemOutcome", "Step", "account",
    "accepted", "agrees", "partner_index", "cascade_order", "decide", "decide_all", "entry", "estimated_tokens",
    "governance", "refusal", "rules_score", "strong_share_limit", "tier_confidence", "verify",
]
