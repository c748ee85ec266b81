"""The Models page's "Prompt and examples" tab: a model's own few-shot examples and template
for a workload's task, edited in a table, validated, saved to the catalog, and the prompt it
gives for one of the workload's items shown before and after (what the model will receive)."""

from __future__ import annotations

import streamlit as st

from workbench import ui


def render(key: str = "mp") -> None:
    """Pick a model and a workload; edit that task type's examples and template; preview."""
    from workbench.prompt_view import (
        clean_examples,
        examples_table,
        prompt_view,
        template_for,
        with_prompt,
    )

    catalog = ui.catalog()
    store = ui.store()
    models = catalog.names()
    workloads = [w.name for w in store.workloads()]
    if not models or not workloads:
        st.info("Add a model and load a workload first: examples are edited per task type, "
                "for a workload's labels.")
        return
    c = st.columns(2)
    pick = c[0].selectbox("Model", models, key=f"{key}_model")
    workload = c[1].selectbox("Workload (its task type and labels)", workloads,
                              key=f"{key}_workload")
    spec = catalog.get(pick)
    info = store.workload(workload)
    labels = list(info.label_set) or None
    st.caption(f"Task type {info.task_type!r}" + (f"; labels: {', '.join(labels)}" if labels
                                                 else "") + ".")
    if spec.few_shot_source is not None:
        st.info(f"{pick} draws its examples from workload {spec.few_shot_source.workload!r} "
                "per request (Edit tab); the examples below are used only when that source "
                "is removed.", icon=":material/info:")
    table = examples_table(spec, info.task_type, labels)
    version = f"{pick}:{info.task_type}:{hash(tuple(table['input']))}"
    edited = st.data_editor(
        table.to_pandas(), num_rows="dynamic", width="stretch", key=f"{key}_ex_{version}",
        column_config={"input": st.column_config.TextColumn("Example input", width="large"),
                       "answer": st.column_config.TextColumn("Answer")})
    if labels:
        st.caption("For a label task only examples whose answer is one of the labels are "
                   "used; the rest would teach a label the model may not answer.")
    template = st.text_area(
        "Template ({input} once; {labels} and {examples} optional)",
        template_for(spec, info.task_type, labels), height=120, key=f"{key}_tpl_{version}")
    items = store.items(workload, limit=50)["item_id"].to_list()
    preview_id = st.selectbox("Preview on item", items, key=f"{key}_item") if items else None
    col = st.columns(2)
    if col[0].button("Save examples and template", type="primary", key=f"{key}_save"):
        with ui.user_errors():
            pairs = clean_examples(edited.to_dict("records"), labels)
            catalog.update(pick, **with_prompt(spec, info.task_type, template, pairs))
            st.success(f"Saved {len(pairs)} example(s) and the template of {pick} for "
                       f"{info.task_type!r}. New runs use them; recorded answers stay as they "
                       "were (a run re-asks the items, since the prompt changed).")
            spec = catalog.get(pick)
    if preview_id is not None:
        with ui.user_errors():
            view = prompt_view(store, workload, preview_id, spec)
            st.caption(f"What {pick} receives for item {preview_id} (saved settings); "
                       f"few-shot examples: {view.examples_from}.")
            st.code(view.text, language=None, wrap_lines=True)
