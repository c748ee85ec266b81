"""Hosted models through LiteLLM: any provider string, or any OpenAI-compatible `api_base`.

Keys come from the environment variable the config names (`api_key_env`), else the provider's
standard variable, else `.streamlit/secrets.toml`; they are passed to LiteLLM per call and never
stored, logged or put in messages (every message passes through `redact`). With an `api_base`
only the explicitly named variable is used, so a real provider key never leaks to a local server.
Retries with exponential backoff happen on rate limits and 5xx only; every other failure becomes
an error Response at once. Requests run concurrently in a thread pool (WORKBENCH_CONCURRENCY).
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
import tomllib
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from workbench import settings
from workbench.models import ModelSpec
from workbench.providers.base import (
    AuthError,
    ConnectionFailure,
    ContentPolicyError,
    ContextWindowError,
    OtherProviderError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    Request,
    Response,
    ResultCallback,
    StopCheck,
    UnknownModelError,
    redact,
    register_secret,
)
from workbench.providers.prompts import parse_label, render_messages

log = logging.getLogger(__name__)

# Standard key variables of common LiteLLM providers (provider -> environment variable).
PROVIDER_KEY_ENV: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY",
    "cohere": "COHERE_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "xai": "XAI_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
    "azure": "AZURE_API_KEY",
}

_LITELLM_LOCK = threading.Lock()
_LITELLM: Any = None


class _RedactFilter(logging.Filter):
    """Scrub secrets from records of LiteLLM's (and its HTTP clients') loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def _litellm() -> Any:
    """Import LiteLLM once, offline (bundled price table) and quiet (no debug banners)."""
    global _LITELLM
    with _LITELLM_LOCK:
        if _LITELLM is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            litellm.drop_params = True
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "openai"):
                lg = logging.getLogger(name)
                if not any(isinstance(f, _RedactFilter) for f in lg.filters):
                    lg.addFilter(_RedactFilter())
            _LITELLM = litellm
    return _LITELLM


# -- keys ------------------------------------------------------------------------------------


def secrets_paths() -> list[Path]:
    """Where `.streamlit/secrets.toml` is looked for: the working directory, then the repo."""
    paths = [Path.cwd() / ".streamlit" / "secrets.toml",
             settings.REPO_ROOT / ".streamlit" / "secrets.toml"]
    out: list[Path] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


def read_secrets() -> dict[str, str]:
    """String values of secrets.toml files (top level and one table deep), keyed by name.
    Every value is registered with `redact` so it can never appear in a message."""
    found: dict[str, str] = {}
    for path in secrets_paths():
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            log.warning("ignoring unreadable secrets file %s: %s", path, type(exc).__name__)
            continue
        for key, value in data.items():
            if isinstance(value, str):
                found.setdefault(key, value)
            elif isinstance(value, Mapping):
                for sub, v in value.items():
                    if isinstance(v, str):
                        found.setdefault(sub, v)
    for value in found.values():
        register_secret(value)
    return found


def _lookup(name: str, secrets: Mapping[str, str] | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    if value:
        register_secret(value)
        return value
    secrets = read_secrets() if secrets is None else secrets
    return (secrets.get(name) or secrets.get(name.lower()) or "").strip() or None


def provider_of(model: str, api_base: str | None = None) -> str:
    """LiteLLM's provider name for a model string; UnknownModelError when it cannot map it."""
    litellm = _litellm()
    try:
        _, provider, _, _ = litellm.get_llm_provider(model=model, api_base=api_base)
    except Exception as exc:  # LiteLLM raises BadRequestError (and others) for unmappable names
        raise UnknownModelError(
            f"unknown model {model!r}: LiteLLM cannot tell which provider serves it "
            f"({type(exc).__name__}); write it as 'provider/model', e.g. "
            "'openai/gpt-4o-mini' or 'anthropic/claude-3-5-haiku-20241022', or use "
            "'openai/<name>' with an api_base for an OpenAI-compatible server"
        ) from None
    return str(provider)


def resolve_api_key(config: ModelSpec) -> str | None:
    """The key for a model (see module docstring); None when none is configured."""
    if config.api_key_env:
        return _lookup(config.api_key_env)
    if config.api_base:
        return None
    name = PROVIDER_KEY_ENV.get(provider_of(config.model))
    return _lookup(name) if name else None


def key_status() -> dict[str, bool]:
    """Which hosted providers have a key present (environment or secrets.toml); never the key."""
    secrets = read_secrets()
    return {prov: _lookup(env, secrets) is not None for prov, env in PROVIDER_KEY_ENV.items()}


# -- error mapping ---------------------------------------------------------------------------

_RETRYABLE = (RateLimitError,)


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def map_exception(exc: BaseException, model: str) -> ProviderError:
    """A LiteLLM / HTTP exception as one of our provider-neutral errors (message redacted)."""
    if isinstance(exc, ProviderError):
        return exc
    name = type(exc).__name__
    text = redact(str(exc))[:500]
    status = _status(exc)
    msg = f"model {model!r}: {name}: {text}"
    lowered = text.lower()
    if name in ("AuthenticationError", "PermissionDeniedError") or status in (401, 403):
        return AuthError(f"model {model!r}: the provider rejected the API key ({name}, "
                         f"status {status})")
    if name == "RateLimitError" or status == 429:
        return RateLimitError(msg)
    if name in ("Timeout", "APITimeoutError", "TimeoutError", "ReadTimeout") or status == 408:
        return ProviderTimeout(msg)
    if name == "ContextWindowExceededError" or "context length" in lowered or (
        "context window" in lowered
    ):
        return ContextWindowError(msg)
    if name == "ContentPolicyViolationError":
        return ContentPolicyError(msg)
    if name in ("NotFoundError",) or status == 404:
        return UnknownModelError(msg)
    if _is_connection_failure(exc):
        return ConnectionFailure(msg)
    if status is not None and status >= 500 or name in (
        "InternalServerError", "ServiceUnavailableError", "BadGatewayError"
    ):
        err = OtherProviderError(msg)
        err.retryable = True  # type: ignore[attr-defined]
        return err
    return OtherProviderError(msg)


_CONNECTION_NAMES = {
    "APIConnectionError", "ConnectError", "ConnectionError", "RemoteProtocolError",
    "ConnectionRefusedError", "ConnectionResetError", "ReadError", "ConnectTimeout",
}


def _is_connection_failure(exc: BaseException) -> bool:
    """Whether the server could not be reached; LiteLLM sometimes wraps this as a 500
    ("InternalServerError: Connection error."), so the cause chain and text are checked."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__name__ in _CONNECTION_NAMES:
            return True
        cur = cur.__cause__ or cur.__context__
    text = str(exc).lower()
    return "connection error" in text or "connection refused" in text


def _retryable(err: ProviderError) -> bool:
    return isinstance(err, _RETRYABLE) or bool(getattr(err, "retryable", False))


# -- the provider ----------------------------------------------------------------------------


class HostedProvider:
    """A LiteLLM model behind the Provider protocol (see `workbench.providers.base`)."""

    def __init__(self, config: ModelSpec, concurrency: int | None = None) -> None:
        if config.kind != "litellm":
            raise UnknownModelError(f"model {config.name!r} is {config.kind!r}, not litellm")
        self.config = config
        self.concurrency = max(1, int(concurrency or settings.get("WORKBENCH_CONCURRENCY")))
        self._checked = False
        self.backoff_base_s = 0.5

    # -- checks --------------------------------------------------------------------------
    def check(self) -> None:
        """Raise UnknownModelError when LiteLLM cannot map the model, or when the
        OpenAI-compatible server at api_base lists its models and this one is not among them.
        Auth and connection problems are left to the calls (they become error rows)."""
        provider_of(self.config.model, self.config.api_base)
        if self.config.api_base:
            self._check_served_model()
        self._checked = True

    def _check_served_model(self) -> None:
        import httpx

        key = resolve_api_key(self.config)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = self.config.api_base.rstrip("/") + "/models"  # type: ignore[union-attr]
        try:
            resp = httpx.get(url, headers=headers, timeout=min(10.0, self.config.timeout_s))
        except httpx.HTTPError:
            return  # unreachable now: each call will record a connection error
        if resp.status_code != 200:
            return
        try:
            ids = [str(m.get("id")) for m in resp.json().get("data", [])]
        except (ValueError, AttributeError):
            return
        wanted = self.config.model.split("/", 1)[1] if "/" in self.config.model else (
            self.config.model
        )
        names = set(ids) | {Path(i).name for i in ids} | {Path(i).stem for i in ids}
        if ids and wanted not in names:
            raise UnknownModelError(
                f"model {self.config.name!r}: the server at {self.config.api_base} does not serve "
                f"{wanted!r}; it serves: {', '.join(ids)}"
            )

    # -- calls ---------------------------------------------------------------------------
    def _kwargs(self, request: Request) -> dict[str, Any]:
        cfg = self.config
        labelled = bool(request.labels)
        messages = render_messages(request.task_type, request.input, request.labels,
                                   cfg.few_shot, request.messages, request.few_shot)
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": min(cfg.max_tokens, 32) if labelled else cfg.max_tokens,
            "timeout": cfg.timeout_s,
            "num_retries": 0,
            "max_retries": 0,
            "logprobs": True,
            # Some OpenAI-compatible servers only return logprobs when top_logprobs is set.
            "top_logprobs": 5 if labelled else 1,
        }
        if cfg.api_base:
            kwargs["api_base"] = cfg.api_base
            # OpenAI-compatible servers without auth still need some key for the client.
            kwargs["api_key"] = resolve_api_key(cfg) or "no-key"
        else:
            key = resolve_api_key(cfg)
            if key:
                kwargs["api_key"] = key
        return kwargs

    def complete(self, request: Request) -> Response:
        """One call with retries on rate limits / 5xx; failures become error Responses.
        With `samples` > 1, the self-consistency vote (see `_complete_samples`)."""
        t0 = time.perf_counter()
        try:
            kwargs = self._kwargs(request)
        except ProviderError as exc:
            return Response.failure(exc, (time.perf_counter() - t0) * 1000)
        if self.config.samples > 1:
            return self._complete_samples(request, kwargs, t0)
        raw, attempts, failure = self._call(request, kwargs, t0)
        if failure is not None:
            return failure
        latency_ms = (time.perf_counter() - t0) * 1000
        try:
            return self._response(request, raw, latency_ms, attempts)
        except Exception as exc:  # a malformed response is an error row, not a crash
            err = OtherProviderError(f"model {self.config.name!r}: malformed response: "
                                     f"{type(exc).__name__}: {exc}")
            return Response.failure(err, latency_ms)

    def _call(self, request: Request, kwargs: dict[str, Any],
              t0: float) -> tuple[Any, int, Response | None]:
        """One LiteLLM call with retries on rate limits / 5xx: (raw response, attempts, None),
        or (None, attempts, error Response) when it failed."""
        litellm = _litellm()
        attempts = 0
        while True:
            attempts += 1
            try:
                return litellm.completion(**kwargs), attempts, None
            except Exception as exc:  # every LiteLLM/HTTP failure is mapped, none escapes
                err = map_exception(exc, self.config.name)
                if _retryable(err) and attempts <= self.config.max_retries:
                    delay = self.backoff_base_s * (2 ** (attempts - 1)) * (1 + random.random())
                    log.info("model %s: %s, retry %d in %.1fs", self.config.name, err.code,
                             attempts, delay)
                    time.sleep(delay)
                    continue
                log.warning("model %s item %s failed: %s", self.config.name, request.item_id,
                            redact(str(err)))
                resp = Response.failure(err, (time.perf_counter() - t0) * 1000)
                return None, attempts, _with_signals(resp, {"attempts": attempts})

    def _complete_samples(self, request: Request, kwargs: dict[str, Any],
                          t0: float) -> Response:
        """Self-consistency: `samples` answers at `sample_temperature`, asked for with
        LiteLLM's `n` in one call; a server returning fewer choices (llama.cpp's server
        ignores `n`) is asked again, one call per missing answer, each with the next seed.
        The majority answer (normalised as `vote_on` / the task says) is the output and its
        share the confidence; tokens, cost and latency count every call. A failed call makes
        the item an error row that still carries the tokens and cost already spent."""
        from workbench import consistency

        cfg = self.config
        base = {**kwargs, "temperature": cfg.sample_temperature}
        raws: list[Any] = []
        choices: list[Any] = []
        attempts = 0
        while len(choices) < cfg.samples:
            missing = cfg.samples - len(choices)
            call = {**base, "seed": cfg.seed + len(choices)}
            if missing > 1:
                call["n"] = missing
            raw, tries, failure = self._call(request, call, t0)
            attempts += tries
            if raw is not None:
                got = list(getattr(raw, "choices", None) or [])[:missing]
                raws.append(raw)
                choices.extend(got)
                if got:
                    continue
                failure = Response.failure(OtherProviderError(
                    f"model {cfg.name!r}: malformed response: no choices"),
                    (time.perf_counter() - t0) * 1000)
            assert failure is not None  # _call returns a response or a failure
            prompt_tokens, completion_tokens, cost, _ = self._spent(raws)
            return replace(failure, prompt_tokens=prompt_tokens,
                           completion_tokens=completion_tokens, cost_usd=cost,
                           signals={**failure.signals, "attempts": attempts,
                                    "calls": len(raws) + (raw is None)})
        latency_ms = (time.perf_counter() - t0) * 1000
        try:
            texts = [(c.message.content or "") if c.message else "" for c in choices]
            if request.labels:
                answers: list[str | None] = [parse_label(t, request.labels)[0] for t in texts]
            else:
                answers = [t.strip() for t in texts]
            kind = consistency.vote_kind(request.task_type, bool(request.labels), cfg.vote_on)
            vote = consistency.majority(answers, kind)
            # The first answer's own signals (logprobs, label distribution, finish reason)
            # stay as they were; the vote replaces the output and the confidence.
            first = self._response(request, _one_choice(raws[0], choices[0]), latency_ms,
                                   attempts)
        except Exception as exc:  # a malformed response is an error row, not a crash
            err = OtherProviderError(f"model {cfg.name!r}: malformed response: "
                                     f"{type(exc).__name__}: {exc}")
            return Response.failure(err, latency_ms)
        prompt_tokens, completion_tokens, cost, known = self._spent(raws)
        signals = {**first.signals, "calls": len(raws), "cost_known": known,
                   **consistency.signals(vote, answers, kind, cfg.sample_temperature, cfg.seed,
                                         "generate")}
        output = vote.answer if vote.answer is not None else first.output
        signals["output_chars"] = len(output or "")
        return replace(first, output=output, confidence=vote.share, signals=signals,
                       prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                       cost_usd=cost)

    def _spent(self, raws: Sequence[Any]) -> tuple[int, int, float, bool]:
        """Prompt tokens, completion tokens and cost summed over the calls' responses, and
        whether every call's price was known."""
        prompt_tokens = completion_tokens = 0
        cost, known = 0.0, True
        for raw in raws:
            usage = getattr(raw, "usage", None)
            p = int(getattr(usage, "prompt_tokens", 0) or 0)
            c = int(getattr(usage, "completion_tokens", 0) or 0)
            prompt_tokens += p
            completion_tokens += c
            usd, ok = self._cost(raw, p, c)
            cost += usd
            known = known and ok
        return prompt_tokens, completion_tokens, cost, known

    def _response(self, request: Request, raw: Any, latency_ms: float,
                  attempts: int) -> Response:
        choice = raw.choices[0]
        text = (choice.message.content or "") if choice.message else ""
        usage = getattr(raw, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        signals: dict[str, Any] = {
            "attempts": attempts,
            "finish_reason": getattr(choice, "finish_reason", None),
            "output_chars": len(text),
        }
        token_lps, first_top = _logprobs(choice)
        confidence: float | None = None
        if token_lps:
            mean = sum(token_lps) / len(token_lps)
            signals["logprob_mean"] = mean
            signals["logprob_min"] = min(token_lps)
            confidence = math.exp(mean)
        output: str | None = text.strip()
        label_probs: dict[str, float] | None = None
        if request.labels:
            label, exact = parse_label(text, request.labels)
            signals["raw_output"] = text[:200]
            signals["label_exact"] = exact
            output = label
            label_probs = _label_probs(first_top, request.labels)
            if label_probs:
                ranked = sorted(label_probs.values(), reverse=True)
                signals["margin"] = ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)
                if label is not None and label in label_probs:
                    confidence = label_probs[label]
            if token_lps:
                confidence = math.exp(sum(token_lps)) if confidence is None else confidence
        cost, known = self._cost(raw, prompt_tokens, completion_tokens)
        signals["cost_known"] = known
        if confidence is not None:
            confidence = min(1.0, max(0.0, confidence))
        return Response(
            output=output, confidence=confidence, label_probs=label_probs, signals=signals,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            latency_ms=latency_ms, cost_usd=cost,
        )

    def _cost(self, raw: Any, prompt_tokens: int, completion_tokens: int) -> tuple[float, bool]:
        cfg = self.config
        if cfg.input_price_per_mtok is not None or cfg.output_price_per_mtok is not None:
            return (prompt_tokens * (cfg.input_price_per_mtok or 0.0)
                    + completion_tokens * (cfg.output_price_per_mtok or 0.0)) / 1e6, True
        if cfg.api_base:
            return 0.0, False  # a self-hosted endpoint has no list price
        try:
            return float(_litellm().completion_cost(completion_response=raw) or 0.0), True
        except Exception:  # model missing from the price table
            return 0.0, False

    def complete_many(
        self,
        requests: Sequence[Request],
        on_result: ResultCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> list[Response | None]:
        """Run requests `concurrency` at a time; stop submitting when `should_stop()` is true
        (in-flight calls finish and are reported); `on_result` runs in this thread."""
        if not self._checked:
            self.check()
        results: list[Response | None] = [None] * len(requests)
        if not requests:
            return results
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)),
                                thread_name_prefix="hosted") as pool:
            pending: dict[Future[Response], int] = {}
            next_i = 0
            while next_i < len(requests) or pending:
                stopping = bool(should_stop and should_stop())
                while not stopping and next_i < len(requests) and len(pending) < self.concurrency:
                    pending[pool.submit(self.complete, requests[next_i])] = next_i
                    next_i += 1
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    results[i] = fut.result()
                    if on_result:
                        on_result(i, results[i])  # type: ignore[arg-type]
                if stopping and not pending:
                    break
        return results


def _logprobs(choice: Any) -> tuple[list[float], list[tuple[str, float]]]:
    """Token logprobs of the answer and the first token's top alternatives, when returned."""
    lp = getattr(choice, "logprobs", None)
    if lp is None:
        return [], []
    content = lp.get("content") if isinstance(lp, dict) else getattr(lp, "content", None)
    if not content:
        return [], []
    values: list[float] = []
    first_top: list[tuple[str, float]] = []
    for i, tok in enumerate(content):
        get = tok.get if isinstance(tok, dict) else (lambda k, t=tok: getattr(t, k, None))
        value = get("logprob")
        if value is None or not math.isfinite(float(value)):
            continue
        values.append(float(value))
        if i == 0:
            for alt in get("top_logprobs") or []:
                aget = alt.get if isinstance(alt, dict) else (lambda k, a=alt: getattr(a, k, None))
                if aget("token") is not None and aget("logprob") is not None:
                    first_top.append((str(aget("token")), float(aget("logprob"))))
    return values, first_top


def _label_probs(first_top: list[tuple[str, float]],
                 labels: Sequence[str]) -> dict[str, float] | None:
    """A distribution over labels from the first answer token's top alternatives: each
    alternative's probability goes to the labels it starts (shared equally)."""
    mass = dict.fromkeys(labels, 0.0)
    for token, logprob in first_top:
        t = token.strip().lower()
        if not t:
            continue
        owners = [lab for lab in labels if lab.lower().startswith(t)]
        for lab in owners:
            mass[lab] += math.exp(logprob) / len(owners)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {lab: v / total for lab, v in mass.items()}


def _with_signals(resp: Response, extra: dict) -> Response:
    return replace(resp, signals={**resp.signals, **extra})


def _one_choice(raw: Any, choice: Any) -> Any:
    """A view of a response holding only `choice` (and the response's usage), for reading
    one answer's signals with `HostedProvider._response`."""
    return SimpleNamespace(choices=[choice], usage=getattr(raw, "usage", None),
                           model=getattr(raw, "model", None))
