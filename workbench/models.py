"""One model description (`ModelSpec`): how to reach a model, how to prompt it, what it costs.

The catalog stores it, a policy file names its models with it, and the providers run it, so a
model has one set of field names everywhere. It never holds a secret: `api_key_env` is the NAME
of the environment variable holding the key. An OpenAI-compatible server (vLLM, llama.cpp's
server, a gateway) is kind `litellm` with model `openai/<served-name>` and its `api_base`.
Prices are USD per 1M tokens; None means LiteLLM's bundled price table for a hosted model and
hardware time (`hardware_usd_per_hour`) for a local one. A light module: pydantic only.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workbench.errors import WorkbenchError
from workbench.fewshot import FewShotSource

Kind = Literal["local-gguf", "litellm"]
KINDS: tuple[str, ...] = ("local-gguf", "litellm")

# Bump when the way prompts are built or outputs are scored changes, so cached runs are redone.
PROVIDER_VERSION = "3"  # bump whenever outputs change (v3: deterministic local evaluation)

Price = Annotated[float, Field(ge=0.0)]
# Self-consistency limits (ModelSpec.samples, .sample_temperature).
MIN_SAMPLES, MAX_SAMPLES = 1, 50
MAX_SAMPLE_TEMPERATURE = 2.0
# workbench.agreement.AgreeOn, restated so this module stays light (that one imports polars);
# tests/test_consistency.py holds the two equal.
VoteOn = Literal["label", "choice", "number", "json", "text"]
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# user:password@host, or a key in the query string
_URL_CREDENTIALS = re.compile(r"//[^/?#]*@|(?i:[?&](?:api[_-]?)?key=)")


class ModelSpecError(WorkbenchError, ValueError):
    """A model description is invalid; a ValueError too, so a policy nesting one reports it
    as a validation error at the model's key."""


class ModelSpec(BaseModel):
    """One model: reach (kind, model, api_base, key variable), prompts, generation, prices.

    Constructing one with bad values raises ModelSpecError naming the field (never echoing the
    value, which might be a pasted key); inside a policy the error becomes a PolicyError.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(min_length=1, description="unique model name (in a policy: its key)")
    kind: Kind = Field(default="litellm", description="local-gguf (a GGUF file) or litellm")
    model: str = Field(
        min_length=1,
        description="LiteLLM model string ('openai/gpt-4o', 'openai/<served>' with api_base) "
        "or the GGUF file path",
    )
    api_base: str | None = Field(default=None, description="endpoint URL (no credentials)")
    api_key_env: str | None = Field(
        default=None, description="NAME of the environment variable holding the API key"
    )
    tags: tuple[str, ...] = Field(default=(), description="e.g. 'local', 'cheap', 'eu'")
    input_price_per_mtok: Price | None = Field(
        default=None, description="USD per 1M input tokens (None: price table / hardware time)"
    )
    output_price_per_mtok: Price | None = Field(
        default=None, description="USD per 1M output tokens (None: price table / hardware time)"
    )
    hardware_usd_per_hour: Price | None = Field(
        default=None, description="local models: USD per hour of wall time (None: the setting)"
    )
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=128, ge=1)
    n_ctx: int = Field(default=2048, ge=1, description="local models: context window")
    threads: int = Field(default=0, ge=0, description="local models: 0 = the setting / cores")
    timeout_s: float = Field(default=60.0, gt=0.0)
    max_retries: int = Field(default=3, ge=0)
    samples: int = Field(
        default=1, description="self-consistency: answers drawn per item, confidence = the "
        "majority's share (1 = off; at most 50)"
    )
    sample_temperature: float = Field(
        default=0.7, description="self-consistency: temperature of the drawn answers (0 < T <= 2)"
    )
    seed: int = Field(default=0, description="self-consistency: seed of the draws (>= 0)")
    vote_on: VoteOn | None = Field(
        default=None, description="self-consistency: how answers are compared (label, choice, "
        "number, json, text; None = by task type)"
    )
    templates: dict[str, str] = Field(
        default_factory=dict, description="task type -> prompt template with one {input}"
    )
    few_shot: dict[str, tuple[tuple[str, str], ...]] = Field(
        default_factory=dict, description="task type -> (input, answer) examples"
    )
    few_shot_source: FewShotSource | None = Field(
        default=None, description="examples drawn per run from a (train) workload's labelled "
        "items instead of `few_shot`: k per label or the k most similar (workbench.fewshot)"
    )

    def __init__(self, /, **data: Any) -> None:
        """Validate; errors become one ModelSpecError naming the model and fields."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ModelSpecError(describe_errors(exc, data.get("name"))) from None

    def __hash__(self) -> int:
        """Hash of the canonical JSON (the dict fields make the default hash fail)."""
        return hash(self.model_dump_json())

    # -- validation ----------------------------------------------------------------------------
    @field_validator("name", "model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        """A name or model string of spaces names nothing."""
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("api_base", "api_key_env", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        """An empty form field means not set."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        """A variable NAME only, so a pasted key is refused rather than stored."""
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (letters, digits, _), "
                "never the key itself"
            )
        return value

    @field_validator("api_base")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        """No user:password@ or ?key= in the URL: it is written to files and the catalog."""
        if value is not None and _URL_CREDENTIALS.search(value):
            raise ValueError(
                "api_base must not contain credentials (user:password@host or ?key=); put the "
                "key in an environment variable and give its name as api_key_env"
            )
        return value

    @field_validator("samples")
    @classmethod
    def _samples(cls, value: int) -> int:
        """A vote needs at least one answer; more than 50 multiplies cost for no gain."""
        if not MIN_SAMPLES <= value <= MAX_SAMPLES:
            raise ValueError(f"must be between {MIN_SAMPLES} and {MAX_SAMPLES} (answers drawn "
                             "per item for the self-consistency vote)")
        return value

    @field_validator("sample_temperature")
    @classmethod
    def _sample_temperature(cls, value: float) -> float:
        """T = 0 draws the same answer every time (a vote of one); past 2 draws are noise."""
        if not (0.0 < value <= MAX_SAMPLE_TEMPERATURE):
            raise ValueError(f"must be above 0 and at most {MAX_SAMPLE_TEMPERATURE:g} "
                             "(temperature of the self-consistency draws)")
        return value

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        """A seed numpy and OpenAI-compatible servers both accept."""
        if not 0 <= value < 2**31:
            raise ValueError("must be between 0 and 2147483647")
        return value

    @field_validator("templates")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        """Each template has exactly one {input} (the providers' rule, checked up front)."""
        from workbench.providers.prompts import validate_template

        for task, template in value.items():
            try:
                validate_template(template, f"template for {task!r}")
            except WorkbenchError as exc:
                raise ValueError(str(exc)) from None
        return value

    # -- copies and data -----------------------------------------------------------------------
    def replace(self, **changes: Any) -> ModelSpec:
        """A validated copy with some fields changed (e.g. name=, max_tokens=)."""
        return type(self)(**{**self.model_dump(), **changes})

    @classmethod
    def from_data(cls, name: str, data: dict[str, Any]) -> ModelSpec:
        """A spec from a file's or catalog row's data (which leaves the name out)."""
        return cls(**{**data, "name": name})

    def file_data(self) -> dict[str, Any]:
        """JSON-ready fields for a file: kind and model always, the others only when they
        differ from their defaults; the name is left out (in a file it is the key)."""
        changed = self.model_dump(mode="json", exclude={"name"}, exclude_defaults=True)
        return {"kind": self.kind, "model": self.model, **changed}

    # -- the runner's cache key ----------------------------------------------------------------
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
        if self.few_shot_source is not None:  # only then, so other specs keep their keys
            ident["few_shot_source"] = self.few_shot_source.model_dump(mode="json")
        if self.samples > 1:  # only then, so specs without sampling keep their cache keys
            ident["self_consistency"] = {"samples": self.samples, "seed": self.seed,
                                         "temperature": self.sample_temperature,
                                         "vote_on": self.vote_on}
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


def describe_errors(exc: ValidationError, name: Any = None) -> str:
    """One line per problem (at most five), naming fields but never echoing input values."""
    fields = sorted(ModelSpec.model_fields)
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {loc!r}; known fields: {', '.join(fields)}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
    more = exc.error_count() - len(parts)
    who = f"model {name!r}: " if isinstance(name, str) and name.strip() else "model: "
    return who + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
