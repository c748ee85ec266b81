"""The Review page's widgets: choose a basis (gold or a reference model), walk the review
queue one item at a time, mark each answer right or wrong or write the correct answer, and see
what the label set does to each model's quality.

Keyboard (st.button's `shortcut`, Streamlit >= 1.50; keys do nothing while the cursor is in a
text box, except Ctrl+Enter): 1-9 mark answer 1-9 right, Alt+1-9 mark it wrong, Ctrl+Enter
saves the written answer, N goes to the next item, B back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import streamlit as st

from workbench import ui
from workbench.errors import WorkbenchError

GOLD = "none: the workload's reference answers"
SHORTCUTS_HELP = ("Keys: **1-9** mark answer 1-9 right, **Alt+1-9** wrong, **Ctrl+Enter** saves "
                  "the written answer, **N** next item, **B** back. Keys wait while you type in "
                  "a box (Ctrl+Enter works there).")
MAX_KEYED = 9


def _state(key: str, name: str, default: Any = None) -> Any:
    return st.session_state.get(f"{key}_{name}", default)


def _set(key: str, name: str, value: Any) -> None:
    st.session_state[f"{key}_{name}"] = value


def _act(key: str, fn: Callable[[], str]) -> None:
    """Run a save in a button callback; keep its message (or the error) for the next run."""
    try:
        _set(key, "msg", ("ok", fn()))
    except WorkbenchError as exc:
        _set(key, "msg", ("error", str(exc)))


def _save_verdict(key: str, workload: str, item_id: str, model: str, verdict: bool) -> None:
    from workbench.reviews import save_review

    def go() -> str:
        saved = save_review(ui.store(), workload, item_id, reviewer=_state(key, "reviewer", ""),
                            model=model, verdict=verdict)
        return f"Saved {saved.describe()}"

    _act(key, go)


def _save_answer(key: str, workload: str, item_id: str) -> None:
    from workbench.reviews import save_review

    def go() -> str:
        text = _state(key, f"answer_{item_id}", "") or ""
        saved = save_review(ui.store(), workload, item_id, reviewer=_state(key, "reviewer", ""),
                            answer=text)
        return f"Saved {saved.describe()}"

    _act(key, go)


def _move(key: str, step: int, size: int) -> None:
    _set(key, "pos", max(0, min(size - 1, int(_state(key, "pos", 0)) + step)))
    _set(key, "msg", None)


def controls(workload: str, key: str) -> tuple[str, str | None, str | None, float, bool]:
    """Reviewer name, reference model (None: gold), cheap model, confidence threshold and
    whether reviewed items stay in the queue."""
    from workbench.review_queue import cheapest_model

    store = ui.store()
    models = store.models_of(workload)
    c = st.columns([0.25, 0.25, 0.2, 0.15, 0.15])
    reviewer = c[0].text_input("Your name", key=f"{key}_reviewer",
                               help="Stored with every review you save.")
    ref = c[1].selectbox(
        "Reference model", [GOLD, *models], key=f"{key}_silver",
        help="Without gold labels, score every model against one model's answers (a silver "
             "reference). Figures then show agreement with that model, not accuracy.")
    cheapest = cheapest_model(store.outcomes(workload))
    cheap = c[2].selectbox("Cheap model", models,
                           index=models.index(cheapest) if cheapest in models else 0,
                           key=f"{key}_cheap",
                           help="Queued when it is confident and wrong.")
    threshold = c[3].slider("Confident at", 0.0, 1.0, 0.8, 0.05, key=f"{key}_conf",
                            help="Confidence at or above which a wrong answer of the cheap "
                                 "model is queued.")
    include = c[4].checkbox("Include reviewed", key=f"{key}_include",
                            help="Keep items you already reviewed in the queue.")
    return reviewer, None if ref == GOLD else ref, cheap, float(threshold), include


def _frozen_queue(workload: str, key: str, silver: str | None, cheap: str | None,
                  threshold: float, include: bool) -> tuple[list[str], dict[str, str], Any]:
    """The queue's item ids, frozen for this round (so saving does not reshuffle it), rebuilt
    when a setting changes or on request."""
    from workbench.review_queue import build_queue

    settings = (workload, silver, cheap, threshold, include)
    if _state(key, "settings") != settings or _state(key, "ids") is None:
        queue = build_queue(ui.store(), workload, cheap=cheap, silver=silver,
                            min_confidence=threshold, include_reviewed=include)
        _set(key, "settings", settings)
        _set(key, "ids", queue.items["item_id"].to_list())
        _set(key, "reasons", dict(zip(queue.items["item_id"], queue.items["reason"],
                                      strict=True)))
        _set(key, "basis", queue.basis.describe())
        _set(key, "pos", 0)
    return _state(key, "ids"), _state(key, "reasons"), _state(key, "basis")


def _fmt(v: Any, pattern: str = "{:.2f}") -> str:
    return "-" if v is None or v != v else pattern.format(v)


def _answer_row(key: str, workload: str, item_id: str, i: int, row: dict[str, Any],
                can_save: bool) -> None:
    """One model's answer: text, confidence, quality on the basis, verdict, and the buttons."""
    with st.container(border=True):
        verdict = row["verdict"]
        mark = ("" if verdict is None else
                " · reviewed: **right**" if verdict else " · reviewed: **wrong**")
        st.markdown(f"**{i}. {row['model']}** · confidence {_fmt(row['confidence'])} · "
                    f"quality {_fmt(row['quality'], '{:.0%}')}{mark}")
        if row["error"]:
            st.caption(f"No answer: the call failed ({row['error']}).")
        else:
            st.code(row["output"] or "", language=None, wrap_lines=True)
        keyed = i <= MAX_KEYED
        b = st.container(horizontal=True)
        b.button("Right", key=f"{key}_right_{i}", icon=":material/check:",
                    shortcut=str(i) if keyed else None, disabled=not can_save or row["error"]
                    is not None, on_click=_save_verdict,
                    args=(key, workload, item_id, row["model"], True))
        b.button("Wrong", key=f"{key}_wrong_{i}", icon=":material/close:",
                    shortcut=f"Alt+{i}" if keyed else None, disabled=not can_save,
                    on_click=_save_verdict, args=(key, workload, item_id, row["model"], False))


def render(workload: str, key: str) -> None:
    """The whole review section for `workload` (widget keys prefixed by `key`)."""
    from workbench.review_queue import item_view

    store = ui.store()
    reviewer, silver, cheap, threshold, include = controls(workload, key)
    if silver is not None:
        st.info(f"Quality on this page is **agreement with {silver}, not accuracy**: every "
                f"model is scored against {silver}'s answers with the workload's scorer.",
                icon=":material/info:")
        with ui.user_errors():
            agreement_table(workload, silver)
    with ui.user_errors():
        ids, reasons, basis = _frozen_queue(workload, key, silver, cheap, threshold, include)
        if st.button("Rebuild the queue", key=f"{key}_rebuild",
                     help="Pick the items again with the reviews saved so far."):
            _set(key, "ids", None)
            st.rerun()
        st.caption(f"Queue: items where the models disagree, or {cheap} is confident "
                   f"(>= {threshold:.2f}) and wrong; {basis}.")
        if not ids:
            st.success("Nothing to review: the models agree and the cheap model is not "
                       "confidently wrong on any item.", icon=":material/task_alt:")
            summary(workload, silver)
            return
        pos = max(0, min(len(ids) - 1, int(_state(key, "pos", 0))))
        _set(key, "pos", pos)
        item_id = ids[pos]
        try:
            view = item_view(store, workload, item_id, silver=silver)
        except WorkbenchError as exc:
            st.warning(f"{exc}. Rebuild the queue to drop it.", icon=":material/warning:")
            _nav(key, pos, len(ids))
            return
        st.subheader(f"Item {pos + 1} of {len(ids)}: {item_id}")
        st.caption(f"Why it is here: {reasons.get(item_id, '-')}.")
        msg = _state(key, "msg")
        if msg:
            (st.success if msg[0] == "ok" else st.error)(msg[1])
        st.markdown("**Input**")
        st.code(view.input, language=None, wrap_lines=True)
        refs = st.columns(3)
        refs[0].markdown("**Reference answer**")
        refs[0].code(view.reference or "(none)", language=None, wrap_lines=True)
        refs[1].markdown(f"**{silver}'s answer (silver reference)**" if silver else
                         "**Silver reference**")
        refs[1].code((view.silver_answer or "(no answer)") if silver else "(none chosen)",
                     language=None, wrap_lines=True)
        refs[2].markdown("**Written answer (label set)**")
        refs[2].code(view.written_answer or "(none yet)", language=None, wrap_lines=True)
        can_save = bool(reviewer.strip())
        if not can_save:
            st.caption("Type your name above to save reviews.")
        for i, row in enumerate(view.answers.iter_rows(named=True), start=1):
            _answer_row(key, workload, item_id, i, row, can_save)
        info = store.workload(workload)
        allowed = (f" One of: {', '.join(info.label_set)}." if info.task_type ==
                   "classification" and info.label_set else "")
        st.text_area("The correct answer", key=f"{key}_answer_{item_id}",
                     placeholder="Write the correct answer when no model has it, then save "
                                 f"(Ctrl+Enter).{allowed}")
        st.button("Save answer", key=f"{key}_save_answer", icon=":material/edit_note:",
                  shortcut="Ctrl+Enter", disabled=not can_save, on_click=_save_answer,
                  args=(key, workload, item_id))
        _nav(key, pos, len(ids))
        st.caption(SHORTCUTS_HELP)
        if view.history.height:
            with st.expander(f"Reviews of this item ({view.history.height})"):
                st.dataframe(view.history.select("version", "reviewer", "created", "model",
                                                 "verdict", "answer"),
                             hide_index=True, width="stretch")
        summary(workload, silver)


def _nav(key: str, pos: int, size: int) -> None:
    nav = st.container(horizontal=True)
    nav.button("Back", key=f"{key}_back", icon=":material/arrow_back:", shortcut="B",
                  disabled=pos == 0, on_click=_move, args=(key, -1, size))
    nav.button("Next", key=f"{key}_next", icon=":material/arrow_forward:", shortcut="N",
                  disabled=pos >= size - 1, on_click=_move, args=(key, 1, size))


def summary(workload: str, silver: str | None) -> None:
    """What the label set does: each model's quality stored, on the basis, and with the
    latest label set applied (what replay, the report and export use when it is chosen)."""
    from workbench.label_quality import quality_outcomes
    from workbench.reviews import latest_version

    store = ui.store()
    version = latest_version(store, workload)
    st.subheader("Label set")
    if version == 0:
        st.caption("No reviews yet. Each save becomes a new version of this workload's label "
                   "set; replay, the report and export can then recompute quality from it "
                   "(`--label-set latest`).")
        return
    base = quality_outcomes(store, workload, silver=silver)
    reviewed = quality_outcomes(store, workload, silver=silver, label_set=version)
    assert reviewed.basis.label_set is not None
    st.caption(reviewed.basis.label_set.describe() + f"; {reviewed.basis.n_relabelled} answers "
               "decided by reviews.")

    def means(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.group_by("model").agg(pl.col("quality").mean().alias(name))

    label = "agreement" if silver else "quality"
    table = (means(base.outcomes, f"{label} before reviews")
             .join(means(reviewed.outcomes, f"{label} with label set v{version}"), on="model")
             .sort("model"))
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="percent")
                                for c in table.columns if c != "model"})


def agreement_table(workload: str, silver: str) -> None:
    """Each model's agreement with the reference model (95% CI), cost and errors."""
    from workbench.label_quality import basis_metrics

    table, basis = basis_metrics(ui.store(), workload, silver=silver, n_boot=200)
    shown = table.select(
        "model", pl.col("quality").alias(f"agreement with {silver}"),
        pl.format("{}% - {}%", (pl.col("quality_lo") * 100).round(1),
                  (pl.col("quality_hi") * 100).round(1)).alias("95% CI"),
        "cost_per_request", "error_rate")
    st.dataframe(shown, hide_index=True, width="stretch", column_config={
        f"agreement with {silver}": st.column_config.NumberColumn(format="percent"),
        "cost_per_request": st.column_config.NumberColumn("$ per request", format="$%.6f"),
        "error_rate": st.column_config.NumberColumn("errors", format="percent")})
    if basis.n_silver_missing:
        st.caption(f"{basis.n_silver_missing} items are left out: {silver} gave no answer to "
                   "them.")
