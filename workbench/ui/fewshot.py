"""Widgets choosing where a local model's few-shot examples come from (workbench.fewshot),
shared by the Models page (stored with the model) and the Compare page (for one run)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from workbench.fewshot import MAX_K, SELECTS, FewShotSource

NONE = "(none: the model's own examples)"
REFERENCE = "reference answers"


def source_inputs(key: str, workloads: Sequence[str], models: Sequence[str],
                  current: FewShotSource | None = None) -> FewShotSource | None:
    """Widgets for a FewShotSource (keys prefixed by `key`); None when no workload is chosen.
    `models` are the names whose recorded outputs may serve as answers (distillation).
    Invalid values raise the ModelSpec/FewShot error the caller shows with ui.user_errors."""
    options = [NONE, *workloads]
    if current is not None and current.workload not in options:
        options.append(current.workload)
    c = st.columns([3, 2, 1])
    workload = c[0].selectbox(
        "Few-shot examples from (a train workload, never the one being scored)", options,
        index=options.index(current.workload) if current else 0, key=f"{key}_workload")
    select = c[1].radio(
        "Choose", SELECTS, index=SELECTS.index(current.select if current else "similar"),
        horizontal=True, key=f"{key}_select",
        help="similar: the k items most similar to each request (BM25; the stronger); "
        "per-label: k items of each label (one shared prompt, cheaper)")
    k = c[2].number_input("k", 1, MAX_K, int(current.k) if current else 8, key=f"{key}_k")
    answer_options = [REFERENCE, *models]
    if current is not None and current.answers_from and current.answers_from not in models:
        answer_options.append(current.answers_from)
    answers = st.selectbox(
        "Answers of the examples", answer_options,
        index=answer_options.index(current.answers_from) if current and current.answers_from
        else 0, key=f"{key}_answers",
        help="a model's recorded outputs on the train workload instead of its references: "
        "in-context distillation from a strong model when there are no gold labels")
    if workload == NONE:
        return None
    return FewShotSource(workload=workload, select=select, k=int(k),
                         answers_from=None if answers == REFERENCE else answers,
                         seed=current.seed if current else 0)
