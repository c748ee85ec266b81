"""Route: compose a routing policy with widgets and see, on every change, what it would have
cost and how good it would have been on the recorded outcomes, against every single model and
the oracle. Save and load policies in the catalog."""

from __future__ import annotations

import numpy as np
import polars as pl
import streamlit as st

from workbench import charts, compose, ui
from workbench.policy import Policy

st.title("Route")
st.caption("Replay a policy over recorded outcomes: no model is called, so it takes a blink.")
store = ui.store()
catalog = ui.catalog()

name = ui.workload_picker(key="route_workload", require_outcomes=True)
if name:
    from workbench import replay as rp

    # the items with recorded outcomes (a run may have covered only a slice), as frames kept
    # across reruns so replay reuses its detections and matrices on every widget change
    items, outcomes = ui.recorded_frames(name)
    n_all = store.workload(name).n_items
    if items.height < n_all:
        st.caption(f"{items.height} of {n_all} items have recorded outcomes; replaying those.")
    summaries = compose.summarize(outcomes)
    specs = compose.model_specs(store, name, catalog.list_models())
    names = [s.name for s in summaries]

    loaded: Policy | None = st.session_state.get("route_loaded")
    with st.sidebar:
        st.subheader("Saved policies")
        saved = catalog.list_policies()
        if saved:
            pick = st.selectbox("Load", [p.name for p in saved], key="route_load_pick")
            if st.button("Load policy", key="route_load"):
                with ui.user_errors():
                    loaded = Policy.from_yaml(catalog.get_policy(pick).body)
                    st.session_state["route_loaded"] = loaded
                    for i, t in enumerate(loaded.tiers):
                        st.session_state[f"route_acc_{i}"] = float(t.accept_above)
                    st.session_state["route_tiers"] = [t.model for t in loaded.tiers
                                                       if t.model in names]
                    absent = [t.model for t in loaded.tiers if t.model not in names]
                    if absent:
                        st.warning(f"{pick}: tier model(s) {', '.join(absent)} have no recorded "
                                   f"outcomes on {name!r}, so they were left out.")
        else:
            st.caption("None yet.")

    # widget state lives in session_state only (no default= as well), so loading a policy or
    # switching workloads can set it without Streamlit's double-default warning
    remembered = st.session_state.get("route_tiers")
    if remembered is None or any(m not in names for m in remembered):
        st.session_state["route_tiers"] = compose.default_tiers(summaries)
    tiers = st.multiselect("Tiers, cheap first (the last tier always answers)", names,
                           key="route_tiers")
    with st.expander("Recorded models on this workload", expanded=False):
        st.dataframe([{"model": s.name, "quality": round(s.quality, 4),
                       "cost per request": s.cost_per_request, "outcomes": s.n}
                      for s in summaries], hide_index=True, width="stretch")

    cols = st.columns(max(len(tiers) - 1, 1) + 1)
    accept: list[float] = []
    for i, model in enumerate(tiers[:-1]):
        st.session_state.setdefault(f"route_acc_{i}", 0.7)
        accept.append(cols[i].slider(f"accept_above for {model}", 0.0, 1.0, step=0.01,
                                     key=f"route_acc_{i}",
                                     help="Accept this tier's answer when its confidence is at "
                                          "least this; otherwise escalate."))
    with cols[-1]:
        verifier = st.selectbox("Verifier", ["none", "valid_label", "json", "number"],
                                key="route_verifier",
                                help="An answer must also pass this check to be accepted.")

    g = st.columns(4)
    pii = g[0].toggle("PII only to models tagged local", value=False, key="route_pii")
    fallback = g[1].selectbox("Fallback on errors", ["(none)", *names], key="route_fallback")
    share_on = g[2].toggle("Cap strong-tier share", value=False, key="route_share_on")
    share = g[2].slider("max_strong_share", 0.0, 1.0, 0.3, 0.01, key="route_share",
                        disabled=not share_on)
    learned = g[3].toggle("Learned pre-router", value=False, key="route_learned",
                          help="Predict each model's success from the text (trained on a split "
                               "of this workload) and enter at the best value tier.")
    cost_weight = g[3].number_input("cost_weight (quality per $)", 0.0, 1e6, 100.0,
                                    key="route_cw", disabled=not learned)

    with ui.user_errors():
        policy = compose.compose(
            specs, tiers, accept, name=st.session_state.get("route_name", "my-policy"),
            pii_allowed_tags=["local"] if pii else None, verifier=verifier,
            fallback=None if fallback == "(none)" else fallback,
            max_strong_share=share if share_on else None,
            learned_cost_weight=cost_weight if learned else None,
        )
        result = rp.replay(policy, items, outcomes)
        m = result.metrics
        c = st.columns(3) + st.columns(3)
        c[0].metric("Quality", f"{m.quality:.3f}",
                    help=f"95% CI {m.quality_ci[0]:.3f} – {m.quality_ci[1]:.3f}")
        c[1].metric("Cost / request", f"${m.cost_per_request:.6f}")
        c[2].metric("Cost / success", "-" if not np.isfinite(m.cost_per_success)
                    else f"${m.cost_per_success:.6f}")
        c[3].metric("Latency p95", f"{m.latency_p95_ms:,.0f} ms")
        c[4].metric("Escalated", f"{m.escalation_rate:.1%}")
        c[5].metric("Refused", f"{m.refusal_rate:.1%}")
        st.caption(f"95% CI for quality: {m.quality_ci[0]:.3f} – {m.quality_ci[1]:.3f} over "
                   f"{m.n} items. Answered by: " + ", ".join(
                       f"{k} {v:.0%}" for k, v in sorted(m.answered_by.items(),
                                                         key=lambda kv: -kv[1])))

        points = pl.DataFrame(
            [{"name": k.removeprefix("single:"), "quality": b.quality,
              "cost_per_request": b.cost_per_request} for k, b in result.baselines.items()
             if k != "random"],
            schema={"name": pl.String, "quality": pl.Float64, "cost_per_request": pl.Float64},
        )
        left, right = st.columns(2)
        if points.height:
            pts = pl.concat([points.select("name", "quality", "cost_per_request"),
                             pl.DataFrame({"name": ["this policy"], "quality": [m.quality],
                                           "cost_per_request": [m.cost_per_request]})])
            left.plotly_chart(charts.cost_quality(pts, label="name",
                                                  highlight=["this policy"]),
                              width="stretch")
        if len(tiers) > 1:
            values = np.round(np.linspace(0, 1, 21), 2).tolist()
            sweep = rp.sweep(policy, items, outcomes, "tiers.0.accept_above", values)
            right.plotly_chart(charts.sweep(sweep, "tiers.0.accept_above", points),
                               width="stretch")

        st.subheader("Decision trace")
        trace = result.trace
        f = st.radio("Show", ["all", "escalated", "refused", "wrong answers"], horizontal=True,
                     key="route_trace_filter")
        if f == "escalated":
            trace = trace.filter(pl.col("escalated"))
        elif f == "refused":
            trace = trace.filter(pl.col("refused"))
        elif f == "wrong answers":
            trace = trace.filter(pl.col("quality") < 0.5)
        st.caption(f"{trace.height} items")
        st.dataframe(trace.head(1000).to_pandas(), hide_index=True, width="stretch")

        s = st.columns([0.6, 0.4])
        pname = s[0].text_input("Policy name", "my-policy", key="route_name")
        if s[1].button("Save policy to the catalog", key="route_save"):
            named = policy.model_copy(update={"name": pname})
            entry = catalog.save_policy(pname, named.to_yaml(), workload=name,
                                        metrics=m.as_dict())
            st.success(f"Saved {pname} version {entry.version}")
        with st.expander("Policy YAML"):
            st.code(policy.to_yaml(), language="yaml")
