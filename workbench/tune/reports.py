"""What a study run reports: train and holdout metrics of the best trial with CIs, the Pareto
front replayed on the holdout, baselines, whether routing pays (the best policy against the
best single model and the random mix, paired on the holdout) and any trial's own report."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from workbench import replay as rp
from workbench.errors import WorkbenchError
from workbench.metrics import Metrics
from workbench.policy import (
    LearnedPreroute,
    Policy,
    Provenance,
    RulesPreroute,
)
from workbench.routing_pays import RoutingVerdict, routing_pays
from workbench.tune.evaluate import FastEvaluator, _fit_router, _train_predictions
from workbench.tune.objective import ObjectiveSpec, _best_single, _choose_best, _pareto_mask
from workbench.tune.problem import Problem
from workbench.tune.space import _single_like, apply_params
from workbench.tune.split import Split, make_split
from workbench.tune.storage import _redact, _trials_frame, load_study, trial_policy

REPORT_KEYS = (
    "quality", "quality_ci", "cost_per_request", "cost_per_success", "latency_p50_ms",
    "latency_p95_ms", "escalation_rate", "refusal_rate", "answered_by", "n",
)


MAX_FRONT_REPLAYS = 100


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
    routing: RoutingVerdict | None = None
    simpler_policy: Policy | None = None
    simpler_train: dict[str, Any] | None = None
    simpler_holdout: dict[str, Any] | None = None
    routing_note: str = ""

    @property
    def preferred_policy(self) -> Policy:
        """The policy to deploy: the simpler one when routing does not pay (and a single model
        meets the objective on train), else the tuned best policy."""
        return self.simpler_policy if self.simpler_policy is not None else self.best_policy

    def routing_json(self) -> dict[str, Any] | None:
        """The `routing` block: the verdict plus the preferred policy and its metrics."""
        if self.routing is None:
            return None
        out = self.routing.as_json()
        simpler = self.simpler_policy
        out["preferred"] = {
            "policy": self.preferred_policy.name,
            "simpler": simpler is not None,
            "model": simpler.tier_models[0] if simpler is not None else None,
            "train": self.simpler_train, "holdout": self.simpler_holdout,
            "note": self.routing_note,
        }
        return out

    def as_json(self) -> dict[str, Any]:
        """The CLI's JSON: `train`/`holdout` metrics plus study information and `routing`
        (does routing pay, on the holdout; the preferred policy)."""
        return {
            "study": self.study_name, "storage": self.storage, "workload": self.workload,
            "test_workload": self.test_workload, "objective": self.objective.as_json(),
            "quality_floor": self.quality_floor, "best_trial": self.best_trial,
            "n_trials": self.n_trials, "split": self.split,
            "train": self.train, "holdout": self.holdout,
            "singles": self.singles.to_dicts(), "oracle": self.oracle,
            "pareto": self.pareto.drop("policy").to_dicts(),
            "warnings": list(self.warnings), "routing": self.routing_json(),
        }


def report(m: Metrics) -> dict[str, Any]:
    """The evaluate keys of a Metrics (JSON-ready)."""
    d = m.as_dict()
    return {k: d[k] for k in REPORT_KEYS if k in d} | {
        "cost_per_request_ci": d.get("cost_per_request_ci"),
    }


def _finish(study: Any, url: str, problem: Problem) -> TuneResult:
    """The study's report: best trial (or the base policy) replayed on train and holdout with
    CIs, warnings, single models and oracle on both splits, the front on the holdout."""
    import optuna

    spec, floor, split = problem.settings.objective, problem.floor, problem.split
    workload, test_workload = problem.workload, problem.settings.test_workload
    seed, warns, base = problem.settings.seed, problem.warnings, problem.base
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
            routers[key] = _fit_router(split.train_items, split.train_outcomes,
                                       problem.router_models,
                                       policy.router)
        return routers[key]

    if best_t is None:
        best_policy = base
        warns.append("no trial completed; reporting the base policy")
    else:
        best_policy = Policy.from_json(best_t.user_attrs["policy"], source="best trial")
    tr = rp.replay(best_policy, split.train_items, split.train_outcomes,
                   router=problem.train_predictions(best_policy), seed=seed)
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
    verdict = _verdict(problem, ho, warns)
    simpler, note = _simpler(problem, best_policy, verdict) if verdict is not None \
        else (None, "")
    routing_js = verdict.as_json() if verdict is not None else None
    created = datetime.now(UTC).isoformat(timespec="seconds")
    provenance = Provenance(
        workload=workload, study=study.study_name,
        trial=best_t.number if best_t is not None else None,
        created=created, package_version=_version(), train_metrics=train_m,
        holdout_metrics=hold_m, routing=routing_js,
    )
    best_policy = best_policy.model_copy(update={"provenance": provenance})
    simpler_policy = simpler_train = simpler_hold = None
    if simpler is not None:
        simpler_policy, simpler_train, simpler_hold = simpler
        simpler_policy = simpler_policy.model_copy(update={"provenance": Provenance(
            workload=workload, study=study.study_name, trial=None, created=created,
            package_version=_version(), train_metrics=simpler_train,
            holdout_metrics=simpler_hold, routing=routing_js)})
    return TuneResult(
        study_name=study.study_name, storage=_redact(url), workload=workload,
        test_workload=test_workload, objective=spec, quality_floor=floor,
        best_trial=best_t.number if best_t is not None else None, best_policy=best_policy,
        train=train_m, holdout=hold_m, pareto=pareto, trials=trials, singles=singles,
        oracle=oracle, split=split.description, n_trials=len(trials),
        warnings=tuple(warns), routing=verdict, simpler_policy=simpler_policy,
        simpler_train=simpler_train, simpler_holdout=simpler_hold, routing_note=note,
    )


def _verdict(problem: Problem, ho: rp.ReplayResult, warns: list[str]) -> RoutingVerdict | None:
    """Does routing pay: the best policy's holdout replay paired per item with every single
    model on the holdout; the best single model is the one with the best *train* quality, so
    the holdout judges the choice instead of making it."""
    split = problem.split
    reference = _best_single(problem.singles)[0] if problem.singles else None
    try:
        return routing_pays(ho, split.holdout_items, split.holdout_outcomes,
                            reference=reference, seed=problem.settings.seed)
    except WorkbenchError as exc:
        warns.append(f"cannot tell whether routing pays: {exc}")
        return None


def _simpler_model(problem: Problem) -> str | None:
    """The single model the objective picks on train: min-cost, the cheapest meeting the
    floor; max-quality, the best within the budget; weighted, the best quality - weight x
    cost; pareto, the best quality. None when no single model meets the constraint."""
    spec, singles = problem.settings.objective, problem.singles
    rows = {m: (fm.quality, fm.cost_per_request) for m, fm in singles.items()
            if math.isfinite(fm.quality) and math.isfinite(fm.cost_per_request)}
    if not rows:
        return None
    if spec.kind == "min-cost" and problem.floor is not None:
        ok = [m for m, (q, _) in rows.items() if q >= problem.floor]
        return min(ok, key=lambda m: (rows[m][1], -rows[m][0], m)) if ok else None
    if spec.kind == "max-quality" and spec.budget is not None:
        ok = [m for m, (_, c) in rows.items() if c <= spec.budget]
        return max(ok, key=lambda m: (rows[m][0], -rows[m][1], m)) if ok else None
    if spec.kind == "weighted" and spec.weight is not None:
        w = spec.weight
        return max(rows, key=lambda m: (rows[m][0] - w * rows[m][1], -rows[m][1], m))
    return max(rows, key=lambda m: (rows[m][0], -rows[m][1], m))


def _simpler(problem: Problem, best: Policy, verdict: RoutingVerdict
             ) -> tuple[tuple[Policy, dict[str, Any], dict[str, Any]] | None, str]:
    """When routing does not pay: the single-model policy the objective picks on train, with
    its train and holdout metrics, and a sentence saying what is preferred (no policy when
    routing pays, when the best policy already is that one model, or when no single model
    meets the objective)."""
    if verdict.pays:
        return None, "routing pays: the tuned policy is preferred"
    model = _simpler_model(problem)
    if model is None:
        return None, ("no single model meets the objective on train, so the tuned policy is "
                      f"kept; a random mix ({verdict.mix.label}) would do as well")
    if best.used_models == (model,) and best.preroute is None:
        return None, f"the tuned policy already is {model} alone"
    policy = apply_params(_single_like(problem.base, model, problem.specs), {})
    policy = policy.model_copy(update={"name": f"{best.name}-{model}",
                                       "description": f"{model} alone: routing does not pay "
                                       f"on {problem.workload}"})
    split, seed = problem.split, problem.settings.seed
    tr = rp.replay(policy, split.train_items, split.train_outcomes, seed=seed)
    ho = rp.replay(policy, split.holdout_items, split.holdout_outcomes, seed=seed)
    hm = ho.metrics
    ratio = hm.cost_per_request / verdict.policy_cost if verdict.policy_cost > 0 else math.inf
    note = (f"preferring the simpler policy {model} alone, the single model the objective "
            f"picks on train: holdout quality {hm.quality:.3f} at "
            f"${hm.cost_per_request:.6g}/request ({ratio:.2f}x the tuned policy's cost)")
    return (policy, report(tr.metrics), report(hm)), note


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("workbench")
    except Exception:
        return "unknown"


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
    """One trial's policy with its train and holdout metrics (95% bootstrap CIs) and whether
    routing pays on the holdout (None when it cannot be told)."""

    number: int
    policy: Policy
    train: dict[str, Any]
    holdout: dict[str, Any]
    routing: RoutingVerdict | None = None


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
    # the same best single model as the study's own verdict (chosen on train)
    reference = result.routing.best_single.against if result.routing is not None else None
    try:
        verdict: RoutingVerdict | None = routing_pays(
            ho, split.holdout_items, split.holdout_outcomes, reference=reference,
            seed=result.seed)
    except WorkbenchError:
        verdict = None
    prov = Provenance(workload=result.workload, study=result.study_name, trial=number,
                      created=datetime.now(UTC).isoformat(timespec="seconds"),
                      package_version=_version(), train_metrics=train_m,
                      holdout_metrics=hold_m,
                      routing=verdict.as_json() if verdict is not None else None)
    return TrialReport(number, policy.model_copy(update={"provenance": prov}), train_m, hold_m,
                       verdict)
