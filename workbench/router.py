"""The runtime router: executes an exported policy live, with the providers, one request at a time.

`PolicyRouter.from_file(path).complete(prompt_or_messages)` runs `workbench.pipeline.spec.decide`
on the request, the same specification replay's kernel is held to, with the providers behind
its calls: so given the same answers and confidences, live decisions equal replayed ones.

Live differences from replay, by necessity: the cost cap compares an estimate made before each
call (prompt tokens at the input price + max_tokens at the output price), and the strong-share
cap closes the strong tier online (at most floor(max_strong_share x requests so far) requests
reach it) where replay ranks the whole workload. Every request appends one JSON line to the
decision log (no secrets; what it keeps of the input and the answer, for how long and for which
data classes is the policy's `data_handling`) and records the router's own overhead (wall time
minus time inside provider calls).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.data_handling import (
    TEXT_MODES,
    TEXT_MODES_BY_EXPOSURE,
    DataHandling,
    TextMode,
    hash_key,
    text_fields,
)
from workbench.decision_log import DecisionLog, read_log, redact_pii
from workbench.errors import PolicyError, WorkbenchError
from workbench.models import ModelSpec
from workbench.pipeline import spec
from workbench.pipeline.facts import TextFacts
from workbench.policy import LearnedPreroute, Policy
from workbench.providers.base import (
    Provider,
    ProviderError,
    Request,
    Response,
    UnknownModelError,
    get_provider,
)
from workbench.route_result import Decision, RouteResult, build_trace, call_roles, route_text

LogText = TextMode
ProviderFactory = Callable[[ModelSpec], Provider]
# Whether the strong tier is open to one request (request id -> open); the default is the
# online strong-share counter.
StrongGate = Callable[[str], bool]
CostEstimator = Callable[[str, Request], float]


def _tags_json(tags: Sequence[str] | Mapping[str, Any] | str | None) -> str | None:
    if tags is None:
        return None
    if isinstance(tags, str):
        return tags
    return json.dumps(tags if isinstance(tags, Mapping) else list(tags))


# -- the router ------------------------------------------------------------------------------
class PolicyRouter:
    """Executes a policy live (see the module docstring). Thread-safe: `serve` shares one.

    Each model runs as the policy describes it (`policy.models`), with `config_overrides`
    (e.g. max_tokens=16) applied to every one; `configs` replaces some of them as given.
    `strong_gate` replaces the online strong-share counter (a test can close the strong tier
    for the items replay caps); `cost_estimator(model, text)` replaces the pre-call cost
    estimate the cost cap compares (given the model name and the request). `log_text`
    replaces the policy's `data_handling.log_inputs` (an operator's override, shown in the
    summary); everything else the log keeps follows the policy's data handling."""

    def __init__(
        self,
        policy: Policy,
        *,
        configs: Mapping[str, ModelSpec] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        log: bool = True,
        log_text: LogText | None = None,
        learned_router: Any = None,
        provider_factory: ProviderFactory = get_provider,
        strong_gate: StrongGate | None = None,
        cost_estimator: CostEstimator | None = None,
        models_dir: str | os.PathLike[str] | None = None,
        policy_dir: str | os.PathLike[str] | None = None,
        **config_overrides: Any,
    ) -> None:
        self.policy = policy
        # local models named by file name (exported policies) are found here, on first use
        self.models_dir, self.policy_dir = models_dir, policy_dir
        self.configs: dict[str, ModelSpec] = {
            name: spec.replace(**config_overrides) if config_overrides else spec
            for name, spec in policy.models.items()
        }
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
        handling = policy.data_handling
        self.log_text_overridden = log_text is not None and log_text != handling.log_inputs
        if log_text is not None:
            if log_text not in TEXT_MODES:
                raise PolicyError(f"log_text: unknown choice {log_text!r}; choose one of "
                                  f"{', '.join(TEXT_MODES)}")
            # the policy is the final word on what is kept: an override may only keep less
            if TEXT_MODES_BY_EXPOSURE.index(log_text) > TEXT_MODES_BY_EXPOSURE.index(
                    handling.log_inputs):
                raise PolicyError(
                    f"--log-text {log_text} would keep more request text than policy "
                    f"{policy.name!r} allows (data_handling.log_inputs: {handling.log_inputs}); "
                    "change the policy's data_handling to keep more, or choose "
                    + " or ".join(TEXT_MODES_BY_EXPOSURE[:TEXT_MODES_BY_EXPOSURE.index(
                        handling.log_inputs) + 1]))
            handling = DataHandling.model_validate(
                {**handling.model_dump(), "log_inputs": log_text})
        self.data_handling: DataHandling = handling
        self.log_text: LogText = handling.log_inputs
        self._factory = provider_factory
        self._strong_gate = strong_gate
        self._cost_estimator = cost_estimator
        self._providers: dict[str, Provider] = {}
        self._fewshot_store: Any = None  # opened on the first model with a few-shot source
        # agreement partners are called alongside their tier
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="partner")
        self._lock = threading.Lock()
        self._n_requests = 0
        self._n_strong = 0
        self._pii_extra = [(r.data_class, p) for r in policy.governance.rules
                           for p in r.patterns]
        self._fingerprint = hashlib.sha256(policy.to_json(indent=None).encode()).hexdigest()[:16]
        self._hash_key: bytes | None = None
        if log:
            from workbench import settings

            path = Path(log_path) if log_path else settings.home() / "decisions.jsonl"
            if "hashed" in (handling.log_inputs, handling.log_outputs):
                self._hash_key = hash_key(handling, path)  # a missing key fails before writing
            self.log: DecisionLog | None = DecisionLog(path, handling.retention_days)
        else:
            self.log = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> PolicyRouter:
        """A router for a policy file (loaded with every guard of `load_policy_file`); local
        model file names resolve against `models_dir`, then the file's own directory."""
        from workbench.export import load_policy_file

        kwargs.setdefault("policy_dir", Path(path).resolve().parent)
        return cls(load_policy_file(path), **kwargs)

    @property
    def log_path(self) -> Path | None:
        """Where decisions are appended (None when logging is off)."""
        return self.log.path if self.log else None

    def data_handling_summary(self) -> str:
        """What the decision log keeps, in words (printed by `route` and `serve`)."""
        return self.data_handling.summary(self.log_path, overridden=self.log_text_overridden)

    def _text_record(self, text: str, output: str | None,
                     classes: Sequence[str]) -> dict[str, Any]:
        """The log fields the data handling allows for one request's text and answer: none
        when one of its data classes may not be logged (the line keeps only the decision)."""
        dh = self.data_handling
        withheld = dh.withheld(classes)
        if withheld:
            return {"text_withheld": withheld} if dh.keeps_text else {}

        def redact(t: str) -> str:
            return redact_pii(t, self._pii_extra)

        return {**text_fields("input", dh.log_inputs, text, key=self._hash_key, redact=redact),
                **text_fields("output", dh.log_outputs, output, key=self._hash_key,
                              redact=redact)}

    def provider(self, name: str) -> Provider:
        """The provider of a policy model (created once, shared across threads)."""
        with self._lock:
            prov = self._providers.get(name)
            if prov is None:
                spec = self.configs[name]
                if spec.kind == "local-gguf" and not Path(spec.model).is_absolute():
                    from workbench.local_files import resolve

                    found = resolve(self.policy, models_dir=self.models_dir,
                                    policy_dir=self.policy_dir, names=[name])
                    spec = spec.replace(model=found.models[name].model)
                    self.configs[name] = spec
                prov = self._factory(spec)
                self._providers[name] = prov
        return prov

    def _examples(self, name: str, source: Any, req: Request) -> tuple[tuple[str, str], ...]:
        """The few-shot examples a model with a few-shot source gets for this request: drawn
        from the source workload in the data directory by the same rules as a run (so live
        answers equal recorded ones); a provider error when that workload is not there."""
        from workbench import settings
        from workbench.fewshot import examples_for_items
        from workbench.store import open_store

        try:
            if self._fewshot_store is None:
                self._fewshot_store = open_store(settings.home())
            drawn = examples_for_items(
                self._fewshot_store, source, workload="(live request)", labels=req.labels,
                item_ids=[req.item_id], inputs=[req.input], messages=[req.messages])
        except WorkbenchError as exc:
            raise UnknownModelError(
                f"model {name!r} draws few-shot examples from workload {source.workload!r} "
                f"in the data directory, which failed: {exc}") from None
        return tuple(drawn[0]) if drawn[0] else ()

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
        """Close the decision log and the partner-call threads."""
        self._pool.shutdown(wait=False)
        if self.log:
            self.log.close()

    # -- facts and estimates ---------------------------------------------------------------
    def _predict(self, request_id: str, text: str
                 ) -> tuple[dict[str, float], dict[str, float]] | None:
        """The learned router's predicted success and mean cost per tier model, when the
        policy uses them (the same condition replay applies)."""
        if self.learned_router is None or not self.policy.uses_router():
            return None
        import polars as pl

        frame = pl.DataFrame({"item_id": [request_id], "input": [text]})
        pred = self.learned_router.predict(frame)
        models = self.policy.tier_models
        return ({m: float(pred[m][0]) for m in models},
                {m: float(self.learned_router.mean_cost[m]) for m in models})

    def estimate_cost(self, name: str, request: Request) -> float:
        """A call's expected cost before it is made: prompt tokens (the refusal stage's
        estimate) at the input price plus max_tokens at the output price."""
        if self._cost_estimator is not None:
            return self._cost_estimator(name, request)
        cfg = self.configs[name]
        tokens_in = spec.estimated_tokens(self.policy, len(request.input))
        return (tokens_in * (cfg.input_price_per_mtok or 0.0)
                + cfg.max_tokens * (cfg.output_price_per_mtok or 0.0)) / 1e6

    def _strong_open(self, request_id: str, n_seen: int) -> bool:
        """Whether this request may reach the strong tier (online strong-share cap)."""
        if self._strong_gate is not None:
            return self._strong_gate(request_id)
        limit = spec.strong_share_limit(self.policy, n_seen)
        if limit is None:
            return True
        with self._lock:
            return self._n_strong < limit

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
        with self._lock:
            self._n_requests += 1
            n_seen = self._n_requests
        preds = self._predict(rid, text)
        facts = TextFacts(policy, text, data_class, difficulty, _tags_json(tags),
                          None if preds is None else preds[0], None if preds is None else preds[1])
        tiers = {t.model: t for t in policy.tiers}
        calls: list[tuple[str, Response]] = []
        model_s = 0.0

        req = Request(item_id=rid, task_type=task, input=text, labels=labels_t,
                      messages=messages)

        def invoke(name: str) -> Response:
            try:
                source = self.configs[name].few_shot_source
                one = req if source is None else dataclasses.replace(
                    req, few_shot=self._examples(name, source, req))
                return self.provider(name).complete(one)
            except ProviderError as exc:  # provider construction / check failures
                return Response.failure(exc)

        def attempt(name: str, resp: Response) -> spec.Attempt:
            tier = tiers.get(name)
            return spec.Attempt(
                error=resp.error is not None,
                verifier_pass=True if tier is None else spec.verify(tier, resp.output, labels_t),
                confidence=resp.confidence, cost=resp.cost_usd, latency_ms=resp.latency_ms,
                output=resp.output)

        def call(name: str) -> spec.Attempt:
            nonlocal model_s
            t0 = time.perf_counter()
            resp = invoke(name)
            model_s += time.perf_counter() - t0
            calls.append((name, resp))
            return attempt(name, resp)

        def call_pair(name: str, partner: str) -> tuple[spec.Attempt, spec.Attempt]:
            """A tier and its agreement partner, at once."""
            nonlocal model_s
            t0 = time.perf_counter()
            other = self._pool.submit(invoke, partner)
            resp = invoke(name)
            p_resp = other.result()
            model_s += time.perf_counter() - t0
            calls.extend([(name, resp), (partner, p_resp)])
            return attempt(name, resp), attempt(partner, p_resp)

        decision = spec.decide(policy, facts, call, lambda name: self.estimate_cost(name, req),
                               strong_open=self._strong_open(rid, n_seen), call_pair=call_pair)
        k = len(policy.tiers)
        reached_strong = decision.reached(k - 1)
        if reached_strong and k >= 2:
            with self._lock:
                self._n_strong += 1
        trace = build_trace(policy, facts, decision, calls, text,
                       lambda name: self.estimate_cost(name, req))
        return self._finish(rid, t_start, model_s, trace, text, decision, calls,
                            None if preds is None else preds[0])

    def _finish(
        self,
        rid: str,
        t_start: float,
        model_s: float,
        trace: list[Decision],
        text: str,
        decision: spec.ItemDecision,
        calls: list[tuple[str, Response]],
        predicted: Mapping[str, float] | None,
    ) -> RouteResult:
        policy = self.policy
        classes = tuple(policy.governance.rules[r].data_class for r in decision.classes)
        refused = decision.refusal
        responses = [r for _, r in calls]
        roles = call_roles(decision)
        own = [c for c, role in zip(calls, roles, strict=True) if role != "partner"]
        answer = own[-1][1] if own else None
        answer_model = own[-1][0] if own else None
        failed = answer is not None and answer.error is not None
        if refused or failed:
            answer_model = None
        confidences: dict[str, float | None] = {}
        tier_calls = [c for c, role in zip(calls, roles, strict=True) if role == "tier"]
        for (name, resp), conf in zip(tier_calls, decision.confidences, strict=True):
            # an error is never accepted; its confidence means nothing
            confidences[name] = None if resp.error else conf
        tried = tuple(
            f"{policy.tiers[t].model}+{policy.tiers[t].agree_with}" if paired
            else policy.tiers[t].model
            for t, paired in zip(decision.tried, decision.paired, strict=True)) + (
            (f"fallback:{policy.fallback}",) if decision.fallback else ())
        cheap = policy.tiers[0].model
        error = answer.error if answer is not None else None
        out_text = answer.output if answer is not None and not error and not refused else None
        cost = sum(r.cost_usd for r in responses)
        latency = 0.0
        if refused is None:  # the specification's accounting: a tier and its partner overlap
            made = [spec.Attempt(error=r.error is not None, verifier_pass=True,
                                 confidence=r.confidence, cost=r.cost_usd,
                                 latency_ms=r.latency_ms, output=r.output) for r in responses]
            lat = spec.account(policy, decision, made).latency_ms
            latency = math.nan if lat is None else lat
        escalated = len(decision.tried) > 1
        reached_strong = decision.reached(len(policy.tiers) - 1)
        total_ms = (time.perf_counter() - t_start) * 1000
        overhead_ms = max(0.0, total_ms - model_s * 1000)
        log_ms = 0.0
        if self.log is not None:
            t_log = time.perf_counter()
            record: dict[str, Any] = {
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "request_id": rid,
                "policy": policy.name,
                "policy_fingerprint": self._fingerprint,
                "input_chars": len(text),
                "data_classes": list(classes),
                "refused": refused is not None,
                "refusal_reason": refused,
                "models_tried": list(tried),
                "answered_by": answer_model,
                "escalated": escalated,
                "reached_strong": reached_strong,
                "used_fallback": decision.fallback,
                "error": error,
                "cheap_model": cheap,
                "cheap_confidence": confidences.get(cheap),
                "confidences": confidences,
                "preroute_score": decision.prekey,
                "cost_usd": cost,
                "latency_ms": round(latency, 3),
                "overhead_ms": round(overhead_ms, 4),
                "trace": [d.as_dict() for d in trace],
            }
            if predicted is not None:
                record["predicted"] = dict(predicted)
            record.update(self._text_record(text, out_text, classes))
            self.log.write(record)
            log_ms = (time.perf_counter() - t_log) * 1000
        return RouteResult(
            request_id=rid, text=out_text, model=answer_model, cost_usd=cost,
            latency_ms=latency, overhead_ms=overhead_ms, trace=tuple(trace),
            refused=refused is not None, refusal_reason=refused, error=error,
            confidence=confidences.get(answer_model) if answer_model else None,
            models_tried=tried, escalated=escalated, reached_strong=reached_strong,
            used_fallback=decision.fallback, data_classes=classes,
            prompt_tokens=sum(r.prompt_tokens for r in responses),
            completion_tokens=sum(r.completion_tokens for r in responses), log_ms=log_ms,
            calls=tuple(calls),
        )


__all__ = [
    "Decision", "DecisionLog", "PolicyRouter", "RouteResult", "read_log", "redact_pii",
    "route_text",
]
