"""Streamlit entry point: page config and navigation over pages/; nothing else."""

import streamlit as st

st.set_page_config(page_title="Routing workbench", page_icon=":material/alt_route:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/workloads.py", title="Workloads", icon=":material/table_view:"),
    st.Page("pages/models.py", title="Models", icon=":material/memory:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
    st.Page("pages/route.py", title="Route", icon=":material/alt_route:"),
    st.Page("pages/tune.py", title="Tune", icon=":material/tune:"),
    st.Page("pages/export.py", title="Export", icon=":material/ios_share:"),
]

st.navigation(PAGES).run()
