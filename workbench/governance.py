"""Data-class detection for governance, vectorized over a column of texts.

Built-in detectors (each a regex written in the syntax common to Python's `re` and the Rust
regex engine polars uses, so the runtime router and replay agree):
- email; phone (international +CC, "(555) 123-4567", "555-123-4567");
- payment card: 13-19 digits (spaces or dashes allowed) passing the Luhn check;
- IBAN: country code, check digits and 11-30 alphanumerics passing the ISO 7064 mod-97 check;
- national_id: US SSN (area not 000/666/9xx, group not 00, serial not 0000), UK NINO.
Boundaries are explicit character classes rather than `\\b` (Unicode-aware in Rust, slow).
The checksums run in numpy on the extracted candidates, so rows without a candidate cost
one regex scan only.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import polars as pl

EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
PHONE = (
    r"(?:\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{2,4}(?:[ .-]?[0-9]{2,4}){2,4}"
    r"|\([0-9]{3}\)[ .-]?[0-9]{3}[ .-][0-9]{4}"
    r"|(?:^|[^0-9])[0-9]{3}[.-][0-9]{3}[.-][0-9]{4}(?:$|[^0-9]))"
)
CARD_CANDIDATE = r"(?:^|[^0-9])(?:[0-9][ -]?){12,18}[0-9](?:$|[^0-9])"
IBAN_CANDIDATE = (
    r"(?:^|[^A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
    r"(?:$|[^A-Za-z0-9])"
)
SSN = (
    r"(?:^|[^0-9-])(?:00[1-9]|0[1-9][0-9]|[1-578][0-9]{2}|6[0-57-9][0-9]|66[0-57-9])"
    r"-(?:0[1-9]|[1-9][0-9])-(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
    r"(?:$|[^0-9-])"
)
NINO = (
    r"(?:^|[^A-Za-z0-9])[A-CEGHJ-PR-TW-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]"
    r"(?:$|[^A-Za-z0-9])"
)
NATIONAL_ID = f"(?:{SSN}|{NINO})"

PLAIN_DETECTORS = {"email": EMAIL, "phone": PHONE, "national_id": NATIONAL_ID}


# -- checksums (numpy, over many candidates at once) -------------------------------------
def luhn_valid(digits: pl.Series) -> np.ndarray:
    """Luhn check of digit-only strings (length <= 19), vectorized."""
    if digits.len() == 0:
        return np.zeros(0, dtype=bool)
    width = 19
    padded = digits.str.pad_start(width, "0")
    raw = np.frombuffer("".join(padded.to_list()).encode("ascii"), dtype=np.uint8)
    d = raw.reshape(-1, width).astype(np.int16) - 48
    doubled = (width - 1 - np.arange(width)) % 2 == 1  # every second digit from the right
    d[:, doubled] *= 2
    d[:, doubled] -= np.where(d[:, doubled] > 9, 9, 0).astype(np.int16)
    return (d.sum(axis=1) % 10) == 0


def iban_valid(ibans: pl.Series) -> np.ndarray:
    """ISO 13616 mod-97 check of space-free uppercase IBAN strings, vectorized."""
    if ibans.len() == 0:
        return np.zeros(0, dtype=bool)
    width = 34
    lengths = ibans.str.len_bytes().to_numpy()
    rearranged = (ibans.str.slice(4) + ibans.str.slice(0, 4)).str.pad_start(width, "0")
    raw = np.frombuffer("".join(rearranged.to_list()).encode("ascii"), dtype=np.uint8)
    chars = raw.reshape(-1, width).astype(np.int64)
    is_digit = chars < 65
    value = np.where(is_digit, chars - 48, chars - 55)  # A=10 ... Z=35
    remainder = np.zeros(len(chars), dtype=np.int64)
    for col in range(width):  # loop over character positions, vectorized across candidates
        scale = np.where(is_digit[:, col], 10, 100)
        remainder = (remainder * scale + value[:, col]) % 97
    return (remainder == 1) & (lengths >= 15) & (lengths <= width)


def _checked(texts: pl.Series, candidate: str, strip: str, check: Any) -> np.ndarray:
    """Rows with at least one candidate match whose stripped text passes `check`."""
    hit = texts.str.contains(candidate).fill_null(False).to_numpy()
    out = np.zeros(texts.len(), dtype=bool)
    rows = np.flatnonzero(hit)
    if rows.size == 0:
        return out
    found = (
        pl.DataFrame({"row": rows, "text": texts.gather(rows)})
        .with_columns(pl.col("text").str.extract_all(candidate).alias("cand"))
        .explode("cand")
        .with_columns(pl.col("cand").str.replace_all(strip, ""))
    )
    valid = check(found["cand"])
    out[found["row"].to_numpy()[valid]] = True
    return out


def detect(texts: pl.Series, detector: str) -> np.ndarray:
    """Boolean mask of texts containing the named built-in detector's data class."""
    texts = texts.fill_null("")
    if detector in PLAIN_DETECTORS:
        return texts.str.contains(PLAIN_DETECTORS[detector]).to_numpy()
    if detector == "payment_card":
        return _checked(texts, CARD_CANDIDATE, r"[^0-9]", luhn_valid)
    if detector == "iban":
        return _checked(texts, IBAN_CANDIDATE, r"[^A-Z0-9]", iban_valid)
    raise ValueError(f"unknown detector {detector!r}")


def pattern_mask(texts: pl.Series, pattern: str) -> np.ndarray:
    """Rows where a custom regex matches."""
    return texts.fill_null("").str.contains(pattern).to_numpy()


def _tag_regex(tag: str) -> str:
    """Regex over tags JSON text: the tag as a string value (not a key), `"tag": true`, or
    for 'key=value' an object entry."""
    if "=" in tag:
        key, value = tag.split("=", 1)
        return rf'"{re.escape(key)}"\s*:\s*"{re.escape(value)}"'
    quoted = re.escape(json.dumps(tag))
    return rf'{quoted}\s*(?:[,\]}}]|:\s*true)'


def tag_mask(items: pl.DataFrame, tag: str) -> np.ndarray:
    """Items having a tag: data_class or difficulty equals it, or the tags JSON contains it."""
    mask = np.zeros(items.height, dtype=bool)
    for col in ("data_class", "difficulty"):
        if col in items.columns:
            mask |= (items[col].cast(pl.String) == tag).fill_null(False).to_numpy()
    if "tags" in items.columns:
        tags = items["tags"].cast(pl.String).fill_null("")
        mask |= tags.str.contains(_tag_regex(tag)).to_numpy()
    return mask


# -- per-item reference versions (runtime router and tests) ------------------------------
def _luhn_one(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_one(iban: str) -> bool:
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def detect_one(text: str, detector: str) -> bool:
    """Per-text version of `detect` (same patterns, Python `re`), for the live router."""
    text = text or ""
    if detector in PLAIN_DETECTORS:
        return re.search(PLAIN_DETECTORS[detector], text) is not None
    if detector == "payment_card":
        return any(
            _luhn_one(re.sub(r"[^0-9]", "", m)) for m in re.findall(CARD_CANDIDATE, text)
        )
    if detector == "iban":
        return any(
            _iban_one(re.sub(r"[^A-Z0-9]", "", m)) for m in re.findall(IBAN_CANDIDATE, text)
        )
    raise ValueError(f"unknown detector {detector!r}")


def _has_tag_value(node: Any, tag: str) -> bool:
    if isinstance(node, list):
        return any(_has_tag_value(v, tag) for v in node)
    if isinstance(node, dict):
        for key, value in node.items():
            if key == tag and value is True:
                return True
            if "=" in tag and tag.split("=", 1) == [key, value]:
                return True
            if _has_tag_value(value, tag):
                return True
        return False
    return isinstance(node, str) and "=" not in tag and node == tag


def has_tag_one(data_class: str | None, difficulty: str | None, tags_json: str | None,
                tag: str) -> bool:
    """Per-item version of `tag_mask`."""
    if tag in (data_class, difficulty):
        return True
    if not tags_json:
        return False
    try:
        return _has_tag_value(json.loads(tags_json), tag)
    except json.JSONDecodeError:
        return False
