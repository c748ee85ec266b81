"""Export: pick a saved policy, preview its file, diff it against its parent and the approved
version, review it (history, approve/reject), download the policy and a LiteLLM proxy config,
and try it live on a typed prompt."""

from __future__ import annotations

import streamlit as st

from workbench import ui
from workbench.ui import review_trail

st.title("Export")
catalog = ui.catalog()
store = ui.store()

saved = catalog.list_policies()
if not saved:
    st.info("No saved policy yet: compose one on the Route page (or tune one on the Tune page) "
            "and save it to the catalog.")
else:
    from workbench import export

    names = [p.name for p in saved]
    remembered = st.session_state.get("current_policy")
    pick = st.selectbox("Policy", names, index=names.index(remembered)
                        if remembered in names else 0, key="exp_policy")
    st.session_state["current_policy"] = pick
    versions = catalog.policy_versions(pick)
    version = st.selectbox("Version", [v.version for v in reversed(versions)], key="exp_version")
    entry = catalog.get_policy(pick, version)
    with ui.user_errors():
        policy = export.load_policy_text(entry.body, f"policy {pick} v{version}")
        if entry.workload and store.exists(entry.workload) and policy.provenance is None:
            policy = export.provenance_from_store(policy, store, entry.workload)
        else:
            policy = export.with_provenance(policy)
        from workbench.policy_approval import stamp_approval

        policy = stamp_approval(policy, catalog)  # the file names its approval, if any
        fmt = st.radio("Format", ["yaml", "json"], horizontal=True, key="exp_fmt")
        text = export.policy_text(policy, fmt)
        litellm_text = export.litellm_config_yaml(policy)

        c = st.columns(2)
        c[0].download_button("Download policy", text, file_name=f"{pick}.{fmt}",
                             mime="application/yaml" if fmt == "yaml" else "application/json",
                             type="primary", key="exp_dl_policy", width="stretch",
                             on_click=lambda: st.session_state.update(journey_exported=True))
        c[1].download_button("Download LiteLLM proxy config", litellm_text,
                             file_name=f"{pick}-litellm.yaml", mime="application/yaml",
                             key="exp_dl_litellm", width="stretch",
                             on_click=lambda: st.session_state.update(journey_exported=True))

        tab_file, tab_diff, tab_litellm = st.tabs(["Policy file", "Diff", "LiteLLM config"])
        tab_file.code(text, language=fmt)
        with tab_diff:
            review_trail.render_diffs(catalog, pick, version)
        tab_litellm.code(litellm_text, language="yaml")

        st.subheader("Review")
        review_trail.render(catalog, pick, version)

    st.subheader("Try it")
    st.caption("Routes a prompt live through the policy's models (local ones run here).")
    prompt = st.text_area("Prompt", "My card was charged twice for order 1234, please help.",
                          key="exp_prompt")
    labels = st.text_input("Labels (comma separated, makes it a classification request)",
                           "", key="exp_labels")
    if st.button("Route it", key="exp_route"):
        from workbench.router import PolicyRouter

        with ui.user_errors(), st.spinner("Routing..."):
            router = PolicyRouter(policy, log_path=ui.home_dir() / "decisions.jsonl")
            try:
                label_list = [x.strip() for x in labels.split(",") if x.strip()] or None
                result = router.complete(prompt, labels=label_list)
            finally:
                router.close()
            if result.refused:
                st.warning(f"Refused: {result.refusal_reason}")
            elif result.error:
                st.error(f"Failed: {result.error}")
            else:
                st.success(f"Answered by **{result.model}** in {result.latency_ms:.0f} ms for "
                           f"${result.cost_usd:.6f}")
                st.text(result.text)
            st.code(result.trace_text(), language="text")
