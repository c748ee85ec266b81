"""When two models' answers agree: each answer normalised by the kind of task, then compared.

One rule, two forms: `normalize_one` for the live router and the per-item specification,
`normalize` (polars, vectorized) for replay; a test holds them equal on every kind.
Kinds: `label` (the verifier's label normalisation: escaped whitespace, quotes, brackets and a
final period stripped, case folded), `choice` (the first standalone option letter A-E),
`number` (the last number, commas dropped, as a float), `json` (the parsed value, keys
sorted), `text` (whitespace collapsed, case folded). An answer that normalises to nothing
(no letter, no number, invalid JSON, empty) agrees with nothing.
"""

from __future__ import annotations

import json
import re
from typing import Literal

import polars as pl

from workbench.verifiers import CODE_FENCE_CLOSE, CODE_FENCE_OPEN, ESCAPED_WS, LABEL_STRIP

AgreeOn = Literal["label", "choice", "number", "json", "text"]
AGREE_ON: tuple[str, ...] = ("label", "choice", "number", "json", "text")
_CHOICE = r"(?:^|[^A-Za-z0-9])([A-E])(?:$|[^A-Za-z0-9])"
_NUMBER = r"-?[0-9][0-9,]*(?:\.[0-9]+)?"


def normalize_one(kind: str, output: str | None) -> str | None:
    """The comparable form of one answer (None: nothing to compare)."""
    if output is None:
        return None
    if kind == "label":
        norm = re.sub(ESCAPED_WS, " ", output).strip(LABEL_STRIP).lower()
    elif kind == "choice":
        m = re.search(_CHOICE, re.sub(ESCAPED_WS, " ", output))
        norm = m.group(1) if m else ""
    elif kind == "number":
        found = re.findall(_NUMBER, output)
        norm = _number(found[-1]) if found else ""
    elif kind == "json":
        t = re.sub(CODE_FENCE_OPEN, "", output.strip())
        t = re.sub(CODE_FENCE_CLOSE, "", t).strip()
        try:
            norm = json.dumps(json.loads(t), sort_keys=True, separators=(",", ":"))
        except ValueError:
            norm = ""
    elif kind == "text":
        norm = " ".join(output.split()).lower()
    else:
        raise ValueError(f"unknown agreement kind {kind!r}; choose one of {', '.join(AGREE_ON)}")
    return norm or None


def _number(text: str) -> str:
    """A number's canonical text (1,000.0 and 1000 agree)."""
    try:
        return repr(float(text.replace(",", "")))
    except ValueError:
        return ""


def normalize(kind: str, outputs: pl.Series) -> pl.Series:
    """`normalize_one` over a column of answers (null where there is nothing to compare)."""
    text = outputs.cast(pl.String)
    if kind == "label":
        norm = (text.str.replace_all(ESCAPED_WS, " ").str.strip_chars(LABEL_STRIP)
                .str.to_lowercase())
    elif kind == "choice":
        norm = text.str.replace_all(ESCAPED_WS, " ").str.extract(_CHOICE, 1)
    elif kind == "number":
        last = text.str.extract_all(_NUMBER).list.last()
        norm = last.map_elements(_number, return_dtype=pl.String, skip_nulls=True)
    elif kind == "json":
        norm = text.map_elements(lambda s: normalize_one("json", s) or "",
                                 return_dtype=pl.String, skip_nulls=True)
    elif kind == "text":
        norm = text.str.replace_all(r"\s+", " ").str.strip_chars(" ").str.to_lowercase()
    else:
        raise ValueError(f"unknown agreement kind {kind!r}; choose one of {', '.join(AGREE_ON)}")
    return norm.replace("", None).alias(outputs.name)


def infer_kind(outputs: pl.Series, task_type: str | None = None, *,
               share: float = 0.8) -> AgreeOn:
    """The agreement kind that suits a workload's recorded answers: `label` for classification;
    else `json` when at least `share` of the answers parse as JSON objects or arrays, `choice`
    when that share are short (<= 40 characters) and hold an option letter, `number` when that
    share hold a number, and `text` otherwise (code and prose rarely agree textually)."""
    if task_type == "classification":
        return "label"
    text = outputs.cast(pl.String).drop_nulls()
    if text.len() == 0:
        return "text"
    n = text.len()

    def found(kind: str) -> float:
        return float(normalize(kind, text).is_not_null().sum()) / n

    stripped = text.str.strip_chars()
    if float(stripped.str.contains(r"^[\[{]").sum()) / n >= share and found("json") >= share:
        return "json"
    if float((stripped.str.len_chars() <= 40).sum()) / n >= share and found("choice") >= share:
        return "choice"
    if found("number") >= share:
        return "number"
    return "text"


def agree_one(kind: str, a: str | None, b: str | None) -> bool:
    """Whether two answers agree under `kind`."""
    na, nb = normalize_one(kind, a), normalize_one(kind, b)
    return na is not None and na == nb


__all__ = ["AGREE_ON", "AgreeOn", "agree_one", "infer_kind", "normalize", "normalize_one"]
