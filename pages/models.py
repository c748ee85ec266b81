"""Models: list, add, edit and delete catalog models; key presence per hosted provider; GGUF
validation; few-shot examples drawn from a train workload; re-quantize a local model to compare
quantization levels; a local model's measured speed on this machine (which sets its cost)."""

from __future__ import annotations

import streamlit as st

from workbench import fewshot, ui
from workbench.ui.fewshot import source_inputs

st.title("Models")
catalog = ui.catalog()
workload_names = [w.name for w in ui.store().workloads()]


def _key_status() -> dict[str, bool]:
    from workbench.providers.hosted import key_status

    return key_status()


configs = catalog.list_models()
st.dataframe(
    [{"name": c.name, "kind": c.kind, "model": c.model, "api_base": c.api_base or "",
      "tags": ", ".join(c.tags),
      "input $/1M": c.input_price_per_mtok, "output $/1M": c.output_price_per_mtok,
      "max_tokens": c.max_tokens, "temperature": c.temperature,
      "few-shot": c.few_shot_source.describe() if c.few_shot_source else ""} for c in configs],
    hide_index=True, width="stretch", key="models_table",
)

with st.expander("Hosted provider keys", expanded=False):
    st.caption("Keys are read from the environment or .streamlit/secrets.toml; only their "
               "presence is shown, never the key.")
    status = _key_status()
    if status:
        st.dataframe([{"provider": p, "key present": "yes" if ok else "no"}
                      for p, ok in sorted(status.items())], hide_index=True)
    st.caption("Without keys you can still use local GGUF models and any OpenAI-compatible "
               "server on your network (kind litellm, model `openai/<name>`, api_base).")

tab_add, tab_edit, tab_prompt, tab_quant = st.tabs(
    ["Add", "Edit or delete", "Prompt and examples", "Re-quantize"])

with tab_add, st.form("model_add"):
    from workbench.models import ModelSpec

    c = st.columns(2)
    name = c[0].text_input("Name", key="ma_name")
    kind = c[1].selectbox("Kind", ["litellm", "local-gguf"], key="ma_kind")
    model = st.text_input("LiteLLM model string (e.g. gpt-4o-mini, openai/my-model) or GGUF "
                          "path", key="ma_model")
    c = st.columns(3)
    api_base = c[0].text_input("api_base (OpenAI-compatible servers)", key="ma_base")
    api_key_env = c[1].text_input("API key environment variable NAME (not the key)",
                                  key="ma_keyenv")
    tags = c[2].text_input("Tags (comma separated, e.g. local, may-see-pii)", key="ma_tags")
    c = st.columns(4)
    max_tokens = c[0].number_input("max_tokens", 1, 32768, 128, key="ma_maxtok")
    temperature = c[1].number_input("temperature", 0.0, 2.0, 0.0, key="ma_temp")
    in_price = c[2].number_input("input $/1M tokens (0 = price table)", 0.0, 1000.0, 0.0,
                                 key="ma_in")
    out_price = c[3].number_input("output $/1M tokens (0 = price table)", 0.0, 1000.0, 0.0,
                                  key="ma_out")
    st.caption("Few-shot examples of your own labels make a small local model far more "
               "accurate (and its confidence more useful) than zero-shot.")
    add_source = source_inputs("ma_fs", workload_names, [c.name for c in configs])
    if st.form_submit_button("Add model", type="primary"):
        with ui.user_errors():
            if add_source is not None:
                fewshot.check_source(ui.store(), add_source)
            if kind == "local-gguf":
                from workbench.catalog import validate_gguf

                validate_gguf(model)
            added = catalog.add(ModelSpec(
                name=name.strip(), kind=kind, model=model.strip(),
                api_base=api_base.strip() or None, api_key_env=api_key_env.strip() or None,
                max_tokens=int(max_tokens), temperature=float(temperature),
                input_price_per_mtok=in_price or None, output_price_per_mtok=out_price or None,
                tags=tuple(t.strip() for t in tags.split(",") if t.strip()),
                few_shot_source=add_source,
            ))
            st.success(f"Added {added.name} (input ${added.input_price_per_mtok}/1M, output "
                       f"${added.output_price_per_mtok}/1M)")
            st.rerun()

with tab_edit:
    if configs:
        pick = st.selectbox("Model", [c.name for c in configs], key="me_pick")
        cfg = catalog.get(pick)
        with st.form("model_edit"):
            c = st.columns(3)
            e_tags = c[0].text_input("Tags", ", ".join(cfg.tags), key="me_tags")
            e_max = c[1].number_input("max_tokens", 1, 32768, int(cfg.max_tokens), key="me_max")
            e_temp = c[2].number_input("temperature", 0.0, 2.0, float(cfg.temperature),
                                       key="me_temp")
            c = st.columns(3)
            e_in = c[0].number_input("input $/1M", 0.0, 1000.0,
                                     float(cfg.input_price_per_mtok or 0.0), key="me_in")
            e_out = c[1].number_input("output $/1M", 0.0, 1000.0,
                                      float(cfg.output_price_per_mtok or 0.0), key="me_out")
            e_hw = c[2].number_input("hardware $/hour (local)", 0.0, 1000.0,
                                     float(cfg.hardware_usd_per_hour or 0.0), key="me_hw")
            e_source = source_inputs(f"me_fs_{pick}", workload_names,
                                     [c.name for c in configs if c.name != pick],
                                     cfg.few_shot_source)
            if st.form_submit_button("Save changes"):
                with ui.user_errors():
                    if e_source is not None and e_source != cfg.few_shot_source:
                        fewshot.check_source(ui.store(), e_source)
                    catalog.update(
                        pick, tags=tuple(t.strip() for t in e_tags.split(",") if t.strip()),
                        max_tokens=int(e_max), temperature=float(e_temp),
                        input_price_per_mtok=e_in or None, output_price_per_mtok=e_out or None,
                        hardware_usd_per_hour=e_hw or None, few_shot_source=e_source,
                    )
                    st.success(f"Saved {pick}")
        if cfg.kind == "local-gguf":
            from workbench.catalog import validate_gguf

            with ui.user_errors():
                path = validate_gguf(cfg.model)
                st.caption(f"GGUF file OK: {path} ({path.stat().st_size / 1e6:.0f} MB)")
            from workbench import local_cost

            with ui.user_errors():  # local cost comes from this measured speed, not wall time
                speed = local_cost.lookup(cfg, ui.home_dir())
                rate = local_cost.usd_per_hour(cfg)
                if speed is None:
                    st.caption("Speed on this machine: not measured yet (it is measured before "
                               "the first run, in a few seconds; it sets the cost per token).")
                else:
                    inp, out = speed.prices(rate)
                    (st.warning if speed.contended else st.caption)(
                        f"Speed on this machine: {speed.describe()}. At ${rate:.2f}/hour: "
                        f"${inp:.4g} per 1M prompt tokens, ${out:.4g} per 1M generated.")
                if st.button("Measure speed now", key="me_speed",
                             help="Best of 5 trials, one request at a time; close other work "
                                  "first. Runs after this are charged at the new speed."):
                    with st.spinner(f"Measuring {pick} on this machine..."):
                        local_cost.ensure(cfg, ui.home_dir(), force=True)
                    st.rerun()
                if speed is not None and st.button(
                        "Charge recorded calls at this speed", key="me_recost",
                        help="Cached calls are not run again, so they keep the speed they were "
                             "charged at; this charges every recorded call of the model again."):
                    n = local_cost.recost(ui.store(), cfg, ui.home_dir())
                    st.success(f"Charged {n} recorded call(s) of {pick} again at this speed.")
        sure = st.checkbox(f"Yes, delete {pick}", key="me_del_sure")
        if st.button("Delete model", disabled=not sure, key="me_del"):
            with ui.user_errors():
                catalog.delete(pick)
                st.rerun()

with tab_prompt:
    from workbench.ui import prompt_edit

    prompt_edit.render("mp")

with tab_quant:
    local = [c for c in configs if c.kind == "local-gguf"]
    if not local:
        st.info("No local GGUF model in the catalog.")
    else:
        src = st.selectbox("Local model", [c.name for c in local], key="mq_src")
        qtype = st.selectbox("Quantization type", ["Q3_K_M", "Q2_K", "Q4_0", "Q5_K_M", "Q8_0"],
                             key="mq_type")
        new_name = st.text_input("New model name", f"{src}-{qtype.lower()}", key="mq_name")
        if st.button("Re-quantize", key="mq_go"):
            from workbench.providers.quantize import model_output_path, requantize

            with ui.user_errors(), st.spinner(f"Quantizing to {qtype}..."):
                cfg = catalog.get(src)
                out_dir = ui.home_dir() / "models"
                out_dir.mkdir(exist_ok=True)
                dst = requantize(cfg.model, model_output_path(out_dir, new_name), qtype,
                                 within=out_dir)
                catalog.add(cfg.replace(name=new_name, model=str(dst)))
                st.success(f"Created {new_name} ({dst.stat().st_size / 1e6:.0f} MB)")
