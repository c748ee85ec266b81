"""What a policy version *is*, for review: its canonical content, content hash and model
fingerprints.

The content hash covers what the policy does (models, stages, thresholds), not provenance:
exporting a policy adds a creation time, metrics, file hashes and the approval, and names
local models by file name, none of which changes what the policy does. So a file exported
from an approved version hashes to that version, and a file edited after approval does not.
Fields at their defaults are left out, so a newer workbench adding a field (at its default)
does not change the hash of policies approved before.

A model fingerprint is what a review of a policy relied on about one model: kind, provider
string and endpoint (hosted), the GGUF file's SHA-256 (local), and prices. When the catalog's
fingerprint of a model differs from the one recorded at approval, the policy needs a re-check.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import WorkbenchError
from workbench.models import ModelSpec
from workbench.policy import Policy

HASH_CHARS = 12  # how much of a hash is shown to people


def parse_body(body: str, source: str) -> Policy:
    """A saved policy body (YAML or JSON text) as a validated Policy; PolicyError names it."""
    from workbench.export import load_policy_text

    return load_policy_text(body, source)


def canonical_data(policy: Policy) -> dict[str, Any]:
    """The policy as plain data without provenance and defaults; local models by file name."""
    data = policy.model_dump(mode="json", exclude_defaults=True, exclude={"provenance"})
    models = data.get("models") or {}
    for name, spec in policy.models.items():
        if spec.kind == "local-gguf" and name in models:
            models[name]["model"] = Path(spec.model).name
    return data


def canonical_yaml(policy: Policy) -> str:
    """The canonical content as YAML (keys in the policy's field order): what diffs show."""
    return yaml.safe_dump(canonical_data(policy), sort_keys=False, allow_unicode=True)


def content_hash(policy: Policy) -> str:
    """SHA-256 (hex) of the canonical content as sorted, compact JSON."""
    text = json.dumps(canonical_data(policy), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def body_hash(body: str) -> str:
    """Content hash of a saved body; a body that is not a valid policy hashes as raw text
    (line endings normalised) so it still has a stable identity."""
    try:
        return content_hash(parse_body(body, "policy"))
    except WorkbenchError:
        text = body.replace("\r\n", "\n")
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def short(digest: str | None) -> str:
    """The first characters of a hash, as shown in tables and messages."""
    return (digest or "")[:HASH_CHARS] or "-"


def unified_diff(old: str, new: str, old_label: str, new_label: str) -> str:
    """A unified diff of two texts ('' when they are equal)."""
    return "\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), old_label,
                                          new_label, lineterm=""))


def body_yaml(body: str, source: str) -> str:
    """Canonical YAML of a saved body, or the body itself when it is not a valid policy."""
    try:
        return canonical_yaml(parse_body(body, source))
    except WorkbenchError:
        return body


# -- model fingerprints ------------------------------------------------------------------------
def model_fingerprint(spec: ModelSpec) -> dict[str, Any]:
    """What a review relied on about one model: kind, provider string and endpoint or GGUF
    SHA-256, and prices (a local file that is gone fingerprints as missing)."""
    fp: dict[str, Any] = {
        "kind": spec.kind,
        "input_price_per_mtok": spec.input_price_per_mtok,
        "output_price_per_mtok": spec.output_price_per_mtok,
    }
    if spec.kind == "local-gguf":
        from workbench.local_files import file_digest

        path = Path(spec.model)
        fp["sha256"] = file_digest(path) if path.is_file() else f"missing file {path.name}"
        fp["hardware_usd_per_hour"] = spec.hardware_usd_per_hour
    else:
        fp["model"] = spec.model
        fp["api_base"] = spec.api_base
    return fp


def catalog_fingerprints(catalog: Any, names: Iterable[str]) -> dict[str, dict[str, Any] | None]:
    """Current fingerprint of each named model in the catalog (None: not in the catalog)."""
    known = {spec.name: spec for spec in catalog.list_models()}
    return {n: model_fingerprint(known[n]) if n in known else None for n in names}


_FIELDS = (
    ("kind", "kind"),
    ("model", "provider string"),
    ("api_base", "endpoint"),
    ("sha256", "GGUF file (SHA-256)"),
    ("input_price_per_mtok", "input price (USD per 1M tokens)"),
    ("output_price_per_mtok", "output price (USD per 1M tokens)"),
    ("hardware_usd_per_hour", "hardware price (USD per hour)"),
)


def _show(field: str, value: Any) -> str:
    if value is None:
        return "unset"
    if field == "sha256":
        return short(str(value)) if len(str(value)) == 64 else str(value)
    return repr(value) if isinstance(value, str) else f"{value:g}"


def model_changes(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One line per model whose catalog fingerprint differs from the recorded one, naming
    what changed ('cheap: input price (USD per 1M tokens) 0.15 -> 0.2')."""
    lines: list[str] = []
    for name in sorted(set(recorded) | set(current)):
        was, now = recorded.get(name), current.get(name)
        if was == now:
            continue
        if was is None:
            continue  # not in the catalog when reviewed: the policy's own description holds
        if now is None:
            lines.append(f"{name}: no longer in the catalog")
        else:
            diffs = [f"{label} {_show(key, was.get(key))} -> {_show(key, now.get(key))}"
                     for key, label in _FIELDS if was.get(key) != now.get(key)]
            lines.append(f"{name}: " + ("; ".join(diffs) or "changed"))
    return lines
