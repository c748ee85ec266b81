"""Compare: run catalog models on a workload (with progress and cancel), optionally with
few-shot examples drawn from a train workload, then compare quality, cost and latency side by
side, down to each item's outputs."""

from __future__ import annotations

import polars as pl
import streamlit as st

from workbench import charts, ui
from workbench.ui import jobs

st.title("Compare models")
store = ui.store()
catalog = ui.catalog()

name = ui.workload_picker(key="cmp_workload")
if name:
    info = store.workload(name)
    model_names = catalog.names()
    default = [m for m in model_names if m.startswith("gemma3")][:1]
    chosen = st.multiselect("Models to run", model_names, default=default, key="cmp_models")
    sc = st.columns([0.5, 0.3, 0.2])
    limit = sc[0].slider("How many items", 1, max(info.n_items, 1), min(20, info.n_items),
                         key="cmp_limit",
                         help="Start small: the bundled local model answers a few items a "
                              "second.")
    how = sc[1].selectbox("Which items", ["stratified sample", "random sample", "first by id"],
                          key="cmp_slice",
                          help="A stratified sample (by label, else difficulty, else tag) "
                               "covers what varies in the workload; 'first by id' takes ids "
                               "in numeric order.")
    slice_seed = sc[2].number_input("Seed", 0, 10_000, 0, key="cmp_slice_seed")
    from workbench.slices import choose

    picked = choose(store.items(name), int(limit), seed=int(slice_seed),
                    mode={"stratified sample": "stratified", "random sample": "random",
                          "first by id": "first"}[how], task_type=info.task_type)
    st.caption(f"Runs on {picked.description}.")
    if picked.warning:
        st.warning(picked.warning.capitalize() + ".", icon=":material/warning:")
    with st.expander("Few-shot examples from a train workload", expanded=False):
        st.caption("Each chosen model gets examples drawn from another workload's labelled "
                   "items (k per label, or the k most similar to each request); its outcomes "
                   "are stored as `<model>+fs-...` beside the plain model's.")
        from workbench.fewshot import with_source
        from workbench.ui.fewshot import source_inputs

        run_source = source_inputs(
            "cmp_fs", [w.name for w in store.workloads() if w.name != name], model_names)
    running = jobs.current("cmp_job")
    busy = running is not None and not running.finished
    if st.button("Run", type="primary", disabled=busy or not chosen, key="cmp_run"):
        from workbench.runner import run

        configs = [with_source(catalog.get(m), run_source) for m in chosen]

        def work(job: jobs.Job):  # noqa: ANN202 - returns the RunSummary
            from workbench.local_cost import measure_first

            measure_first(configs, ui.home_dir(), lambda m: job.progress(0, 0, m))
            return run(store, name, configs, item_ids=list(picked.item_ids),
                       progress=lambda d, t, m: job.progress(d, t, m),
                       should_stop=job.should_stop)

        jobs.start("cmp_job", f"Running {', '.join(chosen)} on {name}", work)
    job = jobs.watch("cmp_job")
    if job is not None and job.finished:
        if job.error:
            st.error(job.error)
        elif job.result is not None:
            summary = job.result
            st.success(
                f"{summary.n_items} items x {len(summary.models)} model(s): {summary.calls} calls, "
                f"{summary.cached} cached, {summary.errors} errors"
                + (" (cancelled; finished rows kept, run again to resume)" if summary.cancelled
                   else "") + f", {summary.seconds:.1f} s"
            )

    info = store.workload(name)
    if info.n_outcomes:
        from workbench.runner import model_metrics

        with ui.user_errors():
            from workbench.ui import headline

            st.subheader("Per-model metrics")
            basis = headline.basis_choice(name, "cmp_headline")
            gold = model_metrics(store, name)
            metrics, basis_line = gold, ""
            if basis != (None, None):
                from workbench.label_quality import quality_outcomes

                scored = quality_outcomes(store, name, silver=basis[0], label_set=basis[1])
                metrics = model_metrics(store, name, outcomes=scored.outcomes)
                basis_line = f" Quality here is {scored.basis.describe()}."
            st.caption("Quality with a 95% bootstrap interval; cost per successful task divides "
                       "all spend by the items answered correctly." + basis_line)
            show = metrics.with_columns(
                pl.col("quality_ci").list.eval(pl.element().round(3)).cast(pl.List(pl.String))
                .list.join(" – ").alias("quality 95% CI"),
            ).drop("quality_ci")
            st.dataframe(show.to_pandas(), hide_index=True, width="stretch",
                         key="cmp_metrics")
            cols = st.columns(2)
            cols[0].plotly_chart(charts.cost_quality(metrics), width="stretch")
            outcomes = store.outcomes(name)
            cols[1].plotly_chart(charts.latency_box(outcomes), width="stretch")
            from workbench.ui import context_use, cost_note

            cost_note.render(outcomes)
            context_use.render(name, "cmp_ctx")
            from workbench.ui import paired as ui_paired

            ui_paired.render(name, gold, outcomes, "cmp_paired")  # on the stored scores

            st.subheader("What could move to a cheaper model?")
            headline.render(name, "cmp_headline", basis=basis)

            st.subheader("Item by item")
            with_rows = metrics["model"].to_list()
            shown = st.multiselect("Models", with_rows, default=with_rows[:4], key="cmp_side")
            if shown:
                from workbench.ui import item_view

                item_view.render(name, shown, "cmp")
