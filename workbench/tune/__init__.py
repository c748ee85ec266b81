"""Tune a routing policy's thresholds and tier choices with Optuna against cost and quality.

Objectives (`objective`): `min-cost` (minimise cost per request subject to quality >= floor),
`max-quality` (maximise quality subject to cost per request <= budget), `weighted` (maximise
quality - weight x cost, weight in quality points per US dollar) and `pareto` (quality up,
cost down, optionally p95 latency down). Constraints are recorded on each trial with Optuna's
`Trial.set_constraint`, so infeasible trials are known as such, and a trial's feasibility is
also a user attribute.

Held-out discipline (`split`): items are split (seeded, stratified) into train and holdout, or
an imported test workload is the holdout; trials only ever see train items (learned-router
predictions on train are cross-fitted out of fold), and the holdout is replayed once per
reported policy with a router fitted on train only.

A trial (`evaluate`) runs the policy kernel over the train items; the workload's facts and
every threshold-independent array are memoised, so a trial costs a few vectorized passes.
The modules: objective, space (search space), evaluate, split, problem (settings and the
prepared train side), storage, study (the loop), reports, base (a default base policy).
"""

from workbench.tune.base import default_base_policy, frontier, upper_hull
from workbench.tune.evaluate import FastEvaluator, FastMetrics
from workbench.tune.objective import OBJECTIVES, Objective, ObjectiveSpec, parse_floor
from workbench.tune.problem import SAMPLERS, StudySettings
from workbench.tune.reports import (
    TrialReport,
    TuneProgress,
    TuneResult,
    evaluate_trial,
    front_vs_singles,
    policy_summary,
    report,
)
from workbench.tune.space import Param, apply_params, cost_weight_range, search_space
from workbench.tune.split import STRATA_COLUMNS, Split, make_split, strata_columns
from workbench.tune.storage import (
    IN_MEMORY,
    load_study,
    open_storage,
    storage_url,
    study_trials,
    trial_policy,
)
from workbench.tune.study import make_sampler, sampler_seed, tune

__all__ = [
    "IN_MEMORY", "OBJECTIVES", "SAMPLERS", "STRATA_COLUMNS", "FastEvaluator", "FastMetrics",
    "Objective", "ObjectiveSpec", "Param", "Split", "StudySettings", "TrialReport", "TuneProgress", "TuneResult",
    "apply_params", "cost_weight_range", "default_base_policy", "evaluate_trial",
    "front_vs_singles", "frontier", "load_study", "make_sampler", "make_split", "open_storage",
    "parse_floor", "policy_summary", "report", "sampler_seed", "search_space", "storage_url",
    "strata_columns", "study_trials", "trial_policy", "tune", "upper_hull",
]
