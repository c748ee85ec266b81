"""Review: quality without gold labels. Walk the items where models disagree or the cheap model
is confidently wrong, mark each answer right or wrong or write the correct answer; every save
is a new version of the workload's label set, which replay, the report and export can use."""

from __future__ import annotations

import streamlit as st

from workbench import ui
from workbench.ui import review

st.title("Review answers")
st.caption("No gold labels? Score models against a reference model (agreement, not accuracy), "
           "then review the answers that matter; your reviews become a versioned label set.")
name = ui.workload_picker(key="rv_workload", require_outcomes=True)
if name:
    with ui.user_errors():
        review.render(name, key="rv")
