"""Compare's honest figures: per model, whether its sample is large enough to tell a stated
difference (and how many items would be) with its speed; then any two models or saved policies
compared item by item (paired bootstrap, McNemar's test, cost difference)."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import streamlit as st

from workbench import charts, ui
from workbench import sample_size as ss


def quality_note(estimate: float, ci: tuple[float, float], n: int, *,
                 detect: float = ss.DETECT) -> None:
    """A caption with the quality's n and interval, or a warning with the items needed when
    the interval is too wide to tell a `detect` difference."""
    p = ss.precision(estimate, ci, n, detect=detect)
    if p.decisive or p.items_needed is None:
        st.caption(p.message[0].upper() + p.message[1:] + ".")
    else:
        st.warning(p.message[0].upper() + p.message[1:] + ".", icon=":material/warning:")


def sample_size_table(metrics: pl.DataFrame, outcomes: pl.DataFrame,
                      detect: float) -> pl.DataFrame:
    """Per model: n, quality and interval, whether that can tell a `detect` difference, items
    needed per model, items per second (one at a time) and latency p99."""
    from workbench.throughput import per_model

    rows = []
    for r in metrics.iter_rows(named=True):
        n = int(r.get("n_scored") or r["n"])
        p = ss.precision(float(r["quality"]) if r["quality"] is not None else math.nan,
                         (r["quality_lo"] if r["quality_lo"] is not None else math.nan,
                          r["quality_hi"] if r["quality_hi"] is not None else math.nan),
                         n, detect=detect)
        rows.append({
            "model": r["model"], "n": n, "quality": r["quality"],
            "quality 95% CI": (f"{r['quality_lo']:.3f} – {r['quality_hi']:.3f}"
                               if r["quality_lo"] is not None else "-"),
            f"tells {ss.points(detect)}?": "yes" if p.decisive else "too few items",
            "items needed": p.items_needed,
        })
    table = pl.DataFrame(rows, schema={"model": pl.String, "n": pl.Int64,
                                       "quality": pl.Float64, "quality 95% CI": pl.String,
                                       f"tells {ss.points(detect)}?": pl.String,
                                       "items needed": pl.Int64})
    speed = per_model(outcomes).select(
        "model", pl.col("items_per_s").round(2).alias("items/s (one at a time)"),
        pl.col("latency_p99_ms").round(0).alias("latency p99 ms"))
    return table.join(speed, on="model", how="left").with_columns(pl.col("quality").round(3))


def render(workload: str, metrics: pl.DataFrame, outcomes: pl.DataFrame, key: str) -> None:
    """The sample-size table and the paired comparison (widget keys prefixed by `key`)."""
    st.subheader("Enough items to decide?")
    if "quality" not in outcomes.columns or outcomes["quality"].null_count() == outcomes.height:
        st.info("These answers have no quality scores (the workload has no reference answers), "
                "so there is nothing to test here yet: 'Measure quality against' above scores "
                "them by agreement with a chosen model, and the Review page turns a person's "
                "verdicts into labels.", icon=":material/info:")
        return
    detect_pts = st.number_input(
        "Difference worth detecting (quality points)", min_value=1, max_value=50, value=5,
        step=1, key=f"{key}_detect",
        help="Items needed are computed for this difference at 5% significance and 80% "
             "power.")
    detect = detect_pts / 100.0
    table = sample_size_table(metrics, outcomes, detect)
    st.dataframe(table.to_pandas(), hide_index=True, width="stretch", key=f"{key}_sizes")
    st.caption(f"'Too few items' means the 95% interval is wider than ±{ss.points(detect)}: "
               "'items needed' is the number per model that would tell a difference that "
               "size when each model runs on its own items (comparing on the same items, "
               "below, needs fewer). Items per second: one request at a time, from recorded "
               "latencies.")
    _paired(workload, metrics["model"].to_list(), detect, key)


@st.cache_resource(show_spinner=False, max_entries=16)
def _compare(home: str, workload: str, version: tuple[str, int, int], a: str, b: str,
             detect: float, saved: tuple[tuple[str, int], ...]) -> Any:
    """The paired comparison, recomputed only when the outcomes or saved policies change."""
    del home, version, saved  # part of the cache key only
    from workbench.paired import compare

    return compare(ui.store(), workload, a, b, catalog=ui.catalog(), detect=detect)


def _paired(workload: str, models: list[str], detect: float, key: str) -> None:
    st.subheader("Two models or policies, item by item")
    entries = ui.catalog().list_policies()
    policies = [f"policy:{p.name}" for p in entries]
    options = models + policies
    if len(options) < 2:
        st.caption("Run a second model (or save a policy on the Route page) to compare two "
                   "item by item.")
        return
    c = st.columns(2)
    a = c[0].selectbox("A", options, index=0, key=f"{key}_a")
    b = c[1].selectbox("B", options, index=1, key=f"{key}_b")
    if a == b:
        st.info("Pick two different models or policies.")
        return
    from workbench.paired import usd

    with ui.user_errors():
        with st.spinner("Pairing items and resampling..."):
            r = _compare(str(ui.home_dir()), workload, ui.store().outcomes_version(workload),
                         a, b, detect, tuple((p.name, p.version) for p in entries))
        m = st.columns(4)
        m[0].metric(f"A: {a}", f"{r.quality_a:.3f}",
                    help=f"95% CI {r.quality_a_ci[0]:.3f} – {r.quality_a_ci[1]:.3f}, "
                         f"n={r.n}")
        m[1].metric(f"B: {b}", f"{r.quality_b:.3f}",
                    help=f"95% CI {r.quality_b_ci[0]:.3f} – {r.quality_b_ci[1]:.3f}, "
                         f"n={r.n}")
        # an arrow only when the interval excludes 0: no green arrow inside the noise
        m[2].metric("Quality A − B", f"{r.difference:+.3f}",
                    delta=f"{r.difference:+.3f} (outside the noise)" if r.decisive else None,
                    help=f"95% paired interval {r.difference_ci[0]:+.3f} to "
                         f"{r.difference_ci[1]:+.3f} over {r.n} items")
        cost_decided = r.cost_difference_ci[0] > 0 or r.cost_difference_ci[1] < 0
        m[3].metric("Cost per request A − B", usd(r.cost_difference),
                    delta=usd(r.cost_difference) if cost_decided else None,
                    delta_color="inverse",
                    help=f"95% paired interval {usd(r.cost_difference_ci[0])} to "
                         f"{usd(r.cost_difference_ci[1])}")
        if r.decisive:
            st.success(r.verdict, icon=":material/check_circle:")
        else:
            st.warning(r.verdict, icon=":material/balance:")
        st.plotly_chart(charts.paired_difference(r.difference, r.difference_ci, "A − B"),
                        width="stretch", key=f"{key}_chart")
        if r.mcnemar is not None:
            how = ("exact binomial" if r.mcnemar.method == "exact"
                   else "chi-square with continuity correction")
            st.caption(f"McNemar's test ({how}): p = {r.mcnemar.p_value:.3g}; "
                       f"{r.mcnemar.policy_only} items only A got right, "
                       f"{r.mcnemar.other_only} only B.")
        for note in r.notes:
            st.caption(note[0].upper() + note[1:] + ".")
