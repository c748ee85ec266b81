"""The headline answer on a page: what share of requests a cheaper model can take at the
quality the user keeps, what that saves at their volume (with intervals), the slices to keep
on the strong model, failure modes, and the one-page HTML report to take to a meeting."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from workbench import ui


@st.cache_resource(show_spinner=False, max_entries=4)
def _report(home: str, workload: str, version: tuple[str, int, int], silver: str | None = None,
            label_set: int | None = None) -> Any:
    """The workload's report on a quality basis, rebuilt only when its outcomes or the basis
    change (what-ifs reuse it)."""
    del version  # part of the cache key only
    from workbench.report import build_report
    from workbench.store import open_store

    return build_report(open_store(home), workload, silver=silver, label_set=label_set)


def basis_choice(workload: str, key: str) -> tuple[str | None, int | None]:
    """What quality is measured against: the workload's reference answers when it has them,
    else (or on request) agreement with one model's answers (silver), optionally corrected by
    the latest reviewed label set. Returns (silver model, label-set version)."""
    from workbench import reviews

    store = ui.store()
    items, outcomes = ui.recorded_frames(workload)  # read again only when outcomes change
    has_refs = "reference" in items.columns and items["reference"].null_count() < items.height
    costs = (outcomes.group_by("model")
             .agg(pl.col("cost_usd").fill_null(0).mean().alias("c")).sort("c", descending=True))
    models = costs["model"].to_list()
    options = (["the reference answers"] if has_refs else []) + [
        f"agreement with {m}" for m in models]
    c = st.columns([0.6, 0.4])
    pick = c[0].selectbox(
        "Measure quality against", options, key=f"{key}_basis",
        help="Without reference answers, each model is scored by agreement with a chosen "
             "model's answers (a silver reference, usually the strongest): agreement, not "
             "accuracy. Reviews on the Review page correct it item by item.")
    silver = None if pick == "the reference answers" else pick.removeprefix("agreement with ")
    newest = reviews.latest_version(store, workload)
    label_set = None
    if newest and c[1].checkbox(f"Correct with reviewed labels (version {newest})", value=True,
                                key=f"{key}_reviews"):
        label_set = int(newest)
    return silver, label_set


def render(workload: str, key: str,
           basis: tuple[str | None, int | None] | None = None) -> None:
    """The headline section for `workload` (widget keys prefixed by `key`); `basis` (silver
    model, label-set version) when the page already chose it with `basis_choice`."""
    store = ui.store()
    if len(store.models_of(workload)) < 2:
        st.caption("Run at least two models on this workload to see what a cheaper one could "
                   "take over.")
        return
    silver, label_set = basis if basis is not None else basis_choice(workload, key)
    c = st.columns(3)
    keep = c[0].slider("Keep at least this share of the strong model's quality", 50, 100, 95,
                       key=f"{key}_keep", format="%d%%")
    volume = c[1].number_input("Requests per day", min_value=1, value=10_000, step=1_000,
                               key=f"{key}_volume")
    route_by = c[2].selectbox(
        "Move requests by", ["any rule", "confidence", "everything", "tag", "data_class",
                             "difficulty", "label", "input_length"], key=f"{key}_route",
        help="How a router would choose which requests go to the cheaper model: by the "
             "cheaper model's own confidence, all or nothing, or whole slices of a column.")
    with ui.user_errors():
        with st.spinner("Computing the headline with bootstrap intervals..."):
            with store.session():  # opened (or waited for) outside the cached function
                base = _report(str(ui.home_dir()), workload, store.outcomes_version(workload),
                               silver, label_set)
            report = base.what_if(keep_quality=keep / 100.0, requests_per_day=float(volume),
                                  route_by=None if route_by == "any rule" else route_by)
        st.info(report.sentence, icon=":material/savings:")
        if report.basis:
            st.caption(f"Quality here is {report.basis['basis']}.")
        st.caption(f"In-sample figures over {report.n_items} items with recorded outcomes; "
                   "intervals are 95% bootstrap intervals over items (the rule is re-chosen in "
                   "every resample).")
        from workbench.report_charts import report_figures, report_html

        figs = report_figures(report)
        left, right = st.columns(2)
        for slot, name in zip((left, right), ("share", "saving"), strict=False):
            if name in figs:
                slot.plotly_chart(figs[name], width="stretch", key=f"{key}_fig_{name}")
        flagged = report.flagged()
        if flagged.height:
            st.markdown("**Slices where a model does significantly worse than on the rest** "
                        "(Benjamini-Hochberg, false discovery rate "
                        f"{report.settings.alpha:.0%}): keep these on the strong model.")
            st.dataframe(_readable(flagged), hide_index=True, width="stretch")
            from workbench.ui import gate

            gate.render(workload, flagged, f"{key}_gate")
        with st.expander("Failure modes per model"):
            if "failures" in figs:
                st.plotly_chart(figs["failures"], width="stretch", key=f"{key}_fig_failures")
            st.dataframe(_readable(report.failures), hide_index=True, width="stretch")
        st.download_button("Download the one-page report (HTML)", report_html(report),
                           file_name=f"{workload}-report.html", mime="text/html",
                           key=f"{key}_html")


def _readable(frame: pl.DataFrame) -> Any:
    """Floats rounded for reading."""
    return frame.with_columns(pl.col(pl.Float64).round(4)).to_pandas()
