"""Context-window use per model: each recorded prompt's tokens against the model's context size.

A prompt near a model's limit is one a longer input (or more few-shot examples) will break, and
a local model with a small n_ctx fails such items outright. The context size is the local
model's configured n_ctx (ModelSpec), or a hosted model's max_input_tokens from LiteLLM's
bundled model table; models not in the catalog, or unknown to LiteLLM, have none. Calls that
failed because the prompt did not fit (error `context_window`) count as over the limit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from workbench.errors import WorkbenchError

NEAR_LIMIT = 0.8  # share of the context window from which an item is listed as near the limit
SHARE_BINS = (0.0, 0.25, 0.5, 0.8, 0.9, 1.0)  # distribution buckets (share of the window)
CONTEXT_ERROR = "context_window"  # the providers' error code for a prompt that did not fit


def hosted_context(model: str) -> int | None:
    """max_input_tokens of a LiteLLM model string from LiteLLM's bundled table (offline), or
    None when the table does not know the model."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from workbench.providers.hosted import _litellm  # heavy: only when a hosted model is asked

    litellm = _litellm()
    for candidate in dict.fromkeys([model, model.split("/", 1)[-1]]):
        try:
            info = litellm.get_model_info(candidate)
        except Exception:  # noqa: BLE001 - LiteLLM raises several types for unmapped models
            continue
        size = info.get("max_input_tokens") or info.get("max_tokens")
        if size:
            return int(size)
    return None


def context_sizes(models: Sequence[str], home: str | os.PathLike[str] | None = None
                  ) -> dict[str, tuple[int | None, str]]:
    """Model name -> (context size in tokens or None, where it comes from). Derived names
    (`<model>@vote<k>`) use their base model's size."""
    from workbench.catalog import Catalog

    catalog = Catalog(home)
    known = set(catalog.names())
    out: dict[str, tuple[int | None, str]] = {}
    for name in models:
        base = name if name in known else name.split("@", 1)[0]
        if base not in known:
            out[name] = (None, "not in the model catalog")
            continue
        spec = catalog.get(base)
        if spec.kind == "local-gguf":
            out[name] = (spec.n_ctx, "n_ctx of the local model")
        else:
            size = hosted_context(spec.model)
            out[name] = (size, "LiteLLM's model table" if size else "unknown to LiteLLM")
    return out


@dataclass(frozen=True)
class ContextUse:
    """Per-model summary, the distribution over share buckets, and the items near the limit."""

    workload: str
    threshold: float
    per_model: pl.DataFrame  # model, context_tokens, source, n, median/p95/max share, counts
    distribution: pl.DataFrame  # model, bucket, items
    near_limit: pl.DataFrame  # item_id, model, prompt_tokens, context_tokens, share, error

    def as_json(self) -> dict[str, Any]:
        """JSON-ready: per-model rows and the items near the limit (at most 200)."""
        return {"workload": self.workload, "near_limit_share": self.threshold,
                "models": self.per_model.to_dicts(),
                "near_limit": self.near_limit.head(200).to_dicts()}


def _bucket(share: pl.Expr) -> pl.Expr:
    expr = pl.when(share.is_null()).then(pl.lit("unknown size"))
    for lo, hi in zip(SHARE_BINS[:-1], SHARE_BINS[1:], strict=True):
        expr = expr.when(share < hi).then(pl.lit(f"{lo:.0%}-{hi:.0%}"))
    return expr.otherwise(pl.lit("at or over the limit"))


def context_use(store: Any, workload: str, models: Sequence[str] | None = None, *,
                home: str | os.PathLike[str] | None = None, threshold: float = NEAR_LIMIT,
                sizes: Mapping[str, tuple[int | None, str]] | None = None) -> ContextUse:
    """Context-window use of a workload's recorded outcomes per model: prompt tokens / context
    size. `sizes` (model -> (tokens, source)) overrides the catalog lookup in `home`."""
    if not 0.0 < threshold <= 1.0:
        raise WorkbenchError(f"the near-limit share must be in (0, 1], got {threshold!r}")
    out = store.outcomes(workload, models).select("item_id", "model", "prompt_tokens", "error")
    names = sorted(set(out["model"].to_list()))
    found = dict(sizes) if sizes is not None else context_sizes(names, home)
    table = pl.DataFrame(
        {"model": names, "context_tokens": [found.get(m, (None, ""))[0] for m in names],
         "source": [found.get(m, (None, "not given"))[1] for m in names]},
        schema={"model": pl.String, "context_tokens": pl.Int64, "source": pl.String})
    failed = pl.col("error") == CONTEXT_ERROR
    rows = out.join(table, on="model", how="left").with_columns(
        pl.when(failed).then(None).otherwise(pl.col("prompt_tokens")).alias("prompt_tokens"),
    ).with_columns(
        pl.when(failed & pl.col("context_tokens").is_not_null()).then(pl.lit(1.0, pl.Float64))
        .otherwise(pl.col("prompt_tokens") / pl.col("context_tokens")).alias("share"),
    )
    answered = rows.filter(pl.col("error").is_null() | failed)
    per_model = answered.group_by("model").agg(
        pl.len().alias("n"),
        pl.col("share").median().alias("median_share"),
        pl.col("share").quantile(0.95, "higher").alias("p95_share"),
        pl.col("share").max().alias("max_share"),
        pl.col("prompt_tokens").max().alias("max_prompt_tokens"),
        (pl.col("share") >= threshold).sum().alias("near_limit"),
        failed.sum().alias("did_not_fit"),
    )
    per_model = table.join(per_model, on="model", how="left").sort("model")
    distribution = (answered.with_columns(_bucket(pl.col("share")).alias("bucket"))
                    .group_by("model", "bucket").agg(pl.len().alias("items"))
                    .sort("model", "bucket"))
    near = (answered.filter(pl.col("share") >= threshold)
            .select("item_id", "model", "prompt_tokens", "context_tokens", "share", "error")
            .sort(["share", "model", "item_id"], descending=[True, False, False]))
    return ContextUse(workload, threshold, per_model, distribution, near)
