"""Tune a routing policy's thresholds and tier choices with Optuna against cost and quality.

Objectives (`OBJECTIVES`): `min-cost` (minimise cost per request subject to quality >= floor),
`max-quality` (maximise quality subject to cost per request <= budget), `weighted` (maximise
quality - weight x cost, weight in quality points per US dollar) and `pareto` (quality up,
cost down, optionally p95 latency down). Constraints are recorded on each trial with Optuna's
`Trial.set_constraint` (optuna 5 replaced the samplers' deprecated `constraints_func` with it;
both feed the same `FrozenTrial.constraints`), so infeasible trials are known as such, and a
trial's feasibility is also a user attribute.

Held-out discipline: items are split (seeded, stratified) into train and holdout, or an imported
test workload is the holdout; trials only ever see train items (learned-router predictions on
train are cross-fitted out of fold), and the holdout is replayed once per reported policy with a
router fitted on train only.

Per trial, nothing that does not depend on the sampled values is recomputed: the replay
`Workload` matrices, governance and refusal masks, verifier results, rule scores and router
predictions are built once per structural choice (`_Static`); a trial is a few numpy passes
that mirror `workbench.replay.replay` exactly (a test checks they agree).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import polars as pl

from workbench import replay as rp
from workbench.errors import ConflictError, PolicyError, WorkbenchError
from workbench.metrics import Metrics
from workbench.pipeline import kernel
from workbench.policy import (
    LearnedPreroute,
    ModelSpec,
    Policy,
    Provenance,
    RulesPreroute,
)

OBJECTIVES = ("min-cost", "max-quality", "weighted", "pareto")
Objective = Literal["min-cost", "max-quality", "weighted", "pareto"]
SAMPLERS = ("tpe", "nsga2")
IN_MEMORY = ":memory:"
REPORT_KEYS = (
    "quality", "quality_ci", "cost_per_request", "cost_per_success", "latency_p50_ms",
    "latency_p95_ms", "escalation_rate", "refusal_rate", "answered_by", "n",
)
MAX_FRONT_REPLAYS = 100


# -- objective ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectiveSpec:
    """What a study optimises: the kind plus its constraint values (absolute floor, floor as a
    share of the best single model's train quality, budget in $/request, weight in q/$)."""

    kind: Objective
    quality_floor: float | None = None
    relative_floor: float | None = None
    budget: float | None = None
    weight: float | None = None
    latency: bool = False

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise WorkbenchError(
                f"unknown objective {self.kind!r}; choose one of {', '.join(OBJECTIVES)}"
            )
        if self.kind == "min-cost" and self.quality_floor is None and self.relative_floor is None:
            raise WorkbenchError("objective min-cost needs a quality floor (e.g. 0.9 or '95%')")
        if self.kind == "max-quality" and self.budget is None:
            raise WorkbenchError("objective max-quality needs a budget ($ per request)")
        if self.kind == "weighted" and self.weight is None:
            raise WorkbenchError("objective weighted needs a weight (quality points per $)")
        if self.quality_floor is not None and not 0.0 <= self.quality_floor <= 1.0:
            raise WorkbenchError(f"quality floor must be in [0, 1], got {self.quality_floor}")
        if self.relative_floor is not None and not 0.0 < self.relative_floor <= 1.5:
            raise WorkbenchError(
                f"relative quality floor must be a share like 0.95 (95%), got "
                f"{self.relative_floor}"
            )
        if self.budget is not None and self.budget < 0:
            raise WorkbenchError(f"budget must be >= 0 $/request, got {self.budget}")
        if self.weight is not None and self.weight < 0:
            raise WorkbenchError(f"weight must be >= 0 quality points per $, got {self.weight}")

    @property
    def directions(self) -> list[str]:
        """Optuna study directions."""
        if self.kind == "min-cost":
            return ["minimize"]
        if self.kind in ("max-quality", "weighted"):
            return ["maximize"]
        return ["maximize", "minimize"] + (["minimize"] if self.latency else [])

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (stored on the study)."""
        return dict(self.__dict__)


def parse_floor(value: float | str | None) -> tuple[float | None, float | None]:
    """(absolute, relative) from a floor given as 0.9, '0.9', '95%' or 'rel:0.95'."""
    if value is None:
        return None, None
    if isinstance(value, int | float):
        return float(value), None
    text = str(value).strip()
    try:
        if text.endswith("%"):
            return None, float(text[:-1]) / 100.0
        if text.startswith("rel:"):
            return None, float(text[4:])
        return float(text), None
    except ValueError:
        raise WorkbenchError(
            f"quality floor {value!r} is not a number, a percentage like '95%' (of the best "
            "single model's quality) or 'rel:0.95'"
        ) from None


# -- search space ------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One searched policy field: dotted path, kind and range (or choices)."""

    path: str
    kind: Literal["float", "log", "categorical"]
    low: float = 0.0
    high: float = 1.0
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter on an Optuna trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.path, list(self.choices))
        return trial.suggest_float(self.path, self.low, self.high, log=self.kind == "log")


def _mean_costs(outcomes: pl.DataFrame) -> dict[str, float]:
    agg = outcomes.group_by("model").agg(pl.col("cost_usd").fill_null(0.0).mean())
    return {r[0]: float(r[1]) for r in agg.iter_rows()}


def cost_weight_range(costs: Sequence[float]) -> tuple[float, float]:
    """Log range of the learned router's cost_weight (quality points per $) where it matters:
    from a penalty of 0.01 on the dearest model to one of 10 on the cheapest."""
    pos = [c for c in costs if c > 0]
    if not pos:
        return (1e-3, 1e3)
    low, high = 0.01 / max(pos), 10.0 / min(pos)
    return (low, max(high, low * 10))


def search_space(
    policy: Policy,
    *,
    candidates: Sequence[str] | None = None,
    fixed: Mapping[str, Any] | None = None,
    mean_cost: Mapping[str, float] | None = None,
    router_methods: Sequence[str] | None = None,
) -> tuple[Param, ...]:
    """The parameters a study searches for `policy`: every non-final tier's `accept_above`,
    the rule pre-route's `preroute_below` or the learned router's `cost_weight`, each tier's
    model among `candidates` (when given) and the router `method` (when several are given);
    any path in `fixed` is left out."""
    fixed = dict(fixed or {})
    params: list[Param] = []
    k = len(policy.tiers)
    cands = tuple(dict.fromkeys(candidates or ()))
    if cands and len(cands) < k:
        raise WorkbenchError(
            f"{len(cands)} candidate model(s) cannot fill {k} distinct tiers; give more "
            "candidates or fewer tiers"
        )
    for i in range(k):
        if cands:
            params.append(Param(f"tiers.{i}.model", "categorical", choices=cands))
        if i < k - 1:
            params.append(Param(f"tiers.{i}.accept_above", "float", 0.0, 1.0))
    if isinstance(policy.preroute, RulesPreroute):
        params.append(Param("preroute.preroute_below", "float", 0.0, 1.0))
    elif isinstance(policy.preroute, LearnedPreroute):
        names = cands or policy.tier_models
        costs = [float((mean_cost or {}).get(m, 0.0)) for m in names]
        low, high = cost_weight_range(costs)
        params.append(Param("preroute.cost_weight", "log", low, high))
    if policy.router is not None and router_methods and len(set(router_methods)) > 1:
        params.append(Param("router.method", "categorical",
                            choices=tuple(dict.fromkeys(router_methods))))
    unknown = [p for p in fixed if not _has_path(policy, p)]
    if unknown:
        raise WorkbenchError(
            f"cannot fix unknown policy field(s) {', '.join(unknown)}; searchable fields: "
            f"{', '.join(p.path for p in params) or 'none'}"
        )
    return tuple(p for p in params if p.path not in fixed)


def _has_path(policy: Policy, path: str) -> bool:
    try:
        policy.with_value(path, _get_path(policy, path))
    except (PolicyError, KeyError, IndexError, ValueError, TypeError):
        return False
    return True


def _get_path(policy: Policy, path: str) -> Any:
    node: Any = policy.model_dump(mode="json")
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def apply_params(policy: Policy, values: Mapping[str, Any],
                 specs: Mapping[str, ModelSpec] | None = None) -> Policy:
    """`policy` with every dotted path in `values` set (one validation); tier models missing
    from `policy.models` are added from `specs` (or as bare specs)."""
    data = policy.model_dump(mode="json")
    for path, value in values.items():
        node: Any = data
        parts = path.split(".")
        try:
            for part in parts[:-1]:
                node = node[int(part)] if isinstance(node, list) else node[part]
            if node is None:
                raise KeyError(path)
            if isinstance(node, list):
                node[int(parts[-1])] = value
            else:
                node[parts[-1]] = value
        except (KeyError, IndexError, ValueError, TypeError):
            raise PolicyError(f"policy has no field {path!r}") from None
    for tier in data["tiers"]:
        name = tier["model"]
        if name not in data["models"]:
            spec = (specs or {}).get(name) or ModelSpec(model=name)
            data["models"][name] = spec.model_dump(mode="json")
    return Policy.validate_data(data, source="tuned policy")


# -- the per-trial kernel ----------------------------------------------------------------
@dataclass(frozen=True)
class FastMetrics:
    """What a trial needs: means over the train items (no CIs, no trace)."""

    quality: float
    cost_per_request: float
    latency_p95_ms: float
    strong_share: float
    escalation_rate: float
    refusal_rate: float

    def as_json(self) -> dict[str, float | None]:
        """JSON-ready dict (NaN -> None)."""
        return {k: (v if math.isfinite(v) else None) for k, v in self.__dict__.items()}


class FastEvaluator:
    """Evaluates many variants of a policy over one (items, outcomes) pair with the policy
    kernel; the workload's facts and threshold-independent arrays are memoised across
    calls, so a trial costs a few vectorized passes per tier."""

    def __init__(self, items: pl.DataFrame, outcomes: pl.DataFrame,
                 router: Any = None) -> None:
        """`router`: None (cross-fit on these items when a policy needs it), a predictions
        frame, or a fitted LearnedRouter, exactly as `replay` takes it."""
        self.wl = rp.prepare(items, outcomes)
        self.router = router

    def evaluate(self, policy: Policy, *, latency: bool = True) -> FastMetrics:
        """Quality, cost, p95 latency... of `policy`: the same numbers as `replay`, without
        confidence intervals or a trace."""
        d = rp.decide(policy, self.wl, self.router)
        n = self.wl.n
        if not latency:  # sums by reductions, no per-item arrays
            tot = kernel.totals(policy, self.wl, d)
            return FastMetrics(
                quality=tot.quality, cost_per_request=tot.cost_sum / n,
                latency_p95_ms=math.nan, strong_share=tot.n_strong / n,
                escalation_rate=tot.n_escalated / n, refusal_rate=tot.n_refused / n,
            )
        a = kernel.account(policy, self.wl, d)  # p95 needs per-item latencies
        assert a.latency is not None
        served = a.latency[~a.refused]
        served = served[~np.isnan(served)]
        scored = ~np.isnan(a.quality)
        n_scored = int(np.count_nonzero(scored))
        return FastMetrics(
            quality=float(a.quality[scored].sum()) / n_scored if n_scored else math.nan,
            cost_per_request=float(a.cost.sum()) / n,
            latency_p95_ms=float(np.percentile(served, 95)) if served.size else math.nan,
            strong_share=float(np.count_nonzero(a.strong)) / n,
            escalation_rate=float(np.count_nonzero(a.escalated)) / n,
            refusal_rate=float(np.count_nonzero(a.refused)) / n,
        )


# -- learned router plumbing -------------------------------------------------------------
def _router_models(policy: Policy, candidates: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*policy.tier_models, *candidates]))


def _train_predictions(items: pl.DataFrame, outcomes: pl.DataFrame, models: Sequence[str],
                       spec: Any) -> pl.DataFrame:
    """Out-of-fold predicted success of every model for the train items (never in-sample)."""
    from workbench.learned import cross_fit_predict

    return cross_fit_predict(items, outcomes, list(models), spec)


def _fit_router(items: pl.DataFrame, outcomes: pl.DataFrame, models: Sequence[str],
                spec: Any) -> Any:
    """A LearnedRouter fitted on train items only (used to score the holdout)."""
    from workbench.learned import LearnedRouter

    return LearnedRouter.fit(items, outcomes, list(models), spec)


# -- splitting ---------------------------------------------------------------------------
STRATA_COLUMNS = ("difficulty", "data_class", "tags")


def strata_columns(items: pl.DataFrame, holdout: float) -> list[str]:
    """Stratification columns that keep strata big enough to split (each stratum should hold
    several holdout items): columns are dropped, finest first, until they do."""
    cols = [c for c in STRATA_COLUMNS
            if c in items.columns and items[c].cast(pl.String).n_unique() > 1]
    min_mean = max(2.0 / holdout, 4.0)
    while cols:
        sizes = items.group_by([pl.col(c).cast(pl.String) for c in cols]).len()["len"]
        if sizes.mean() >= min_mean and float((sizes < 1.0 / holdout).mean()) <= 0.2:
            break
        cols.remove(max(cols, key=lambda c: items[c].cast(pl.String).n_unique()))
    return cols


@dataclass(frozen=True)
class Split:
    """Train and holdout frames (items and outcomes) and how they were made."""

    train_items: pl.DataFrame
    train_outcomes: pl.DataFrame
    holdout_items: pl.DataFrame
    holdout_outcomes: pl.DataFrame
    description: str
    notes: tuple[str, ...] = ()


def _recorded(store: Any, workload: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Items of a workload that have at least one recorded outcome, with the outcomes."""
    outcomes = store.outcomes(workload)
    items = store.items(workload)
    if outcomes.height == 0:
        raise WorkbenchError(f"workload {workload!r} has no recorded outcomes: run models on "
                             "it or import recorded outcomes first")
    items = items.filter(pl.col("item_id").is_in(outcomes["item_id"].unique().implode()))
    return items, outcomes


def make_split(store: Any, workload: str, *, holdout: float = 0.3, seed: int = 0,
               test_workload: str | None = None) -> Split:
    """Train/holdout: a seeded stratified split of `workload`, or all of it against
    `test_workload` (whose items must not repeat train items). Only items with recorded
    outcomes take part: a run may have covered just a slice of a workload."""
    items, outcomes = _recorded(store, workload)
    if test_workload is not None:
        t_items, t_out = _recorded(store, test_workload)
        # an item seen in training (same id or same input) must not be scored as held out
        seen = pl.col("item_id").is_in(items["item_id"].implode()) | pl.col("input").is_in(
            items["input"].implode())
        dup = t_items.filter(seen)["item_id"]
        notes: list[str] = []
        if dup.len():
            notes.append(f"{dup.len()} item(s) of {test_workload} also occur in {workload} "
                         f"(same id or input), e.g. {dup[0]}; dropped from the holdout")
            t_items = t_items.filter(~pl.col("item_id").is_in(dup.implode()))
            t_out = t_out.filter(~pl.col("item_id").is_in(dup.implode()))
        if t_items.height == 0:
            raise WorkbenchError(f"test workload {test_workload!r} has no items to hold out")
        return Split(items, outcomes, t_items, t_out,
                     f"train = {workload} ({items.height}), holdout = {test_workload} "
                     f"({t_items.height})", tuple(notes))
    cols = strata_columns(items, holdout)
    train_ids, hold_ids = rp.split_items(items, holdout=holdout, seed=seed, stratify=cols)
    if not hold_ids or not train_ids:
        raise WorkbenchError(
            f"workload {workload!r} with {items.height} items is too small to hold out "
            f"{holdout:.0%}; import a test workload instead"
        )
    tr = items.filter(pl.col("item_id").is_in(train_ids))
    ho = items.filter(pl.col("item_id").is_in(hold_ids))
    return Split(
        tr, outcomes.filter(pl.col("item_id").is_in(train_ids)),
        ho, outcomes.filter(pl.col("item_id").is_in(hold_ids)),
        f"{workload}: {len(train_ids)} train / {len(hold_ids)} holdout items "
        f"(seed {seed}, stratified by {', '.join(cols) or 'nothing'})",
    )


# -- storage -----------------------------------------------------------------------------
def storage_url(storage: str | None, home: Any = None) -> str:
    """The study storage URL: given, or SQLite under the data directory."""
    if storage:
        return storage
    from workbench import settings

    return settings.studies_url(home)


def _redact(url: str) -> str:
    if url == IN_MEMORY:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


_MEMORY: dict[str, Any] = {}
# masked URL (as shown in results, JSON and the catalog) -> the real one, for this process only,
# so `trial_policy(result.storage, ...)` works without a password ever leaving memory
_REAL_URLS: dict[str, str] = {}


def open_storage(url: str) -> Any:
    """An Optuna storage for `url` (':memory:' = one process-wide in-memory storage; SQLite
    gets a long busy timeout so several worker processes can share one file)."""
    import optuna

    url = _REAL_URLS.get(url, url)
    if url == IN_MEMORY:
        return _MEMORY.setdefault(url, optuna.storages.InMemoryStorage())
    kwargs: dict[str, Any] = {}
    sqlite = url.startswith("sqlite")
    if sqlite:
        kwargs = {"connect_args": {"timeout": 120}}
    last: Exception | None = None
    for attempt in range(5):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            if sqlite:
                _sqlite_wal(storage.engine)
            return storage
        except Exception as exc:  # workers starting together race to create the schema
            last = exc
            if "IntegrityError" not in type(exc).__name__ and "locked" not in str(exc):
                break
            time.sleep(0.2 * (attempt + 1))
    assert last is not None
    raise WorkbenchError(f"cannot open study storage {_redact(url)}: "
                         f"{type(last).__name__}: {str(last).splitlines()[0]}") from None


def _sqlite_wal(engine: Any) -> None:
    """Write-ahead logging with synchronous=NORMAL: about 4x faster trials on SQLite and
    readers that do not block the writer, so worker processes share one file smoothly
    (committed trials survive a process crash; a power cut may lose the last few)."""
    import sqlalchemy

    def on_connect(dbapi_con: Any, _record: Any) -> None:
        dbapi_con.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened while creating tables lack the pragma
    with engine.connect() as con:
        con.exec_driver_sql("PRAGMA journal_mode=WAL")


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# -- result ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneProgress:
    """Handed to the progress callback after every trial of this run."""

    done: int
    total: int
    best: dict[str, Any] | None
    feasible_share: float


@dataclass(frozen=True)
class TuneResult:
    """Everything a study run produced; frames are fresh copies, safe to keep."""

    study_name: str
    storage: str
    workload: str
    test_workload: str | None
    objective: ObjectiveSpec
    quality_floor: float | None
    best_trial: int | None
    best_policy: Policy
    train: dict[str, Any]
    holdout: dict[str, Any]
    pareto: pl.DataFrame
    trials: pl.DataFrame
    singles: pl.DataFrame
    oracle: dict[str, dict[str, Any]]
    split: str
    n_trials: int
    warnings: tuple[str, ...] = field(default_factory=tuple)
    timings: dict[str, float] = field(default_factory=dict)
    holdout_share: float = 0.3
    seed: int = 0

    def as_json(self) -> dict[str, Any]:
        """The CLI's JSON: `train`/`holdout` metrics plus study information."""
        return {
            "study": self.study_name, "storage": self.storage, "workload": self.workload,
            "test_workload": self.test_workload, "objective": self.objective.as_json(),
            "quality_floor": self.quality_floor, "best_trial": self.best_trial,
            "n_trials": self.n_trials, "split": self.split,
            "train": self.train, "holdout": self.holdout,
            "singles": self.singles.to_dicts(), "oracle": self.oracle,
            "pareto": self.pareto.drop("policy").to_dicts(),
            "warnings": list(self.warnings),
        }


def report(m: Metrics) -> dict[str, Any]:
    """The evaluate keys of a Metrics (JSON-ready)."""
    d = m.as_dict()
    return {k: d[k] for k in REPORT_KEYS if k in d} | {
        "cost_per_request_ci": d.get("cost_per_request_ci"),
    }


# -- base policy -------------------------------------------------------------------------
def frontier(outcomes: pl.DataFrame) -> list[tuple[str, float, float]]:
    """Models not dominated in (quality up, cost down), cheapest first: (name, q, cost)."""
    from workbench.compose import summarize

    rows = sorted(((s.name, s.quality, s.cost_per_request) for s in summarize(outcomes)),
                  key=lambda r: (r[2], -r[1], r[0]))
    out: list[tuple[str, float, float]] = []
    for name, q, c in rows:
        if not out or q > out[-1][1]:
            out.append((name, q, c))
    return out


def upper_hull(front: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Frontier models on the upper convex hull of (cost, quality): a model below the line
    joining its neighbours is beaten by routing between them, so it makes a poor tier."""
    hull: list[tuple[str, float, float]] = []
    for point in front:
        while len(hull) >= 2:
            (_, q1, c1), (_, q2, c2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or below the chord to the new point
            if (q2 - q1) * (point[2] - c1) <= (point[1] - q1) * (c2 - c1):
                hull.pop()
            else:
                break
        hull.append(point)
    return hull


def default_base_policy(store: Any, workload: str, *, max_tiers: int = 4,
                        home: Any = None) -> Policy:
    """A sensible starting policy: the quality/cost frontier models as tiers, cheapest first;
    a plain cascade on recorded confidence when outcomes have it, else (e.g. RouterBench) the
    learned router picks the entry tier and its predicted success is the tiers' confidence."""
    from workbench.compose import model_specs

    outcomes = store.outcomes(workload)
    if outcomes.height == 0:
        raise WorkbenchError(f"workload {workload!r} has no recorded outcomes to tune on")
    front = upper_hull(frontier(outcomes))
    if len(front) > max_tiers:  # keep the cheapest, the best and evenly spaced ones between
        idx = np.unique(np.round(np.linspace(0, len(front) - 1, max_tiers)).astype(int))
        front = [front[i] for i in idx]
    names = [f[0] for f in front]
    try:
        from workbench.catalog import Catalog

        configs = Catalog(home).list_models()
    except Exception:  # no catalog yet: bare specs named after the models
        configs = []
    specs = model_specs(store, workload, configs)
    conf_share = (outcomes.filter(pl.col("model").is_in(names))["confidence"]
                  .is_not_null().mean()) if "confidence" in outcomes.columns else 0.0
    data: dict[str, Any] = {
        "name": f"tuned-{workload}",
        "description": f"cascade over the quality/cost frontier of {workload}",
        "models": {m: specs[m].model_dump(mode="json") for m in names},
        "tiers": [{"model": m, "accept_above": 0.5 if i < len(names) - 1 else 0.0}
                  for i, m in enumerate(names)],
    }
    if (conf_share or 0.0) < 0.5 and len(names) > 1:
        costs = [f[2] for f in front]
        low, high = cost_weight_range(costs)
        data["preroute"] = {"kind": "learned", "cost_weight": math.sqrt(low * high)}
        data["router"] = {"method": "logistic"}
        data["description"] = (f"learned router over the quality/cost frontier of {workload}; "
                               "its predicted success is each tier's confidence")
    return Policy.validate_data(data, source=f"default policy for {workload}")


# -- tune --------------------------------------------------------------------------------
def _study_name(workload: str, spec: ObjectiveSpec, base: Policy, settings_: dict[str, Any]
                ) -> str:
    blob = json.dumps({"objective": spec.as_json(), "policy": base.model_dump(mode="json"),
                       **settings_}, sort_keys=True, default=str)
    return f"tune-{workload}-{spec.kind}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def _pareto_mask(points: np.ndarray) -> np.ndarray:
    """Non-dominated rows of `points` where every column is to be minimised."""
    n = points.shape[0]
    keep = np.ones(n, dtype=bool)
    for i in range(n):  # fronts are a few hundred trials at most: O(n^2) numpy is fine
        if not keep[i]:
            continue
        le = (points <= points[i]).all(axis=1)
        lt = (points < points[i]).any(axis=1)
        dominated_by = le & lt
        if dominated_by.any():
            keep[i] = False
    return keep


def _values_of(m: FastMetrics, spec: ObjectiveSpec) -> list[float]:
    if spec.kind == "min-cost":
        return [m.cost_per_request]
    if spec.kind == "max-quality":
        return [m.quality]
    if spec.kind == "weighted":
        return [m.quality - float(spec.weight or 0.0) * m.cost_per_request]
    vals = [m.quality, m.cost_per_request]
    if spec.latency:
        vals.append(m.latency_p95_ms if math.isfinite(m.latency_p95_ms) else 0.0)
    return vals


def _constraints(m: FastMetrics | None, floor: float | None, budget: float | None
                 ) -> dict[str, float]:
    out: dict[str, float] = {}
    if m is None:
        out["valid"] = 1.0
        if floor is not None:
            out["quality_floor"] = 1.0
        if budget is not None:
            out["budget"] = 1.0
        return out
    out["valid"] = 0.0
    if floor is not None:
        q = m.quality if math.isfinite(m.quality) else 0.0
        out["quality_floor"] = floor - q
    if budget is not None:
        out["budget"] = m.cost_per_request - budget
    return out


def _best_single(fast_singles: dict[str, FastMetrics]) -> tuple[str, float]:
    name = max(fast_singles, key=lambda m: (fast_singles[m].quality,
                                            -fast_singles[m].cost_per_request))
    return name, fast_singles[name].quality


def tune(
    store: Any,
    workload: str,
    base_policy: Policy | None = None,
    *,
    objective: Objective | ObjectiveSpec,
    quality_floor: float | str | None = None,
    budget: float | None = None,
    weight: float | None = None,
    latency: bool = False,
    trials: int = 100,
    holdout: float = 0.3,
    test_workload: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    worker: int = 0,
    fixed: Mapping[str, Any] | None = None,
    candidates: Sequence[str] | None = None,
    router_methods: Sequence[str] | None = None,
    sampler: str = "tpe",
    progress: Callable[[TuneProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    home: Any = None,
    record: bool = True,
) -> TuneResult:
    """Run (or resume) a study tuning `base_policy` on `workload`'s train split and report
    the best policy's train and holdout metrics with 95% bootstrap CIs.

    `trials` new trials are run by this call (several workers may share one study through
    `storage`; give each a different `worker` index so their random draws differ).
    `quality_floor` may be relative: '95%' = 95% of the best single model's train quality.
    """
    _quiet_optuna()
    import optuna

    t_start = time.perf_counter()
    if trials < 0:
        raise WorkbenchError(f"trials must be >= 0, got {trials}")
    if sampler not in SAMPLERS:
        raise WorkbenchError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    abs_floor, rel_floor = parse_floor(quality_floor)
    spec = objective if isinstance(objective, ObjectiveSpec) else ObjectiveSpec(
        kind=objective, quality_floor=abs_floor, relative_floor=rel_floor, budget=budget,
        weight=weight, latency=latency,
    )
    if base_policy is None:
        base_policy = default_base_policy(store, workload, home=home)
    fixed = dict(fixed or {})
    base = apply_params(base_policy, fixed) if fixed else base_policy
    split = make_split(store, workload, holdout=holdout, seed=seed, test_workload=test_workload)
    cands = list(dict.fromkeys(candidates or ()))
    known_models = set(split.train_outcomes["model"].unique().to_list())
    unknown = [m for m in cands if m not in known_models]
    if unknown:
        raise WorkbenchError(
            f"candidate model(s) {', '.join(unknown)} have no outcomes on {workload!r}; "
            f"models with outcomes: {', '.join(sorted(known_models))}"
        )
    mean_cost = _mean_costs(split.train_outcomes)
    methods = list(router_methods or ())
    space = search_space(base, candidates=cands, fixed=fixed, mean_cost=mean_cost,
                         router_methods=methods)
    specs = {m: ModelSpec(model=m) for m in cands}
    specs.update(base.models)

    # router predictions for train items: out of fold, all models at once, per method
    router_models = _router_models(base, cands)
    train_preds: dict[str, pl.DataFrame] = {}

    def preds_for(policy: Policy) -> pl.DataFrame | None:
        if not policy.uses_router():
            return None
        assert policy.router is not None
        key = policy.router.model_dump_json()
        if key not in train_preds:
            train_preds[key] = _train_predictions(split.train_items, split.train_outcomes,
                                                  router_models, policy.router)
        return train_preds[key]

    evaluators: dict[str, FastEvaluator] = {}

    def evaluator(policy: Policy) -> FastEvaluator:
        preds = preds_for(policy)
        key = policy.router.model_dump_json() if preds is not None and policy.router else ""
        if key not in evaluators:
            evaluators[key] = FastEvaluator(split.train_items, split.train_outcomes, preds)
        return evaluators[key]

    # single models on train (the relative floor's reference)
    train_wl = rp.prepare(split.train_items, split.train_outcomes)
    single_names = [m for m in dict.fromkeys([*base.used_models, *cands]) if m in train_wl.col]
    fast_singles = {
        m: FastEvaluator(split.train_items, split.train_outcomes).evaluate(
            apply_params(_single_like(base, m, specs), {}), latency=False)
        for m in single_names
    }
    missing = [m for m in base.used_models if m not in train_wl.col]
    if missing:
        raise WorkbenchError(
            f"the base policy uses model(s) with no recorded outcomes on {workload!r}: "
            f"{', '.join(missing)}; models with outcomes: {', '.join(train_wl.col) or 'none'}. "
            "Run those models first or start from the default policy for this workload."
        )
    floor = spec.quality_floor
    warns: list[str] = list(split.notes)
    if spec.relative_floor is not None:
        strong, strong_q = _best_single(fast_singles)
        rel = spec.relative_floor * strong_q
        floor = rel if floor is None else max(floor, rel)
        warns.append(f"quality floor {floor:.4f} = {spec.relative_floor:.0%} of {strong}'s "
                     f"train quality {strong_q:.4f}")
    cons_budget = spec.budget

    url = storage_url(storage, home)
    _REAL_URLS[_redact(url)] = url
    st = open_storage(url)
    name = study_name or _study_name(workload, spec, base_policy, {
        "holdout": holdout, "test": test_workload, "seed": seed, "fixed": fixed,
        "candidates": cands, "methods": methods, "sampler": sampler,
    })
    study_attrs = {
        "workload": workload, "test_workload": test_workload, "holdout": holdout,
        "split_seed": seed, "objective": spec.as_json(), "quality_floor": floor,
        "base_policy": base_policy.to_json(indent=None), "fixed": fixed, "candidates": cands,
        "router_methods": methods, "space": [p.path for p in space],
        "router_models": router_models,
    }
    existing = _existing_trials(st, name)
    samp = make_sampler(sampler, sampler_seed(seed, worker, existing), trials)
    directions = spec.directions
    try:
        study = optuna.create_study(storage=st, study_name=name, sampler=samp,
                                    directions=directions, load_if_exists=True)
    except Exception as exc:
        raise WorkbenchError(f"cannot open study {name!r} in {_redact(url)}: {exc}") from None
    _check_or_set_attrs(study, study_attrs)
    if existing == 0 and space and worker == 0:  # one worker seeds the base point
        base_values = {p.path: _get_path(base, p.path) for p in space}
        base_values = {k: v for k, v in base_values.items() if _in_range(space, k, v)}
        study.enqueue_trial(base_values, skip_if_exists=True)
    worst = [0.0 if d == "maximize" else float(sum(max(mean_cost.values(), default=0.0)
                                                   for _ in base.tiers)) + 1.0
             for d in directions]
    if spec.kind == "pareto" and spec.latency:
        worst[-1] = 1e9

    def objective_fn(trial: Any) -> Any:
        values = {p.path: p.suggest(trial) for p in space}
        try:
            policy = apply_params(base, values, specs)
            fm = evaluator(policy).evaluate(policy, latency=spec.latency)
        except WorkbenchError as exc:
            trial.set_user_attr("error", str(exc)[:500])
            cons = _constraints(None, floor, cons_budget)
            for key, val in cons.items():
                trial.set_constraint(key, val)
            trial.set_user_attr("feasible", False)
            return worst if len(worst) > 1 else worst[0]
        cons = _constraints(fm, floor, cons_budget)
        for key, val in cons.items():
            trial.set_constraint(key, val)
        trial.set_user_attr("feasible", all(v <= 0 for v in cons.values()))
        trial.set_user_attr("metrics", fm.as_json())
        trial.set_user_attr("policy", policy.to_json(indent=None))
        out = _values_of(fm, spec)
        out = [v if math.isfinite(v) else w for v, w in zip(out, worst, strict=True)]
        return out if len(out) > 1 else out[0]

    done = 0

    def callback(study_: Any, frozen: Any) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(_progress(study_, done, trials, spec))
        if should_stop is not None and should_stop():
            study_.stop()

    t_opt = time.perf_counter()
    if trials:
        study.optimize(objective_fn, n_trials=trials, callbacks=[callback])
    t_rep = time.perf_counter()
    result = _finish(study, url, spec, floor, base, split, workload, test_workload,
                     preds_for, fast_singles, warns, seed, router_models)
    t_end = time.perf_counter()
    result = dataclasses.replace(result, timings={
        "prepare_s": t_opt - t_start, "optimize_s": t_rep - t_opt, "report_s": t_end - t_rep,
    }, holdout_share=holdout, seed=seed)
    if record and url != IN_MEMORY:
        _record_study(home, name, url, workload, spec)
    return result


def sampler_seed(seed: int, worker: int, existing: int) -> int:
    """The sampler's seed: the user's seed mixed with the worker index and the number of
    trials already in the study, so resumed runs and parallel workers draw new points while a
    given (seed, worker, history) stays reproducible."""
    return int(hashlib.sha256(f"{seed}:{worker}:{existing}".encode()).hexdigest()[:8], 16)


def make_sampler(kind: str, seed: int, trials: int) -> Any:
    """TPE (multivariate, constraint-aware; also multi-objective) or NSGA-II, seeded."""
    import optuna

    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed,
                                             population_size=max(10, min(50, trials // 5)))
    return optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                      n_startup_trials=min(10, max(3, trials // 10)))


def _single_like(base: Policy, model: str, specs: Mapping[str, ModelSpec]) -> Policy:
    from workbench.policy import single

    return single(model, specs.get(model) or base.models.get(model))


def _in_range(space: Sequence[Param], path: str, value: Any) -> bool:
    for p in space:
        if p.path == path:
            if p.kind == "categorical":
                return value in p.choices
            return isinstance(value, int | float) and p.low <= value <= p.high
    return False


def _existing_trials(storage: Any, name: str) -> int:
    try:
        sid = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(sid, deepcopy=False))


def _check_or_set_attrs(study: Any, attrs: dict[str, Any]) -> None:
    have = study.user_attrs
    if not have:
        for k, v in attrs.items():
            study.set_user_attr(k, json.loads(json.dumps(v, default=str)))
        return
    for k in ("workload", "test_workload", "holdout", "split_seed", "objective", "space",
              "base_policy"):
        want = json.loads(json.dumps(attrs[k], default=str))
        if k in have and have[k] != want:
            raise ConflictError(
                f"study {study.study_name!r} was created with a different {k} "
                f"({have[k]!r} vs {want!r}); resume it with the same settings or choose "
                "another study name"
            )


def _progress(study: Any, done: int, total: int, spec: ObjectiveSpec) -> TuneProgress:
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    feas = [t for t in complete if t.user_attrs.get("feasible")]
    best: dict[str, Any] | None = None
    if feas and spec.kind != "pareto":
        sign = 1 if spec.directions[0] == "minimize" else -1
        t = min(feas, key=lambda t: sign * t.values[0])
        best = {"number": t.number, "value": t.values[0], **(t.user_attrs.get("metrics") or {})}
    elif feas:
        best = {"pareto_size": len(study.best_trials)}
    return TuneProgress(done=done, total=total, best=best,
                        feasible_share=len(feas) / len(complete) if complete else 0.0)


def _trials_frame(study: Any) -> pl.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        m = t.user_attrs.get("metrics") or {}
        rows.append({
            "number": t.number, "state": t.state.name,
            "values": [float(v) for v in t.values] if t.values is not None else None,
            "feasible": bool(t.user_attrs.get("feasible", False)),
            "quality": m.get("quality"), "cost_per_request": m.get("cost_per_request"),
            "latency_p95_ms": m.get("latency_p95_ms"),
            "params": json.dumps(t.params, sort_keys=True),
            "error": t.user_attrs.get("error"),
        })
    schema = {"number": pl.Int64, "state": pl.String, "values": pl.List(pl.Float64),
              "feasible": pl.Boolean, "quality": pl.Float64, "cost_per_request": pl.Float64,
              "latency_p95_ms": pl.Float64, "params": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema=schema).sort("number")


def _finish(study: Any, url: str, spec: ObjectiveSpec, floor: float | None, base: Policy,
            split: Split, workload: str, test_workload: str | None,
            preds_for: Callable[[Policy], pl.DataFrame | None],
            fast_singles: dict[str, FastMetrics], warns: list[str], seed: int,
            router_models: Sequence[str]) -> TuneResult:
    import optuna

    trials = _trials_frame(study)
    complete = [t for t in study.get_trials(deepcopy=False,
                                            states=(optuna.trial.TrialState.COMPLETE,))
                if "policy" in t.user_attrs]
    feas = [t for t in complete if t.user_attrs.get("feasible")]
    best_t = _choose_best(complete, feas, spec, floor, warns)
    routers: dict[str, Any] = {}

    def holdout_router(policy: Policy) -> Any:
        if not policy.uses_router():
            return None
        assert policy.router is not None
        key = policy.router.model_dump_json()
        if key not in routers:
            routers[key] = _fit_router(split.train_items, split.train_outcomes, router_models,
                                       policy.router)
        return routers[key]

    if best_t is None:
        best_policy = base
        warns.append("no trial completed; reporting the base policy")
    else:
        best_policy = Policy.from_json(best_t.user_attrs["policy"], source="best trial")
    tr = rp.replay(best_policy, split.train_items, split.train_outcomes,
                   router=preds_for(best_policy), seed=seed)
    ho = rp.replay(best_policy, split.holdout_items, split.holdout_outcomes,
                   router=holdout_router(best_policy), seed=seed)
    train_m, hold_m = report(tr.metrics), report(ho.metrics)
    lo, hi = ho.metrics.quality_ci
    if math.isfinite(lo) and not lo <= tr.metrics.quality <= hi:
        warns.append(
            f"train quality {tr.metrics.quality:.4f} lies outside the holdout's 95% CI "
            f"[{lo:.4f}, {hi:.4f}] (holdout {ho.metrics.quality:.4f}): the tuned thresholds "
            "may not carry over; consider more items or fewer tuned parameters"
        )
    if floor is not None and math.isfinite(ho.metrics.quality) and ho.metrics.quality < floor:
        warns.append(f"holdout quality {ho.metrics.quality:.4f} is below the floor {floor:.4f}")
    if spec.budget is not None and ho.metrics.cost_per_request > spec.budget:
        warns.append(f"holdout cost ${ho.metrics.cost_per_request:.6g}/request is above the "
                     f"budget ${spec.budget:.6g}")

    # singles and oracle on both splits (baselines of the replays)
    single_rows = []
    oracle: dict[str, dict[str, Any]] = {}
    for split_name, res in (("train", tr), ("holdout", ho)):
        for key, m in res.baselines.items():
            if key.startswith("single:"):
                single_rows.append({
                    "model": key.removeprefix("single:"), "split": split_name,
                    "quality": m.quality, "quality_lo": m.quality_ci[0],
                    "quality_hi": m.quality_ci[1], "cost_per_request": m.cost_per_request,
                    "latency_p95_ms": m.latency_p95_ms,
                })
            elif key == "oracle":
                oracle[split_name] = report(m)
    singles = pl.DataFrame(single_rows, schema={
        "model": pl.String, "split": pl.String, "quality": pl.Float64,
        "quality_lo": pl.Float64, "quality_hi": pl.Float64, "cost_per_request": pl.Float64,
        "latency_p95_ms": pl.Float64})

    pareto = _pareto_frame(feas or complete, split, holdout_router)
    provenance = Provenance(
        workload=workload, study=study.study_name,
        trial=best_t.number if best_t is not None else None,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        package_version=_version(), train_metrics=train_m, holdout_metrics=hold_m,
    )
    best_policy = best_policy.model_copy(update={"provenance": provenance})
    return TuneResult(
        study_name=study.study_name, storage=_redact(url), workload=workload,
        test_workload=test_workload, objective=spec, quality_floor=floor,
        best_trial=best_t.number if best_t is not None else None, best_policy=best_policy,
        train=train_m, holdout=hold_m, pareto=pareto, trials=trials, singles=singles,
        oracle=oracle, split=split.description, n_trials=len(trials),
        warnings=tuple(warns),
    )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("workbench")
    except Exception:
        return "unknown"


def _choose_best(complete: list[Any], feas: list[Any], spec: ObjectiveSpec,
                 floor: float | None, warns: list[str]) -> Any:
    if not complete:
        return None
    if not feas:
        warns.append("no trial met the constraints; reporting the least-violating trial")
        return min(complete, key=lambda t: sum(max(v, 0.0) for v in t.constraints.values()))

    def m(t: Any, key: str) -> float:
        v = (t.user_attrs.get("metrics") or {}).get(key)
        return float(v) if v is not None else math.nan

    if spec.kind == "min-cost":
        return min(feas, key=lambda t: (t.values[0], -m(t, "quality"), t.number))
    if spec.kind in ("max-quality", "weighted"):
        return min(feas, key=lambda t: (-t.values[0], m(t, "cost_per_request"), t.number))
    # pareto: cheapest meeting the floor; else best within budget; else the knee
    if floor is not None:
        return min(feas, key=lambda t: (m(t, "cost_per_request"), -m(t, "quality")))
    if spec.budget is not None:
        return max(feas, key=lambda t: (m(t, "quality"), -m(t, "cost_per_request")))
    q = np.array([m(t, "quality") for t in feas])
    c = np.array([m(t, "cost_per_request") for t in feas])
    qn = (q - q.min()) / (np.ptp(q) or 1.0)
    cn = (c - c.min()) / (np.ptp(c) or 1.0)
    return feas[int(np.argmax(qn - cn))]


def _pareto_frame(trials: list[Any], split: Split,
                  holdout_router: Callable[[Policy], Any]) -> pl.DataFrame:
    schema = {"number": pl.Int64, "quality": pl.Float64, "cost_per_request": pl.Float64,
              "latency_p95_ms": pl.Float64, "holdout_quality": pl.Float64,
              "holdout_cost_per_request": pl.Float64, "holdout_latency_p95_ms": pl.Float64,
              "summary": pl.String,
              "policy": pl.String}
    if not trials:
        return pl.DataFrame(schema=schema)
    q = np.array([(t.user_attrs["metrics"].get("quality") or 0.0) for t in trials])
    c = np.array([(t.user_attrs["metrics"].get("cost_per_request") or 0.0) for t in trials])
    pts = np.column_stack([-q, c])
    # de-duplicate equal points (keep the first trial) before the dominance test
    _, first = np.unique(pts, axis=0, return_index=True)
    keep_idx = np.sort(first)
    mask = _pareto_mask(pts[keep_idx])
    front = [trials[i] for i in keep_idx[mask]]
    front.sort(key=lambda t: t.user_attrs["metrics"]["cost_per_request"])
    front = front[:MAX_FRONT_REPLAYS]
    rows = []
    evaluators: dict[str, FastEvaluator] = {}
    for t in front:
        policy = Policy.from_json(t.user_attrs["policy"], source=f"trial {t.number}")
        router = holdout_router(policy)
        key = policy.router.model_dump_json() if router is not None and policy.router else ""
        if key not in evaluators:
            evaluators[key] = FastEvaluator(split.holdout_items, split.holdout_outcomes, router)
        ho = evaluators[key].evaluate(policy, latency=True)
        mt = t.user_attrs["metrics"]
        rows.append({
            "number": t.number, "quality": mt.get("quality"),
            "cost_per_request": mt.get("cost_per_request"),
            "latency_p95_ms": mt.get("latency_p95_ms"),
            "holdout_quality": ho.quality, "holdout_cost_per_request": ho.cost_per_request,
            "holdout_latency_p95_ms": ho.latency_p95_ms,
            "summary": policy_summary(policy), "policy": t.user_attrs["policy"],
        })
    return pl.DataFrame(rows, schema=schema)


def policy_summary(policy: Policy) -> str:
    """One line naming the tiers, thresholds and pre-routing (plot hover text)."""
    parts = []
    for i, t in enumerate(policy.tiers):
        last = i == len(policy.tiers) - 1
        parts.append(t.model if last else f"{t.model} (accept >= {t.accept_above:.3f})")
    text = " -> ".join(parts)
    pre = policy.preroute
    if isinstance(pre, RulesPreroute):
        text = f"preroute_below {pre.preroute_below:.3f}; " + text
    elif isinstance(pre, LearnedPreroute):
        text = f"learned entry, cost_weight {pre.cost_weight:.4g}; " + text
    return text


def _record_study(home: Any, name: str, url: str, workload: str, spec: ObjectiveSpec) -> None:
    """Record the study in the catalog (masked URL: the catalog never holds a password)."""
    try:
        from workbench.catalog import Catalog
    except ImportError:
        return
    Catalog(home).save_study(name, storage=_redact(url), workload=workload,
                             objective=spec.kind, replace=True)


def front_vs_singles(result: TuneResult, split: str = "holdout", tol: float = 1e-9,
                     cost_rtol: float = 0.005) -> pl.DataFrame:
    """Per single model on `split`: whether some tuned front policy reaches its quality at no
    more cost (`matched`), and whether one is also better on one axis (`dominated`: higher
    quality, or cost lower by more than `cost_rtol`, so rounding-level savings do not count)."""
    q_col = "quality" if split == "train" else "holdout_quality"
    c_col = "cost_per_request" if split == "train" else "holdout_cost_per_request"
    fq = result.pareto[q_col].to_numpy()
    fc = result.pareto[c_col].to_numpy()
    rows = []
    for model, q, c in result.singles.filter(pl.col("split") == split).select(
            "model", "quality", "cost_per_request").iter_rows():
        weak = (fq >= q - tol) & (fc <= c + tol)
        strict = weak & ((fq > q + tol) | (fc < c * (1.0 - cost_rtol)))
        rows.append({"model": model, "quality": q, "cost_per_request": c,
                     "matched": bool(weak.any()), "dominated": bool(strict.any())})
    return pl.DataFrame(rows, schema={"model": pl.String, "quality": pl.Float64,
                                      "cost_per_request": pl.Float64, "matched": pl.Boolean,
                                      "dominated": pl.Boolean})


@dataclass(frozen=True)
class TrialReport:
    """One trial's policy with its train and holdout metrics (95% bootstrap CIs)."""

    number: int
    policy: Policy
    train: dict[str, Any]
    holdout: dict[str, Any]


def evaluate_trial(store: Any, result: TuneResult, number: int) -> TrialReport:
    """Train and holdout metrics of any trial of `result`'s study, on the same split, with a
    learned router cross-fitted / fitted on the train items only (as for the best trial)."""
    study = load_study(result.storage, result.study_name)
    policy = trial_policy(result.storage, result.study_name, number)
    split = make_split(store, result.workload, holdout=result.holdout_share, seed=result.seed,
                       test_workload=result.test_workload)
    train_router = hold_router = None
    if policy.uses_router():
        assert policy.router is not None
        # the same model set, in the same order, as the study's router predictions
        models = study.user_attrs.get("router_models") or list(policy.tier_models)
        train_router = _train_predictions(split.train_items, split.train_outcomes, models,
                                          policy.router)
        hold_router = _fit_router(split.train_items, split.train_outcomes, models,
                                  policy.router)
    tr = rp.replay(policy, split.train_items, split.train_outcomes, router=train_router,
                   seed=result.seed)
    ho = rp.replay(policy, split.holdout_items, split.holdout_outcomes, router=hold_router,
                   seed=result.seed)
    train_m, hold_m = report(tr.metrics), report(ho.metrics)
    prov = Provenance(workload=result.workload, study=result.study_name, trial=number,
                      created=datetime.now(UTC).isoformat(timespec="seconds"),
                      package_version=_version(), train_metrics=train_m,
                      holdout_metrics=hold_m)
    return TrialReport(number, policy.model_copy(update={"provenance": prov}), train_m, hold_m)


# -- reading studies back ----------------------------------------------------------------
def load_study(storage: str, study_name: str) -> Any:
    """An existing Optuna study; NotFound-style error listing the stored study names."""
    import optuna

    _quiet_optuna()
    st = open_storage(storage)
    try:
        return optuna.load_study(study_name=study_name, storage=st)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st)]
        raise WorkbenchError(
            f"no study {study_name!r} in {_redact(storage)}; studies: {', '.join(names) or 'none'}"
        ) from None


def trial_policy(storage: str, study_name: str, number: int) -> Policy:
    """The full policy a trial evaluated (stored as its `policy` user attribute)."""
    study = load_study(storage, study_name)
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            text = t.user_attrs.get("policy")
            if text is None:
                raise WorkbenchError(
                    f"trial {number} of {study_name!r} has no policy "
                    f"({t.state.name}; {t.user_attrs.get('error', 'not evaluated')})"
                )
            return Policy.from_json(text, source=f"{study_name} trial {number}")
    raise WorkbenchError(f"study {study_name!r} has no trial {number}")


def study_trials(storage: str, study_name: str) -> pl.DataFrame:
    """The trials frame of a stored study (number, state, values, feasible, metrics, params)."""
    return _trials_frame(load_study(storage, study_name))


__all__ = [
    "OBJECTIVES", "FastEvaluator", "FastMetrics", "ObjectiveSpec", "Param", "Split",
    "TrialReport", "TuneProgress", "TuneResult", "apply_params", "evaluate_trial", "default_base_policy", "front_vs_singles",
    "frontier", "upper_hull",
    "load_study", "make_split", "open_storage", "parse_floor", "policy_summary", "report",
    "search_space", "storage_url", "strata_columns", "study_trials", "trial_policy", "tune",
]
