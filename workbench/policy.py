"""The routing policy model (pydantic v2) and its file format (YAML or JSON, versioned).

A policy is an ordered pipeline: governance -> refusal -> pre-routing -> cascade (with
fallback) -> budgets. It is self-contained: it names every model it may call with the one model
description (`workbench.models.ModelSpec`: kind, model string, api_base, tags, prices...; the
name is the key), and never holds a secret (only the *name* of an environment variable that
holds one). Files of older schema versions are migrated on load (`migrate`). Thresholds are
named for what they do:
`accept_above` (a tier's answer is accepted when its confidence >= this), `preroute_below`
(items whose cheap-tier score is below this go straight to the strong tier), `cost_weight`
(quality points given up per US dollar of expected cost), `max_strong_share`...
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from workbench.agreement import AgreeOn
from workbench.data_handling import DataHandling, check_classes
from workbench.errors import PolicyError
from workbench.models import ModelSpec

SCHEMA_VERSION = 2  # v2: models are workbench.models.ModelSpec (v1 files are migrated)
MAX_POLICY_FILE_BYTES = 1_000_000

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]

BUILTIN_DETECTORS = ("email", "phone", "payment_card", "iban", "national_id")
VerifierKind = Literal["none", "valid_label", "json", "number"]
ConfidenceSource = Literal["auto", "recorded", "router", "verifier"]

class _Strict(BaseModel):
    """Base: unknown fields are errors (a typo must not silently change a policy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(pattern: str, field: str) -> str:
    """A pattern must compile in Python's `re` (runtime router) and in polars (replay)."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{field}: invalid regular expression {pattern!r}: {exc}") from None
    try:
        import polars as pl

        pl.Series([""]).str.contains(pattern)
    except Exception as exc:  # polars raises ComputeError for syntax it does not support
        raise ValueError(
            f"{field}: regular expression {pattern!r} is not supported by the replay engine "
            f"(Rust regex syntax: no look-around or backreferences): {exc}"
        ) from None
    return pattern


class GovernanceRule(_Strict):
    """A data class (e.g. 'pii'), how it is detected, and which models may see it."""

    data_class: str = Field(min_length=1)
    detectors: tuple[Literal["email", "phone", "payment_card", "iban", "national_id"], ...] = ()
    patterns: tuple[str, ...] = Field(default=(), description="custom regexes over the input")
    item_tags: tuple[str, ...] = Field(
        default=(),
        description="item is in the class when its data_class equals one of these or its tags "
        "contain it (a list element or object value; 'key=value' matches an object entry)",
    )
    allowed_models: tuple[str, ...] = Field(default=(), description="model names")
    allowed_tags: tuple[str, ...] = Field(default=(), description="models carrying any tag")

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_regex(p, "governance pattern") for p in value)

    @model_validator(mode="after")
    def _detects_something(self) -> GovernanceRule:
        if not (self.detectors or self.patterns or self.item_tags):
            raise ValueError(
                f"governance rule {self.data_class!r} detects nothing: give detectors, "
                "patterns or item_tags"
            )
        return self


class Governance(_Strict):
    """Data-class rules; an item in several classes may only reach models all of them allow."""

    rules: tuple[GovernanceRule, ...] = ()


class Refusal(_Strict):
    """Requests refused before any model is called."""

    deny_patterns: tuple[str, ...] = Field(default=(), description="regexes over the input")
    max_input_tokens: int | None = Field(default=None, ge=1)
    chars_per_token: float = Field(
        default=4.0, gt=0, description="token estimate = ceil(characters / chars_per_token)"
    )

    @field_validator("deny_patterns")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_regex(p, "refusal deny pattern") for p in value)


class RulesPreroute(_Strict):
    """Rule score in [0,1] that the cheap tier will do; below `preroute_below` -> strong tier.

    score = clip(base_score - length_penalty * [chars > long_input_chars]
                 + sum(tag_scores[t] for tags the item has)
                 + sum(keyword_scores[k] for keywords in the input, case-insensitive), 0, 1)
    """

    kind: Literal["rules"] = "rules"
    preroute_below: Unit = 0.5
    base_score: Unit = 1.0
    long_input_chars: int | None = Field(default=None, ge=1)
    length_penalty: Unit = 0.5
    tag_scores: dict[str, float] = Field(
        default_factory=dict, description="item tag / data_class / difficulty -> score change"
    )
    keyword_scores: dict[str, float] = Field(default_factory=dict)


class LearnedPreroute(_Strict):
    """The learned router picks the entry tier: max predicted success - cost_weight x cost,
    among the tiers governance allows. `cost_weight` is in quality points per US dollar."""

    kind: Literal["learned"] = "learned"
    cost_weight: NonNegative = 0.0


class LearnedRouterSpec(_Strict):
    """Settings of the learned router (hashed word/char n-grams; logistic regression or kNN)."""

    method: Literal["logistic", "knn"] = "logistic"
    n_features: int = Field(default=2048, ge=16, le=1 << 20)
    word_ngrams: int = Field(default=2, ge=1, le=3)
    char_ngrams: tuple[int, ...] = (3, 4)
    l2: NonNegative = 1e-3
    epochs: int = Field(default=60, ge=1, le=10_000)
    learning_rate: float = Field(default=1.0, gt=0, description="multiple of the 1/L step")
    k: int = Field(default=25, ge=1)
    folds: int = Field(default=5, ge=2, description="cross-fitting folds when none is given")
    seed: int = 0


class Tier(_Strict):
    """One cascade tier: accept its answer when confidence >= accept_above, the verifier
    passes, there is no error and, with an agreement gate, the answer agrees with the
    `agree_with` model's; otherwise escalate to the next tier."""

    model: str
    accept_above: Unit = 0.0
    verifier: VerifierKind = "none"
    confidence: ConfidenceSource = Field(
        default="auto",
        description="auto: recorded confidence, else the learned router's predicted success "
        "(when the policy has a router), else the verifier (pass=1, fail=0)",
    )
    labels: tuple[str, ...] = Field(
        default=(), description="valid labels for the valid_label verifier when items have none"
    )
    agree_with: str | None = Field(
        default=None,
        description="agreement gate: accept only when this model (an earlier tier, reused, or "
        "another model, called alongside) gives the same answer",
    )
    agree_on: AgreeOn = Field(
        default="label",
        description="how answers are compared: label, choice (option letter), number, json, "
        "text",
    )


class Budgets(_Strict):
    """Caps: cost per request (recorded cost in replay), share of items reaching the strong
    tier (the ones with the lowest cheap-tier confidence keep it)."""

    max_cost_per_request: NonNegative | None = None
    max_strong_share: Unit | None = None


class Provenance(_Strict):
    """Where a policy came from (filled by tune/export; free-form metrics)."""

    workload: str | None = None
    workload_fingerprint: str | None = None
    study: str | None = None
    trial: int | None = None
    created: str | None = None
    package_version: str | None = None
    train_metrics: dict[str, Any] | None = None
    holdout_metrics: dict[str, Any] | None = None
    routing: dict[str, Any] | None = Field(
        default=None, description="does routing pay: the holdout comparison with the best "
        "single model and the random-mix frontier (workbench.routing_pays)")
    model_files: dict[str, dict[str, Any]] | None = Field(
        default=None, description="local models named by file: model -> {file, sha256, bytes} "
        "(workbench.local_files resolves and checks them)")
    approval: dict[str, Any] | None = Field(
        default=None, description="the review that approved this content: policy name, version, "
        "content hash, reviewer, time and comment (workbench policy approve)")
    label_set: dict[str, Any] | None = Field(
        default=None, description="the reviewed label set the metrics were computed against: "
        "workload, version, reviewers (workbench.reviews)")


Preroute = Annotated[RulesPreroute | LearnedPreroute, Field(discriminator="kind")]


class Policy(_Strict):
    """A complete routing policy; see the module docstring for the pipeline order."""

    schema_version: int = SCHEMA_VERSION
    name: str = "policy"
    description: str = ""
    models: dict[str, ModelSpec]
    governance: Governance = Governance()
    refusal: Refusal = Refusal()
    preroute: Preroute | None = None
    router: LearnedRouterSpec | None = None
    tiers: tuple[Tier, ...]
    fallback: str | None = Field(default=None, description="model answering on a tier's error")
    budgets: Budgets = Budgets()
    data_handling: DataHandling = Field(
        default=DataHandling(), description="what the decision log keeps (inputs, outputs, "
        "retention, loggable data classes); see workbench.data_handling")
    provenance: Provenance | None = None

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        """Older schema versions are brought to this one before validation."""
        return migrate(data) if isinstance(data, Mapping) else data

    @field_validator("schema_version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(_version_error(value))
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _names_from_keys(cls, value: Any) -> Any:
        """Each model's name is its key: filled in, and a different explicit name is an error."""
        if not isinstance(value, Mapping):
            return value
        out: dict[Any, Any] = {}
        for key, spec in value.items():
            if isinstance(spec, ModelSpec):
                named = spec.name
            elif isinstance(spec, Mapping):
                if "provider" in spec and "kind" not in spec:
                    raise ValueError(
                        f"model {key!r}: 'provider' is a schema_version 1 field; write kind "
                        "(local-gguf | litellm) or declare schema_version: 1 to migrate the file"
                    )
                named = spec.get("name", key)
                spec = {**spec, "name": key}
            else:
                named = key
            if named != key:
                raise ValueError(
                    f"model {key!r} is named {named!r}; a model's name is its key in `models`"
                )
            out[key] = spec
        return out

    @field_serializer("models")
    def _models_out(self, models: dict[str, ModelSpec]) -> dict[str, dict[str, Any]]:
        """Models as file data: no name (it is the key), fields at their defaults left out."""
        return {name: spec.file_data() for name, spec in models.items()}

    @model_serializer(mode="wrap")
    def _omit_default_data_handling(self, handler: Any) -> Any:
        """Default data handling is left out of the file, so older policies keep their text
        (and content hash) when saved again."""
        data = handler(self)
        if isinstance(data, dict) and self.data_handling == DataHandling():
            data.pop("data_handling", None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        known = sorted(self.models)

        def check(name: str, where: str) -> None:
            if name not in self.models:
                raise ValueError(
                    f"{where}: unknown model {name!r}; known models: {', '.join(known) or 'none'}"
                )

        if not self.tiers:
            raise ValueError("tiers: a policy needs at least one cascade tier")
        seen: set[str] = set()
        for i, tier in enumerate(self.tiers):
            check(tier.model, f"tiers[{i}]")
            if tier.model in seen:
                raise ValueError(f"tiers[{i}]: model {tier.model!r} appears in two tiers")
            seen.add(tier.model)
            if tier.confidence == "router" and self.router is None:
                raise ValueError(f"tiers[{i}]: confidence 'router' needs a `router:` section")
            if tier.agree_with is not None:
                check(tier.agree_with, f"tiers[{i}].agree_with")
                later = [t.model for t in self.tiers[i:]]
                if tier.agree_with in later:
                    raise ValueError(
                        f"tiers[{i}].agree_with: {tier.agree_with!r} is this tier or a later "
                        "one; a tier can agree with an earlier tier or a model outside the "
                        "cascade")
        if self.fallback is not None:
            check(self.fallback, "fallback")
        for rule in self.governance.rules:
            for name in rule.allowed_models:
                check(name, f"governance rule {rule.data_class!r} allowed_models")
        check_classes(self.data_handling, [r.data_class for r in self.governance.rules])
        if isinstance(self.preroute, LearnedPreroute) and self.router is None:
            raise ValueError("preroute: kind 'learned' needs a `router:` section")
        return self

    # -- derived -------------------------------------------------------------------------
    @property
    def tier_models(self) -> tuple[str, ...]:
        """Tier model names, cheap first."""
        return tuple(t.model for t in self.tiers)

    @property
    def used_models(self) -> tuple[str, ...]:
        """Every model the policy may call: tiers, then the fallback and agreement partners
        that are not tiers."""
        names = list(self.tier_models)
        for extra in (self.fallback, *(t.agree_with for t in self.tiers)):
            if extra is not None and extra not in names:
                names.append(extra)
        return tuple(names)

    def allowed_for(self, rule: GovernanceRule) -> frozenset[str]:
        """Model names a governance rule allows (by name or by tag)."""
        by_tag = {n for n, s in self.models.items() if set(s.tags) & set(rule.allowed_tags)}
        return frozenset(set(rule.allowed_models) | by_tag)

    def uses_router(self) -> bool:
        """Whether replay needs learned-router predictions for this policy."""
        return self.router is not None and (
            isinstance(self.preroute, LearnedPreroute)
            or any(t.confidence in ("router", "auto") for t in self.tiers)
        )

    def with_value(self, path: str, value: Any) -> Policy:
        """A copy with one field set by dotted path ('tiers.0.accept_above'); validated."""
        data = self.model_dump(mode="json")
        data.setdefault("data_handling", self.data_handling.model_dump(mode="json"))
        node: Any = data
        parts = path.split(".")
        try:
            for part in parts[:-1]:
                node = node[int(part)] if isinstance(node, list) else node[part]
            last = parts[-1]
            if isinstance(node, list):
                node[int(last)] = value
            elif isinstance(node, dict) and last in node:
                node[last] = value
            else:
                raise KeyError(last)
        except (KeyError, IndexError, ValueError, TypeError):
            raise PolicyError(f"policy has no field {path!r}") from None
        return Policy.validate_data(data, source=f"policy with {path}={value!r}")

    # -- file format ---------------------------------------------------------------------
    @classmethod
    def validate_data(cls, data: Any, source: str = "policy") -> Policy:
        """Validate parsed data, turning pydantic errors into one clear PolicyError."""
        if not isinstance(data, dict):
            raise PolicyError(f"{source}: a policy must be a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PolicyError(f"{source}: {_format_errors(exc)}") from None

    @classmethod
    def from_yaml(cls, text: str, source: str = "policy") -> Policy:
        """Parse YAML text (safe loader; anchors/aliases refused to stop alias bombs)."""
        _check_size(text, source)
        if _has_alias(text):
            raise PolicyError(f"{source}: YAML anchors and aliases are not allowed in policies")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{source}: invalid YAML: {exc}".splitlines()[0]) from None
        return cls.validate_data(data, source)

    def to_yaml(self) -> str:
        """YAML text (block style, keys in model order)."""
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude_none=True), sort_keys=False,
            allow_unicode=True,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "policy") -> Policy:
        """Parse JSON text."""
        _check_size(text, source)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"{source}: invalid JSON: {exc}") from None
        return cls.validate_data(data, source)

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=indent)

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        """Load a .yaml/.yml/.json policy file, validated; errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise PolicyError(f"policy file {path} does not exist")
        size = path.stat().st_size
        if size > MAX_POLICY_FILE_BYTES:
            raise PolicyError(
                f"policy file {path} is {size} bytes, over the {MAX_POLICY_FILE_BYTES} limit"
            )
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            return cls.from_json(text, source=str(path))
        return cls.from_yaml(text, source=str(path))

    def to_file(self, path: str | Path) -> Path:
        """Write YAML (or JSON for a .json suffix); returns the path."""
        path = Path(path)
        text = self.to_json() if path.suffix.lower() == ".json" else self.to_yaml()
        path.write_text(text, encoding="utf-8")
        return path


def _check_size(text: str, source: str) -> None:
    if len(text) > MAX_POLICY_FILE_BYTES:
        raise PolicyError(f"{source}: policy text over the {MAX_POLICY_FILE_BYTES} limit")


def _has_alias(text: str) -> bool:
    """True when the YAML event stream holds an anchor or alias."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                return True
    except yaml.YAMLError:
        return False
    return False


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def json_schema() -> dict[str, Any]:
    """The policy JSON Schema (what `workbench schema` prints); a model's name is its key."""
    schema = Policy.model_json_schema()
    schema["$id"] = f"workbench-policy-v{SCHEMA_VERSION}"
    spec = schema["$defs"]["ModelSpec"]
    spec["required"] = [f for f in spec.get("required", []) if f != "name"]
    spec["properties"].pop("name", None)
    return schema


# -- schema migrations ---------------------------------------------------------------------------
V1_PROVIDER_KINDS = {"local": "local-gguf", "litellm": "litellm", "openai_compatible": "litellm"}


def _v1_model(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A v1 model spec as v2: `provider` becomes `kind` (an OpenAI-compatible endpoint is
    litellm 'openai/<model>' at its api_base); v1's default price was 0.0, so it is written out."""
    out = dict(spec)
    provider = out.pop("provider", "litellm")
    if provider not in V1_PROVIDER_KINDS:
        raise ValueError(
            f"models.{name}.provider: unknown provider {provider!r}; schema_version 1 "
            f"providers: {', '.join(V1_PROVIDER_KINDS)}"
        )
    model = out.get("model")
    if provider == "openai_compatible" and isinstance(model, str) and (
            not model.startswith("openai/")):
        out["model"] = f"openai/{model}"
    for price in ("input_price_per_mtok", "output_price_per_mtok"):
        if out.get(price) is None:
            out[price] = 0.0
    return {"kind": V1_PROVIDER_KINDS[provider], **out}


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: models become `workbench.models.ModelSpec` (see `_v1_model`)."""
    models = data.get("models")
    if isinstance(models, Mapping):
        data["models"] = {
            k: _v1_model(str(k), v) if isinstance(v, Mapping) else v for k, v in models.items()
        }
    return data


# version -> the function taking a file of that version to the next one
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def _version_error(version: Any) -> str:
    """The message for a schema version this workbench cannot read (names the readable ones)."""
    return (
        f"unknown schema_version {version}; this workbench reads versions 1 to "
        f"{SCHEMA_VERSION} (a newer file needs a newer workbench)"
    )


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """Parsed policy data of any known schema version as this version's data (a new dict,
    migrated one version at a time); data without a version is taken as this version."""
    out = dict(data)
    version = out.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, str) and version.strip().isdigit():
        version = int(version)
    if not isinstance(version, int) or isinstance(version, bool):
        return out  # validation reports the wrong type
    if version > SCHEMA_VERSION or (version < SCHEMA_VERSION and version not in MIGRATIONS):
        raise ValueError(_version_error(version))
    while version < SCHEMA_VERSION:
        out = MIGRATIONS[version](out)
        version += 1
        out["schema_version"] = version
    return out


def cascade(
    models: dict[str, ModelSpec],
    tier_models: Iterable[str],
    accept_above: Iterable[float] | float = 0.5,
    **fields: Any,
) -> Policy:
    """Convenience builder: a cascade over `tier_models` with per-tier thresholds."""
    names = list(tier_models)
    thresholds = (
        [float(accept_above)] * len(names)
        if isinstance(accept_above, int | float)
        else [float(a) for a in accept_above]
    )
    tiers = [{"model": m, "accept_above": a} for m, a in zip(names, thresholds, strict=True)]
    data = {"models": dict(models), "tiers": tiers, **fields}
    return Policy.validate_data(data)


def single(model: str, spec: ModelSpec | None = None) -> Policy:
    """A one-model policy (the single-model baseline as a policy); a bare LiteLLM spec named
    after the model when none is given."""
    spec = spec or ModelSpec(name=model, model=model)
    return Policy.validate_data(
        {"name": f"single:{model}", "models": {model: spec}, "tiers": [{"model": model}]}
    )
