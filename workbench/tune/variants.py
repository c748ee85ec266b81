"""Self-consistency sample counts as tunable choices, without calling a model again.

A model run with `samples` = n records its n drawn answers (`signals.samples`, see
`workbench.consistency`). The vote over the first k of them is exactly what the same model
with `samples` = k and the same seed would answer (the draws are one seeded stream), so each
k < n becomes a derived model `<model>@vote<k>`: its answer and confidence are the vote over
the first k draws, its quality is rescored against the reference with the task's default
scorer, and its cost is the recorded cost for label draws (one scoring pass whatever k) or
k/n of it for generated answers (k of the n calls). The tuner offers these as tier models, so
the sample count joins the search space; the exported policy names the model with
`samples: k`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from workbench.models import ModelSpec

SEPARATOR = "@vote"


def variant_name(model: str, k: int) -> str:
    """The derived model's name for the vote over the first k draws."""
    return f"{model}{SEPARATOR}{k}"


def counts_for(n: int) -> list[int]:
    """The sample counts offered below n: odd counts (ties are rarer) and n//2, from 2 up (a
    model with `samples` = 1 does not sample at all, so one draw is not what it answers)."""
    return sorted({k for k in (3, 5, 7, 9, 15, 25, n // 2) if 2 <= k < n})


def _parse(raw: str | None) -> dict[str, Any] | None:
    if not raw or '"samples"' not in raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    samples = data.get("samples") if isinstance(data, dict) else None
    return data if isinstance(samples, list) and len(samples) > 1 else None


def vote_variants(items: pl.DataFrame, outcomes: pl.DataFrame, task_type: str,
                  labels: Iterable[str] | None = None) -> pl.DataFrame:
    """Outcome rows of the derived `<model>@vote<k>` models (empty when no model recorded
    several draws), in the outcomes' columns."""
    from workbench.consistency import majority
    from workbench.runner import score_outputs

    if "signals" not in outcomes.columns or outcomes.height == 0:
        return outcomes.clear()
    sampled = outcomes.filter(pl.col("signals").cast(pl.String).str.contains('"samples"'))
    if sampled.height == 0:
        return outcomes.clear()
    refs = dict(zip(items["item_id"].to_list(), items["reference"].to_list(), strict=True)) \
        if "reference" in items.columns else {}
    inputs = dict(zip(items["item_id"].to_list(), items["input"].to_list(), strict=True))
    frames = []
    for model in sorted(sampled["model"].unique().to_list()):
        rows = sampled.filter(pl.col("model") == model).to_dicts()
        parsed = [(r, _parse(r["signals"])) for r in rows]
        parsed = [(r, s) for r, s in parsed if s is not None]
        if not parsed:
            continue
        n = min(len(s["samples"]) for _, s in parsed)
        for k in counts_for(n):
            out: list[dict[str, Any]] = []
            for r, s in parsed:
                probs: Mapping[str, float] = s.get("label_probs") or {}
                prefer = sorted(probs, key=lambda lab: -float(probs[lab]))
                vote = majority(s["samples"][:k], s.get("vote_on") or "text", prefer=prefer)
                scale = 1.0 if s.get("self_consistency") == "label_probs" else k / len(
                    s["samples"])
                out.append({
                    **r, "model": variant_name(model, k),
                    "output": vote.answer if vote.answer is not None else r["output"],
                    "confidence": vote.share,
                    "cost_usd": None if r["cost_usd"] is None else r["cost_usd"] * scale,
                    "latency_ms": r["latency_ms"],
                    "signals": json.dumps({"derived_from": model, "samples_used": k}),
                })
            frame = pl.DataFrame(out, schema=outcomes.schema)
            quality = score_outputs(task_type, frame["output"].to_list(),
                                    [refs.get(i) for i in frame["item_id"].to_list()],
                                    labels=list(labels) if labels else None,
                                    inputs=[inputs.get(i, "") for i in frame["item_id"]])
            frames.append(frame.with_columns(
                pl.when(pl.col("error").is_null())
                .then(pl.Series("q", quality, dtype=pl.Float64).fill_nan(None))
                .otherwise(pl.col("quality")).alias("quality")))
    return pl.concat(frames) if frames else outcomes.clear()


def variant_specs(names: Iterable[str], specs: Mapping[str, ModelSpec]) -> dict[str, ModelSpec]:
    """The model description of each derived name: its base model's with `samples` = k."""
    out: dict[str, ModelSpec] = {}
    for name in names:
        base, sep, k = name.rpartition(SEPARATOR)
        if sep and k.isdigit() and base in specs:
            out[name] = specs[base].replace(name=name, samples=int(k))
    return out


__all__ = ["SEPARATOR", "counts_for", "variant_name", "variant_specs", "vote_variants"]
