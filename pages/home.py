"""Home: what the workbench does and a first-run journey, one click per step:
load samples -> run local models on a slice -> compose a policy -> tune -> export."""

from __future__ import annotations

import streamlit as st

from workbench import journey, ui
from workbench.ui import jobs

st.title("LLM routing workbench")
st.markdown(
    "Find out **which of your requests a small, cheap model can handle and which really need a "
    "frontier model**. Load a workload, run local and hosted models side by side, write a "
    "routing policy, replay it over recorded outcomes, tune its thresholds for cost and "
    "quality, and export it for your production router."
)

store = ui.store()
catalog = ui.catalog()
state = journey.state(store, catalog)


_headers: list[tuple[st.delta_generator.DeltaGenerator, int, str, str]] = []


def _draw(slot: st.delta_generator.DeltaGenerator, n: int, title: str, done: bool) -> None:
    icon = ":material/check_circle:" if done else ":material/radio_button_unchecked:"
    slot.markdown(f"#### {icon} {n}. {title}")


def _header(n: int, title: str, step: str) -> None:
    """Draw the step's header now (so it stays while a job runs below) and redraw it at the
    end, once this run's clicks are done."""
    slot = st.empty()
    _draw(slot, n, title, _done(step))
    _headers.append((slot, n, title, step))


def _done(step: str) -> bool:
    if step == "export":
        return bool(st.session_state.get("journey_exported")) and (state.tuned or state.policy)
    return bool(getattr(state, step))


def _exported() -> None:
    """A policy file was downloaded (here or on Export): step 5 is done for this session."""
    st.session_state["journey_exported"] = True


st.subheader("Get started (no API key needed)")

# -- 1. samples -------------------------------------------------------------------------------
_header(1, "Load the sample workloads", "samples")
st.caption("Support triage (420 messages, 7 categories, some with PII), field extraction and "
           "arithmetic questions, generated on this machine.")
if st.button("Load the sample workloads", type="primary" if not state.samples else "secondary",
             key="home_load_samples"):
    from workbench.workloads.samples import load_samples

    with ui.user_errors(), st.spinner("Generating and storing the samples..."):
        infos = load_samples(store, replace=True)
        st.success("Loaded " + ", ".join(f"{w.name} ({w.n_items} items)" for w in infos))
        st.session_state["current_workload"] = journey.WORKLOAD
        state = journey.state(store, catalog)

# -- 2. run -----------------------------------------------------------------------------------
_header(2, f"Run two local models on {journey.SLICE} support-triage items", "runs")
_low, _high = journey.estimate_seconds(store)
_span = ("under a minute" if _high < 60 else
         f"{max(1, round(_low / 60))}–{max(2, round(_high / 60))} min")
st.caption(f"The bundled Gemma 3 270M (Q4_K_M) and a cheaper {journey.CHEAP_QTYPE} re-quantized "
           f"copy score each category's likelihood: {_span} the first time on this machine "
           "(longer when it is busy; the bar shows the measured pace), instant when cached.")
from workbench.providers.hosted import key_status  # noqa: E402 - light module, no litellm import

present = [p for p, ok in key_status().items() if ok]
if present:
    st.caption(f"Keys found for: {', '.join(sorted(present))}. Add hosted models on the Models "
               "page and run them on the Compare page to route between local and hosted.")
else:
    st.caption("No hosted-provider key found: that is fine here. Set e.g. OPENAI_API_KEY (or "
               "put it in .streamlit/secrets.toml) to compare hosted models later.")
if st.button("Run the local models", disabled=not state.samples, key="home_run"):
    jobs.start("home_run_job", "Running local models",
               lambda job: journey.run_slice(store, catalog, progress=job.progress,
                                             should_stop=job.should_stop, home=ui.home_dir()))
job = jobs.watch("home_run_job")
if job is not None and job.finished:
    if job.error:
        st.error(f"{job.error} — try again; finished items are kept.")
    elif job.result is not None:
        s = job.result
        st.success(f"{s.n_items} items x {len(s.models)} models: {s.calls} calls, {s.cached} "
                   f"cached, {s.errors} errors in {s.seconds:.0f} s.")
    state = journey.state(store, catalog)
if state.runs:
    from workbench import charts
    from workbench.runner import model_metrics

    with ui.user_errors():
        metrics = model_metrics(store, journey.WORKLOAD)
        st.plotly_chart(charts.cost_quality(metrics, title="Recorded quality and cost"),
                        width="stretch", key="home_chart_models")
        best = metrics.sort("quality", descending=True).row(0, named=True)
        st.caption(f"Best model so far: {best['model']} at quality {best['quality']:.2f} for "
                   f"${best['cost_per_request']:.6f} per request. Details on the Compare page.")

if state.runs:
    with st.expander("What could a cheaper model take over? (the headline, with intervals)"):
        from workbench.ui import headline

        headline.render(journey.WORKLOAD, "home_headline")

# -- 3. compose -------------------------------------------------------------------------------
_header(3, "Compose a routing policy", "policy")
st.caption("Cheapest model first; escalate to the best one when its top label probability is "
           "below 0.6 or the answer is not a valid label; PII stays on local models.")
if st.button("Compose the starter policy", disabled=not state.runs, key="home_compose"):
    with ui.user_errors():
        journey.starter_policy(store, catalog)
        state = journey.state(store, catalog)
if state.policy:
    entry = catalog.get_policy(journey.STARTER_POLICY)
    m = entry.metrics or {}
    if m:
        st.caption(f"Replayed on the recorded items: quality {m['quality']:.3f}, "
                   f"${m['cost_per_request']:.6f} per request, {m['escalation_rate']:.0%} "
                   "escalated. Change thresholds live on the Route page.")

# -- 4. tune ----------------------------------------------------------------------------------
_header(4, "Tune its thresholds", "tuned")
st.caption("Optuna finds the cheapest policy keeping 95% of the best model's quality, on 70% "
           "of the items; the other 30% judge it. About 10 s.")
if st.button("Tune", disabled=not state.policy, key="home_tune"):
    jobs.start("home_tune_job", "Tuning",
               lambda job: journey.tune_starter(
                   store, catalog, progress=lambda p: job.progress(p.done, p.total),
                   should_stop=job.should_stop, home=ui.home_dir()))
job = jobs.watch("home_tune_job")
if job is not None and job.finished:
    if job.error:
        st.error(job.error)
    state = journey.state(store, catalog)
if state.tuned:
    entry = catalog.get_policy(journey.TUNED_POLICY)
    ho = (entry.metrics or {}).get("holdout") or {}
    if ho:
        lo, hi = ho["quality_ci"]
        st.caption(f"Held-out quality {ho['quality']:.3f} (95% CI {lo:.3f} – {hi:.3f}) at "
                   f"${ho['cost_per_request']:.6f} per request over {ho['n']} unseen items. "
                   "The Tune page shows the Pareto front.")

# -- 5. export --------------------------------------------------------------------------------
_header(5, "Export it", "export")
st.caption("A versioned policy file (YAML) that `workbench serve` or the Python PolicyRouter "
           "loads, and a LiteLLM proxy config.")
if state.tuned or state.policy:
    from workbench import export

    with ui.user_errors():
        name = journey.TUNED_POLICY if state.tuned else journey.STARTER_POLICY
        policy = export.load_policy_text(catalog.get_policy(name).body, name)
        st.download_button("Download the policy file", export.policy_text(policy, "yaml"),
                           file_name=f"{name}.yaml", mime="application/yaml", type="primary",
                           key="home_download", on_click=_exported)
        st.session_state["current_policy"] = name
        st.page_link("pages/export.py", label="Open the Export page (LiteLLM config, try it live)")

workloads = store.workloads()
if workloads:
    with st.expander("Stored workloads"):
        st.dataframe(
            [{"workload": w.name, "task": w.task_type, "items": w.n_items, "models": w.n_models,
              "synthetic": w.synthetic} for w in workloads],
            hide_index=True, width="stretch",
        )

state = journey.state(store, catalog)
for slot, n, title, step in _headers:
    _draw(slot, n, title, _done(step))
