"""Workloads: list, preview and chart stored workloads; upload with a column mapping; load the
samples; delete; a read-only SQL box over the store."""

from __future__ import annotations

import streamlit as st

from workbench import charts, ui

st.title("Workloads")
if flash := st.session_state.pop("wl_flash", None):
    st.success(flash, icon=":material/check_circle:")
store = ui.store()

top = st.columns([0.7, 0.3])
with top[1]:
    if st.button("Load the sample workloads", key="wl_load_samples", width="stretch"):
        from workbench.workloads.samples import load_samples

        with ui.user_errors(), st.spinner("Generating samples..."):
            infos = load_samples(store, replace=True)
            st.toast("Loaded " + ", ".join(w.name for w in infos))

infos = store.workloads()
with top[0]:
    if infos:
        st.dataframe(
            [{"workload": w.name, "task": w.task_type, "items": w.n_items,
              "models with outcomes": w.n_models, "outcome rows": w.n_outcomes,
              "source": w.source, "fingerprint": w.fingerprint,
              "created": w.created.strftime("%Y-%m-%d %H:%M")} for w in infos],
            hide_index=True, width="stretch", key="wl_table",
        )
    else:
        st.info("No workloads yet. Load the samples or upload a file below.")

tab_view, tab_upload, tab_sql = st.tabs(["Explore", "Upload", "SQL"])

with tab_view:
    if picked := st.session_state.pop("wl_pick_next", None):  # set by an import, before the
        st.session_state["wl_pick"] = picked                  # picker exists in this run
    name = ui.workload_picker(key="wl_pick")
    if name:
        info = store.workload(name)
        items = store.items(name)
        c = st.columns(4)
        c[0].metric("Items", info.n_items)
        c[1].metric("Task", info.task_type)
        c[2].metric("Models with outcomes", info.n_models)
        c[3].metric("Labels", len(info.label_set) if info.label_set else "-")
        if info.description:
            st.caption(info.description)
        chart_cols = [col for col in ("reference", "difficulty", "data_class")
                      if col in items.columns and items[col].n_unique() <= 40
                      and items[col].null_count() < items.height]
        if chart_cols:
            by = st.radio("Distribution by", chart_cols, horizontal=True, key="wl_dist_by")
            st.plotly_chart(charts.distribution(items, by), width="stretch")
        st.dataframe(items.head(200).to_pandas(), width="stretch", hide_index=True)
        if info.n_models:
            from workbench.runner import model_metrics

            with ui.user_errors():
                st.markdown("**Recorded outcomes per model**")
                st.dataframe(model_metrics(store, name).to_pandas(), hide_index=True,
                             width="stretch")
        with st.expander("Delete this workload"):
            st.warning(f"Deletes {name!r} with its {info.n_items} items and "
                       f"{info.n_outcomes} outcome rows.")
            sure = st.checkbox(f"Yes, delete {name}", key="wl_del_sure")
            if st.button("Delete", disabled=not sure, key="wl_del"):
                with ui.user_errors():
                    store.delete_workload(name)
                    st.session_state.pop("current_workload", None)
                    st.rerun()

def _upload_tab() -> None:
    """Upload, preview with a column mapping, and import; every message names the user's
    file (not where it was saved), and a rejected file is not kept in the uploads folder."""
    from workbench.uploads import MAX_UPLOAD_MB, save_upload, upload_errors
    from workbench.workloads import importers

    upload = st.file_uploader("CSV, JSONL or Parquet (items, or recorded outcomes: RouterBench, "
                              "RouteLLM, long format)", type=["csv", "jsonl", "json", "parquet"],
                              key="wl_upload", max_upload_size=MAX_UPLOAD_MB)
    st.caption(f"At most {MAX_UPLOAD_MB} MB. The file is saved in the data directory's uploads "
               "folder, under a safe name, and removed again if it cannot be imported.")
    if upload is None:
        return
    with ui.user_errors():
        path = save_upload(ui.home_dir(), upload.name, upload.getvalue())
    if path is None:
        return
    with upload_errors(path, upload.name, st.error):
        fmt = st.selectbox("Format", ["auto", "csv", "jsonl", "parquet", "routerbench",
                                      "routellm", "long"], key="wl_fmt")
        detected = importers.detect_format(path) if fmt == "auto" else fmt
        st.caption(f"Format: **{detected}**")
        preview = importers.preview_file(path, format=fmt, limit=20)
        st.dataframe(preview.to_pandas(), width="stretch", hide_index=True)
        columns = preview.columns
        default_name = upload.name.rsplit(".", 1)[0]
        with st.form("wl_import_form"):
            wl_name = st.text_input("Workload name", value=default_name, key="wl_name")
            mapping = None
            task_type = None
            if detected in ("csv", "jsonl", "parquet"):
                none = "(none)"
                opts = [none, *columns]

                def pick(label: str, guess: tuple[str, ...], key: str,
                         options: list[str] = opts) -> str | None:
                    idx = next((options.index(c) for c in options if c.lower() in guess), 0)
                    value = st.selectbox(label, options, index=idx, key=key)
                    return None if value == none else value

                m = st.columns(3)
                with m[0]:
                    id_col = pick("Item id column", ("id", "item_id"), "map_id")
                    input_col = pick("Input column", ("input", "text", "prompt", "question",
                                                      "message"), "map_input")
                with m[1]:
                    ref_col = pick("Reference column", ("reference", "label", "answer",
                                                        "category", "gold"), "map_ref")
                    labels_col = pick("Label set column", ("labels",), "map_labels")
                with m[2]:
                    tag_cols = st.multiselect("Tag columns", columns, key="map_tags",
                                              default=[c for c in columns if c in
                                                       ("difficulty", "data_class")])
                    meta_cols = st.multiselect("Metadata columns", columns, key="map_meta")
                task_type = st.selectbox("Task type", ["auto", "classification",
                                                       "extraction", "qa", "generation"],
                                         key="map_task")
                task_type = None if task_type == "auto" else task_type
                mapping = importers.ColumnMapping(
                    id=id_col, input=input_col or "", reference=ref_col, labels=labels_col,
                    tags=list(tag_cols), metadata=list(meta_cols),
                )
            replace = st.checkbox("Replace a workload with the same name", key="wl_replace")
            submitted = st.form_submit_button("Import", type="primary")
        if submitted:
            with st.spinner("Importing..."):
                info = importers.import_file(store, path, wl_name, format=fmt,
                                             mapping=mapping, task_type=task_type,
                                             replace=replace)
            # the list above and the explorer show the new workload at once: rerun with the
            # message kept for the next run
            st.session_state["current_workload"] = info.name
            st.session_state["wl_pick_next"] = info.name
            st.session_state["wl_flash"] = (f"Imported {info.name}: {info.n_items} items, "
                                            f"{info.n_models} models with outcomes.")
            st.rerun()


with tab_upload:
    _upload_tab()

with tab_sql:
    st.caption("One SELECT over the store's tables (workloads, items, outcomes, reviews) and "
               "nothing else: no files, network or settings; at most 10,000 rows and 10 "
               "seconds.")
    sql = st.text_area("SQL", value="SELECT workload, count(*) AS items FROM items GROUP BY 1",
                       key="wl_sql")
    if st.button("Run query", key="wl_sql_run"):
        with ui.user_errors():
            st.dataframe(store.read_only_query(sql).to_pandas(), width="stretch",
                         hide_index=True)
