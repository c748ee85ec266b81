"""Few-shot examples drawn from a workload's own labelled items: a stronger local tier.

A base model labels far better with a few worked examples of the user's own labels than
zero-shot. `FewShotSource` (a field of `ModelSpec`) says where they come from:

- `workload`: the workload whose items give the examples. It is the *train split*: a separate
  workload from the one being scored (as `tune --test-workload`). An example is never the
  item being scored; a selection that would include it is an error, not silently skipped,
  because the examples of an item must not depend on which other items a run happens to score
  (they enter its cache key).
- `select`: "per-label" takes `k` items of every label (seeded, the same for every request,
  so the local provider reuses one prefix KV cache); "similar" takes the `k` items most
  similar to the request by BM25 over word tokens (deterministic: ties go to the earlier item
  by id), most similar last, closest to the query.
- `answers_from`: None takes the examples' answers from the references; a model name takes
  them from that model's recorded outputs on the source workload (in-context distillation,
  when a team has recorded a strong model but has no gold labels).

For label tasks only items whose answer is one of the scored workload's labels are used, so a
full train workload (Banking77's 77 intents) serves a workload scored over a subset. The
runner resolves the examples of every item before the first call (`examples_for_items`), so a
bad source fails with one line and writes nothing. A light module at import: pydantic and the
standard library; numpy and the store are used inside functions.

Measured with the bundled Gemma 3 270M (base, Q4_K_M, one thread, calibrated label scoring) on
Banking77's 6 intents of issue 11, 10 test items each, examples from train.csv (accuracy; share
of items answered at >= 95% accuracy, most confident first): zero-shot 0.52, 13%; per-label
k=2 0.65, 23%; k=4 0.75, 40%; k=8 0.85, 68%; similar k=2 0.60, 18%; k=4 0.87, 78%; k=8 0.95,
100%. Hence the defaults (similar, k=8). A similar item costs about 2.5x a per-label one: its
prefix and content-free prior are computed per item rather than once per run. support-triage
(first 60 items, examples from the sample generated with seed 1): built-in examples 0.60, 12%;
per-label k=4 0.60, 17%; similar k=4 0.60, 5%; similar k=8 0.77, 47%. All 77 Banking77 intents
(similar k=4, 47 test items, one per intent): 0.57 accurate, but the two most confident items
are wrong, so nothing is answered at >= 95% (36% at >= 70%): the 77-label gate needs more.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import numpy as np

    from workbench.models import ModelSpec
    from workbench.store import Store

Select = Literal["per-label", "similar"]
SELECTS: tuple[str, ...] = ("per-label", "similar")
MAX_K = 64
# BM25 parameters (the usual defaults); the weighting only orders candidates.
BM25_K1 = 1.2
BM25_B = 0.75
_WORD = re.compile(r"\w+")

Example = tuple[str, str]
Examples = tuple[Example, ...]


class FewShotError(WorkbenchError, ValueError):
    """A few-shot source cannot give the examples asked for (one line, names the workload)."""


class FewShotSource(BaseModel):
    """Where a model's few-shot examples come from: k items per label, or the k most similar
    items, of a (train) workload, answered by its references or by a model's recorded outputs."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    workload: str = Field(min_length=1, description="workload giving the examples (train split)")
    select: Select = Field(default="similar",
                           description="per-label: k items of each label; similar: the k "
                           "items most similar to the request (BM25)")
    k: int = Field(default=8, ge=1, le=MAX_K, description="examples per label, or in all")
    answers_from: str | None = Field(
        default=None, description="model whose recorded outputs give the answers "
        "(in-context distillation); None: the references")
    seed: int = Field(default=0, ge=0, description="per-label: which items are drawn")

    @field_validator("workload")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        """A workload name of spaces names nothing."""
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("answers_from", mode="before")
    @classmethod
    def _blank_is_reference(cls, value: Any) -> Any:
        """An empty form field, or 'reference', means the references."""
        if isinstance(value, str) and value.strip().lower() in ("", "reference", "references"):
            return None
        return value.strip() if isinstance(value, str) else value

    def describe(self) -> str:
        """One line for tables and captions, e.g. 'per-label k=4 from b77-train (reference)'."""
        return (f"{self.select} k={self.k} from {self.workload} "
                f"({self.answers_from or 'reference'} answers)")

    def __str__(self) -> str:
        """The one-line description (CLI messages print fields with str())."""
        return self.describe()

    def tag(self) -> str:
        """A short suffix for a model variant's name, e.g. 'fs-per-label4' or 'fs-similar8-gpt'."""
        tag = f"fs-{self.select}{self.k}"
        if self.select == "per-label" and self.seed:
            tag += f"s{self.seed}"
        return tag + (f"-{self.answers_from}" if self.answers_from else "")


def with_source(spec: ModelSpec, source: FewShotSource | None, name: str | None = None
                ) -> ModelSpec:
    """`spec` drawing its examples from `source`, renamed (by default `<name>+<source tag>`)
    so its outcomes are stored beside the plain model's rather than over them."""
    if source is None:
        return spec if name is None else spec.replace(name=name)
    return spec.replace(few_shot_source=source, name=name or f"{spec.name}+{source.tag()}")


# -- the pool: labelled items of the source workload ------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """The source workload's usable items, in item id order, with their answers."""

    workload: str
    item_ids: tuple[str, ...]
    inputs: tuple[str, ...]
    answers: tuple[str, ...]
    answered_by: str  # "reference" or the model whose outputs are the answers

    def __len__(self) -> int:
        return len(self.item_ids)


def _one_line(text: str) -> str:
    # Examples go on one line, like the query, so the answer cue stays where the prompt puts it.
    return re.sub(r"\s*\n\s*", " ", str(text).strip())


def load_pool(store: Store, source: FewShotSource, labels: Sequence[str] | None = None
              ) -> Pool:
    """The source workload's items that have an answer (a reference, or the chosen model's
    recorded output without error); for label tasks only answers among `labels`.
    FewShotError / NotFoundError when the workload or model is unknown or gives no answers."""
    import polars as pl

    store.workload(source.workload)  # NotFoundError naming the known workloads
    items = store.items(source.workload).select("item_id", "input", "messages", "reference")
    if source.answers_from is None:
        answered = items.filter(pl.col("reference").is_not_null()
                                & (pl.col("reference").str.strip_chars() != ""))
        if answered.height == 0:
            raise FewShotError(
                f"few-shot source workload {source.workload!r} has no reference answers; take "
                "the answers from a model's recorded outputs instead (answers_from / "
                "--few-shot-answers MODEL)")
        answered = answered.rename({"reference": "answer"})
        by = "reference"
    else:
        outcomes = store.outcomes(source.workload, [source.answers_from])
        if outcomes.height == 0:
            have = ", ".join(store.models_of(source.workload)) or "none"
            raise FewShotError(
                f"model {source.answers_from!r} has no recorded outcomes on few-shot source "
                f"workload {source.workload!r} (models with outcomes there: {have})")
        outputs = outcomes.filter(pl.col("error").is_null() & pl.col("output").is_not_null()
                                  & (pl.col("output").str.strip_chars() != ""))
        answered = items.drop("reference").join(
            outputs.select("item_id", pl.col("output").str.strip_chars().alias("answer")),
            on="item_id", how="inner", maintain_order="left")
        by = source.answers_from
    if labels:
        answered = answered.filter(pl.col("answer").is_in(list(labels)))
    from workbench.providers.prompts import request_text

    texts = [_one_line(request_text(i or "", m)) for i, m in
             zip(answered["input"].to_list(), answered["messages"].to_list(), strict=True)]
    keep = [j for j, t in enumerate(texts) if t]
    return Pool(source.workload, tuple(str(answered["item_id"][j]) for j in keep),
                tuple(texts[j] for j in keep),
                tuple(_one_line(answered["answer"][j]) for j in keep), by)


def _too_few(source: FewShotSource, have: int, what: str) -> FewShotError:
    return FewShotError(
        f"few-shot source workload {source.workload!r} has {have} labelled item(s){what}, "
        f"fewer than the k={source.k} asked for")


def check_source(store: Store, source: FewShotSource) -> Pool:
    """The source's pool, refusing an unknown workload or answering model, or fewer answered
    items than k, before a model using it is saved (labels are checked when a run starts)."""
    pool = load_pool(store, source)
    if len(pool) < source.k:
        raise _too_few(source, len(pool), "")
    return pool


# -- selection rules ----------------------------------------------------------------------------


def per_label(pool: Pool, labels: Sequence[str], source: FewShotSource) -> list[int]:
    """Pool indices of `k` items per label, seeded and independent of the other labels, in
    round-robin order (label 1, label 2, ..., label 1, ...) so no label always comes last."""
    if not labels:
        raise FewShotError(
            "per-label few-shot examples need a label task (a workload with a label set); "
            "select 'similar' for other tasks")
    picks: list[list[int]] = []
    for label in labels:
        idx = [j for j, a in enumerate(pool.answers) if a == label]
        if len(idx) < source.k:
            raise _too_few(source, len(idx), f" with answer {label!r}"
                           + (f" (answers from {pool.answered_by})"
                              if pool.answered_by != "reference" else ""))
        rng = random.Random(f"workbench-fewshot:{source.seed}:{label}")
        picks.append(rng.sample(idx, source.k))
    return [p[j] for j in range(source.k) for p in picks]


class Retriever:
    """BM25 over lowercased word tokens of the pool's inputs; `top(query, k)` gives the k
    best pool indices, most similar first, ties to the earlier pool item (stable sort)."""

    def __init__(self, texts: Sequence[str]) -> None:
        import numpy as np

        docs = [_WORD.findall(t.lower()) for t in texts]
        self.n = len(docs)
        lengths = np.array([len(d) for d in docs], dtype=np.float64)
        avg = float(lengths.mean()) if self.n and lengths.sum() else 1.0
        norm = BM25_K1 * (1.0 - BM25_B + BM25_B * lengths / avg)
        postings: dict[str, dict[int, int]] = {}
        for j, doc in enumerate(docs):
            for word in doc:
                row = postings.setdefault(word, {})
                row[j] = row.get(j, 0) + 1
        # term -> (doc indices, BM25 term weight per doc), precomputed once
        self._weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for word, row in postings.items():
            idx = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
            tf = np.fromiter(row.values(), dtype=np.float64, count=len(row))
            idf = math.log(1.0 + (self.n - len(row) + 0.5) / (len(row) + 0.5))
            self._weights[word] = (idx, idf * tf * (BM25_K1 + 1.0) / (tf + norm[idx]))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every pool item for `query` (each query word counted once)."""
        import numpy as np

        out = np.zeros(self.n, dtype=np.float64)
        for word in sorted(set(_WORD.findall(query.lower()))):
            hit = self._weights.get(word)
            if hit is not None:
                out[hit[0]] += hit[1]
        return out

    def top(self, query: str, k: int) -> list[int]:
        """The k most similar pool indices, best first (ties: lower index first)."""
        import numpy as np

        return [int(j) for j in np.argsort(-self.scores(query), kind="stable")[:k]]


# -- what the runner calls -------------------------------------------------------------------------


def examples_for_items(
    store: Store,
    source: FewShotSource,
    *,
    workload: str,
    labels: Sequence[str] | None,
    item_ids: Sequence[str],
    inputs: Sequence[str],
    messages: Sequence[Any] | None = None,
) -> list[Examples]:
    """The few-shot examples of every scored item of `workload` (ids, inputs, chat messages),
    as (input, answer) pairs. Raises FewShotError (one line) when the source has too few
    labelled items or when an item's examples would include that item itself."""
    from workbench.providers.prompts import request_text

    pool = load_pool(store, source, labels)
    if len(pool) < source.k:
        raise _too_few(source, len(pool), "" if not labels else " with one of the labels")
    same = source.workload == workload
    scored = set(item_ids) if same else set()
    if source.select == "per-label":
        chosen = per_label(pool, list(labels or ()), source)
        hit = next((pool.item_ids[j] for j in chosen if pool.item_ids[j] in scored), None)
        if hit is not None:
            raise FewShotError(
                f"few-shot examples from {source.workload!r} would include scored item "
                f"{hit!r} itself; draw examples from a separate train workload")
        fixed = tuple((pool.inputs[j], pool.answers[j]) for j in chosen)
        return [fixed] * len(item_ids)
    retriever = Retriever(pool.inputs)
    msgs = list(messages) if messages is not None else [None] * len(item_ids)
    out: list[Examples] = []
    for item_id, text, msg in zip(item_ids, inputs, msgs, strict=True):
        best = retriever.top(request_text(text or "", msg), source.k)
        if same and any(pool.item_ids[j] == item_id for j in best):
            raise FewShotError(
                f"retrieved few-shot examples for item {item_id!r} would include the scored "
                f"item itself (source workload {source.workload!r} is the one being run); "
                "draw examples from a separate train workload")
        out.append(tuple((pool.inputs[j], pool.answers[j]) for j in reversed(best)))
    return out
