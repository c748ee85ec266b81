"""Route: compose a routing policy with widgets, or load a saved or uploaded policy file, and
see on every change what it would have cost and how good it would have been on the recorded
outcomes, against every single model and the oracle. Save policies to the catalog."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import streamlit as st

from workbench import charts, compose, ui
from workbench.errors import WorkbenchError
from workbench.policy import Policy

SOURCES = ("Build with widgets", "Saved policy", "Upload a policy file")

st.title("Route")
st.caption("Replay a policy over recorded outcomes: no model is called, so it takes a blink.")
store = ui.store()
catalog = ui.catalog()


def _saved(names: list[str]) -> Policy | None:
    """The saved policy picked (the current one first), as stored."""
    if not names:
        st.info("No saved policy yet: build one with the widgets and save it, or tune one.")
        return None
    current = st.session_state.get("current_policy")
    if st.session_state.get("route_load_pick") not in names:
        st.session_state["route_load_pick"] = current if current in names else names[0]
    pick = st.selectbox("Saved policy", names, key="route_load_pick")
    st.session_state["current_policy"] = pick
    entry = catalog.get_policy(pick)
    st.caption(f"{pick} version {entry.version}"
               + (f", saved for workload {entry.workload}" if entry.workload else ""))
    return Policy.from_yaml(entry.body)


def _uploaded() -> Policy | None:
    """A policy file the user uploads, validated by the same loader as `workbench check`
    (errors name the user's file, never a server path)."""
    from workbench import export

    up = st.file_uploader("Policy file (YAML or JSON, as exported or written by hand)",
                          type=["yaml", "yml", "json"], key="route_upload")
    if up is None:
        return None
    try:
        text = up.getvalue().decode("utf-8")
    except UnicodeDecodeError:
        raise WorkbenchError(f"{up.name}: not UTF-8 text; a policy file is YAML or JSON") \
            from None
    fmt = "json" if up.name.lower().endswith(".json") else "yaml"
    policy = export.load_policy_text(text, up.name, fmt=fmt)
    st.caption(f"Loaded {up.name}: policy {policy.name!r}, {len(policy.tiers)} tier(s).")
    return policy


def _thresholds(base: Policy) -> Policy:
    """`base` with each non-final tier's accept_above from a slider (reset to the file's
    values whenever another policy is loaded)."""
    key = hashlib.sha256(base.model_dump_json().encode()).hexdigest()[:12]
    if st.session_state.get("route_base_key") != key:
        st.session_state["route_base_key"] = key
        for i, tier in enumerate(base.tiers):
            st.session_state[f"route_pacc_{i}"] = float(tier.accept_above)
    policy = base
    cols = st.columns(max(len(base.tiers) - 1, 1))
    for i, tier in enumerate(base.tiers[:-1]):
        gate = (f" (and {tier.agree_with} agrees on the {tier.agree_on})"
                if tier.agree_with else "")
        value = cols[i].slider(f"{tier.model}: accept at confidence ≥", 0.0, 1.0, step=0.01,
                               key=f"route_pacc_{i}",
                               help=f"Accept this tier's answer when its confidence is at least "
                                    f"this{gate}; otherwise escalate.")
        policy = policy.with_value(f"tiers.{i}.accept_above", value)
    return policy


name = ui.workload_picker(key="route_workload", require_outcomes=True)
if name:
    from workbench import replay as rp
    from workbench.replay.explain import explain

    # the items with recorded outcomes (a run may have covered only a slice), as frames kept
    # across reruns so replay reuses its detections and matrices on every widget change
    items, outcomes = ui.recorded_frames(name)
    n_all = store.workload(name).n_items
    if items.height < n_all:
        st.caption(f"{items.height} of {n_all} items have recorded outcomes; replaying those.")
    summaries = compose.summarize(outcomes)
    specs = compose.model_specs(store, name, catalog.list_models())
    names = [s.name for s in summaries]
    with st.expander("Recorded models on this workload", expanded=False):
        st.dataframe([{"model": s.name, "quality": round(s.quality, 4),
                       "cost per request": s.cost_per_request, "outcomes": s.n}
                      for s in summaries], hide_index=True, width="stretch")

    saved_names = [p.name for p in catalog.list_policies()]
    if "route_source" not in st.session_state:  # open on what the previous step made
        current = st.session_state.get("current_policy")
        st.session_state["route_source"] = SOURCES[1] if current in saved_names else SOURCES[0]
    source = st.radio("Policy", SOURCES, horizontal=True, key="route_source",
                      help="Build one with the widgets, or replay a saved or uploaded policy "
                           "as it is (its confidence thresholds stay adjustable here).")
    policy: Policy | None = None
    tiers: list[str] = []
    with ui.user_errors():
        if source == SOURCES[0]:
            # widget state lives in session_state only (no default= as well), so switching
            # workloads can set it without Streamlit's double-default warning
            remembered = st.session_state.get("route_tiers")
            if remembered is None or any(m not in names for m in remembered):
                st.session_state["route_tiers"] = compose.default_tiers(summaries)
            tiers = st.multiselect("Tiers, cheap first (the last tier always answers)", names,
                                   key="route_tiers")
            cols = st.columns(max(len(tiers) - 1, 1) + 1)
            accept: list[float] = []
            for i, model in enumerate(tiers[:-1]):
                st.session_state.setdefault(f"route_acc_{i}", 0.7)
                accept.append(cols[i].slider(f"{model}: accept at confidence ≥", 0.0, 1.0,
                                             step=0.01, key=f"route_acc_{i}",
                                             help="Accept this tier's answer when its "
                                                  "confidence is at least this; otherwise "
                                                  "escalate."))
            with cols[-1]:
                verifier = st.selectbox("Verifier", ["none", "valid_label", "json", "number"],
                                        key="route_verifier",
                                        help="An answer must also pass this check to be "
                                             "accepted.")
            g = st.columns(4)
            pii = g[0].toggle("PII only to models tagged local", value=False, key="route_pii")
            fallback = g[1].selectbox("Fallback on errors", ["(none)", *names],
                                      key="route_fallback")
            share_on = g[2].toggle("Cap strong-tier share", value=False, key="route_share_on")
            share = g[2].slider("Largest share sent to the strongest tier", 0.0, 1.0, 0.3, 0.01,
                                key="route_share", disabled=not share_on)
            learned = g[3].toggle("Learned pre-router", value=False, key="route_learned",
                                  help="Predict each model's success from the text (trained "
                                       "on a split of this workload) and enter at the best "
                                       "value tier.")
            cost_weight = g[3].number_input("Cost weight (quality points per $)", 0.0, 1e6,
                                            100.0, key="route_cw", disabled=not learned)
            policy = compose.compose(
                specs, tiers, accept, name=st.session_state.get("route_name", "my-policy"),
                pii_allowed_tags=["local"] if pii else None, verifier=verifier,
                fallback=None if fallback == "(none)" else fallback,
                max_strong_share=share if share_on else None,
                learned_cost_weight=cost_weight if learned else None,
            )
        else:
            base = _saved(saved_names) if source == SOURCES[1] else _uploaded()
            if base is not None:
                policy = _thresholds(base)
                tiers = [t.model for t in policy.tiers]

    if policy is not None:
        from workbench.ui import calibrate as ui_calibrate
        from workbench.ui.paired import quality_note

        with ui.user_errors():
            result = rp.replay(policy, items, outcomes)
            m = result.metrics
            c = st.columns(3) + st.columns(3)
            c[0].metric("Quality", f"{m.quality:.3f}",
                        help=f"95% CI {m.quality_ci[0]:.3f} – {m.quality_ci[1]:.3f}")
            c[1].metric("Cost / request", f"${m.cost_per_request:.6f}")
            c[2].metric("Cost / success", "-" if not np.isfinite(m.cost_per_success)
                        else f"${m.cost_per_success:.6f}")
            c[3].metric("Latency p95 / p99", ui_calibrate.latency_pair(m.latency_p95_ms,
                                                                    m.latency_p99_ms))
            c[4].metric("Escalated", f"{m.escalation_rate:.1%}")
            c[5].metric("Refused", f"{m.refusal_rate:.1%}")
            st.caption(f"95% CI for quality: {m.quality_ci[0]:.3f} – {m.quality_ci[1]:.3f} "
                       f"over {m.n} items. Answered by: " + ", ".join(
                           f"{k} {v:.0%}" for k, v in sorted(m.answered_by.items(),
                                                             key=lambda kv: -kv[1])))

            quality_note(m.quality, m.quality_ci, m.n_scored)

            points = pl.DataFrame(
                [{"name": k.removeprefix("single:"), "quality": b.quality,
                  "cost_per_request": b.cost_per_request} for k, b in result.baselines.items()
                 if k != "random"],
                schema={"name": pl.String, "quality": pl.Float64,
                        "cost_per_request": pl.Float64},
            )
            left, right = st.columns(2)
            if points.height:
                pts = pl.concat([points.select("name", "quality", "cost_per_request"),
                                 pl.DataFrame({"name": ["this policy"], "quality": [m.quality],
                                               "cost_per_request": [m.cost_per_request]})])
                left.plotly_chart(charts.cost_quality(pts, label="name",
                                                      highlight=["this policy"]),
                                  width="stretch")
            if len(policy.tiers) > 1:
                values = np.round(np.linspace(0, 1, 21), 2).tolist()
                sweep = rp.sweep(policy, items, outcomes, "tiers.0.accept_above", values)
                right.plotly_chart(charts.sweep(
                    sweep, f"{policy.tiers[0].model}: accept at confidence ≥", points,
                    title=f"If {policy.tiers[0].model} accepted at other confidence levels"),
                    width="stretch")

            ui_calibrate.render(policy, items, outcomes, name, "route_acc_0" if source ==
                                SOURCES[0] else "route_pacc_0", "route_cal")

            st.subheader("Decision trace")
            trace = explain(policy, result.trace, items, outcomes)
            f = st.radio("Show", ["all", "escalated", "refused", "wrong answers"],
                         horizontal=True, key="route_trace_filter")
            if f == "escalated":
                trace = trace.filter(pl.col("escalated"))
            elif f == "refused":
                trace = trace.filter(pl.col("refusal_reason").is_not_null())
            elif f == "wrong answers":
                trace = trace.filter(pl.col("quality") < 0.5)
            st.caption(f"{trace.height} items. Each model's recorded answer and confidence, "
                       "the path the policy took (a+b: b called alongside a for agreement) and "
                       "the answer it gave.")
            st.dataframe(trace.head(1000).to_pandas(), hide_index=True, width="stretch")

            s = st.columns([0.6, 0.4])
            if st.session_state.get("route_name_for") != policy.name and source != SOURCES[0]:
                st.session_state["route_name_for"] = policy.name
                st.session_state["route_name"] = policy.name
            st.session_state.setdefault("route_name", "my-policy")
            pname = s[0].text_input("Policy name", key="route_name")
            if s[1].button("Save policy to the catalog", key="route_save"):
                named = policy.model_copy(update={"name": pname})
                entry = catalog.save_policy(pname, named.to_yaml(), workload=name,
                                            metrics=m.as_dict())
                st.session_state["current_policy"] = pname
                st.success(f"Saved {pname} version {entry.version}")
            with st.expander("Policy YAML"):
                st.code(policy.to_yaml(), language="yaml")
