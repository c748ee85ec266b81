"""Self-consistency: a model's confidence as the majority's share over n drawn answers.

A model whose spec has `samples` > 1 answers each item n times at `sample_temperature`;
the answers are normalised as agreement gates normalise them (`workbench.agreement`: label,
choice, number, json, text) and the most common one wins. Its share of the n answers is the
recorded confidence, so replay, the tuner and the live router gate on it like any confidence.

Two ways to draw the answers:
- label tasks on a local model: n labels drawn from the label distribution, tempered by T,
  that one scoring pass computed (`draw_labels`), so n answers cost one pass;
- anything else: n generations (local: n decodes from the prompt's end; hosted: LiteLLM's
  `n`, topped up by single calls when a server returns fewer choices).

Draws are deterministic: the stream is seeded by the spec's `seed` and the request itself
(`request_key`, `sample_rng`), never by what ran before. `signals` records the answers and the vote, so a
replay can recount the vote over the first k <= n answers (`majority(samples[:k], kind)`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.agreement import normalize_one

if TYPE_CHECKING:
    from workbench.providers.base import Request

# Each recorded answer is cut to this many characters (a vote over n long generations must
# not blow up the signals column); the vote itself is taken over the full answers.
MAX_SAMPLE_CHARS = 500


@dataclass(frozen=True)
class Vote:
    """The result of a majority vote over n answers.

    `answer` is the winner as first given (raw text, not normalised); `share` the winners'
    count over all n answers (answers that normalise to nothing count against it);
    `counts` maps each normalised answer to its count, most common first."""

    answer: str | None
    share: float
    n: int
    counts: dict[str, int] = field(default_factory=dict)


def vote_kind(task_type: str, labelled: bool, vote_on: str | None = None) -> str:
    """How answers are compared: the spec's `vote_on` when set, else `label` for label tasks,
    `json` for extraction, `number` for qa (arithmetic answers) and `text` otherwise."""
    if vote_on:
        return vote_on
    if labelled:
        return "label"
    from workbench.providers.prompts import TASK_ALIASES

    task = TASK_ALIASES.get(task_type, task_type)
    return {"classification": "label", "extraction": "json", "qa": "number"}.get(task, "text")


def majority(answers: Sequence[str | None], kind: str,
             prefer: Sequence[str] = ()) -> Vote:
    """The majority vote over `answers` after normalising by `kind`. Ties go to the answer
    earliest in `prefer` (e.g. labels by probability), then to the one drawn first, so the
    result depends only on the answers and their order. With no answer that normalises to
    something, the first answer is kept with share 0."""
    n = len(answers)
    if n == 0:
        return Vote(answer=None, share=0.0, n=0)
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for raw in answers:
        norm = normalize_one(kind, raw)
        if norm is None or raw is None:
            continue
        counts[norm] = counts.get(norm, 0) + 1
        first.setdefault(norm, raw)
    if not counts:
        return Vote(answer=answers[0], share=0.0, n=n)
    rank: dict[str, int] = {}
    for raw in prefer:
        norm = normalize_one(kind, raw)
        if norm is not None:
            rank.setdefault(norm, len(rank))
    # dicts keep insertion order, so the stable sort leaves other ties in the order drawn
    ranked = dict(sorted(counts.items(), key=lambda kv: (-kv[1], rank.get(kv[0], len(rank)))))
    winner = next(iter(ranked))
    return Vote(answer=first[winner], share=ranked[winner] / n, n=n, counts=ranked)


def request_key(request: Request) -> str:
    """The text that identifies a request's draws: task type, input, labels and messages."""
    parts = [request.task_type, request.input, *(request.labels or ())]
    if request.messages:
        parts.append(json.dumps(request.messages, sort_keys=True, default=str))
    return "\x1f".join(parts)


def sample_rng(seed: int, key: str) -> np.random.Generator:
    """The random stream of one request: from the spec's seed and the request's key
    (`request_key`; sha256, stable across processes), so a request draws the same answers
    whenever it runs, whatever ran before, and two requests never share draws."""
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return np.random.default_rng([int(seed), digest])


def tempered(probs: Sequence[float] | np.ndarray, temperature: float) -> np.ndarray:
    """`probs` raised to 1/T and renormalised: T < 1 sharpens, T > 1 flattens, T = 1 keeps."""
    p = np.asarray(probs, dtype=np.float64)
    if temperature <= 0:
        raise ValueError("temperature must be above 0")
    logp = np.log(np.clip(p, 1e-300, None)) / float(temperature)
    out = np.exp(logp - logp.max())
    return out / out.sum()


def draw_labels(labels: Sequence[str], probs: Sequence[float] | np.ndarray, n: int,
                temperature: float, rng: np.random.Generator) -> list[str]:
    """n labels drawn independently from the label distribution tempered by `temperature`
    (inverse CDF over one batch of uniforms, so a seed fixes the draws exactly)."""
    if len(labels) != len(probs) or not labels:
        raise ValueError("draw_labels needs one probability per label")
    cdf = np.cumsum(tempered(probs, temperature))
    picks = np.searchsorted(cdf, rng.random(int(n)) * cdf[-1], side="right")
    return [labels[int(i)] for i in np.minimum(picks, len(labels) - 1)]


def signals(vote: Vote, samples: Sequence[str | None], kind: str, temperature: float,
            seed: int, method: str) -> dict[str, Any]:
    """What a self-consistency call records beside its output: the drawn answers (each cut to
    MAX_SAMPLE_CHARS), the vote's counts and share, and how the answers were drawn."""
    return {
        "self_consistency": method,
        "samples": [None if s is None else s[:MAX_SAMPLE_CHARS] for s in samples],
        "n_samples": len(samples),
        "vote_share": vote.share,
        "vote_counts": vote.counts,
        "vote_on": kind,
        "sample_temperature": float(temperature),
        "seed": int(seed),
    }


__all__ = ["MAX_SAMPLE_CHARS", "Vote", "draw_labels", "majority", "request_key", "sample_rng", "signals",
           "tempered", "vote_kind"]
