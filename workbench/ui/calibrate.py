"""Route's "calibrate to a strong share" control: pick the largest share of requests the
strongest tier may take, get the cheap tier's threshold that keeps to it, and the quality,
cost and share that result (replayed); one click applies the threshold to the slider."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import streamlit as st

from workbench import ui


def latency_pair(p95_ms: float, p99_ms: float) -> str:
    """'850 / 990 ms', or '1.5 / 1.6 s' from a second up (fits a metric); '-' when unknown."""
    if not math.isfinite(p95_ms):
        return "-"
    if max(p95_ms, p99_ms) >= 1000:
        return f"{p95_ms / 1000:.1f} / {p99_ms / 1000:.1f} s"
    return f"{p95_ms:.0f} / {p99_ms:.0f} ms"


def _apply(slider_key: str, value: float) -> None:
    """Set the cheap tier's slider (a callback: it runs before the slider is drawn again)."""
    st.session_state[slider_key] = value


def render(policy: Any, items: pl.DataFrame, outcomes: pl.DataFrame, workload: str,
           slider_key: str, key: str) -> None:
    """The control for `policy` (cheap tier first) over the recorded `items`/`outcomes`;
    `slider_key` is the session key of the cheap tier's threshold slider."""
    with st.expander("Calibrate to a strong share", expanded=False):
        if len(policy.tiers) < 2:
            st.caption("A cascade of at least two tiers is needed: the cheap tier's threshold "
                       "decides who goes on to the strong one.")
            return
        cheap, strong = policy.tiers[0].model, policy.tiers[-1].model
        st.caption(f"Sets {cheap}'s confidence threshold so that at most this share of "
                   f"requests reaches {strong}: the quantile of {cheap}'s recorded confidence, "
                   "checked by replaying the policy (errors and failed checks escalate too).")
        c = st.columns([0.6, 0.4])
        pct = c[0].slider(f"Send at most this share to {strong}", 0, 100, 20, step=1,
                          format="%d%%", key=f"{key}_share")
        if c[1].button("Calibrate", key=f"{key}_run"):
            from workbench.calibrate import calibrate

            with ui.user_errors(), st.spinner("Calibrating: replaying the policy..."):
                st.session_state[f"{key}_result"] = None
                result = calibrate(policy, items, outcomes, pct / 100.0, workload=workload)
                st.session_state[f"{key}_result"] = (pct, result)
        stored = st.session_state.get(f"{key}_result")
        if not stored:
            return
        asked, result = stored
        if result.cheap != cheap or result.strong != strong or result.workload != workload:
            return  # calibrated for another policy or workload: stale
        m = result.metrics
        cols = st.columns(4)
        cols[0].metric("Threshold", f"{result.threshold:.3f}",
                       help=f"{cheap} accepts at confidence ≥ this (plain quantile "
                            f"{result.quantile_threshold:.3f})")
        cols[1].metric(f"Sent to {strong}", f"{result.strong_share:.1%}",
                       help=f"{result.n_strong} of {result.n} items; target at most "
                            f"{asked}% ({result.limit} items)")
        cols[2].metric("Quality", f"{m.quality:.3f}",
                       help=f"95% CI {m.quality_ci[0]:.3f} – {m.quality_ci[1]:.3f}, "
                            f"n={m.n_scored}")
        cols[3].metric("Cost / request", f"${m.cost_per_request:.6f}")
        st.caption(result.message[0].upper() + result.message[1:] + ".")
        from workbench.ui.paired import quality_note

        quality_note(m.quality, m.quality_ci, m.n_scored)
        st.button("Use this threshold", key=f"{key}_apply", on_click=_apply,
                  args=(slider_key, float(result.threshold)))
