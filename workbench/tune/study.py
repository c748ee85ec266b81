"""Running a study: the Optuna loop over the search space with constraints, resumable and
shareable between workers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from typing import Any

from workbench.errors import WorkbenchError
from workbench.policy import Policy
from workbench.tune.objective import ObjectiveSpec, _constraints, _values_of
from workbench.tune.problem import SAMPLERS, Problem, StudySettings, prepare
from workbench.tune.reports import TuneProgress, TuneResult, _finish
from workbench.tune.screen import screen
from workbench.tune.space import _get_path, _in_range, apply_params
from workbench.tune.storage import (
    _REAL_URLS,
    IN_MEMORY,
    _check_or_set_attrs,
    _existing_trials,
    _quiet_optuna,
    _record_study,
    _redact,
    fail_stale_trials,
    open_storage,
    storage_url,
)


def _study_name(workload: str, spec: ObjectiveSpec, base: Policy, settings_: dict[str, Any]
                ) -> str:
    blob = json.dumps({"objective": spec.as_json(), "policy": base.model_dump(mode="json"),
                       **settings_}, sort_keys=True, default=str)
    return f"tune-{workload}-{spec.kind}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def tune(
    store: Any,
    workload: str,
    base_policy: Policy | None,
    settings: StudySettings,
    *,
    progress: Callable[[TuneProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    home: Any = None,
    record: bool = True,
) -> TuneResult:
    """Run (or resume) a study tuning `base_policy` (None: the workload's default) on
    `workload`'s train split and report the best policy's train and holdout metrics with 95%
    bootstrap CIs. `settings.trials` new trials are run by this call (several workers may
    share one study through `settings.storage`, each with its own `worker` index)."""
    _quiet_optuna()
    t_start = time.perf_counter()
    problem = prepare(store, workload, base_policy, settings, home)
    url = storage_url(settings.storage, home)
    _REAL_URLS[_redact(url)] = url
    study = _open_study(problem, url)
    done = 0

    def callback(study_: Any, frozen: Any) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(_progress(study_, done, settings.trials, settings.objective))
        if should_stop is not None and should_stop():
            study_.stop()

    t_opt = time.perf_counter()
    if settings.trials:
        study.optimize(_objective(problem), n_trials=settings.trials, callbacks=[callback])
    t_rep = time.perf_counter()
    result = _finish(study, url, problem)
    t_end = time.perf_counter()
    result = dataclasses.replace(result, timings={
        "prepare_s": t_opt - t_start, "optimize_s": t_rep - t_opt, "report_s": t_end - t_rep,
    }, holdout_share=settings.holdout, seed=settings.seed)
    if record and url != IN_MEMORY:
        _record_study(home, study.study_name, url, workload, settings.objective)
    return result


def _open_study(problem: Problem, url: str) -> Any:
    """Create or load the study (its attributes must match a resumed one's); the first
    worker of a new study enqueues the base policy's own values as trial 0."""
    import optuna

    s = problem.settings
    spec = s.objective
    st = open_storage(url)
    name = s.study_name or _study_name(problem.workload, spec, problem.base_policy, {
        "holdout": s.holdout, "test": s.test_workload, "seed": s.seed, "fixed": dict(s.fixed),
        "candidates": list(s.candidates), "methods": list(s.router_methods),
        "sampler": s.sampler,
    })
    attrs = {
        "workload": problem.workload, "test_workload": s.test_workload, "holdout": s.holdout,
        "split_seed": s.seed, "objective": spec.as_json(), "quality_floor": problem.floor,
        "base_policy": problem.base_policy.to_json(indent=None), "fixed": dict(s.fixed),
        "candidates": list(s.candidates), "router_methods": list(s.router_methods),
        "space": [p.path for p in problem.space], "router_models": problem.router_models,
    }
    existing = _existing_trials(st, name)
    sampler = make_sampler(s.sampler, sampler_seed(s.seed, s.worker, existing), s.trials)
    try:
        study = optuna.create_study(storage=st, study_name=name, sampler=sampler,
                                    directions=spec.directions, load_if_exists=True)
    except Exception as exc:
        raise WorkbenchError(f"cannot open study {name!r} in {_redact(url)}: {exc}") from None
    _check_or_set_attrs(study, attrs)
    fail_stale_trials(study)  # trials left running by workers that died
    if existing == 0 and problem.space and s.worker == 0:  # one worker seeds the base point
        values = {p.path: _get_path(problem.base, p.path) for p in problem.space}
        study.enqueue_trial({k: v for k, v in values.items() if _in_range(problem.space, k, v)},
                            skip_if_exists=True)
        for values in screen(problem, keep=min(10, max(1, s.trials // 5))):
            study.enqueue_trial({k: v for k, v in values.items()
                                 if _in_range(problem.space, k, v)}, skip_if_exists=True)
    return study


def _objective(problem: Problem) -> Callable[[Any], Any]:
    """The Optuna objective: sample the space, evaluate the policy on train, record its
    constraints, metrics and full policy on the trial."""
    spec = problem.settings.objective
    directions = spec.directions
    worst_cost = float(sum(max(problem.mean_cost.values(), default=0.0)
                           for _ in problem.base.tiers)) + 1.0
    worst = [0.0 if d == "maximize" else worst_cost for d in directions]
    if spec.kind == "pareto" and spec.latency:
        worst[-1] = 1e9

    def objective_fn(trial: Any) -> Any:
        trial.set_user_attr("worker", problem.settings.worker)  # whose trial, if it goes stale
        values = {p.path: p.suggest(trial) for p in problem.space}
        try:
            policy = apply_params(problem.base, values, problem.specs)
            fm = problem.evaluator(policy).evaluate(policy, latency=spec.latency)
        except WorkbenchError as exc:
            trial.set_user_attr("error", str(exc)[:500])
            for key, val in _constraints(None, problem.floor, spec.budget).items():
                trial.set_constraint(key, val)
            trial.set_user_attr("feasible", False)
            return worst if len(worst) > 1 else worst[0]
        cons = _constraints(fm, problem.floor, spec.budget)
        for key, val in cons.items():
            trial.set_constraint(key, val)
        trial.set_user_attr("feasible", all(v <= 0 for v in cons.values()))
        trial.set_user_attr("metrics", fm.as_json())
        trial.set_user_attr("policy", policy.to_json(indent=None))
        out = _values_of(fm, spec)
        out = [v if math.isfinite(v) else w for v, w in zip(out, worst, strict=True)]
        return out if len(out) > 1 else out[0]

    return objective_fn


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


__all__ = ["SAMPLERS", "StudySettings", "make_sampler", "sampler_seed", "tune"]
