"""Streamlit entry point: page config and navigation over pages/; nothing else."""

import streamlit as st

st.set_page_config(page_title="Routing workbench", page_icon="🔀", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/workloads.py", title="Workloads", icon="🗂️"),
    st.Page("pages/models.py", title="Models", icon="🧠"),
    st.Page("pages/compare.py", title="Compare", icon="⚖️"),
    st.Page("pages/route.py", title="Route", icon="🔀"),
    st.Page("pages/tune.py", title="Tune", icon="🎛️"),
    st.Page("pages/export.py", title="Export", icon="📦"),
]

st.navigation(PAGES).run()
