"""Home: what the workbench does, where the user is in the journey, and a one-click start."""

import streamlit as st

from workbench import ui

st.title("LLM routing workbench")
st.markdown(
    "Find out **which of your requests a small, cheap model can handle and which really need a "
    "frontier model**. Load a workload, run local and hosted models side by side, write a "
    "routing policy, replay it over recorded outcomes, tune its thresholds for cost and "
    "quality, and export it for your production router."
)

store = ui.store()
workloads = store.workloads()
with_outcomes = [w for w in workloads if w.n_outcomes]

st.subheader("Your journey")
steps = [
    ("1. Load a workload", bool(workloads), "pages/workloads.py",
     f"{len(workloads)} workload(s) stored" if workloads else "nothing loaded yet"),
    ("2. Run models side by side", bool(with_outcomes), "pages/compare.py",
     f"{len(with_outcomes)} workload(s) with recorded outcomes" if with_outcomes
     else "no model outcomes yet"),
    ("3. Compose a routing policy", False, "pages/route.py", "replay it over recorded outcomes"),
    ("4. Tune thresholds", False, "pages/tune.py", "Optuna against cost and quality"),
    ("5. Export", False, "pages/export.py", "policy file and LiteLLM config"),
]
for title, done, page, detail in steps:
    cols = st.columns([0.05, 0.45, 0.5])
    cols[0].markdown("✅" if done else "⬜")
    cols[1].page_link(page, label=title)
    cols[2].caption(detail)

if not workloads:
    st.info("Start with the built-in samples: support triage, field extraction and arithmetic "
            "questions, generated on this machine (no downloads).")
if st.button("Load the sample workloads", type="primary", key="home_load_samples"):
    from workbench.workloads.samples import load_samples

    with ui.user_errors(), st.spinner("Generating and storing the samples..."):
        infos = load_samples(store, replace=True)
        st.success("Loaded " + ", ".join(f"{w.name} ({w.n_items} items)" for w in infos))
        st.session_state["current_workload"] = infos[0].name

if workloads:
    st.subheader("Stored workloads")
    st.dataframe(
        [{"workload": w.name, "task": w.task_type, "items": w.n_items, "models": w.n_models,
          "synthetic": w.synthetic} for w in workloads],
        hide_index=True, width="stretch",
    )
