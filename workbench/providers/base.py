"""The provider contract: requests, responses and provider-neutral errors, for a ModelSpec.

Every model (a local GGUF file run by llama-cpp-python or a hosted model reached through LiteLLM)
is driven through `Provider`. Its contract:

- `complete(request)` never raises for a failure of that one call (timeout, auth, rate limit,
  connection loss...): it returns a `Response` whose `error` is the failure's short code and
  whose `error_message` is scrubbed of secrets.
- `check()` raises `UnknownModelError` (or another `ProviderError`) when the model cannot be used
  at all (unknown provider string, missing GGUF file, a server that does not serve the model);
  `complete_many` calls it before the first request.
- `complete_many(requests, on_result, should_stop)` returns one entry per request, in order;
  `None` marks requests not attempted because `should_stop()` turned true. `on_result(i, resp)`
  is called in the caller's thread as each response arrives.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from workbench.errors import WorkbenchError
from workbench.extras import require
from workbench.models import KINDS, ModelSpec


@dataclass(frozen=True)
class Request:
    """One item to send to a model: its text (or chat messages) and, for label tasks, labels."""

    item_id: str
    task_type: str
    input: str
    labels: tuple[str, ...] | None = None
    messages: list[dict] | None = None
    # Few-shot (input, answer) pairs chosen for this request (workbench.fewshot); None: the
    # model's own `few_shot` (or the defaults).
    few_shot: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class Response:
    """What one call produced. `error` is a short code (see ProviderError.code) or None.

    `confidence` is in [0, 1]; `label_probs` is the distribution over the request's labels
    for label tasks; `signals` holds the rest (margin, entropy, logprob stats, output length).
    """

    output: str | None
    confidence: float | None
    label_probs: dict[str, float] | None
    signals: dict
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    cost_usd: float
    error: str | None = None
    error_message: str | None = None

    @classmethod
    def failure(cls, exc: BaseException, latency_ms: float = 0.0) -> Response:
        """An error row for a failed call; the message is scrubbed of secrets."""
        err = exc if isinstance(exc, ProviderError) else OtherProviderError(str(exc))
        return cls(
            output=None, confidence=None, label_probs=None, signals={},
            prompt_tokens=0, completion_tokens=0, latency_ms=latency_ms, cost_usd=0.0,
            error=err.code, error_message=redact(str(err)),
        )


# -- errors --------------------------------------------------------------------------------


class ProviderError(WorkbenchError):
    """A model call failed; `code` is the short class name recorded in Response.error."""

    code = "other"

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class AuthError(ProviderError):
    """The provider rejected the credentials (missing, wrong or expired key)."""

    code = "auth"


class RateLimitError(ProviderError):
    """The provider asked us to slow down (HTTP 429)."""

    code = "rate_limit"


class ProviderTimeout(ProviderError):
    """The call took longer than the configured timeout."""

    code = "timeout"


class ContextWindowError(ProviderError):
    """The prompt does not fit the model's context window."""

    code = "context_window"


class ContentPolicyError(ProviderError):
    """The provider refused the content (safety filter)."""

    code = "content_policy"


class ConnectionFailure(ProviderError):
    """The provider could not be reached (refused, reset, DNS...)."""

    code = "connection"


class UnknownModelError(ProviderError):
    """The model string / path names no usable model."""

    code = "unknown_model"


class OtherProviderError(ProviderError):
    """Any other failure (5xx after retries, malformed response...)."""

    code = "other"


ERROR_CODES: tuple[str, ...] = (
    "auth", "rate_limit", "timeout", "context_window", "content_policy", "connection",
    "unknown_model", "other",
)

# -- secret scrubbing ------------------------------------------------------------------------

_TOKEN_PATTERNS = (
    re.compile(r"sk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.=:/+]{6,}"),
    re.compile(r"(?i)(api[_-]?key['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9_\-\.]{6,}"),
    re.compile(r"\b(?:AIza|gsk_|xai-|hf_)[A-Za-z0-9_\-]{10,}"),
)
_SECRET_NAME = re.compile(r"(?i)(KEY|TOKEN|SECRET|PASSWORD)")
_extra_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value (e.g. a key read from secrets.toml) so `redact` removes it."""
    if value and len(value) >= 6:
        _extra_secrets.add(value)


def _secret_values() -> list[str]:
    values = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 6}
    values |= _extra_secrets
    return sorted(values, key=len, reverse=True)


def redact(text: str | None) -> str:
    """`text` with every key-like environment value, registered secret, `sk-...` token and
    Bearer token replaced by `***`, so errors and logs never carry credentials."""
    if not text:
        return text or ""
    out = str(text)
    for value in _secret_values():
        out = out.replace(value, "***")
    for pattern in _TOKEN_PATTERNS:
        if pattern.groups:
            out = pattern.sub(lambda m: m.group(1) + "***", out)
        else:
            out = pattern.sub("***", out)
    return out


# -- the protocol ---------------------------------------------------------------------------

ResultCallback = Callable[[int, Response], None]
StopCheck = Callable[[], bool]


@runtime_checkable
class Provider(Protocol):
    """One model behind one contract (see the module docstring)."""

    config: ModelSpec

    def check(self) -> None:
        """Raise UnknownModelError (or another ProviderError) when the model is unusable."""
        ...

    def complete(self, request: Request) -> Response:
        """Run one request; per-call failures come back as error Responses, never raised."""
        ...

    def complete_many(
        self,
        requests: Sequence[Request],
        on_result: ResultCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> list[Response | None]:
        """Run many requests (shared prefix / concurrency); None where stopped before running."""
        ...


def get_provider(config: ModelSpec) -> Provider:
    """The provider for a model: local GGUF models are loaded once per (path, n_ctx, threads)
    per process and shared; hosted providers are cheap objects."""
    if config.kind == "local-gguf":
        require("llama_cpp", f"local model {config.name!r}")
        from workbench.providers.local import LocalProvider

        return LocalProvider(config)
    if config.kind == "litellm":
        from workbench.providers.hosted import HostedProvider

        return HostedProvider(config)
    raise WorkbenchError(f"unknown model kind {config.kind!r}; valid kinds: {', '.join(KINDS)}")
