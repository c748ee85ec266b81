"""The cascade's answer verifiers, one answer at a time: the rules replay applies vectorized,
shared by the live router and the per-item reference so live and replayed decisions agree."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from workbench.errors import PolicyError

# valid_label: strip whitespace, quotes, brackets and a final period around the label, after
# turning escaped whitespace ("\\n" as two characters, as in RouterBench's list-literal cells)
# into spaces: "['A\\n']" and " b. " are the labels A and B.
LABEL_STRIP = " \t\r\n.\"'[]()"
ESCAPED_WS = r"\\[ntr]"
CODE_FENCE_OPEN = r"^```[A-Za-z]*\s*"
CODE_FENCE_CLOSE = r"\s*```$"


def verify_one(kind: str, output: str | None, labels: Sequence[str]) -> bool:
    """Whether one answer passes the verifier `kind` (none, number, json, valid_label)."""
    if kind == "none":
        return True
    text = output or ""
    if kind == "number":
        return re.search("[0-9]", text) is not None
    if kind == "json":
        t = re.sub(CODE_FENCE_OPEN, "", text.strip())
        t = re.sub(CODE_FENCE_CLOSE, "", t).strip()
        if not t.startswith(("{", "[")):
            return False
        try:
            json.loads(t)
        except ValueError:
            return False
        return True
    if kind == "valid_label":
        norm = re.sub(ESCAPED_WS, " ", text).strip(LABEL_STRIP).lower()
        return norm in {lab.strip(LABEL_STRIP).lower() for lab in labels}
    raise PolicyError(f"unknown verifier {kind!r}")
