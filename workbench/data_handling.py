"""Data handling as settings: what the decision log keeps of each request, and for how long.

A policy's `data_handling` section (`DataHandling`) says whether the log keeps request inputs
and model outputs (`none`, `redacted` of PII, `hashed` with a key kept out of the log and the
policy file, or `full`), how many days a line is kept (older lines are pruned), and which
data classes may have text in the log at all. The router and `serve` enforce it; the
functions here turn one request's text into the log fields those settings allow.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workbench.errors import WorkbenchError

TextMode = Literal["none", "redacted", "hashed", "full"]
TEXT_MODES: tuple[str, ...] = ("none", "redacted", "hashed", "full")
# least to most of the text kept: a keyed hash reveals nothing of it, a redaction keeps the
# words that are not PII; an override of the policy may only move left
TEXT_MODES_BY_EXPOSURE: tuple[str, ...] = ("none", "hashed", "redacted", "full")
MAX_RETENTION_DAYS = 36_500
KEY_SUFFIX = ".key"  # the per-log hashing key sits beside the log, never inside it
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_MODE_WORDS = {
    "none": "not kept",
    "redacted": "kept with PII replaced by [EMAIL], [PHONE]...",
    "hashed": "kept only as a keyed hash (equal texts match; the text is not stored)",
    "full": "kept in full, PII included",
}


class DataHandling(BaseModel):
    """What the decision log keeps: inputs and outputs (each none / redacted / hashed /
    full), retention in days, and the data classes whose requests may have text logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log_inputs: TextMode = Field(
        default="redacted",
        description="request text in the decision log: none, redacted (PII detectors and "
        "governance patterns applied), hashed (keyed HMAC-SHA256; key from hash_key_env or a "
        "random per-log key file beside the log) or full")
    log_outputs: TextMode = Field(
        default="none", description="the answer's text in the decision log (same choices)")
    retention_days: int | None = Field(
        default=None,
        description="days a log line is kept; older lines are pruned when the router opens "
        "the log, hourly while it writes, and by `workbench log prune` (none: kept forever)")
    log_classes: tuple[str, ...] | None = Field(
        default=None,
        description="governance data classes whose requests may have text in the log; a "
        "request in any other class keeps only the decision (none: every class may)")
    hash_key_env: str | None = Field(
        default=None,
        description="NAME of the environment variable holding the key for hashed text "
        "(default: a random key in <log>.key, created on first use)")

    @field_validator("log_inputs", "log_outputs", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in TEXT_MODES:
            raise ValueError(f"unknown choice {value!r}; choose one of {', '.join(TEXT_MODES)}")
        return value

    @field_validator("retention_days", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        if isinstance(value, bool) or (value is not None and not isinstance(value, int)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"must be a whole number of days, got {value!r}")
        if value is not None and value < 0:
            raise ValueError(f"a retention of {value} days is below 0; give 0 or more days "
                             "(0 drops every line at the next prune), or leave it out to keep "
                             "lines forever")
        if value is not None and value > MAX_RETENTION_DAYS:
            raise ValueError(f"{value} days is over the {MAX_RETENTION_DAYS}-day limit; leave "
                             "it out to keep lines forever")
        return value

    @field_validator("hash_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), "
                             "never the key itself")
        return value

    @property
    def keeps_text(self) -> bool:
        """Whether any request text or answer may reach the log."""
        return self.log_inputs != "none" or self.log_outputs != "none"

    def withheld(self, classes: Iterable[str]) -> list[str]:
        """The request's data classes whose text may not be logged (empty: it may be)."""
        if self.log_classes is None:
            return []
        return sorted({c for c in classes if c not in self.log_classes})

    def summary(self, log_path: str | os.PathLike[str] | None = None,
                overridden: bool = False) -> str:
        """One paragraph saying what the decision log keeps (printed by `route`/`serve`)."""
        if log_path is None:
            return "decision log: off (nothing about requests is written)"
        inputs = _MODE_WORDS[self.log_inputs] + (" (set by --log-text)" if overridden else "")
        lines = [f"decision log: {log_path}",
                 f"  inputs: {inputs}",
                 f"  outputs: {_MODE_WORDS[self.log_outputs]}",
                 "  retention: " + ("forever" if self.retention_days is None
                                    else f"{self.retention_days} day"
                                    f"{'' if self.retention_days == 1 else 's'}, older lines "
                                    "pruned")]
        if self.log_classes is not None:
            allowed = ", ".join(self.log_classes) or "no class"
            lines.append(f"  text of classified requests logged only for: {allowed} "
                         "(others keep only the decision)")
        if "hashed" in (self.log_inputs, self.log_outputs):
            where = (f"${self.hash_key_env}" if self.hash_key_env
                     else f"{Path(log_path).name}{KEY_SUFFIX} beside the log")
            lines.append(f"  hash key: {where} (never in the log)")
        return "\n".join(lines)


def check_classes(dh: DataHandling, known: Sequence[str]) -> None:
    """A ValueError naming the field when `log_classes` names a class no governance rule has."""
    if dh.log_classes is None:
        return
    unknown = [c for c in dh.log_classes if c not in known]
    if unknown:
        raise ValueError(
            f"data_handling.log_classes: {', '.join(map(repr, unknown))} is not a governance "
            f"data class; known classes: {', '.join(known) or 'none (add governance rules)'}")


def hash_key(dh: DataHandling, log_path: str | os.PathLike[str]) -> bytes:
    """The key hashed text is keyed with: the environment variable `hash_key_env` names, else
    a random 32-byte key in `<log>.key` (created once, owner-only). Never written to the log."""
    if dh.hash_key_env:
        value = os.environ.get(dh.hash_key_env, "")
        if len(value.strip()) < 16:
            raise WorkbenchError(
                f"data_handling.hash_key_env: ${dh.hash_key_env} is unset or shorter than 16 "
                "characters; put a random key in it (python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')")
        return value.strip().encode()
    path = Path(str(log_path) + KEY_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            raise WorkbenchError(f"hash key file {path} is damaged (too short); remove it to "
                                 "start a new key (old hashes will no longer match)") from None
        return key.encode()
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    return key.encode()


def keyed_hash(key: bytes, text: str) -> str:
    """HMAC-SHA256 of `text` under `key`, 32 hex characters: equal texts give equal hashes,
    and without the key a guess cannot be checked."""
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


def text_fields(name: str, mode: str, text: str | None, *, key: bytes | None,
                redact: Any) -> dict[str, Any]:
    """The log fields for one text (`name` = input or output) under `mode`: nothing, the
    redacted text, `<name>_hash` or the text itself. `redact(text)` redacts PII."""
    if text is None or mode == "none":
        return {}
    if mode == "redacted":
        return {name: redact(text)}
    if mode == "hashed":
        if key is None:
            raise WorkbenchError("hashed log text needs a key (see data_handling.hash_key_env)")
        return {f"{name}_hash": keyed_hash(key, text)}
    return {name: text}


__all__ = [
    "DataHandling", "TEXT_MODES", "TextMode", "check_classes", "hash_key", "keyed_hash",
    "text_fields",
]
