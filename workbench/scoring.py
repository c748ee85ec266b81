"""Scorers: quality in [0, 1] per output against its reference (or by a judge model).

A registry maps scorer names to functions `fn(outputs, references, **options) -> np.ndarray`.
String scorers are polars expressions over the whole column; JSON field F1 parses per row.
A missing output (error row) always scores 0.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from workbench.errors import NotFoundError, WorkbenchError

if TYPE_CHECKING:
    from workbench.models import ModelSpec

ScoreFn = Callable[..., np.ndarray]

# Rust-regex number: grouped thousands (1,234,567) or plain digits, optional decimals.
NUMBER_PATTERN = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_STRIP_EDGES = " \t\n\r.,;:!?\"'`()[]{}*"


@dataclass(frozen=True)
class Scorer:
    """A named scorer: what it compares, and whether it runs as vectorized expressions."""

    name: str
    fn: ScoreFn
    help: str
    vectorized: bool = True
    needs_reference: bool = True

    def __call__(self, outputs: Sequence[str | None], references: Sequence[Any],
                 **options: Any) -> np.ndarray:
        """Quality per row in [0, 1]; null outputs score 0. Options the scorer does not take
        are ignored."""
        if len(outputs) != len(references):
            raise WorkbenchError(
                f"scorer {self.name!r}: {len(outputs)} outputs but {len(references)} references"
            )
        if len(outputs) == 0:
            return np.zeros(0, dtype=np.float64)
        params = inspect.signature(self.fn).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            # Callers (the runner) pass context such as labels= and inputs= to every scorer;
            # each scorer takes what it needs.
            options = {k: v for k, v in options.items() if k in params}
        q = np.asarray(self.fn(outputs, references, **options), dtype=np.float64)
        return np.clip(np.nan_to_num(q, nan=0.0), 0.0, 1.0)


SCORERS: dict[str, Scorer] = {}

DEFAULT_SCORER: dict[str, str] = {
    "classification": "label",
    "extraction": "json_f1",
    "qa": "numeric",
    "generation": "exact",
}


def register(name: str, help: str, vectorized: bool = True) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator adding a scorer function to the registry under `name`."""

    def deco(fn: ScoreFn) -> ScoreFn:
        SCORERS[name] = Scorer(name, fn, help, vectorized)
        return fn

    return deco


def get_scorer(name: str | Scorer) -> Scorer:
    """The scorer of that name; an unknown name is an error listing the valid ones."""
    if isinstance(name, Scorer):
        return name
    try:
        return SCORERS[name]
    except KeyError:
        raise NotFoundError(
            f"unknown scorer {name!r}; valid scorers: {', '.join(sorted(SCORERS))}"
        ) from None


def default_scorer(task_type: str) -> str:
    """The scorer used for a task type when none is chosen."""
    try:
        return DEFAULT_SCORER[task_type]
    except KeyError:
        raise NotFoundError(
            f"no default scorer for task type {task_type!r}; known task types: "
            f"{', '.join(DEFAULT_SCORER)}"
        ) from None


def score(
    task_type: str,
    outputs: Sequence[str | None] | pl.Series,
    references: Sequence[Any] | pl.Series,
    scorer: str | Scorer | None = None,
    **options: Any,
) -> np.ndarray:
    """Quality in [0, 1] per output, with `scorer` or the task type's default scorer.
    Options go to the scorer (e.g. `labels=` for label, `rel_tol=` for numeric)."""
    chosen = get_scorer(scorer if scorer is not None else default_scorer(task_type))
    outs = outputs.to_list() if isinstance(outputs, pl.Series) else list(outputs)
    refs = references.to_list() if isinstance(references, pl.Series) else list(references)
    return chosen(outs, refs, **options)


# -- normalisation (polars expressions) --------------------------------------------------------


def _frame(outputs: Sequence[Any], references: Sequence[Any]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "out": pl.Series([None if o is None else str(o) for o in outputs], dtype=pl.String),
            "ref": pl.Series([None if r is None else str(r) for r in references], dtype=pl.String),
        }
    )


def normalize_expr(expr: pl.Expr) -> pl.Expr:
    """Lowercase, collapse whitespace, strip punctuation at both ends."""
    return (
        expr.str.to_lowercase()
        .str.replace_all(r"\s+", " ")
        .str.strip_chars(_STRIP_EDGES)
    )


def label_norm_expr(expr: pl.Expr) -> pl.Expr:
    """Label form: lowercase, every run of non-alphanumerics becomes one space, padded with
    spaces so whole-word containment is a plain substring test."""
    core = expr.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars(" ")
    return pl.lit(" ") + core + pl.lit(" ")


def _result(frame: pl.DataFrame, expr: pl.Expr) -> np.ndarray:
    return frame.select(expr.fill_null(False).cast(pl.Float64)).to_series().to_numpy()


@register("exact", "normalized exact match (case, whitespace and edge punctuation ignored)")
def exact_match(outputs: Sequence[str | None], references: Sequence[Any]) -> np.ndarray:
    """1 where the normalized output equals the normalized reference."""
    f = _frame(outputs, references)
    return _result(f, normalize_expr(pl.col("out")) == normalize_expr(pl.col("ref")))


@register("contains", "the normalized reference occurs in the normalized output")
def contains(outputs: Sequence[str | None], references: Sequence[Any]) -> np.ndarray:
    """1 where the output contains the reference text (case-insensitive)."""
    f = _frame(outputs, references)
    ref = normalize_expr(pl.col("ref"))
    hit = normalize_expr(pl.col("out")).str.contains(ref, literal=True) & (ref.str.len_chars() > 0)
    return _result(f, hit)


@register("regex", "the output matches a regex: `pattern=` or each row's reference as pattern")
def regex_match(
    outputs: Sequence[str | None],
    references: Sequence[Any],
    pattern: str | None = None,
    ignore_case: bool = True,
) -> np.ndarray:
    """1 where the output matches the pattern (Rust regex syntax); invalid patterns score 0."""
    f = _frame(outputs, references)
    flags = "(?i)" if ignore_case else ""
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise WorkbenchError(f"regex scorer: invalid pattern {pattern!r}: {exc}") from None
        pat: pl.Expr | str = flags + pattern
    else:
        pat = pl.lit(flags) + pl.col("ref")
    return _result(f, pl.col("out").str.contains(pat, strict=False))


@register("label", "the label from the label set named in the output equals the reference")
def label_match(
    outputs: Sequence[str | None],
    references: Sequence[Any],
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Pick the label named earliest in the output (longest on ties; case and punctuation
    ignored) from `labels` (default: the distinct references) and compare with the reference."""
    f = _frame(outputs, references)
    label_set = [str(x) for x in (labels if labels else f["ref"].drop_nulls().unique().to_list())]
    if not label_set:
        return np.zeros(f.height)
    normed = pl.DataFrame({"label": label_set}).select(
        label_norm_expr(pl.col("label")).alias("n")
    )["n"].to_list()
    f = f.with_columns(
        label_norm_expr(pl.col("out")).alias("o"), label_norm_expr(pl.col("ref")).alias("r")
    )
    # Position of each label in each output (-1 where absent): one column per label.
    pos = f.select(
        [pl.col("o").str.find(lab, literal=True).fill_null(-1).alias(str(i))
         for i, lab in enumerate(normed)]
    ).to_numpy()
    pos = np.atleast_2d(pos).astype(np.float64)
    pos[pos < 0] = np.inf
    lengths = np.array([len(n) for n in normed], dtype=np.float64)
    # Earliest position wins; among equal positions the longest label (e.g. "card payment"
    # over "card"): subtract a fraction below 1 proportional to length.
    key = pos - lengths / (lengths.max() + 1.0)
    best = np.argmin(key, axis=1)
    found = np.isfinite(pos[np.arange(len(best)), best])
    predicted = np.array(normed, dtype=object)[best]
    refs = f["r"].to_numpy()
    exact = (f["o"] == f["r"]).fill_null(False).to_numpy()
    return np.where(found, predicted == refs, exact).astype(np.float64)


def number_expr(expr: pl.Expr) -> pl.Expr:
    """The last number in a text as Float64 ($, %, thousands commas handled); null if none."""
    return (
        expr.str.extract_all(NUMBER_PATTERN)
        .list.last()
        .str.replace_all(",", "")
        .cast(pl.Float64, strict=False)
    )


@register("numeric", "the last number in the output equals the reference within a tolerance")
def numeric_match(
    outputs: Sequence[str | None],
    references: Sequence[Any],
    rel_tol: float = 1e-4,
    abs_tol: float = 1e-6,
) -> np.ndarray:
    """1 where |out - ref| <= max(abs_tol, rel_tol * |ref|), using the last number of each."""
    f = _frame(outputs, references).select(
        number_expr(pl.col("out")).alias("o"), number_expr(pl.col("ref")).alias("r")
    )
    diff = (pl.col("o") - pl.col("r")).abs()
    ok = diff <= pl.max_horizontal(pl.lit(abs_tol), pl.col("r").abs() * rel_tol)
    return _result(f, ok)


# -- JSON field-level F1 -----------------------------------------------------------------------

_DECODER = json.JSONDecoder()
_DATE_FORMATS = (
    "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%d %B %Y",
    "%d %b %Y", "%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%b %d %Y", "%d %B, %Y", "%Y%m%d",
    "%m/%d/%y", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
)
_CURRENCY_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy", "us$": "usd"}
_AMOUNT_FIELDS = ("amount", "total", "price", "cost", "sum", "subtotal", "value")


def first_json_object(text: str | None) -> dict[str, Any] | None:
    """The first JSON object embedded in a text (code fences and chatter around it ignored)."""
    if text is None:
        return None
    if isinstance(text, dict):
        return text
    s = str(text)
    start = s.find("{")
    while start != -1:
        try:
            obj, _ = _DECODER.raw_decode(s, start)
        except ValueError:
            start = s.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            return obj
        start = s.find("{", start + 1)
    return None


def _to_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        found = re.findall(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", v)
        if found:
            return float(found[-1].replace(",", ""))
    return None


def normalize_date(v: Any) -> str | None:
    """ISO yyyy-mm-dd for common date spellings, or None when not a date."""
    if not isinstance(v, str):
        return None
    s = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", v.strip())
    s = re.sub(r"\s+", " ", s)
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(s, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def _norm_text(v: Any) -> str:
    s = re.sub(r"\s+", " ", str(v).strip().lower()).strip(_STRIP_EDGES)
    return _CURRENCY_SYMBOLS.get(s, s)


def _norm_item(v: Any) -> str:
    if isinstance(v, Mapping):
        return json.dumps({str(k).lower(): _norm_scalar(x) for k, x in v.items()}, sort_keys=True)
    return _norm_text(v)


def _norm_scalar(v: Any) -> Any:
    n = _to_number(v) if isinstance(v, int | float) else None
    return n if n is not None else _norm_text(v)


def _set_f1(pred: set[str], gold: set[str]) -> float:
    if not pred and not gold:
        return 1.0
    tp = len(pred & gold)
    if tp == 0:
        return 0.0
    p, r = tp / len(pred), tp / len(gold)
    return 2 * p * r / (p + r)


def field_match(field: str, pred: Any, gold: Any) -> float:
    """Score in [0, 1] for one field: amounts numerically (1 cent), dates as ISO dates, lists
    as sets (set F1), everything else as normalized text."""
    if isinstance(gold, list) or isinstance(pred, list):
        g = gold if isinstance(gold, list) else [gold]
        p = pred if isinstance(pred, list) else [pred]
        return _set_f1({_norm_item(x) for x in p}, {_norm_item(x) for x in g})
    name = field.lower()
    gnum = _to_number(gold) if (isinstance(gold, int | float) or
                                any(a in name for a in _AMOUNT_FIELDS)) else None
    if gnum is not None:
        pnum = _to_number(pred)
        return float(pnum is not None and abs(pnum - gnum) <= max(0.005, 1e-6 * abs(gnum)))
    gdate = normalize_date(gold)
    if gdate is not None or "date" in name:
        pdate = normalize_date(pred)
        if gdate is not None and pdate is not None:
            return float(gdate == pdate)
    return float(_norm_text(pred) == _norm_text(gold))


def json_f1_one(output: str | None, reference: Any) -> float:
    """Field-level F1 of the first JSON object in `output` against the gold JSON."""
    gold = reference if isinstance(reference, dict) else first_json_object(reference)
    if gold is None:
        return 0.0
    pred = first_json_object(output)
    if pred is None:
        return 0.0
    gold_f = {str(k).lower(): v for k, v in gold.items() if v not in (None, "", [])}
    pred_f = {str(k).lower(): v for k, v in pred.items() if v not in (None, "", [])}
    if not gold_f and not pred_f:
        return 1.0
    if not gold_f or not pred_f:
        return 0.0
    tp = sum(field_match(k, pred_f[k], gold_f[k]) for k in gold_f.keys() & pred_f.keys())
    if tp == 0:
        return 0.0
    precision, recall = tp / len(pred_f), tp / len(gold_f)
    return 2 * precision * recall / (precision + recall)


@register("json_f1", "field-level F1 of the first JSON object in the output vs gold JSON",
          vectorized=False)
def json_f1(outputs: Sequence[str | None], references: Sequence[Any]) -> np.ndarray:
    """Per-row JSON parsing (not vectorizable); see `json_f1_one`."""
    return np.array([json_f1_one(o, r) for o, r in zip(outputs, references, strict=True)],
                    dtype=np.float64)


# -- LLM as judge ------------------------------------------------------------------------------

JUDGE_PROMPT = """You are grading an answer.
Rubric: {rubric}
Question: {question}
Reference answer: {reference}
Answer to grade: {output}
{instruction}"""
_SCALE_INSTRUCTION = {
    "0-10": "Reply with a single integer score from 0 (useless) to 10 (perfect).\nScore:",
    "yes/no": "Does the answer satisfy the rubric? Reply yes or no.\nVerdict:",
}


def parse_judge_reply(reply: str | None, scale: str) -> float:
    """Quality in [0, 1] from a judge's reply: the first 0-10 number / 10, or yes=1 / no=0."""
    if not reply:
        return 0.0
    if scale == "yes/no":
        m = re.search(r"\b(yes|no)\b", reply.lower())
        return 1.0 if m and m.group(1) == "yes" else 0.0
    m = re.search(r"(?<![\d.])(10|\d)(?:\.\d+)?(?:\s*/\s*10)?", reply)
    return min(1.0, float(m.group(0).split("/")[0]) / 10.0) if m else 0.0


def make_judge(
    config: ModelSpec, rubric: str, scale: str = "0-10", name: str = "judge"
) -> Scorer:
    """A scorer asking `config`'s model to grade each output against `rubric` on a 0-10 or
    yes/no scale (yes/no uses the label probabilities when the provider gives them)."""
    if scale not in _SCALE_INSTRUCTION:
        raise WorkbenchError(
            f"unknown judge scale {scale!r}; valid scales: {', '.join(_SCALE_INSTRUCTION)}"
        )
    if not rubric or not rubric.strip():
        raise WorkbenchError("the judge needs a rubric (what a good answer must do)")

    def judge(outputs: Sequence[str | None], references: Sequence[Any],
              inputs: Sequence[str] | None = None) -> np.ndarray:
        from workbench.providers.base import Request, get_provider

        provider = get_provider(config)
        questions = list(inputs) if inputs is not None else [""] * len(outputs)
        todo = [i for i, o in enumerate(outputs) if o is not None]
        labels = ("yes", "no") if scale == "yes/no" else None
        requests = [
            Request(
                item_id=f"judge-{i}",
                task_type="classification" if labels else "generation",
                input=JUDGE_PROMPT.format(
                    rubric=rubric, question=questions[i], reference=references[i],
                    output=outputs[i], instruction=_SCALE_INSTRUCTION[scale],
                ),
                labels=labels,
            )
            for i in todo
        ]
        quality = np.zeros(len(outputs), dtype=np.float64)
        for i, resp in zip(todo, provider.complete_many(requests), strict=True):
            if resp is None or resp.error:
                continue
            if labels and resp.label_probs:
                quality[i] = float(resp.label_probs.get("yes", 0.0))
            else:
                quality[i] = parse_judge_reply(resp.output, scale)
        return quality

    return Scorer(name, judge, f"LLM judge ({config.name}, {scale}): {rubric}", vectorized=False,
                  needs_reference=False)


def judge_scorer(
    outputs: Sequence[str | None],
    references: Sequence[Any],
    judge: ModelSpec | None = None,
    rubric: str = "The answer is correct and consistent with the reference answer.",
    scale: str = "0-10",
    inputs: Sequence[str] | None = None,
) -> np.ndarray:
    """Registry entry for the judge: needs `judge=<ModelSpec>` (and optionally `rubric=`)."""
    if judge is None:
        raise WorkbenchError("the 'judge' scorer needs a judge model: pass judge=<ModelSpec>")
    return make_judge(judge, rubric, scale)(outputs, references, inputs=inputs)


SCORERS["judge"] = Scorer(
    "judge", judge_scorer, "LLM-as-judge: a chosen model grades each output with a rubric",
    vectorized=False, needs_reference=False,
)
