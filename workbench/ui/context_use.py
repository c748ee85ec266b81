"""Compare's context-window section: per model, how much of its context window the recorded
prompts use (distribution, items near the limit); see workbench.context_use."""

from __future__ import annotations

import polars as pl
import streamlit as st

from workbench import ui


def _pct(col: str) -> pl.Expr:
    return (pl.col(col) * 100).round(1)


def render(workload: str, key: str) -> None:
    """The section for `workload`: a table per model, a bar chart of the share of the window
    the prompts use, and the items at or above the near-limit share."""
    from workbench.context_use import NEAR_LIMIT, context_use

    with ui.user_errors():
        use = context_use(ui.store(), workload, home=ui.home_dir())
        st.subheader("Context-window use")
        st.caption(
            "Prompt tokens of each recorded call against the model's context window (n_ctx of "
            "a local model, LiteLLM's max input tokens for a hosted one). Items near the limit "
            f"(≥ {NEAR_LIMIT:.0%}) break first when inputs grow or few-shot examples are added; "
            "'did not fit' counts calls refused because the prompt was too long.")
        table = use.per_model.with_columns(
            _pct("median_share").alias("median %"), _pct("p95_share").alias("p95 %"),
            _pct("max_share").alias("max %"),
        ).select(
            pl.col("model"), pl.col("context_tokens").alias("context (tokens)"),
            pl.col("source").alias("context size from"), pl.col("n").alias("items"),
            "median %", "p95 %", "max %", pl.col("max_prompt_tokens").alias("longest prompt"),
            pl.col("near_limit").alias(f"≥ {NEAR_LIMIT:.0%}"), "did_not_fit",
        ).rename({"did_not_fit": "did not fit"})
        st.dataframe(table.to_pandas(), hide_index=True, width="stretch", key=f"{key}_table")
        if use.distribution.height:
            st.bar_chart(use.distribution.to_pandas(), x="bucket", y="items", color="model",
                         stack=False, x_label="share of the context window used",
                         y_label="items")
        if use.near_limit.height:
            st.caption(f"{use.near_limit.height} call(s) at or above {NEAR_LIMIT:.0%} of the "
                       "window, fullest first")
            near = use.near_limit.with_columns(_pct("share").alias("share %")).drop("share")
            st.dataframe(near.head(500).to_pandas(), hide_index=True, width="stretch",
                         key=f"{key}_near")
        else:
            st.caption(f"No call used {NEAR_LIMIT:.0%} or more of its model's window.")
