"""Human reviews stored in DuckDB as a versioned, append-only label set per workload.

A review is one save by one reviewer: a verdict on one model's answer to one item (right or
wrong), or the correct answer to an item written out. Every save is a new row with the next
version number of its workload, the reviewer's name and the time (UTC); nothing is ever
updated or deleted, so two reviewers saving the same item at once both keep their saves (the
later gets the later version). Label set version v is every review up to v; within it the
latest verdict per (item, model) and the latest written answer per item count, for items still
in the workload with the input they had when reviewed.

`workbench.label_quality` applies a label set to outcomes (quality recomputed from the reviews)
and scores models against a reference model (silver references); `workbench.review_queue`
picks the items worth a person's time.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl

from workbench.errors import NotFoundError, WorkbenchError
from workbench.store import Store, fetch_pl

SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    workload    VARCHAR NOT NULL,
    version     INTEGER NOT NULL,
    item_id     VARCHAR NOT NULL,
    model       VARCHAR,
    verdict     BOOLEAN,
    answer      VARCHAR,
    output      VARCHAR,
    reviewer    VARCHAR NOT NULL,
    created     TIMESTAMP NOT NULL,
    input_md5   VARCHAR NOT NULL,
    PRIMARY KEY (workload, version)
);
"""
# a save that collides with another process's or thread's save is retried with a new version
SAVE_ATTEMPTS = 20
MAX_REVIEWER = 100
MAX_ANSWER = 20_000
LATEST = "latest"

_READY: weakref.WeakSet[Store] = weakref.WeakSet()


@dataclass(frozen=True)
class Review:
    """One stored save: a verdict on `model`'s `output` (model set) or a written `answer`."""

    workload: str
    version: int
    item_id: str
    model: str | None
    verdict: bool | None
    answer: str | None
    output: str | None
    reviewer: str
    created: datetime

    def describe(self) -> str:
        """One line for the UI and CLI."""
        what = (f"marked {self.model}'s answer {'right' if self.verdict else 'wrong'}"
                if self.model is not None else f"wrote the answer {_short(self.answer or '')!r}")
        return (f"v{self.version}: {self.reviewer} {what} on item {self.item_id} "
                f"({self.created:%Y-%m-%d %H:%M} UTC)")


@dataclass(frozen=True)
class LabelSet:
    """A workload's label set at one version: the latest verdict per (item, model) in
    `verdicts` (item_id, model, verdict, output) and the latest written answer per item in
    `answers` (item_id, answer), from reviews of the workload's current content."""

    workload: str
    version: int
    reviewers: tuple[str, ...]
    n_reviews: int
    verdicts: pl.DataFrame
    answers: pl.DataFrame

    @property
    def n_items(self) -> int:
        """Items with at least one review in this version."""
        ids = set(self.verdicts["item_id"].to_list()) | set(self.answers["item_id"].to_list())
        return len(ids)

    def as_provenance(self) -> dict[str, Any]:
        """What an exported policy's `provenance.label_set` records."""
        return {"workload": self.workload, "version": self.version,
                "reviewers": list(self.reviewers), "n_reviews": self.n_reviews,
                "n_items": self.n_items}

    def describe(self) -> str:
        """'label set v7 of support-triage: 12 reviews of 9 items by ana, bo'."""
        who = ", ".join(self.reviewers) or "nobody"
        return (f"label set v{self.version} of {self.workload}: {_count(self.n_reviews, 'review')}"
                f" of {_count(self.n_items, 'item')} by {who}")


def ensure_schema(store: Store) -> None:
    """Create the reviews table once per store object (CREATE TABLE IF NOT EXISTS)."""
    if store in _READY:
        return
    with store.transaction() as cur:
        cur.execute(SCHEMA)
    _READY.add(store)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _short(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _clean_reviewer(reviewer: str | None) -> str:
    name = " ".join((reviewer or "").split())
    if not name:
        raise WorkbenchError("a review needs the reviewer's name")
    if len(name) > MAX_REVIEWER:
        raise WorkbenchError(f"the reviewer's name is {len(name)} characters long; keep it "
                             f"under {MAX_REVIEWER}")
    return name


def save_review(
    store: Store,
    workload: str,
    item_id: str,
    *,
    reviewer: str,
    model: str | None = None,
    verdict: bool | None = None,
    answer: str | None = None,
) -> Review:
    """Append one review as the workload's next version: `model` + `verdict` (that model's
    recorded answer is right or wrong) or `answer` (the correct answer, written out).

    The workload, the item and (for a verdict) the model's recorded answer must exist; any
    problem is a WorkbenchError and writes nothing."""
    name = _clean_reviewer(reviewer)
    if (model is None) == (answer is None):
        raise WorkbenchError("a review is either a verdict on one model's answer (model and "
                             "right/wrong) or a written answer, not both or neither")
    if model is not None and verdict is None:
        raise WorkbenchError(f"say whether {model}'s answer is right or wrong")
    if answer is not None:
        if not answer.strip():
            raise WorkbenchError("the written answer is empty; type the correct answer")
        if len(answer) > MAX_ANSWER:
            raise WorkbenchError(f"the written answer is {len(answer):,} characters long; keep "
                                 f"it under {MAX_ANSWER:,}")
        verdict = None
    ensure_schema(store)
    item_id = str(item_id)
    for attempt in range(SAVE_ATTEMPTS):
        try:
            with store.transaction() as cur:
                return _insert(cur, workload, item_id, name, model, verdict, answer)
        except duckdb.TransactionException:
            # another save took this version first (optimistic concurrency): take the next
            if attempt == SAVE_ATTEMPTS - 1:
                raise WorkbenchError(f"could not save the review of item {item_id!r}: the "
                                     "store stayed busy; try again") from None
            time.sleep(0.01 * (attempt + 1))
        except duckdb.ConstraintException:
            if attempt == SAVE_ATTEMPTS - 1:
                raise WorkbenchError(f"could not save the review of item {item_id!r}: the "
                                     "store stayed busy; try again") from None
    raise AssertionError("unreachable")


def _insert(cur: duckdb.DuckDBPyConnection, workload: str, item_id: str, reviewer: str,
            model: str | None, verdict: bool | None, answer: str | None) -> Review:
    """Inside a transaction: check the item (and the model's answer), then append the row."""
    # fetchall, not fetchone: a half-read result blocks the shared cursor's next query
    found = cur.execute("SELECT task_type, label_set FROM workloads WHERE name = ?",
                        [workload]).fetchall()
    if not found:
        known = [r[0] for r in cur.execute("SELECT name FROM workloads ORDER BY name").fetchall()]
        raise NotFoundError(f"unknown workload {workload!r}; known workloads: "
                            f"{', '.join(known) or 'none'}")
    task_type, labels = found[0]
    if answer is not None and task_type == "classification" and labels:
        answer = _as_label(answer, list(labels))
    rows = cur.execute("SELECT md5(input) FROM items WHERE workload = ? AND item_id = ?",
                       [workload, item_id]).fetchall()
    if not rows:
        raise NotFoundError(f"item {item_id!r} is not in workload {workload!r} (deleted, or "
                            "never there); nothing was saved")
    output = None
    if model is not None:
        got = cur.execute("SELECT output, error FROM outcomes WHERE workload = ? AND "
                          "item_id = ? AND model = ?", [workload, item_id, model]).fetchall()
        if not got:
            raise NotFoundError(f"model {model!r} has no recorded answer to item {item_id!r} "
                                f"of {workload!r}; nothing was saved")
        output = got[0][0]
    version = int(cur.execute("SELECT coalesce(max(version), 0) + 1 FROM reviews WHERE "
                              "workload = ?", [workload]).fetchall()[0][0])
    created = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    cur.execute(
        "INSERT INTO reviews (workload, version, item_id, model, verdict, answer, output, "
        "reviewer, created, input_md5) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [workload, version, item_id, model, verdict, answer, output, reviewer, created,
         rows[0][0]],
    )
    return Review(workload, version, item_id, model, verdict, answer, output, reviewer, created)


def _as_label(answer: str, labels: list[str]) -> str:
    """A written answer to a classification item as the label it names (case and spacing
    ignored); an answer outside the label set could never match an output."""
    wanted = " ".join(answer.split()).lower()
    for label in labels:
        if " ".join(str(label).split()).lower() == wanted:
            return str(label)
    shown = ", ".join(labels[:20]) + (f" and {len(labels) - 20} more" if len(labels) > 20 else "")
    raise WorkbenchError(f"{answer.strip()!r} is not one of this workload's labels ({shown}); "
                         "nothing was saved")


def reviews(store: Store, workload: str, *, item_id: str | None = None) -> pl.DataFrame:
    """Every stored review of a workload (optionally of one item), newest version first."""
    store.workload(workload)
    ensure_schema(store)
    sql = ("SELECT version, item_id, model, verdict, answer, output, reviewer, created, "
           "input_md5 FROM reviews WHERE workload = ?")
    params: list[Any] = [workload]
    if item_id is not None:
        sql += " AND item_id = ?"
        params.append(str(item_id))
    return fetch_pl(store.cursor(), sql + " ORDER BY version DESC", params)


def latest_version(store: Store, workload: str) -> int:
    """The workload's newest label-set version (0: nobody has reviewed it yet)."""
    store.workload(workload)
    ensure_schema(store)
    rows = store.cursor().execute("SELECT coalesce(max(version), 0) FROM reviews WHERE "
                                  "workload = ?", [workload]).fetchall()
    return int(rows[0][0])


def versions(store: Store, workload: str) -> pl.DataFrame:
    """One row per version: version, reviewer, created, item_id and what was saved."""
    frame = reviews(store, workload)
    return frame.select(
        "version", "reviewer", "created", "item_id",
        pl.when(pl.col("model").is_not_null())
        .then(pl.format("{}: {}", pl.col("model"),
                        pl.when(pl.col("verdict")).then(pl.lit("right")).otherwise(pl.lit("wrong"))))
        .otherwise(pl.format("answer: {}", pl.col("answer").str.slice(0, 60)))
        .alias("saved"),
    )


def label_set(store: Store, workload: str, version: int | str | None = LATEST) -> LabelSet:
    """The label set of `workload` at `version` (an int, or 'latest' / None for the newest).
    A review counts while its item is still in the workload with the same input text (a
    workload loaded again from an edited file keeps the reviews of the unchanged items)."""
    with store.session():  # one open of the file for all these reads
        newest = latest_version(store, workload)
        v = resolve_version(version, newest, workload)
        frame = fetch_pl(
            store.cursor(),
            "SELECT r.version, r.item_id, r.model, r.verdict, r.answer, r.output, r.reviewer "
            "FROM reviews r JOIN items i ON i.workload = r.workload AND i.item_id = r.item_id "
            "WHERE r.workload = ? AND r.version <= ? AND md5(i.input) = r.input_md5",
            [workload, v],
        )
        verdicts = (frame.filter(pl.col("model").is_not_null())
                    .sort("version", descending=True)
                    .unique(["item_id", "model"], keep="first", maintain_order=True)
                    .select("item_id", "model", "verdict", "output"))
        answers = (frame.filter(pl.col("answer").is_not_null())
                   .sort("version", descending=True)
                   .unique("item_id", keep="first", maintain_order=True)
                   .select("item_id", "answer"))
        reviewers = tuple(sorted(set(frame["reviewer"].to_list())))
        return LabelSet(workload, v, reviewers, frame.height, verdicts, answers)


def resolve_version(version: int | str | None, newest: int, workload: str) -> int:
    """An int version from user input ('latest', '3', 3), checked against what exists."""
    if version is None or (isinstance(version, str) and version.strip().lower() == LATEST):
        if newest == 0:
            raise NotFoundError(f"workload {workload!r} has no reviews yet: review some items "
                                "on the Review page or with `workbench labels save` first")
        return newest
    try:
        v = int(str(version).strip().lstrip("vV"))
    except ValueError:
        raise WorkbenchError(f"label-set version must be a number or 'latest', got "
                             f"{version!r}") from None
    if not 1 <= v <= newest:
        have = f"versions 1 to {newest}" if newest else "no reviews yet"
        raise NotFoundError(f"workload {workload!r} has no label-set version {v} ({have})")
    return v


__all__ = [
    "LATEST", "LabelSet", "Review", "ensure_schema", "label_set", "latest_version",
    "resolve_version", "reviews", "save_review", "versions",
]
