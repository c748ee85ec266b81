"""One click from a flagged slice to a routing rule: pick the slice and a saved policy, see the
replay before and after, and save the gated policy as a new version (workbench.gates)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from workbench import ui
from workbench.gates import GATE_COLUMNS


def render(workload: str, flagged: pl.DataFrame, key: str) -> None:
    """Gate controls under the flagged-slice table (slices that can be rules only)."""
    can = flagged.filter(pl.col("column").is_in(GATE_COLUMNS)
                         & (pl.col("slice") != "(none)")).select("column", "slice").unique(
        maintain_order=True)
    if can.height == 0:
        st.caption("None of these slices can be a routing rule (a label is the reference "
                   "answer, unknown when a request arrives).")
        return
    catalog = ui.catalog()
    policies = [p.name for p in catalog.list_policies()]
    if not policies:
        st.caption("Save a policy (Route or Tune page) to send a flagged slice to its strong "
                   "tier with one click.")
        return
    choices = [f"{c}: {s}" for c, s in can.iter_rows()]
    c = st.columns([0.4, 0.4, 0.2])
    pick = c[0].selectbox("Send this slice to the strong tier", choices, key=f"{key}_slice")
    current = st.session_state.get("current_policy")
    pol = c[1].selectbox("In policy", policies, key=f"{key}_policy",
                         index=policies.index(current) if current in policies else 0)
    c[2].write("")
    if c[2].button("Add the rule", key=f"{key}_go"):
        from workbench.export import resolve_policy
        from workbench.gates import gate_effect

        column, value = pick.split(": ", 1)
        with ui.user_errors():
            effect = gate_effect(ui.store(), workload, resolve_policy(pol, ui.home_dir()),
                                 column, value)
            name = f"{pol}-gated" if not pol.endswith("-gated") else pol
            gated = effect.policy.model_copy(update={"name": name})
            entry = catalog.save_policy(name, gated.to_yaml(), workload=workload,
                                        metrics={"replay": effect.after.as_dict()})
            st.session_state["current_policy"] = name
            b, a = effect.before, effect.after
            st.success(
                f"Saved {name} version {entry.version}: {effect.rule} "
                f"({effect.gated_items} more item(s) to the strong tier; the slice has "
                f"{effect.slice_items}). Replay on {a.n} items: quality {b.quality:.3f} -> "
                f"{a.quality:.3f} (95% CI {a.quality_ci[0]:.3f}-{a.quality_ci[1]:.3f}), "
                f"${b.cost_per_request:.6f} -> ${a.cost_per_request:.6f} per request, strong "
                f"share {b.strong_share:.0%} -> {a.strong_share:.0%}.",
                icon=":material/rule:")
