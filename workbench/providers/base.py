"""The provider contract: model configs, requests, responses and provider-neutral errors.

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

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from workbench.errors import WorkbenchError
from workbench.extras import require

Kind = Literal["local-gguf", "litellm"]
KINDS: tuple[str, ...] = ("local-gguf", "litellm")

# Bump when the way prompts are built or outputs are scored changes, so cached runs are redone.
PROVIDER_VERSION = "3"  # bump whenever outputs change (v3: deterministic local evaluation)


@dataclass(frozen=True)
class ModelConfig:
    """A provider-neutral model configuration; the catalog converts its rows to and from this.

    `api_key_env` is the NAME of the environment variable holding the key, never the key.
    `templates` maps a task type to a template override (see `workbench.providers.prompts`);
    `few_shot` maps a task type to (input, answer) examples.
    """

    name: str
    kind: Kind
    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float = 0.0
    max_tokens: int = 128
    n_ctx: int = 2048
    threads: int = 0
    input_price_per_m: float | None = None
    output_price_per_m: float | None = None
    hardware_usd_per_hour: float | None = None
    tags: tuple[str, ...] = ()
    templates: Mapping[str, str] = field(default_factory=dict)
    few_shot: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)
    timeout_s: float = 60
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise WorkbenchError(
                f"model {self.name!r}: unknown kind {self.kind!r}; valid kinds: {', '.join(KINDS)}"
            )
        if not self.name or not self.name.strip():
            raise WorkbenchError("model name must not be empty")
        if not self.model or not str(self.model).strip():
            raise WorkbenchError(f"model {self.name!r}: the model string / GGUF path is empty")
        if self.api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise WorkbenchError(
                f"model {self.name!r}: api_key_env must be the NAME of an environment variable "
                "(letters, digits, underscores), not the key itself"
            )
        from workbench.providers.prompts import validate_template

        for task, template in (self.templates or {}).items():
            validate_template(template, f"model {self.name!r}, template for {task!r}")
        # Normalise containers so configs from JSON/SQL compare equal to hand-written ones.
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "templates", dict(self.templates or {}))
        object.__setattr__(
            self,
            "few_shot",
            {k: [(str(a), str(b)) for a, b in v] for k, v in (self.few_shot or {}).items()},
        )

    def __hash__(self) -> int:  # dict fields: hash by the JSON of every field
        return hash(json.dumps(self.as_dict(), sort_keys=True, default=str))

    def as_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready data (no secrets are ever held here)."""
        return {
            "name": self.name, "kind": self.kind, "model": self.model,
            "api_base": self.api_base, "api_key_env": self.api_key_env,
            "temperature": self.temperature, "max_tokens": self.max_tokens,
            "n_ctx": self.n_ctx, "threads": self.threads,
            "input_price_per_m": self.input_price_per_m,
            "output_price_per_m": self.output_price_per_m,
            "hardware_usd_per_hour": self.hardware_usd_per_hour,
            "tags": list(self.tags), "templates": dict(self.templates),
            "few_shot": {k: [list(p) for p in v] for k, v in self.few_shot.items()},
            "timeout_s": self.timeout_s, "max_retries": self.max_retries,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of `as_dict`; unknown keys are a clear error naming them."""
        known = set(cls.__dataclass_fields__)
        extra = set(data) - known
        if extra:
            raise WorkbenchError(
                f"unknown model config field(s) {sorted(extra)}; known: {sorted(known)}"
            )
        d = dict(data)
        d["tags"] = tuple(d.get("tags") or ())
        d["few_shot"] = {k: [tuple(p) for p in v] for k, v in (d.get("few_shot") or {}).items()}
        return cls(**d)

    def cache_identity(self) -> dict[str, Any]:
        """Everything that changes outputs (model, prompts, generation params), never secrets,
        names, prices or tags; the runner hashes it into the cache key."""
        ident: dict[str, Any] = {
            "provider_version": PROVIDER_VERSION,
            "kind": self.kind,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "templates": dict(sorted(self.templates.items())),
            "few_shot": {k: [list(p) for p in v] for k, v in sorted(self.few_shot.items())},
        }
        if self.kind == "local-gguf":
            # The same file name with different contents (re-quantized) must not share a cache.
            path = Path(self.model).expanduser()
            ident["model"] = path.name
            ident["model_bytes"] = path.stat().st_size if path.exists() else None
            ident["n_ctx"] = self.n_ctx
        else:
            ident["api_base"] = (self.api_base or "").rstrip("/") or None
        return ident

    def cache_hash(self) -> str:
        """Short stable hash of `cache_identity()`."""
        blob = json.dumps(self.cache_identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Request:
    """One item to send to a model: its text (or chat messages) and, for label tasks, labels."""

    item_id: str
    task_type: str
    input: str
    labels: tuple[str, ...] | None = None
    messages: list[dict] | None = None


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

    config: ModelConfig

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


def get_provider(config: ModelConfig) -> Provider:
    """The provider for a config: local GGUF models are loaded once per (path, n_ctx, threads)
    per process and shared; hosted providers are cheap objects."""
    if config.kind == "local-gguf":
        require("llama_cpp", f"local model {config.name!r}")
        from workbench.providers.local import LocalProvider

        return LocalProvider(config)
    if config.kind == "litellm":
        from workbench.providers.hosted import HostedProvider

        return HostedProvider(config)
    raise WorkbenchError(f"unknown model kind {config.kind!r}; valid kinds: {', '.join(KINDS)}")
