"""Compare's note under the cost columns: how each model's cost was derived (per-token prices,
or a local model's measured speed x $/hour) and which local speeds were measured under
contention; see workbench.local_cost."""

from __future__ import annotations

import polars as pl
import streamlit as st

COST_HELP = (
    "Cost per request: hosted models at their per-token prices; local models from their "
    "measured speed on this machine (prompt and generation tokens/s, measured once per model "
    "file) x the hardware $/hour, never from wall time, so a busy machine does not make them "
    "dearer.")


def render(outcomes: pl.DataFrame) -> None:
    """A caption explaining the cost column, one example derivation per local model, and a
    warning naming models whose speed was measured under contention."""
    from workbench.local_cost import cost_sources

    sources = cost_sources(outcomes)
    lines = [f"**{r['model']}**: {r['cost_basis']}"
             for r in sources.iter_rows(named=True) if r["cost_basis"]]
    st.caption(COST_HELP + (" For example, one call each: " + "; ".join(lines) if lines
                            else ""))
    contended = sources.filter(pl.col("contended"))["model"].to_list()
    if contended:
        st.warning(
            f"{', '.join(contended)}: speed measured while the machine was busy, so these costs "
            "are overstated. Measure again on a quiet machine and charge the recorded calls "
            "again (Models page, or `workbench models calibrate NAME --recost`).", icon=":material/speed:")
