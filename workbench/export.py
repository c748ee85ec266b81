"""Export a routing policy: the versioned policy file (YAML/JSON with provenance) and a LiteLLM
proxy config, plus the guarded loader a production router uses to read the file back.

The policy file is the contract: it names every model (kind, model string, api_base, prices,
the NAME of the key variable, never a key), every stage and threshold, and where the policy
came from. The LiteLLM config carries what LiteLLM can express (deployments, prices, error
fallbacks, retries, timeout, tag filtering for governance classes); the rest (cascade
thresholds, verifiers, pre-routing, refusal, budgets, the detectors) stays in the policy file
and is listed in the config's header comment.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import PolicyError, WorkbenchError
from workbench.policy import (
    MAX_POLICY_FILE_BYTES,
    MIGRATIONS,
    SCHEMA_VERSION,
    Policy,
    Provenance,
)

DEFAULT_LOCAL_API_BASE = "http://127.0.0.1:8000/v1"
DEFAULT_NUM_RETRIES = 2
DEFAULT_TIMEOUT_S = 60.0
MAX_NESTING = 64


def package_version() -> str:
    """The installed workbench version (recorded in provenance)."""
    try:
        from importlib.metadata import version

        return version("workbench")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        from workbench import __version__

        return __version__


# -- secrets ----------------------------------------------------------------------------------
_SECRET_NAME = re.compile(r"(?i)(KEY|TOKEN|SECRET|PASSWORD)")
_KEY_LIKE = re.compile(r"\b(?:sk|pk|gsk|xai|hf|ghp)[-_][A-Za-z0-9_\-]{12,}")


def _secret_values() -> list[str]:
    """Values of key-like environment variables (long, no spaces or slashes)."""
    return [
        v for k, v in os.environ.items()
        if _SECRET_NAME.search(k) and len(v) >= 8 and not re.search(r"[\s/]", v)
    ]


def assert_no_secrets(text: str, where: str) -> None:
    """Refuse text that holds an environment secret or a key-looking token; the message names
    where, never the value."""
    if any(v in text for v in _secret_values()) or _KEY_LIKE.search(text):
        raise WorkbenchError(
            f"{where}: refusing to write it, it contains an API key or another secret; "
            "policies name the environment variable (api_key_env), never the key"
        )


# -- loading with guards ----------------------------------------------------------------------
def _depth(node: Any, limit: int = MAX_NESTING) -> int:
    """Nesting depth of parsed data, stopping at `limit` (iterative: no recursion bomb)."""
    deepest = 0
    stack = [(node, 1)]
    while stack:
        cur, d = stack.pop()
        deepest = max(deepest, d)
        if d > limit:
            return d
        if isinstance(cur, Mapping):
            stack.extend((v, d + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, d + 1) for v in cur)
    return deepest


def _parse(text: str, source: str, is_json: bool) -> Any:
    if is_json:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"{source}: invalid JSON: {exc}") from None
        except RecursionError:
            raise PolicyError(f"{source}: JSON nested too deeply") from None
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise PolicyError(
                    f"{source}: YAML anchors and aliases are not allowed in policy files "
                    "(they can expand into huge documents); write the values out"
                )
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PolicyError(f"{source}: invalid YAML: {first}") from None
    except RecursionError:
        raise PolicyError(f"{source}: YAML nested too deeply") from None


def check_policy_data(data: Any, source: str) -> None:
    """Checks before model validation, with messages a user can act on: mapping, nesting,
    schema version, no key material in model entries."""
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: a policy must be a mapping, got {type(data).__name__}")
    if _depth(data) > MAX_NESTING:
        raise PolicyError(f"{source}: nested more than {MAX_NESTING} levels deep")
    if "schema_version" not in data:
        raise PolicyError(
            f"{source}: missing schema_version (this workbench reads version {SCHEMA_VERSION})"
        )
    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise PolicyError(
            f"{source}: schema_version must be an integer, got {type(version).__name__} "
            f"{version!r}"
        )
    readable = {SCHEMA_VERSION, *MIGRATIONS}  # older versions are migrated on load
    if version not in readable:
        raise PolicyError(
            f"{source}: unknown schema_version {version}; this workbench reads versions "
            f"{min(readable)} to {SCHEMA_VERSION} (a newer file needs a newer workbench)"
        )
    models = data.get("models")
    if isinstance(models, Mapping):
        for name, spec in models.items():
            if isinstance(spec, Mapping):
                bad = [k for k in spec if k.lower() in ("api_key", "key", "token", "secret")]
                if bad:
                    raise PolicyError(
                        f"{source}: models.{name}.{bad[0]}: policies never hold keys; name the "
                        "environment variable with api_key_env"
                    )


def load_policy_text(text: str, source: str = "policy", *, fmt: str | None = None) -> Policy:
    """Parse and validate policy text (fmt 'json' or 'yaml'; guessed from the first
    character when None) with every guard of `load_policy_file` except the file checks."""
    if len(text.encode("utf-8")) > MAX_POLICY_FILE_BYTES:
        raise PolicyError(
            f"{source}: policy text is over the {MAX_POLICY_FILE_BYTES}-byte limit"
        )
    is_json = fmt == "json" if fmt else text.lstrip().startswith("{")
    data = _parse(text, source, is_json)
    check_policy_data(data, source)
    return Policy.validate_data(dict(data), source)


def load_policy_file(path: str | os.PathLike[str]) -> Policy:
    """Load a .yaml/.yml/.json policy file with guards: size limit (checked before reading),
    UTF-8, no YAML anchors/aliases, nesting depth, schema version, no keys, then the policy
    model's own validation (unknown models, thresholds in range, types). Errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise PolicyError(f"policy file {p} does not exist")
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise PolicyError(f"policy file {p}: expected a .yaml, .yml or .json file")
    size = p.stat().st_size
    if size > MAX_POLICY_FILE_BYTES:
        raise PolicyError(
            f"policy file {p} is {size} bytes, over the {MAX_POLICY_FILE_BYTES}-byte limit"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"policy file {p} is not UTF-8 text") from None
    return load_policy_text(text, str(p), fmt="json" if suffix == ".json" else "yaml")


def resolve_policy(ref: str, home: str | os.PathLike[str] | None = None) -> Policy:
    """A policy from a file path, else from the catalog by name ('name' or 'name@version')."""
    p = Path(ref)
    if p.suffix.lower() in (".yaml", ".yml", ".json") or p.exists():
        return load_policy_file(p)
    from workbench.catalog import Catalog

    name, _, version = ref.partition("@")
    entry = Catalog(home).get_policy(name, int(version) if version.isdigit() else None)
    return load_policy_text(entry.body, f"policy {entry.name} v{entry.version}")


# -- provenance and the policy file ------------------------------------------------------------
def with_provenance(
    policy: Policy,
    *,
    workload: str | None = None,
    workload_fingerprint: str | None = None,
    study: str | None = None,
    trial: int | None = None,
    train_metrics: Mapping[str, Any] | None = None,
    holdout_metrics: Mapping[str, Any] | None = None,
    created: str | None = None,
) -> Policy:
    """A copy of `policy` whose provenance has the given fields (others kept), the creation
    time (UTC, ISO 8601; kept when already set and none given) and this package's version."""
    old = policy.provenance.model_dump() if policy.provenance else {}
    new: dict[str, Any] = dict(old)
    given = {
        "workload": workload, "workload_fingerprint": workload_fingerprint, "study": study,
        "trial": trial, "created": created,
        "train_metrics": json.loads(json.dumps(dict(train_metrics), default=str))
        if train_metrics is not None else None,
        "holdout_metrics": json.loads(json.dumps(dict(holdout_metrics), default=str))
        if holdout_metrics is not None else None,
    }
    new.update({k: v for k, v in given.items() if v is not None})
    new.setdefault("created", None)
    if not new["created"]:
        new["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    new["package_version"] = package_version()
    return policy.model_copy(update={"provenance": Provenance.model_validate(new)})


def provenance_from_store(
    policy: Policy,
    store: Any,
    workload: str,
    *,
    holdout_ids: list[str] | None = None,
    study: str | None = None,
    trial: int | None = None,
    seed: int = 0,
    label_set: int | str | None = None,
) -> Policy:
    """Provenance filled from a stored workload: its fingerprint and replay metrics (with CIs)
    on the train items and, when `holdout_ids` is given, on the holdout items. With
    `label_set` (a reviewed version or 'latest'), quality comes from those reviews and the
    provenance names the label-set version (workbench.label_quality)."""
    from workbench.replay import replay

    info = store.workload(workload)
    items = store.recorded_items(workload)
    outcomes = store.outcomes(workload, policy.used_models)
    label_info = None
    if label_set is not None:
        from workbench.label_quality import quality_outcomes

        scored = quality_outcomes(store, workload, label_set=label_set,
                                  models=policy.used_models)
        outcomes = scored.outcomes
        label_info = scored.basis.label_set.as_provenance() if scored.basis.label_set else None
    train_metrics = holdout_metrics = None
    if holdout_ids:
        import polars as pl

        hold = set(holdout_ids)
        is_hold = pl.col("item_id").is_in(list(hold))
        train = replay(policy, items.filter(~is_hold), outcomes.filter(~is_hold), seed=seed)
        test = replay(policy, items.filter(is_hold), outcomes.filter(is_hold), seed=seed)
        train_metrics, holdout_metrics = train.summary(), test.summary()
    else:
        train_metrics = replay(policy, items, outcomes, seed=seed).summary()
    policy = with_provenance(
        policy, workload=workload, workload_fingerprint=info.fingerprint, study=study,
        trial=trial, train_metrics=train_metrics, holdout_metrics=holdout_metrics,
    )
    if label_info is None:
        return policy
    assert policy.provenance is not None
    return policy.model_copy(update={"provenance": policy.provenance.model_copy(
        update={"label_set": label_info})})


def policy_text(policy: Policy, fmt: str = "yaml") -> str:
    """The policy file text in `fmt` ('yaml' or 'json'), checked to hold no secret; local
    models are named by file name and hash (`local_files.portable`), so the file works on
    another machine, and carry per-1M prices from their measured speed (`local_cost`)."""
    if fmt not in ("yaml", "json"):
        raise WorkbenchError(f"unknown policy format {fmt!r}; use yaml or json")
    from workbench.local_cost import with_local_prices
    from workbench.local_files import portable

    policy = portable(with_local_prices(policy))  # local models priced from measured speed
    text = policy.to_json() + "\n" if fmt == "json" else (
        f"# workbench routing policy, schema version {SCHEMA_VERSION}\n" + policy.to_yaml()
    )
    assert_no_secrets(text, f"policy {policy.name!r}")
    return text


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_policy(policy: Policy, path: str | os.PathLike[str], *,
                  provenance: bool = True) -> Path:
    """Write the policy file (JSON for a .json suffix, else YAML) atomically; with
    `provenance`, the created time and package version are filled in first."""
    p = Path(path)
    if p.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise WorkbenchError(f"policy file {p}: use a .yaml, .yml or .json name")
    if provenance:
        policy = with_provenance(policy)
    fmt = "json" if p.suffix.lower() == ".json" else "yaml"
    return _atomic_write(p, policy_text(policy, fmt))


# -- LiteLLM proxy config ------------------------------------------------------------------------
def litellm_model_string(name: str, policy: Policy) -> tuple[str, str | None]:
    """(LiteLLM model string, api_base) reaching policy model `name`: a litellm model as is
    (an OpenAI-compatible endpoint is already 'openai/<served>' at its api_base); a local GGUF
    model as 'openai/<name>' on a llama_cpp.server (its api_base, else the default address,
    where one server serves every local model by name: see `local_files`)."""
    spec = policy.models[name]
    if spec.kind == "litellm":
        return spec.model, spec.api_base
    return f"openai/{name}", spec.api_base or DEFAULT_LOCAL_API_BASE


def governance_tags(policy: Policy) -> dict[str, list[str]]:
    """Model name -> the governance data classes it may see (LiteLLM deployment tags)."""
    out: dict[str, list[str]] = {name: [] for name in policy.models}
    for rule in policy.governance.rules:
        for name in sorted(policy.allowed_for(rule)):
            if rule.data_class not in out[name]:
                out[name].append(rule.data_class)
    return out


def litellm_config(
    policy: Policy,
    *,
    num_retries: int = DEFAULT_NUM_RETRIES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """The LiteLLM proxy config as data: `model_list` (one deployment per policy model, prices
    per token in litellm_params, governance classes as tags) and `router_settings` (error
    fallbacks from the policy's fallback stage, num_retries, timeout, tag filtering)."""
    from workbench.local_cost import with_local_prices

    policy = with_local_prices(policy)  # local deployments carry their measured price
    tags = governance_tags(policy)
    model_list = []
    for name, spec in policy.models.items():
        model, api_base = litellm_model_string(name, policy)
        params: dict[str, Any] = {"model": model}
        if api_base:
            params["api_base"] = api_base
        if spec.api_key_env:
            params["api_key"] = f"os.environ/{spec.api_key_env}"
        elif api_base:
            params["api_key"] = "no-key"  # OpenAI-compatible servers without auth
        # no price: LiteLLM's own table applies, as in the workbench
        if spec.input_price_per_mtok is not None:
            params["input_cost_per_token"] = spec.input_price_per_mtok / 1e6
        if spec.output_price_per_mtok is not None:
            params["output_cost_per_token"] = spec.output_price_per_mtok / 1e6
        if tags[name]:
            params["tags"] = list(tags[name])
        params["timeout"] = timeout_s
        model_list.append({
            "model_name": name,
            "litellm_params": params,
            "model_info": {"workbench_kind": spec.kind,
                           "workbench_tags": list(spec.tags)},
        })
    router: dict[str, Any] = {
        "routing_strategy": "simple-shuffle",
        "num_retries": int(num_retries),
        "timeout": float(timeout_s),
    }
    if policy.fallback is not None:
        router["fallbacks"] = [
            {m: [policy.fallback]} for m in policy.tier_models if m != policy.fallback
        ]
    if policy.governance.rules:
        router["enable_tag_filtering"] = True
        router["tag_filtering_match_any"] = False
    return {"model_list": model_list, "router_settings": router}


def _header(policy: Policy) -> str:
    """The comment block naming what only the policy file (and our router) can execute."""
    lines = [
        f"LiteLLM proxy config exported from workbench policy {policy.name!r} "
        f"(schema version {SCHEMA_VERSION}, workbench {package_version()}).",
        "LiteLLM executes: the deployments and their prices, error fallbacks, retries, timeout"
        + (", tag filtering." if policy.governance.rules else "."),
        "NOT expressible in LiteLLM, kept in the policy file (run it with `workbench serve`"
        " or workbench.router.PolicyRouter):",
    ]
    for i, tier in enumerate(policy.tiers):
        lines.append(
            f"  cascade tier {i}: {tier.model} accepts when confidence ({tier.confidence}) >= "
            f"{tier.accept_above} and verifier {tier.verifier!r} passes, else escalates"
        )
    if policy.preroute is not None:
        pre = policy.preroute
        what = (f"rules score < preroute_below={pre.preroute_below} -> strong tier"
                if pre.kind == "rules" else f"learned router, cost_weight={pre.cost_weight}")
        lines.append(f"  pre-routing: {what}")
    ref = policy.refusal
    if ref.deny_patterns or ref.max_input_tokens:
        lines.append(f"  refusal: {len(ref.deny_patterns)} deny pattern(s), max_input_tokens="
                     f"{ref.max_input_tokens}")
    b = policy.budgets
    if b.max_cost_per_request is not None or b.max_strong_share is not None:
        lines.append(f"  budgets: max_cost_per_request={b.max_cost_per_request}, "
                     f"max_strong_share={b.max_strong_share}")
    for rule in policy.governance.rules:
        how = ", ".join([*rule.detectors, *(f"/{p}/" for p in rule.patterns),
                         *(f"tag:{t}" for t in rule.item_tags)])
        lines.append(
            f"  governance {rule.data_class!r} is detected by {how}: LiteLLM cannot detect it; "
            f"clients must send tags: [{rule.data_class!r}] on such requests (only models "
            f"tagged {rule.data_class!r} then serve them; the proxy applies tag filtering, "
            "in the SDK use Router.acompletion(..., metadata={'tags': [...]}))"
        )
    from workbench.local_files import portable

    local = {n: s for n, s in portable(policy).models.items() if s.kind == "local-gguf"}
    if local:
        bases = sorted({litellm_model_string(n, policy)[1] or "" for n in local})
        lines.append(
            f"  local models {', '.join(repr(n) for n in local)}: serve them first with ONE "
            "llama_cpp.server, each under its own name: `workbench export --policy P "
            "--llama-server server.json`, then, in the directory holding "
            f"{', '.join(s.model for s in local.values())}: `python -m llama_cpp.server "
            f"--config_file server.json` (reachable at {', '.join(bases)}; it loads the model "
            "a request names)")
    return "".join(f"# {line}\n" for line in lines)


def litellm_config_yaml(policy: Policy, **kwargs: Any) -> str:
    """The LiteLLM proxy config YAML with its explanatory header; checked to hold no secret."""
    body = yaml.safe_dump(litellm_config(policy, **kwargs), sort_keys=False, allow_unicode=True)
    text = _header(policy) + body
    assert_no_secrets(text, f"LiteLLM config for policy {policy.name!r}")
    return text


def write_litellm_config(policy: Policy, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write the LiteLLM proxy config YAML atomically; returns the path."""
    return _atomic_write(Path(path), litellm_config_yaml(policy, **kwargs))


def load_litellm_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a LiteLLM config YAML back (safe loader)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "model_list" not in data:
        raise WorkbenchError(f"{path}: not a LiteLLM config (no model_list)")
    return data


def build_litellm_router(config: Mapping[str, Any]) -> Any:
    """A `litellm.Router` from a config dict (as `litellm_config` returns), resolving
    `os.environ/NAME` keys from the environment at call time like the proxy does."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    model_list = []
    for entry in config["model_list"]:
        params = dict(entry["litellm_params"])
        key = params.get("api_key")
        if isinstance(key, str) and key.startswith("os.environ/"):
            params["api_key"] = os.environ.get(key.split("/", 1)[1])
        model_list.append({**entry, "litellm_params": params})
    return litellm.Router(model_list=model_list, **dict(config.get("router_settings") or {}))
