"""Tune: let Optuna search the policy's thresholds and tier models against a cost/quality
objective on a train split, then report held-out figures with intervals, say whether routing
pays (against the best single model and a random mix, paired on the holdout); save a trial."""

from __future__ import annotations

import polars as pl
import streamlit as st

from workbench import ui
from workbench.policy import Policy
from workbench.ui import jobs

st.title("Tune")
st.caption("Tuning uses a train split only; the held-out items judge the result.")
store = ui.store()
catalog = ui.catalog()

name = ui.workload_picker(key="tune_workload", require_outcomes=True)
if name:
    from workbench import tune as tn

    saved = catalog.list_policies()
    base_choice = st.selectbox("Base policy", ["(default cascade for this workload)",
                                               *[p.name for p in saved]], key="tune_base")
    c = st.columns(4)
    objective = c[0].selectbox("Objective", ["min-cost", "max-quality", "weighted", "pareto"],
                               key="tune_objective",
                               help="min-cost: cheapest policy meeting the quality floor; "
                                    "max-quality: best under the budget; weighted: quality - "
                                    "lambda x cost; pareto: the whole trade-off front.")
    floor_mode = c[1].selectbox("Quality floor", ["95% of the best single model",
                                                  "absolute"], key="tune_floor_mode",
                                disabled=objective != "min-cost")
    floor_abs = c[1].number_input("Absolute floor", 0.0, 1.0, 0.8, 0.01, key="tune_floor",
                                  disabled=objective != "min-cost" or floor_mode != "absolute")
    budget = c[2].number_input("Budget ($ per request)", 0.0, 10.0, 0.001, format="%.6f",
                               key="tune_budget", disabled=objective != "max-quality")
    weight = c[2].number_input("lambda (quality per $)", 0.0, 1e7, 100.0, key="tune_weight",
                               disabled=objective != "weighted")
    trials = c[3].number_input("Trials", 10, 5000, 100, 10, key="tune_trials")
    holdout = c[3].slider("Holdout share", 0.1, 0.5, 0.3, 0.05, key="tune_holdout")
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="tune_seed")

    running = jobs.current("tune_job")
    busy = running is not None and not running.finished
    if st.button("Tune", type="primary", disabled=busy, key="tune_go"):
        with ui.user_errors():
            if base_choice.startswith("("):
                base = tn.default_base_policy(store, name)
            else:
                base = Policy.from_yaml(catalog.get_policy(base_choice).body)
            floor = ("95%" if floor_mode.startswith("95") else float(floor_abs)) \
                if objective == "min-cost" else None

            def work(job: jobs.Job):  # noqa: ANN202 - returns the TuneResult
                settings = tn.StudySettings.create(
                    objective, quality_floor=floor,
                    budget=float(budget) if objective == "max-quality" else None,
                    weight=float(weight) if objective == "weighted" else None,
                    trials=int(trials), holdout=float(holdout), seed=int(seed))
                return tn.tune(store, name, base, settings,
                               progress=lambda p: job.progress(
                                   p.done, p.total,
                                   f"(feasible {p.feasible_share:.0%})"),
                               should_stop=job.should_stop, home=ui.home_dir())

            jobs.start("tune_job", f"Tuning {name} ({objective})", work)
    job = jobs.watch("tune_job")
    if job is not None and job.finished:
        if job.error:
            st.error(job.error)
        elif job.result is not None:
            st.session_state["tune_result"] = job.result
    result = st.session_state.get("tune_result")
    if result is not None and result.workload != name:
        result = None  # a study of another workload
    if result is None and not busy:
        studies = catalog.list_studies(name)
        if studies:
            from workbench.tune.reopen import reopen

            last = studies[0]
            with ui.user_errors(), st.spinner(f"Opening the last study, {last.name}..."):
                result = reopen(store, last.storage, last.name, home=ui.home_dir())
                st.session_state["tune_result"] = result
                st.info(f"Showing the last study on {name}: {last.name} ({last.objective}, "
                        f"{result.n_trials} trials, {last.created:%Y-%m-%d %H:%M} UTC). Tune "
                        "again above to run a new one.", icon=":material/history:")
    if result is not None:
        from workbench import tune_charts

        for w in result.warnings:
            st.warning(w)
        tr, ho = result.train, result.holdout
        st.subheader(f"Best policy (study {result.study_name})")
        cols = st.columns(4)
        cols[0].metric("Holdout quality", f"{ho['quality']:.3f}",
                       delta=f"{ho['quality'] - tr['quality']:+.3f} vs train",
                       delta_color="off",  # a different sample, not an improvement: no arrow
                       delta_arrow="off")
        cols[1].metric("Holdout cost / request", f"${ho['cost_per_request']:.6f}")
        cols[2].metric("Holdout escalation", f"{ho['escalation_rate']:.1%}")
        cols[3].metric("Holdout items", ho["n"])
        ci = ho["quality_ci"]
        st.caption(f"Holdout quality 95% CI {ci[0]:.3f} – {ci[1]:.3f}; train quality "
                   f"{tr['quality']:.3f} (CI {tr['quality_ci'][0]:.3f} – "
                   f"{tr['quality_ci'][1]:.3f}).")
        st.dataframe(pl.DataFrame([{"split": "train", **{k: tr[k] for k in
                                                        ("quality", "cost_per_request",
                                                         "escalation_rate", "n")}},
                                   {"split": "holdout", **{k: ho[k] for k in
                                                          ("quality", "cost_per_request",
                                                           "escalation_rate", "n")}}]
                                  ).to_pandas(), hide_index=True)

        st.subheader("Does routing pay here?")
        verdict = result.routing
        if verdict is None:
            st.info("Cannot tell whether routing pays on this workload; see the warnings.")
        else:
            best_s, mix_s = verdict.best_single, verdict.random_mix
            (st.success if verdict.pays else st.warning)(
                ("Routing pays on this workload: " if verdict.pays else
                 "Routing does not pay on this workload: ")
                + f"{mix_s.difference:+.3f} quality over a random mix at the same cost "
                f"(95% CI {mix_s.ci[0]:+.3f} to {mix_s.ci[1]:+.3f}).")
            st.dataframe(pl.DataFrame([
                {"compared with": f"best single model {best_s.against}",
                 "their quality": best_s.quality, "their $ / request": best_s.cost,
                 "quality gain": best_s.difference, "95% CI low": best_s.ci[0],
                 "95% CI high": best_s.ci[1],
                 "McNemar p": best_s.mcnemar.p_value if best_s.mcnemar else None},
                {"compared with": f"{mix_s.against} (same cost)",
                 "their quality": mix_s.quality, "their $ / request": mix_s.cost,
                 "quality gain": mix_s.difference, "95% CI low": mix_s.ci[0],
                 "95% CI high": mix_s.ci[1], "McNemar p": None},
            ], schema_overrides={"McNemar p": pl.Float64}).to_pandas(), hide_index=True,
                key="tune_routing_table")

            def ratio(r: float | None) -> str:
                return "not reached" if r is None else f"{r:.2f}x"

            st.caption(
                f"Holdout, {verdict.n} items paired with every single model; paired bootstrap "
                f"({verdict.n_boot} resamples, the same for both rows). McNemar applies to the "
                "best single model; a random mix is fractional per item, so only the bootstrap "
                "applies to it. Cost of the policy's quality, as a multiple of its cost: "
                f"cheapest single model {ratio(verdict.cost_ratio_single)}"
                + (f" ({verdict.single_at_quality})" if verdict.single_at_quality else "")
                + f", random mix {ratio(verdict.cost_ratio_mix)}."
                + "".join(f" {n}." for n in verdict.notes))
            if result.routing_note:
                st.markdown(f"**Preferred:** {result.routing_note}.")
            simpler = result.simpler_policy
            if simpler is not None:
                sname = st.text_input("Save the simpler policy as", f"{name}-simple",
                                      key="tune_simple_name")
                if st.button("Save the simpler policy", key="tune_save_simple"):
                    with ui.user_errors():
                        from workbench.export import with_provenance

                        spol = with_provenance(
                            simpler.model_copy(update={"name": sname}), workload=name,
                            workload_fingerprint=store.workload(name).fingerprint)
                        entry_s = catalog.save_policy(
                            sname, spol.to_yaml(), workload=name,
                            metrics={"train": result.simpler_train,
                                     "holdout": result.simpler_holdout})
                        st.success(f"Saved {sname} version {entry_s.version}.")

        left, right = st.columns(2)
        left.plotly_chart(tune_charts.pareto_figure(result), width="stretch")
        right.plotly_chart(tune_charts.history_figure(result), width="stretch")
        with st.expander("Parameter importances"), ui.user_errors():
            st.plotly_chart(tune_charts.importance_figure(result.storage, result.study_name),
                            width="stretch")
        trials_frame = result.trials
        st.dataframe(trials_frame.to_pandas(), hide_index=True, width="stretch",
                     key="tune_trials_table")
        pick_cols = st.columns([0.3, 0.4, 0.3])
        number = pick_cols[0].number_input("Trial to save", 0, max(trials_frame.height - 1, 0),
                                           int(result.best_trial or 0), key="tune_pick")
        pname = pick_cols[1].text_input("Save as policy", f"{name}-tuned", key="tune_pname")
        if pick_cols[2].button("Save to the catalog", key="tune_save"):
            with ui.user_errors():
                from workbench.export import with_provenance

                report = tn.evaluate_trial(store, result, int(number))
                pol = with_provenance(
                    report.policy.model_copy(update={"name": pname}), workload=name,
                    workload_fingerprint=store.workload(name).fingerprint,
                    study=result.study_name, trial=int(number), train_metrics=report.train,
                    holdout_metrics=report.holdout)
                saved_entry = catalog.save_policy(
                    pname, pol.to_yaml(), workload=name,
                    metrics={"train": report.train, "holdout": report.holdout})
                st.session_state["current_policy"] = pname
                st.success(f"Saved {pname} version {saved_entry.version}; export it on the "
                           "Export page.")
