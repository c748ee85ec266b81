"""What a study needs before its first trial: the settings it runs with, and the train side
prepared once (split, base policy, search space, evaluators, single models, the floor)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from workbench import replay as rp
from workbench.errors import WorkbenchError
from workbench.models import ModelSpec
from workbench.policy import Policy
from workbench.tune.base import answering_models, default_base_policy
from workbench.tune.evaluate import FastEvaluator, FastMetrics, _router_models, _train_predictions
from workbench.tune.objective import Objective, ObjectiveSpec, _best_single, parse_floor
from workbench.tune.space import Param, _mean_costs, _single_like, apply_params, search_space
from workbench.tune.split import Split, make_split
from workbench.tune.variants import SEPARATOR, variant_specs

SAMPLERS = ("tpe", "nsga2")


@dataclass(frozen=True)
class StudySettings:
    """How a study runs: the objective, how many new trials, the train/holdout split (share
    or a test workload, seed), where the study is stored and under which name, this worker's
    index, and what is searched (`fixed` fields left out, `candidates` for tier models,
    several `router_methods` to choose from), with which sampler."""

    objective: ObjectiveSpec
    trials: int = 100
    holdout: float = 0.3
    test_workload: str | None = None
    storage: str | None = None
    study_name: str | None = None
    seed: int = 0
    worker: int = 0
    fixed: Mapping[str, Any] = field(default_factory=dict)
    candidates: tuple[str, ...] = ()
    router_methods: tuple[str, ...] = ()
    sampler: str = "tpe"

    def __post_init__(self) -> None:
        if self.trials < 0:
            raise WorkbenchError(f"trials must be >= 0, got {self.trials}")
        if self.sampler not in SAMPLERS:
            raise WorkbenchError(
                f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        object.__setattr__(self, "fixed", dict(self.fixed or {}))
        object.__setattr__(self, "candidates", tuple(dict.fromkeys(self.candidates or ())))
        object.__setattr__(self, "router_methods", tuple(self.router_methods or ()))

    @classmethod
    def create(cls, objective: Objective | ObjectiveSpec, *,
               quality_floor: float | str | None = None, budget: float | None = None,
               weight: float | None = None, latency: bool = False,
               **fields: Any) -> StudySettings:
        """Settings from an objective name and its constraints (`quality_floor` may be
        relative: '95%' = 95% of the best single model's train quality) plus any field."""
        if not isinstance(objective, ObjectiveSpec):
            absolute, relative = parse_floor(quality_floor)
            objective = ObjectiveSpec(kind=objective, quality_floor=absolute,
                                      relative_floor=relative, budget=budget, weight=weight,
                                      latency=latency)
        return cls(objective=objective, **fields)


@dataclass
class Problem:
    """The train side of a study, prepared once: every trial evaluates on it."""

    workload: str
    settings: StudySettings
    base_policy: Policy  # as given (names the study)
    base: Policy  # with the fixed fields applied
    split: Split
    space: tuple[Param, ...]
    specs: dict[str, ModelSpec]
    mean_cost: dict[str, float]
    router_models: list[str]
    singles: dict[str, FastMetrics]
    floor: float | None
    warnings: list[str]
    _preds: dict[str, pl.DataFrame] = field(default_factory=dict)
    _evaluators: dict[str, FastEvaluator] = field(default_factory=dict)

    def train_predictions(self, policy: Policy) -> pl.DataFrame | None:
        """Out-of-fold router predictions for the train items (all models, per method)."""
        if not policy.uses_router():
            return None
        assert policy.router is not None
        key = policy.router.model_dump_json()
        if key not in self._preds:
            self._preds[key] = _train_predictions(
                self.split.train_items, self.split.train_outcomes, self.router_models,
                policy.router)
        return self._preds[key]

    def evaluator(self, policy: Policy) -> FastEvaluator:
        """The train evaluator for this policy's router predictions (shared across trials)."""
        preds = self.train_predictions(policy)
        key = policy.router.model_dump_json() if preds is not None and policy.router else ""
        if key not in self._evaluators:
            self._evaluators[key] = FastEvaluator(self.split.train_items,
                                                  self.split.train_outcomes, preds)
        return self._evaluators[key]


def prepare(store: Any, workload: str, base_policy: Policy | None, settings: StudySettings,
            home: Any = None) -> Problem:
    """Split the workload, build the search space, evaluate the single models on train and
    resolve a relative quality floor; clear errors for unknown candidates or base models."""
    spec = settings.objective
    default = base_policy is None
    if base_policy is None:
        base_policy = default_base_policy(store, workload, home=home)
    fixed = dict(settings.fixed)
    base = apply_params(base_policy, fixed) if fixed else base_policy
    split = make_split(store, workload, holdout=settings.holdout, seed=settings.seed,
                       test_workload=settings.test_workload)
    cands = list(settings.candidates)
    gated = any(t.agree_with is not None for t in base.tiers)
    partners = answering_models(split.train_outcomes) if gated else []
    if default and gated and not cands:  # the default agreement cascade searches every model
        cands = partners
    recorded = sorted(split.train_outcomes["model"].unique().to_list())
    if default and not cands and any(SEPARATOR in m for m in recorded) and \
            len(recorded) >= len(base.tiers):
        cands = recorded  # sample counts (derived <model>@vote<k>) join the search
    known = set(split.train_outcomes["model"].unique().to_list())
    unknown = [m for m in cands if m not in known]
    if unknown:
        raise WorkbenchError(
            f"candidate model(s) {', '.join(unknown)} have no outcomes on {workload!r}; "
            f"models with outcomes: {', '.join(sorted(known))}"
        )
    mean_cost = _mean_costs(split.train_outcomes)
    space = search_space(base, candidates=cands, fixed=fixed, mean_cost=mean_cost,
                         router_methods=list(settings.router_methods), partners=partners)
    specs = {m: ModelSpec(name=m, model=m) for m in cands}
    if cands:  # recorded prices and the catalog's descriptions, for exported policies
        from workbench.compose import model_specs
        from workbench.tune.base import _known_models

        known_specs = model_specs(store, workload, _known_models(home))
        specs.update({m: known_specs[m] for m in cands if m in known_specs})
    specs.update(base.models)
    specs.update(variant_specs([c for c in cands if c not in base.models], specs))
    train_wl = rp.prepare(split.train_items, split.train_outcomes)
    missing = [m for m in base.used_models if m not in train_wl.col]
    if missing:
        raise WorkbenchError(
            f"the base policy uses model(s) with no recorded outcomes on {workload!r}: "
            f"{', '.join(missing)}; models with outcomes: {', '.join(train_wl.col) or 'none'}. "
            "Run those models first or start from the default policy for this workload."
        )
    single_names = [m for m in dict.fromkeys([*base.used_models, *cands]) if m in train_wl.col]
    plain = FastEvaluator(split.train_items, split.train_outcomes)
    singles = {m: plain.evaluate(apply_params(_single_like(base, m, specs), {}), latency=False)
               for m in single_names}
    floor = spec.quality_floor
    warnings = list(split.notes)
    if spec.relative_floor is not None:
        strong, strong_q = _best_single(singles)
        rel = spec.relative_floor * strong_q
        floor = rel if floor is None else max(floor, rel)
        warnings.append(f"quality floor {floor:.4f} = {spec.relative_floor:.0%} of {strong}'s "
                        f"train quality {strong_q:.4f}")
    return Problem(workload, settings, base_policy, base, split, space, specs, mean_cost,
                   _router_models(base, cands), singles, floor, warnings)


__all__ = ["SAMPLERS", "Problem", "StudySettings", "prepare"]
