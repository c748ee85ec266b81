"""Facts about a workload as columns: recorded outcomes scattered into item x model matrices,
with memoised detections, verifier results and learned-router predictions.

`Workload` is the `workbench.pipeline.kernel.ColumnFacts` that replay and the tuner hand to the
kernel. It is built once per (items, outcomes) frame pair and reused while both frames are
the same objects, so a threshold change re-runs only the kernel's cascade passes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from workbench import agreement
from workbench import governance as gov
from workbench.errors import PolicyError, WorkbenchError
from workbench.pipeline import kernel
from workbench.policy import GovernanceRule, Policy
from workbench.verifiers import CODE_FENCE_CLOSE, CODE_FENCE_OPEN, ESCAPED_WS, LABEL_STRIP


class MissingOutcomesError(WorkbenchError):
    """Items lack recorded outcomes for a model the policy may call."""


class Workload:
    """Items and outcomes scattered into item x model matrices, plus memoised derived masks;
    treat the arrays as read-only."""

    def __init__(self, items: pl.DataFrame, outcomes: pl.DataFrame) -> None:
        for col in ("item_id", "input"):
            if col not in items.columns:
                raise WorkbenchError(f"items frame has no {col!r} column")
        for col in ("item_id", "model", "quality", "cost_usd"):
            if col not in outcomes.columns:
                raise WorkbenchError(f"outcomes frame has no {col!r} column")
        self.items = items
        self.outcomes = outcomes
        self.n = items.height
        if self.n == 0:
            raise WorkbenchError("no items to replay")
        ids = items["item_id"].cast(pl.String)
        if ids.is_duplicated().any():
            dupes = ids.filter(ids.is_duplicated()).unique().head(5).to_list()
            raise WorkbenchError(f"duplicate item ids in the items frame: {dupes}")
        self.item_ids = ids
        self.models: tuple[str, ...] = tuple(sorted(outcomes["model"].unique().drop_nulls()))
        self.col = {m: j for j, m in enumerate(self.models)}
        self.memo: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self._scatter()

    def _scatter(self) -> None:
        n, m = self.n, len(self.models)
        index = pl.DataFrame({"item_id": self.item_ids, "_row": np.arange(n, dtype=np.int64)})
        o = self.outcomes
        extra = [c for c in ("latency_ms", "error", "confidence") if c in o.columns]
        joined = (
            o.select("item_id", "model", "quality", "cost_usd", *extra)
            .with_columns(pl.col("item_id").cast(pl.String))
            .join(index, on="item_id", how="inner")
            .with_columns(pl.col("model").cast(pl.Enum(self.models)).to_physical().alias("_col"))
        )
        rows = joined["_row"].to_numpy()
        cols = joined["_col"].to_numpy().astype(np.int64)

        def mat(values: np.ndarray, fill: float) -> np.ndarray:
            out = np.full((n, m), fill, dtype=np.float64)
            out[rows, cols] = values
            out.setflags(write=False)
            return out

        def num(name: str) -> np.ndarray:
            if name not in joined.columns:
                return np.full(joined.height, np.nan)
            return joined[name].cast(pl.Float64).to_numpy()

        self.quality = mat(num("quality"), np.nan)
        self.cost = mat(np.nan_to_num(num("cost_usd"), nan=0.0), 0.0)
        self.latency = mat(num("latency_ms"), np.nan)
        self.confidence = mat(num("confidence"), np.nan)
        err = (
            joined["error"].is_not_null().to_numpy() if "error" in joined.columns
            else np.zeros(joined.height, dtype=bool)
        )
        self.error = np.zeros((n, m), dtype=bool)
        self.error[rows, cols] = err
        self.has = np.zeros((n, m), dtype=bool)
        self.has[rows, cols] = True
        for a in (self.error, self.has):
            a.setflags(write=False)

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Memoise a derived value under `key`."""
        try:
            return self.memo[key]
        except KeyError:
            value = compute()
            with self._lock:
                self.memo[key] = value
            return value

    def col_of(self, what: str, model: str) -> np.ndarray:
        """One model's column of a matrix ('quality', 'cost', 'latency', 'confidence',
        'error', 'has') as a contiguous read-only vector (cached)."""

        def compute() -> np.ndarray:
            col = np.ascontiguousarray(getattr(self, what)[:, self.col[model]])
            col.setflags(write=False)
            return col

        return self.cached(("col", what, model), compute)

    # -- item-level facts (cached) --------------------------------------------------------
    def texts(self) -> pl.Series:
        """Input texts (null as empty)."""
        return self.cached("texts", lambda: self.items["input"].cast(pl.String).fill_null(""))

    def chars(self) -> np.ndarray:
        """Characters per input."""
        return self.cached("chars", lambda: self.texts().str.len_chars().to_numpy())

    def detector(self, name: str) -> np.ndarray:
        """Items a built-in detector (email, payment_card...) fires on."""
        return self.cached(("detector", name), lambda: gov.detect(self.texts(), name))

    def pattern(self, pattern: str) -> np.ndarray:
        """Items whose input matches `pattern`."""
        return self.cached(("pattern", pattern), lambda: gov.pattern_mask(self.texts(), pattern))

    def tag(self, tag: str) -> np.ndarray:
        """Items carrying `tag` (data_class, difficulty or tags entry)."""
        return self.cached(("tag", tag), lambda: gov.tag_mask(self.items, tag))

    def keyword(self, word: str) -> np.ndarray:
        """Items whose input contains `word`, case-insensitively."""
        lower = self.cached("lower", lambda: self.texts().str.to_lowercase())
        return self.cached(
            ("keyword", word),
            lambda: lower.str.contains(word.lower(), literal=True).to_numpy(),
        )

    def rule_mask(self, rule: GovernanceRule) -> np.ndarray:
        """Items a governance rule hits (any detector, pattern or item tag)."""
        mask = np.zeros(self.n, dtype=bool)
        for name in rule.detectors:
            mask |= self.detector(name)
        for pattern in rule.patterns:
            mask |= self.pattern(pattern)
        for tag in rule.item_tags:
            mask |= self.tag(tag)
        return mask

    def verifier(self, model: str, kind: str, labels: tuple[str, ...]) -> np.ndarray:
        """Verifier pass per item for one model's recorded output (False without output)."""
        return self.cached(("verifier", model, kind, labels),
                           lambda: self._verify(model, kind, labels))

    def _verify(self, model: str, kind: str, labels: tuple[str, ...]) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        j = self.col[model]
        if kind == "none":
            out[:] = self.has[:, j]
            return out
        if "output" not in self.outcomes.columns:
            return out
        frame = (
            self.outcomes.filter(pl.col("model") == model)
            .select(pl.col("item_id").cast(pl.String), pl.col("output").cast(pl.String))
            .join(
                pl.DataFrame({"item_id": self.item_ids, "_row": np.arange(self.n)}),
                on="item_id",
            )
        )
        rows = frame["_row"].to_numpy()
        text = frame["output"].fill_null("")
        if kind == "number":
            ok = text.str.contains("[0-9]").to_numpy()
        elif kind == "json":
            ok = json_valid(text)
        elif kind == "valid_label":
            norm = (text.str.replace_all(ESCAPED_WS, " ").str.strip_chars(LABEL_STRIP)
                    .str.to_lowercase())
            item_labels = self.item_labels().gather(rows)
            fallback = [lab.strip(LABEL_STRIP).lower() for lab in labels]
            chk = pl.DataFrame({"out": norm, "labels": item_labels}).select(
                pl.when(pl.col("labels").list.len() > 0)
                .then(pl.col("labels").list.contains(pl.col("out")))
                .otherwise(pl.col("out").is_in(fallback))
                .fill_null(False)
            )
            ok = chk.to_series().to_numpy()
        else:
            raise PolicyError(f"unknown verifier {kind!r}")
        out[rows] = ok
        return out

    def outputs(self, model: str) -> pl.Series:
        """Each item's recorded answer of `model` (null without one), in item order."""

        def compute() -> pl.Series:
            if "output" not in self.outcomes.columns:
                return pl.Series("output", [None] * self.n, dtype=pl.String)
            frame = (
                self.outcomes.filter(pl.col("model") == model)
                .select(pl.col("item_id").cast(pl.String), pl.col("output").cast(pl.String))
            )
            return pl.DataFrame({"item_id": self.item_ids}).join(
                frame, on="item_id", how="left", maintain_order="left")["output"]

        return self.cached(("outputs", model), compute)

    def agreement(self, model: str, other: str, kind: str) -> np.ndarray:
        """Whether the two models' recorded answers agree after normalising by `kind`."""

        def norm(m: str) -> pl.Series:
            return self.cached(("normalized", m, kind),
                               lambda: agreement.normalize(kind, self.outputs(m)))

        def compute() -> np.ndarray:
            out = (norm(model) == norm(other)).fill_null(False).to_numpy()
            out.setflags(write=False)
            return out

        return self.cached(("agree", *sorted((model, other)), kind), compute)

    def item_labels(self) -> pl.Series:
        """Each item's labels, normalised like the verifier (empty list when none)."""
        def compute() -> pl.Series:
            if "labels" not in self.items.columns:
                return pl.Series("labels", [None] * self.n, dtype=pl.List(pl.String))
            return self.items.select(
                pl.col("labels").cast(pl.List(pl.String))
                .list.eval(pl.element().str.strip_chars(LABEL_STRIP).str.to_lowercase())
                .fill_null([])
            ).to_series()

        return self.cached("labels", compute)

    def mean_cost(self, model: str) -> float:
        """Mean recorded cost of `model` over the items it has outcomes for."""
        j = self.col[model]
        return float(self.cost[self.has[:, j], j].mean())


def json_valid(text: pl.Series) -> np.ndarray:
    """JSON verifier: after stripping a Markdown code fence, the output is a valid JSON object
    or array (checked by DuckDB's json_valid, vectorized)."""
    import duckdb

    stripped = (
        text.str.strip_chars()
        .str.replace(CODE_FENCE_OPEN, "")
        .str.replace(CODE_FENCE_CLOSE, "")
        .str.strip_chars()
    )
    frame = pl.DataFrame({"t": stripped}).to_arrow()
    con = duckdb.connect()
    try:
        con.register("_outputs", frame)
        res = con.execute(
            "SELECT coalesce(json_valid(t) AND (left(t, 1) IN ('{', '[')), false) FROM _outputs"
        ).fetchnumpy()
    finally:
        con.close()
    return np.asarray(next(iter(res.values())), dtype=bool)


_SLOTS: OrderedDict[tuple[int, int], Workload] = OrderedDict()
_SLOTS_LOCK = threading.Lock()
MAX_CACHED_WORKLOADS = 4


def prepare(items: pl.DataFrame, outcomes: pl.DataFrame) -> Workload:
    """The cached Workload for these two frames (built on first use; LRU of a few)."""
    key = (id(items), id(outcomes))
    with _SLOTS_LOCK:
        slot = _SLOTS.get(key)
        if slot is not None and slot.items is items and slot.outcomes is outcomes:
            _SLOTS.move_to_end(key)
            return slot
    slot = Workload(items, outcomes)
    with _SLOTS_LOCK:
        _SLOTS[key] = slot
        while len(_SLOTS) > MAX_CACHED_WORKLOADS:
            _SLOTS.popitem(last=False)
    return slot


def clear_cache() -> None:
    """Forget cached workloads (frees memory; the next replay recomputes detections)."""
    with _SLOTS_LOCK:
        _SLOTS.clear()


# -- recorded outcomes the policy needs ----------------------------------------------------
def check_outcomes(policy: Policy, wl: Workload) -> None:
    """Raise MissingOutcomesError, listing examples, when the policy may call a model on an
    item that has no recorded outcome for it (memoised per gate configuration)."""
    used = policy.used_models
    absent = [m for m in used if m not in wl.col]
    if absent:
        raise MissingOutcomesError(
            f"no recorded outcomes at all for model(s) {', '.join(absent)} used by the "
            f"policy; models with outcomes: {', '.join(wl.models) or 'none'}"
        )

    def compute() -> bool:
        g = kernel.gate(policy, wl)
        need = np.column_stack([g.allowed[j] & g.active & ~wl.col_of("has", m)
                                for j, m in enumerate(used)])
        if need.any():
            raise _missing_error(wl, used, need)
        return True

    wl.cached(("checked", policy.governance.model_dump_json(),
               policy.refusal.model_dump_json(), used, len(policy.tiers)), compute)


def _missing_error(wl: Workload, used: Sequence[str], need: np.ndarray) -> MissingOutcomesError:
    rows, cols = np.nonzero(need)
    per_model = np.bincount(cols, minlength=len(used))
    counts = ", ".join(f"{used[j]}: {c}" for j, c in enumerate(per_model) if c)
    examples = ", ".join(
        f"{wl.item_ids[int(r)]!s} ({used[int(c)]})" for r, c in zip(rows[:5], cols[:5], strict=True)
    )
    return MissingOutcomesError(
        f"{rows.size} item/model pairs lack recorded outcomes for models the policy may call "
        f"({counts}); e.g. {examples}. Run those models on the workload, or restrict the "
        "policy (governance, tiers) so it does not call them there."
    )


# -- learned-router predictions -------------------------------------------------------------
def predictions(policy: Policy, wl: Workload, router: Any = None) -> kernel.Predictions:
    """(predicted success (n, K) of the tier models, their mean cost): from `router` (a fitted
    LearnedRouter or a predictions frame), else cross-fitted out of fold on these items."""
    models = list(policy.tier_models)
    if router is None:
        spec = policy.router
        if spec is None:
            raise PolicyError("the policy has no `router:` section to fit predictions with")

        def compute() -> kernel.Predictions:
            from workbench.learned import cross_fit_predict

            frame = cross_fit_predict(wl.items, wl.outcomes, models, spec)
            return _align(frame, wl, models), np.array([wl.mean_cost(m) for m in models])

        return wl.cached(("xfit", spec.model_dump_json(), tuple(models)), compute)
    key = ("router", id(router), tuple(models))
    entry = wl.memo.get(key)
    if entry is not None and entry[0] is router:  # same object: reuse its predictions
        return entry[1], entry[2]
    if isinstance(router, pl.DataFrame):
        p = _align(router, wl, models)
        mean_cost = np.array([wl.mean_cost(m) for m in models])
    else:
        absent = [m for m in models if m not in router.models]
        if absent:
            raise PolicyError(
                f"the learned router was not trained on tier model(s) {', '.join(absent)}; "
                f"it knows {', '.join(router.models)}"
            )
        p = _align(router.predict(wl.items), wl, models)
        mean_cost = np.array([router.mean_cost[m] for m in models])
    with wl._lock:
        stale = [k for k in wl.memo if isinstance(k, tuple) and k and k[0] == "router"]
        for k in stale[:-3]:  # keep predictions of the last few routers only
            del wl.memo[k]
        wl.memo[key] = (router, p, mean_cost)
    return p, mean_cost


def _align(frame: pl.DataFrame, wl: Workload, models: Sequence[str]) -> np.ndarray:
    absent = [m for m in models if m not in frame.columns]
    if absent:
        raise PolicyError(f"router predictions lack model column(s): {', '.join(absent)}")
    joined = pl.DataFrame({"item_id": wl.item_ids}).join(
        frame.with_columns(pl.col("item_id").cast(pl.String)), on="item_id", how="left",
        maintain_order="left",
    )
    p = joined.select(models).to_numpy().astype(np.float64)
    if np.isnan(p).any():
        raise PolicyError("router predictions are missing for some items")
    return p


__all__ = [
    "MAX_CACHED_WORKLOADS", "MissingOutcomesError", "Workload", "check_outcomes", "clear_cache",
    "json_valid", "predictions", "prepare",
]
