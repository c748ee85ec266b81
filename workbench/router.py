"""The runtime router: executes an exported policy live, with the providers, one request at a time.

`PolicyRouter.from_file(path).complete(prompt_or_messages)` runs the policy's pipeline with the
same decision rules replay applies to recorded outcomes (see `workbench.replay`), so given the
same confidences the live decisions equal replay's:

1. governance (built-in detectors, custom patterns, request tags) narrows the allowed models;
   no allowed tier -> refused "governance";
2. refusal: deny patterns, ceil(chars / chars_per_token) > max_input_tokens;
3. pre-routing picks the entry tier (rules score < preroute_below -> strong tier; learned ->
   max predicted success - cost_weight x mean cost, needs a fitted router);
4. cascade from the entry tier over allowed tiers: accept when no error, the verifier passes and
   confidence >= accept_above; the last tier reached answers;
5. fallback: a tier's provider error -> the fallback model answers (when allowed);
6. budgets: a tier is called only while cost so far + its estimated cost (prompt tokens at its
   input price + max_tokens at its output price) stays within max_cost_per_request; the strong
   tier is reached by at most floor(max_strong_share x requests so far) requests (online form
   of replay's global cap).

Live differences from replay, by necessity: the cost cap uses an estimate before the call, and
the strong-share cap is applied online. Every request appends one JSON line to the decision
log (no secrets; input text redacted of PII by default) and records the router's own overhead
(wall time minus time inside provider calls).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from workbench import governance as gov
from workbench.errors import PolicyError
from workbench.policy import LearnedPreroute, Policy, RulesPreroute
from workbench.providers.base import (
    ModelConfig,
    Provider,
    ProviderError,
    Request,
    Response,
    get_provider,
    redact,
)
from workbench.verifiers import verify_one

LogText = Literal["none", "redacted", "full"]
ProviderFactory = Callable[[ModelConfig], Provider]


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


# -- PII redaction and the decision log -------------------------------------------------------
_CORE = re.compile(r"[A-Za-z0-9+(].*[A-Za-z0-9)]", re.S)
_PII_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL", re.compile(gov.EMAIL)),
    ("IBAN", re.compile(gov.IBAN_CANDIDATE)),
    ("NATIONAL_ID", re.compile(gov.NATIONAL_ID)),
    ("PAYMENT_CARD", re.compile(gov.CARD_CANDIDATE)),
    ("PHONE", re.compile(gov.PHONE)),
)


def redact_pii(text: str, extra: Sequence[tuple[str, str]] = ()) -> str:
    """`text` with every match of the governance detectors (email, IBAN, national id, card and
    phone candidates, checksum or not) and of `extra` (label, regex) pairs replaced by
    [LABEL]; boundary characters the patterns consume are kept."""

    def sub(label: str) -> Callable[[re.Match[str]], str]:
        def repl(m: re.Match[str]) -> str:
            s = m.group(0)
            core = _CORE.search(s)
            if core is None:
                return f"[{label}]"
            return s[: core.start()] + f"[{label}]" + s[core.end():]

        return repl

    out = text
    for label, pattern in _PII_PATTERNS:
        out = pattern.sub(sub(label), out)
    for label, pattern in extra:
        out = re.sub(pattern, f"[{label.upper()}]", out)
    return out


class DecisionLog:
    """Append-only JSONL decision log, one line per request, thread-safe; every line passes
    through `redact` so no key can reach it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record."""
        line = redact(json.dumps(record, default=str, ensure_ascii=False))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._fh.close()


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a decision log (bad lines are skipped)."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return out


# -- models ----------------------------------------------------------------------------------
def model_configs(policy: Policy, **overrides: Any) -> dict[str, ModelConfig]:
    """Provider configs for the policy's models: local -> local-gguf, litellm as is,
    openai_compatible -> 'openai/<model>' at its api_base; prices per 1M tokens copied.
    `overrides` (e.g. max_tokens=16) apply to every model."""
    out: dict[str, ModelConfig] = {}
    for name, spec in policy.models.items():
        if spec.provider == "local":
            kind, model = "local-gguf", spec.model
        elif spec.provider == "openai_compatible":
            kind = "litellm"
            model = spec.model if spec.model.startswith("openai/") else f"openai/{spec.model}"
        else:
            kind, model = "litellm", spec.model
        out[name] = ModelConfig(
            name=name, kind=kind, model=model, api_base=spec.api_base,  # type: ignore[arg-type]
            api_key_env=spec.api_key_env, tags=spec.tags,
            input_price_per_m=spec.input_price_per_mtok,
            output_price_per_m=spec.output_price_per_mtok, **overrides,
        )
    return out


def _tags_json(tags: Sequence[str] | Mapping[str, Any] | str | None) -> str | None:
    if tags is None:
        return None
    if isinstance(tags, str):
        return tags
    return json.dumps(tags if isinstance(tags, Mapping) else list(tags))


# -- the router ------------------------------------------------------------------------------
class PolicyRouter:
    """Executes a policy live (see the module docstring). Thread-safe: `serve` shares one."""

    def __init__(
        self,
        policy: Policy,
        *,
        configs: Mapping[str, ModelConfig] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        log: bool = True,
        log_text: LogText = "redacted",
        learned_router: Any = None,
        provider_factory: ProviderFactory = get_provider,
        **config_overrides: Any,
    ) -> None:
        self.policy = policy
        self.configs = dict(model_configs(policy, **config_overrides))
        if configs:
            unknown = sorted(set(configs) - set(policy.models))
            if unknown:
                raise PolicyError(f"configs for models the policy does not name: {unknown}")
            self.configs.update(configs)
        needs_router = isinstance(policy.preroute, LearnedPreroute) or any(
            t.confidence == "router" for t in policy.tiers)
        if needs_router and learned_router is None:
            raise PolicyError(
                f"policy {policy.name!r} uses a learned router (pre-routing or tier confidence) "
                "that the policy file cannot carry; pass learned_router= (a fitted router from "
                "workbench.learned trained on the calibration workload)"
            )
        self.learned_router = learned_router
        self.log_text: LogText = log_text
        self._factory = provider_factory
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._n_requests = 0
        self._n_strong = 0
        self._deny = [re.compile(p) for p in policy.refusal.deny_patterns]
        self._rule_patterns = [[re.compile(p) for p in r.patterns]
                               for r in policy.governance.rules]
        self._allowed = [policy.allowed_for(r) for r in policy.governance.rules]
        self._pii_extra = [(r.data_class, p) for r in policy.governance.rules
                           for p in r.patterns]
        self._fingerprint = hashlib.sha256(policy.to_json(indent=None).encode()).hexdigest()[:16]
        if log:
            from workbench import settings

            path = Path(log_path) if log_path else settings.home() / "decisions.jsonl"
            self.log: DecisionLog | None = DecisionLog(path)
        else:
            self.log = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> PolicyRouter:
        """A router for a policy file (loaded with every guard of `load_policy_file`)."""
        from workbench.export import load_policy_file

        return cls(load_policy_file(path), **kwargs)

    @property
    def log_path(self) -> Path | None:
        """Where decisions are appended (None when logging is off)."""
        return self.log.path if self.log else None

    def provider(self, name: str) -> Provider:
        """The provider of a policy model (created once, shared across threads)."""
        with self._lock:
            prov = self._providers.get(name)
            if prov is None:
                prov = self._factory(self.configs[name])
                self._providers[name] = prov
        return prov

    def check(self) -> dict[str, str | None]:
        """Check every model the policy may call; model -> None when usable, else the error
        (redacted). Used by `serve` at start-up."""
        out: dict[str, str | None] = {}
        for name in self.policy.used_models:
            try:
                self.provider(name).check()
                out[name] = None
            except ProviderError as exc:
                out[name] = str(exc)
        return out

    def close(self) -> None:
        """Close the decision log."""
        if self.log:
            self.log.close()

    # -- pieces ----------------------------------------------------------------------------
    def _classes(self, text: str, data_class: str | None, difficulty: str | None,
                 tags_json: str | None) -> list[int]:
        hits = []
        for r, rule in enumerate(self.policy.governance.rules):
            if (any(gov.detect_one(text, d) for d in rule.detectors)
                    or any(p.search(text) for p in self._rule_patterns[r])
                    or any(gov.has_tag_one(data_class, difficulty, tags_json, t)
                           for t in rule.item_tags)):
                hits.append(r)
        return hits

    def _rules_score(self, pre: RulesPreroute, text: str, data_class: str | None,
                     difficulty: str | None, tags_json: str | None) -> float:
        score = pre.base_score
        if pre.long_input_chars is not None and len(text) > pre.long_input_chars:
            score -= pre.length_penalty
        for tag, delta in pre.tag_scores.items():
            if gov.has_tag_one(data_class, difficulty, tags_json, tag):
                score += delta
        lower = text.lower()
        for word, delta in pre.keyword_scores.items():
            if word.lower() in lower:
                score += delta
        return min(1.0, max(0.0, score))

    def _predict(self, request_id: str, text: str) -> tuple[list[float], list[float]] | None:
        if self.learned_router is None:
            return None
        import polars as pl

        frame = pl.DataFrame({"item_id": [request_id], "input": [text]})
        pred = self.learned_router.predict(frame)
        models = self.policy.tier_models
        p = [float(pred[m][0]) for m in models]
        mean_cost = [float(self.learned_router.mean_cost[m]) for m in models]
        return p, mean_cost

    def _estimate_cost(self, name: str, text: str) -> float:
        cfg = self.configs[name]
        tokens_in = math.ceil(len(text) / self.policy.refusal.chars_per_token)
        return (tokens_in * (cfg.input_price_per_m or 0.0)
                + cfg.max_tokens * (cfg.output_price_per_m or 0.0)) / 1e6

    # -- the pipeline ------------------------------------------------------------------------
    def complete(
        self,
        prompt_or_messages: str | Sequence[Mapping[str, Any]],
        *,
        task_type: str | None = None,
        labels: Sequence[str] | None = None,
        tags: Sequence[str] | Mapping[str, Any] | str | None = None,
        data_class: str | None = None,
        difficulty: str | None = None,
        request_id: str | None = None,
    ) -> RouteResult:
        """Route one request (a prompt or OpenAI-style chat messages) through the policy.
        `labels` makes it a label task (answers are one of them); `tags`/`data_class`/
        `difficulty` are the request's item tags for governance and pre-routing rules."""
        from workbench.providers.prompts import canonical_task, request_text

        t_start = time.perf_counter()
        model_s = 0.0
        policy = self.policy
        rid = request_id or uuid.uuid4().hex[:16]
        if isinstance(prompt_or_messages, str):
            messages = None
            text = prompt_or_messages
        else:
            messages = [dict(m) for m in prompt_or_messages]
            text = request_text("", messages)
        labels_t = tuple(str(x) for x in labels) if labels else None
        task = canonical_task(task_type or "", labels_t)
        tags_json = _tags_json(tags)
        trace: list[Decision] = []
        k = len(policy.tiers)
        with self._lock:
            self._n_requests += 1
            n_seen = self._n_requests

        # 1. governance
        hits = self._classes(text, data_class, difficulty, tags_json)
        classes = tuple(policy.governance.rules[r].data_class for r in hits)
        allowed = set(policy.models)
        for r in hits:
            allowed &= self._allowed[r]
        if policy.governance.rules:
            trace.append(Decision("governance", "classes" if hits else "clear", None, {
                "classes": list(classes), "allowed": sorted(allowed)}))
        tier_allowed = [t.model in allowed for t in policy.tiers]
        reason: str | None = None
        if not any(tier_allowed):
            reason = "governance"
        # 2. refusal
        elif any(p.search(text) for p in self._deny):
            idx = next(i for i, p in enumerate(self._deny) if p.search(text))
            trace.append(Decision("refusal", "deny_pattern", None, {"pattern_index": idx}))
            reason = "deny_pattern"
        elif policy.refusal.max_input_tokens is not None:
            est = math.ceil(len(text) / policy.refusal.chars_per_token)
            if est > policy.refusal.max_input_tokens:
                trace.append(Decision("refusal", "max_input_tokens", None, {
                    "estimated_tokens": est, "max": policy.refusal.max_input_tokens}))
                reason = "max_input_tokens"
        if reason is not None:
            trace.append(Decision("answer", "refused", None, {"reason": reason}))
            return self._finish(rid, t_start, model_s, trace, text, classes, refused=reason)

        # 3. pre-routing
        start = 0
        prekey = 0.0
        pre = policy.preroute
        preds = None
        if isinstance(pre, RulesPreroute):
            score = self._rules_score(pre, text, data_class, difficulty, tags_json)
            prekey = score
            if score < pre.preroute_below:
                start = k - 1
            trace.append(Decision("preroute", "strong" if start else "cheap", None, {
                "score": score, "preroute_below": pre.preroute_below}))
        elif isinstance(pre, LearnedPreroute):
            preds = self._predict(rid, text)
            assert preds is not None
            p, mean_cost = preds
            values = [p[t] - pre.cost_weight * mean_cost[t] if tier_allowed[t] else -math.inf
                      for t in range(k)]
            start = max(range(k), key=lambda t: (values[t], -t))
            prekey = p[0]
            trace.append(Decision("preroute", "entry", policy.tiers[start].model, {
                "predicted": dict(zip(policy.tier_models, p, strict=True))}))
        elif self.learned_router is not None and any(
                t.confidence in ("auto", "router") for t in policy.tiers):
            preds = self._predict(rid, text)
        avail = [tier_allowed[t] and t >= start for t in range(k)]
        if not any(avail):
            avail = list(tier_allowed)

        # 6b. strong-share cap (online): decide once whether this request may use the strong tier
        share = policy.budgets.max_strong_share
        strong_ok = True
        if k >= 2 and share is not None:
            with self._lock:
                strong_ok = self._n_strong < math.floor(share * n_seen + 1e-9)
        strong_closed = False
        if not strong_ok and avail[k - 1]:
            strong_closed = True
            if start == k - 1:  # replay: run again without pre-routing, without the strong tier
                avail = [tier_allowed[t] and t < k - 1 for t in range(k)]
                trace.append(Decision("budget", "strong_share_cap", policy.tiers[k - 1].model,
                                      {"max_strong_share": share}))
            else:
                avail[k - 1] = False
            if not any(avail):
                trace.append(Decision("answer", "refused", None, {"reason": "max_strong_share"}))
                return self._finish(rid, t_start, model_s, trace, text, classes,
                                    refused="max_strong_share")

        # 4-6. cascade with fallback and the cost cap
        cap = policy.budgets.max_cost_per_request
        order = [t for t in range(k) if avail[t]]
        spent = 0.0
        tried: list[str] = []
        attempted_tiers: list[int] = []
        responses: list[Response] = []
        calls: list[tuple[str, Response]] = []
        confidences: dict[str, float | None] = {}
        answer: Response | None = None
        answer_model: str | None = None
        used_fallback = False
        fallback = policy.fallback
        fb_allowed = fallback is not None and fallback in allowed

        def call(name: str) -> Response:
            nonlocal model_s
            req = Request(item_id=rid, task_type=task, input=text, labels=labels_t,
                          messages=messages)
            t0 = time.perf_counter()
            try:
                resp = self.provider(name).complete(req)
            except ProviderError as exc:  # provider construction / check failures
                resp = Response.failure(exc)
            model_s += time.perf_counter() - t0
            return resp

        for pos, t in enumerate(order):
            tier = policy.tiers[t]
            if cap is not None and spent + self._estimate_cost(tier.model, text) > cap:
                trace.append(Decision("budget", "max_cost_per_request", tier.model, {
                    "spent": spent, "cap": cap}))
                break
            resp = call(tier.model)
            calls.append((tier.model, resp))
            tried.append(tier.model)
            attempted_tiers.append(t)
            responses.append(resp)
            spent += resp.cost_usd
            ver = verify_one(tier.verifier, resp.output, labels_t or tier.labels)
            conf = self._confidence(tier.confidence, resp, ver, preds, t)
            if resp.error:  # an error is never accepted; its confidence means nothing
                conf = None
            confidences[tier.model] = conf
            ok = resp.error is None and ver and conf is not None and conf >= tier.accept_above
            detail: dict[str, Any] = {
                "confidence": conf, "accept_above": tier.accept_above,
                "verifier": tier.verifier, "verifier_pass": ver, "cost_usd": resp.cost_usd,
                "latency_ms": round(resp.latency_ms, 2)}
            if resp.error:
                detail["error"] = resp.error
            last = pos == len(order) - 1
            if ok:
                trace.append(Decision("tier", "accept", tier.model, detail))
                answer, answer_model = resp, tier.model
                break
            fb_affordable = cap is None or (
                fallback is not None and spent + self._estimate_cost(fallback, text) <= cap)
            if resp.error and fb_allowed and fb_affordable:
                trace.append(Decision("tier", "error", tier.model, detail))
                assert fallback is not None
                fb = call(fallback)
                calls.append((fallback, fb))
                spent += fb.cost_usd
                tried.append(f"fallback:{fallback}")
                fdetail: dict[str, Any] = {"cost_usd": fb.cost_usd,
                                           "latency_ms": round(fb.latency_ms, 2)}
                if fb.error:
                    fdetail["error"] = fb.error
                trace.append(Decision("fallback", "answer" if not fb.error else "error",
                                      fallback, fdetail))
                responses.append(fb)
                answer, answer_model, used_fallback = fb, fallback, True
                break
            if last:
                if strong_closed and not resp.error:  # it would have escalated to the strong tier
                    detail["strong_share_cap"] = share
                trace.append(Decision("tier", "final" if not resp.error else "error",
                                      tier.model, detail))
                answer, answer_model = resp, tier.model
                break
            trace.append(Decision("tier", "escalate", tier.model, detail))
        if answer is None and responses:  # the cost cap stopped the cascade: last one answers
            answer, answer_model = responses[-1], tried[-1]
        if not responses:
            trace.append(Decision("answer", "refused", None, {"reason": "max_cost_per_request"}))
            return self._finish(rid, t_start, model_s, trace, text, classes,
                                refused="max_cost_per_request")
        reached_strong = (k - 1) in attempted_tiers and k >= 1
        if reached_strong and k >= 2:
            with self._lock:
                self._n_strong += 1
        assert answer is not None
        failed = answer.error is not None
        trace.append(Decision("answer", "failed" if failed else "answered",
                              None if failed else answer_model,
                              {"error": answer.error} if failed else {}))
        return self._finish(
            rid, t_start, model_s, trace, text, classes, answer=answer,
            answer_model=None if failed else answer_model, tried=tuple(tried),
            escalated=len(attempted_tiers) > 1, reached_strong=reached_strong,
            used_fallback=used_fallback, confidences=confidences,
            cost=sum(r.cost_usd for r in responses),
            latency=sum(r.latency_ms for r in responses),
            prompt_tokens=sum(r.prompt_tokens for r in responses),
            completion_tokens=sum(r.completion_tokens for r in responses),
            prekey=prekey, calls=tuple(calls),
        )

    def _confidence(self, source: str, resp: Response, ver: bool,
                    preds: tuple[list[float], list[float]] | None, t: int) -> float | None:
        if source == "recorded":
            return resp.confidence
        if source == "verifier":
            return 1.0 if ver else 0.0
        if source == "router":
            return preds[0][t] if preds else None
        if resp.confidence is not None:
            return resp.confidence
        if preds is not None:
            return preds[0][t]
        return 1.0 if ver else 0.0

    def _finish(
        self,
        rid: str,
        t_start: float,
        model_s: float,
        trace: list[Decision],
        text: str,
        classes: tuple[str, ...],
        *,
        refused: str | None = None,
        answer: Response | None = None,
        answer_model: str | None = None,
        tried: tuple[str, ...] = (),
        escalated: bool = False,
        reached_strong: bool = False,
        used_fallback: bool = False,
        confidences: Mapping[str, float | None] | None = None,
        cost: float = 0.0,
        latency: float = 0.0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        prekey: float = 0.0,
        calls: tuple[tuple[str, Response], ...] = (),
    ) -> RouteResult:
        confidences = dict(confidences or {})
        cheap = self.policy.tiers[0].model
        answer_conf = confidences.get(answer_model) if answer_model else None
        error = answer.error if answer is not None else None
        out_text = (answer.output if answer is not None and not error else None)
        if refused:
            out_text = None
        total_ms = (time.perf_counter() - t_start) * 1000
        overhead_ms = max(0.0, total_ms - model_s * 1000)
        log_ms = 0.0
        if self.log is not None:
            t_log = time.perf_counter()
            record: dict[str, Any] = {
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "request_id": rid,
                "policy": self.policy.name,
                "policy_fingerprint": self._fingerprint,
                "input_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
                "input_chars": len(text),
                "data_classes": list(classes),
                "refused": refused is not None,
                "refusal_reason": refused,
                "models_tried": list(tried),
                "answered_by": answer_model,
                "escalated": escalated,
                "reached_strong": reached_strong,
                "used_fallback": used_fallback,
                "error": error,
                "cheap_model": cheap,
                "cheap_confidence": confidences.get(cheap),
                "confidences": confidences,
                "preroute_score": prekey,
                "cost_usd": cost,
                "latency_ms": round(latency, 3),
                "overhead_ms": round(overhead_ms, 4),
                "trace": [d.as_dict() for d in trace],
            }
            if self.log_text == "full":
                record["input"] = text
            elif self.log_text == "redacted":
                record["input"] = redact_pii(text, self._pii_extra)
            self.log.write(record)
            log_ms = (time.perf_counter() - t_log) * 1000
        return RouteResult(
            request_id=rid, text=out_text, model=answer_model, cost_usd=cost,
            latency_ms=latency, overhead_ms=overhead_ms, trace=tuple(trace),
            refused=refused is not None, refusal_reason=refused,
            error=error, confidence=answer_conf, models_tried=tried, escalated=escalated,
            reached_strong=reached_strong, used_fallback=used_fallback, data_classes=classes,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, log_ms=log_ms,
            calls=calls,
        )


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


__all__ = [
    "Decision", "DecisionLog", "PolicyRouter", "RouteResult", "model_configs", "read_log",
    "redact_pii", "route_text",
]
