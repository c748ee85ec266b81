"""What one routed request produced, for people and logs: the result (`RouteResult`), the
per-stage decision trace (`Decision`, built from the specification's item decision) and its
one-screen text form. `workbench.router` builds these; the CLI and `serve` print them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from workbench.pipeline import spec
from workbench.pipeline.facts import TextFacts
from workbench.policy import LearnedPreroute, Policy, RulesPreroute
from workbench.providers.base import Response


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """One step of the pipeline: stage (governance, refusal, preroute, tier, fallback, budget,
    answer), what it did, the model concerned and small JSON-ready details (never input text)."""

    stage: str
    action: str
    model: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", MappingProxyType(dict(self.detail)))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"stage": self.stage, "action": self.action, "model": self.model,
                "detail": dict(self.detail)}

    def __str__(self) -> str:
        who = f" {self.model}" if self.model else ""
        extra = ", ".join(f"{k}={_fmt(v)}" for k, v in self.detail.items())
        return f"{self.stage}:{who} {self.action}" + (f" ({extra})" if extra else "")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@dataclass(frozen=True)
class RouteResult:
    """What one routed request produced: the answer, who gave it, cost, latency, the router's
    own overhead and the decision trace. `model` is None when refused or failed."""

    request_id: str
    text: str | None
    model: str | None
    cost_usd: float
    latency_ms: float
    overhead_ms: float
    trace: tuple[Decision, ...]
    refused: bool = False
    refusal_reason: str | None = None
    error: str | None = None
    confidence: float | None = None
    models_tried: tuple[str, ...] = ()
    escalated: bool = False
    reached_strong: bool = False
    used_fallback: bool = False
    data_classes: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    log_ms: float = 0.0
    calls: tuple[tuple[str, Response], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (trace as a list of dicts; each call's output, confidence, error,
        cost and latency)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("trace", "calls")}
        d["models_tried"] = list(self.models_tried)
        d["data_classes"] = list(self.data_classes)
        d["trace"] = [x.as_dict() for x in self.trace]
        d["calls"] = [{"model": m, "output": r.output, "confidence": r.confidence,
                       "error": r.error, "error_message": r.error_message,
                       "cost_usd": r.cost_usd, "latency_ms": r.latency_ms} for m, r in self.calls]
        return d

    def trace_text(self) -> str:
        """The trace as numbered lines, for the CLI and the app."""
        return "\n".join(f"{i + 1}. {d}" for i, d in enumerate(self.trace))


def build_trace(policy: Policy, facts: TextFacts, d: spec.ItemDecision,
           calls: Sequence[tuple[str, Response]], text: str,
           estimate: Callable[[str], float]) -> list[Decision]:
    """The human-readable trace of a decision: each stage with what it did (never input
    text), and each call with its confidence, verifier result, cost and latency."""
    out: list[Decision] = []
    k = len(policy.tiers)
    if policy.governance.rules:
        out.append(Decision("governance", "classes" if d.classes else "clear", None, {
            "classes": [policy.governance.rules[r].data_class for r in d.classes],
            "allowed": sorted(d.allowed)}))
    if d.refusal == "deny_pattern":
        idx = next(i for i, p in enumerate(policy.refusal.deny_patterns) if facts.pattern(p))
        out.append(Decision("refusal", "deny_pattern", None, {"pattern_index": idx}))
    elif d.refusal == "max_input_tokens":
        out.append(Decision("refusal", "max_input_tokens", None, {
            "estimated_tokens": spec.estimated_tokens(policy, len(text)),
            "max": policy.refusal.max_input_tokens}))
    if d.refusal in ("governance", "deny_pattern", "max_input_tokens"):
        out.append(Decision("answer", "refused", None, {"reason": d.refusal}))
        return out
    pre = policy.preroute
    if isinstance(pre, RulesPreroute):
        out.append(Decision("preroute", "strong" if d.start else "cheap", None, {
            "score": d.prekey, "preroute_below": pre.preroute_below}))
    elif isinstance(pre, LearnedPreroute):
        out.append(Decision("preroute", "entry", policy.tiers[d.start].model, {
            "predicted": dict(facts.predictions or {})}))
    share = policy.budgets.max_strong_share
    if d.strong_closed and d.start == k - 1:
        out.append(Decision("budget", "strong_share_cap", policy.tiers[k - 1].model,
                            {"max_strong_share": share}))
    if d.refusal is not None:  # max_strong_share, or max_cost_per_request before any call
        if d.refusal == "max_cost_per_request" and d.order:
            out.append(Decision("budget", "max_cost_per_request",
                                policy.tiers[d.order[0]].model,
                                {"spent": 0.0, "cap": policy.budgets.max_cost_per_request}))
        out.append(Decision("answer", "refused", None, {"reason": d.refusal}))
        return out
    spent = 0.0
    steps = iter(d.steps)
    step: spec.Step | None = None
    for (name, resp), role in zip(calls, call_roles(d), strict=True):
        spent += resp.cost_usd
        detail: dict[str, Any] = {"cost_usd": resp.cost_usd,
                                  "latency_ms": round(resp.latency_ms, 2)}
        if resp.error:
            detail["error"] = resp.error
        if role == "partner":
            out.append(Decision("partner", "agreed" if step and step.agreed else "disagreed",
                                name, detail))
            continue
        step = next(steps)
        if role == "fallback":
            out.append(Decision("fallback", "error" if resp.error else "answer", name, detail))
            continue
        tier = policy.tiers[policy.tier_models.index(name)]
        detail = {"confidence": None if resp.error else step.confidence,
                  "accept_above": tier.accept_above, "verifier": tier.verifier,
                  "verifier_pass": step.verifier_pass, **detail}
        if tier.agree_with is not None:
            detail["agree_with"] = tier.agree_with
            detail["agreed"] = step.agreed
        if step.action == "final" and d.strong_closed and not resp.error:
            detail["strong_share_cap"] = share  # it would have escalated to the strong tier
        out.append(Decision("tier", step.action, name, detail))
    if d.answer is not None:
        pos = d.order.index(d.answer)
        if pos < len(d.order) - 1 and not any(s.action == "accept" for s in d.steps):
            nxt = policy.tiers[d.order[pos + 1]].model
            out.append(Decision("budget", "max_cost_per_request", nxt, {
                "spent": spent, "next_estimate": estimate(nxt),
                "cap": policy.budgets.max_cost_per_request}))
    final_name, final = [c for c, role in zip(calls, call_roles(d), strict=True)
                         if role != "partner"][-1]
    if final.error:
        out.append(Decision("answer", "failed", None, {"error": final.error}))
    else:
        out.append(Decision("answer", "answered", final_name, {}))
    return out


def call_roles(d: spec.ItemDecision) -> list[str]:
    """What each call of a decision was, in call order: tier, partner (called with the tier
    before it) or fallback."""
    roles: list[str] = []
    for paired in d.paired or (False,) * len(d.tried):
        roles.append("tier")
        if paired:
            roles.append("partner")
    if d.fallback:
        roles.append("fallback")
    return roles


def route_text(result: RouteResult) -> str:
    """Human-readable answer + trace (what `workbench route` prints)."""
    if result.refused:
        head = f"refused: {result.refusal_reason}"
    elif result.error:
        head = f"failed: {result.error}"
    else:
        head = f"answer ({result.model}): {result.text}"
    return (
        f"{head}\ncost ${result.cost_usd:.6f}  latency {result.latency_ms:.0f} ms  router "
        f"overhead {result.overhead_ms:.2f} ms  tried {' > '.join(result.models_tried) or '-'}"
        f"\ntrace:\n{result.trace_text()}"
    )


__all__ = ["Decision", "RouteResult", "build_trace", "call_roles", "route_text"]
