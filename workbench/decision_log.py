"""The decision log: one JSON line per routed request, and the PII redaction applied to it.

Every line passes through `redact`, so no key can reach the file; input text is redacted of
the governance detectors' matches (and a policy's custom patterns) unless logging it in full
is asked for.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from workbench import governance as gov
from workbench.providers.base import redact

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


__all__ = ["DecisionLog", "read_log", "redact_pii"]
