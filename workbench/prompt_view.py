"""What a model receives for one item, and the few-shot examples a person can edit.

The Compare page shows the rendered prompt next to each answer ("why is the cheap model
wrong?"), and the Models page edits a model's own examples and templates. Both go through the
same rendering as the providers (workbench.providers.prompts), with the same labels and the
same examples drawn from a workload as the runner uses, so what is shown is what was sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from workbench.errors import WorkbenchError
from workbench.models import ModelSpec
from workbench.providers.base import Request
from workbench.providers.prompts import (
    DEFAULT_FEW_SHOT,
    DEFAULT_TEMPLATES,
    canonical_task,
    examples_for,
    render,
    render_messages,
)
from workbench.store import Store

#: Task types the runner sends labels with (the label set, or the item's own labels).
LABEL_TASKS = ("classification",)


@dataclass(frozen=True)
class PromptView:
    """One model's prompt for one item: the whole text a base model completes, or the chat
    turns a hosted model receives; `examples_from` says where the few-shot examples came from."""

    model: str
    kind: str
    text: str
    examples: tuple[tuple[str, str], ...]
    examples_from: str


def parse_messages(value: Any) -> list[dict] | None:
    """An item's stored chat messages (JSON text or a list) as a list, else None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, list) else None


def item_labels(task_type: str, label_set: Sequence[str], labels: Sequence[str] | None,
                ) -> tuple[str, ...] | None:
    """The labels a request carries: the item's own, else the workload's label set; none for
    tasks that are not label tasks (the runner's rule)."""
    if task_type not in LABEL_TASKS:
        return None
    if labels:
        return tuple(labels)
    return tuple(label_set) if label_set else None


def item_request(store: Store, workload: str, item_id: str, spec: ModelSpec) -> Request:
    """The Request the runner would send `spec` for one item (examples drawn from the model's
    few-shot source included). Raises WorkbenchError naming an unknown item."""
    info = store.workload(workload)
    row = store.items(workload).filter(pl.col("item_id") == str(item_id))
    if row.height == 0:
        raise WorkbenchError(f"item {item_id!r} is not in workload {workload!r}")
    r = row.row(0, named=True)
    labels = item_labels(info.task_type, info.label_set, r.get("labels"))
    messages = parse_messages(r.get("messages"))
    drawn = None
    if spec.few_shot_source is not None:
        from workbench import fewshot

        drawn = fewshot.examples_for_items(
            store, spec.few_shot_source, workload=workload,
            labels=list(info.label_set) or None, item_ids=[str(item_id)],
            inputs=[r["input"]], messages=[messages])[0]
    return Request(item_id=str(item_id), task_type=info.task_type, input=r["input"],
                   labels=labels, messages=messages, few_shot=drawn)


def _examples_from(spec: ModelSpec, task: str, task_type: str) -> str:
    if spec.few_shot_source is not None:
        src = spec.few_shot_source
        how = "most similar" if src.select != "per-label" else "per label"
        return f"drawn from workload {src.workload!r} ({src.k} {how})"
    if spec.few_shot.get(task_type) or spec.few_shot.get(task):
        return "the model's own examples (Models page)"
    return "the built-in examples for this task type"


def prompt_view(store: Store, workload: str, item_id: str, spec: ModelSpec) -> PromptView:
    """The prompt `spec` receives for one item, rendered as the provider renders it."""
    req = item_request(store, workload, item_id, spec)
    task = canonical_task(req.task_type, req.labels)
    examples = tuple(examples_for(task, req.labels, spec.few_shot, req.task_type,
                                  req.few_shot))
    where = _examples_from(spec, task, req.task_type)
    if not examples:
        where = ("none: no example's answer is one of this item's labels, so the model "
                 "answers zero-shot" if req.labels else "none")
    if spec.kind == "local-gguf":
        text = render(req.task_type, req.input, req.labels, spec.templates, spec.few_shot,
                      req.messages, req.few_shot).text
    else:
        turns = render_messages(req.task_type, req.input, req.labels, spec.few_shot,
                                req.messages, req.few_shot)
        text = "\n\n".join(f"[{m.get('role', '?')}]\n{m.get('content', '')}" for m in turns)
    return PromptView(spec.name, spec.kind, text, examples, where)


# -- editing a model's own examples and templates -----------------------------------------------


def template_for(spec: ModelSpec, task_type: str, labels: Sequence[str] | None = None) -> str:
    """The template `spec` uses for a task type: its own, else the built-in one."""
    task = canonical_task(task_type, labels)
    return spec.templates.get(task_type) or spec.templates.get(task) or DEFAULT_TEMPLATES[task]


def examples_table(spec: ModelSpec, task_type: str,
                   labels: Sequence[str] | None = None) -> pl.DataFrame:
    """The model's own (input, answer) examples for a task type as rows to edit; the built-in
    ones when it has none of its own (so editing starts from what is used today)."""
    task = canonical_task(task_type, labels)
    pairs = (spec.few_shot.get(task_type) or spec.few_shot.get(task)
             or DEFAULT_FEW_SHOT.get(task, []))
    return pl.DataFrame({"input": [str(a) for a, _ in pairs],
                         "answer": [str(b) for _, b in pairs]},
                        schema={"input": pl.String, "answer": pl.String})


def clean_examples(rows: Iterable[Mapping[str, Any]], labels: Sequence[str] | None = None,
                   ) -> tuple[tuple[str, str], ...]:
    """Edited example rows as (input, answer) pairs: blank rows dropped; a row with only one
    side filled, or (for a label task) an answer outside the labels, is an error naming it."""
    out: list[tuple[str, str]] = []
    allowed = set(labels or ())
    for n, row in enumerate(rows, start=1):
        inp = str(row.get("input") or "").strip()
        ans = str(row.get("answer") or "").strip()
        if not inp and not ans:
            continue
        if not inp or not ans:
            raise WorkbenchError(f"example row {n} needs both an input and an answer")
        if allowed and ans not in allowed:
            raise WorkbenchError(
                f"example row {n}: answer {ans!r} is not one of the labels "
                f"({', '.join(sorted(allowed))}); the model would learn a label it may not use")
        out.append((inp, ans))
    return tuple(out)


def with_prompt(spec: ModelSpec, task_type: str, template: str | None,
                examples: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The catalog changes that set a model's template and examples for one task type
    (validated by ModelSpec: one {input} per template); an empty template means built-in."""
    templates = dict(spec.templates)
    few_shot = dict(spec.few_shot)
    if template and template.strip():
        templates[task_type] = template
    else:
        templates.pop(task_type, None)
    if examples:
        few_shot[task_type] = tuple(examples)
    else:
        few_shot.pop(task_type, None)
    spec.replace(templates=templates, few_shot=few_shot)  # validates, raises ModelSpecError
    return {"templates": templates, "few_shot": few_shot}
