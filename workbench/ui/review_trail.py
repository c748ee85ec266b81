"""The review trail on the Export page: a version's review state, the policy's history, diffs
against the parent and the approved version, and approve/reject with a comment."""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from workbench import ui
from workbench.policy_approval import version_diffs
from workbench.policy_content import short
from workbench.policy_review import (
    VersionRecord,
    approve,
    current_user,
    history,
    needing_recheck,
    reject,
    require_second_reviewer,
    when,
)

_FLASH = "review_trail_flash"


def _state_banner(record: VersionRecord) -> None:
    """The selected version's state in one coloured line (plus what changed, if anything)."""
    if record.state == "approved" and not record.needs_recheck:
        st.success(record.describe(), icon=":material/verified:")
    elif record.state == "approved":
        e = record.decision
        assert e is not None
        st.warning(f"{record.name} v{record.version} was approved by {e.reviewer} on "
                   f"{when(e.at)}, but **needs a re-check**: a model it uses changed since: "
                   + "; ".join(record.needs_recheck)
                   + ". Replay it with the models as they are now, then approve it again.",
                   icon=":material/sync_problem:")
    elif record.state == "rejected":
        st.error(record.describe(), icon=":material/block:")
    else:
        st.info(record.describe(), icon=":material/pending:")


def _history_frame(records: list[VersionRecord]) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    for r in reversed(records):
        e = r.decision
        rows.append({
            "version": r.version, "state": "approval withdrawn" if r.withdrawn else r.state,
            "needs re-check": "yes" if r.needs_recheck else "",
            "saved (UTC)": when(r.saved).removesuffix(" UTC"), "author": r.author or "unknown",
            "reason": r.reason, "parent": r.parent, "content hash": short(r.content_hash),
            "reviewed by": e.reviewer if e else "",
            "reviewed (UTC)": when(e.at).removesuffix(" UTC") if e else "",
            "comment": e.comment if e else "",
        })
    return pl.DataFrame(rows)


def render_diffs(catalog: Any, name: str, version: int,
                 records: list[VersionRecord] | None = None) -> None:
    """The version's diffs (canonical YAML) against its parent and the approved version."""
    for diff in version_diffs(catalog, name, version, records):
        st.markdown(f"**v{version} {diff.title}**")
        if diff.against is None:
            st.caption(diff.note)
        else:
            st.code(diff.text or "(no differences)", language="diff")


def _decide(catalog: Any, name: str, version: int, action: str, by: str, comment: str,
            second: bool) -> None:
    with ui.user_errors():
        if action == "approve":
            record = approve(catalog, name, version, by=by, comment=comment,
                             require_second=second)
        else:
            record = reject(catalog, name, version, by=by, comment=comment)
        st.session_state[_FLASH] = record.describe()
        st.rerun()


def render(catalog: Any, name: str, version: int) -> None:
    """The Review section for one saved version: state, history, approve/reject."""
    records = history(catalog, name)
    record = next(r for r in records if r.version == version)
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        st.toast(flash, icon=":material/check:")
    _state_banner(record)
    others = [r for r in needing_recheck(catalog) if (r.name, r.version) != (name, version)]
    if others:
        st.warning("Also needing a re-check, because a model they use changed since their "
                   "approval: " + "; ".join(f"**{r.name} v{r.version}** ("
                                             + ", ".join(r.needs_recheck) + ")"
                                             for r in others), icon=":material/sync_problem:")
    st.caption(f"Content hash {short(record.content_hash)} (what the policy does, without "
               "provenance). `workbench check --require-approved` passes only for files with "
               "the content of an approved version whose models did not change since.")
    st.markdown("**History**")
    st.dataframe(_history_frame(records), hide_index=True, key="rt_history")

    st.markdown(f"**Review v{version}**")
    forced = require_second_reviewer()
    c = st.columns([1, 2])
    by = c[0].text_input("Your name", value=current_user(required=False) or "",
                         key="rt_by")
    second = c[0].checkbox("Second reviewer required", value=forced, disabled=forced,
                           key="rt_second",
                           help="Refuse approval by the person who saved the version; on for "
                                "everyone when WORKBENCH_REQUIRE_SECOND_REVIEWER=1")
    comment = c[1].text_area("Comment (required to reject)", key="rt_comment", height=100)
    b = st.columns(2)
    if b[0].button("Approve", key="rt_approve", type="primary", width="stretch",
                   icon=":material/verified:"):
        _decide(catalog, name, version, "approve", by, comment, second or forced)
    if b[1].button("Reject", key="rt_reject", width="stretch", icon=":material/block:"):
        _decide(catalog, name, version, "reject", by, comment, second or forced)
