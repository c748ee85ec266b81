"""Screening a study's discrete choices before the sampler starts: every combination of the
categorical parameters (tier models, agreement partners, router method) is evaluated on train
with the continuous ones at their base values, and the most promising are enqueued as the
first trials. TPE rarely finds the one good (cheap model, partner, strong model) triple among
a thousand by sampling; the kernel evaluates all of them in about a second."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.tune.objective import ObjectiveSpec, _constraints, _pareto_mask, _values_of
from workbench.tune.problem import Problem
from workbench.tune.space import Param, _get_path, apply_params

MAX_COMBINATIONS = 5000  # beyond this the screen would cost more than the study
MAX_EVALUATIONS = 6000  # with the threshold grid; beyond, thresholds stay at base values
GRID = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)  # for thresholds in [0, 1]


def combinations(space: Sequence[Param]) -> int:
    """How many combinations of the categorical parameters the space holds."""
    return math.prod(len(p.choices) for p in space if p.kind == "categorical")


def screen(problem: Problem, keep: int) -> list[dict[str, Any]]:
    """Up to `keep` trial parameter sets (full, ready for `enqueue_trial`), the best on train
    under the study's objective and constraints, each a distinct categorical combination.
    Empty when the space has no categorical parameter or too many combinations."""
    cats = [p for p in problem.space if p.kind == "categorical"]
    if not cats or keep < 1 or combinations(problem.space) > MAX_COMBINATIONS:
        return []
    spec = problem.settings.objective
    rest = {p.path: _get_path(problem.base, p.path) for p in problem.space
            if p.kind != "categorical"}
    # thresholds in [0, 1] are tried on a grid too when the space is small enough: a model
    # pair only shows its worth at the right confidence threshold
    grid = [p for p in problem.space if p.kind == "float" and p.low == 0.0 and p.high == 1.0]
    per = [sorted({*GRID, float(rest[p.path])}) for p in grid]
    if combinations(problem.space) * math.prod(len(v) for v in per) > MAX_EVALUATIONS:
        grid, per = [], []
    rows: list[tuple[dict[str, Any], list[float], float]] = []
    seen: set[str] = set()
    for combo in itertools.product(*(p.choices for p in cats), *per):
        values = {**rest, **{p.path: v for p, v in zip([*cats, *grid], combo, strict=True)}}
        try:
            policy = apply_params(problem.base, values, problem.specs)
        except WorkbenchError:
            continue  # e.g. the same model on two tiers
        key = policy.model_dump_json(include={"tiers", "preroute", "router"})
        if key in seen:  # e.g. a partner dropped because it is a later tier
            continue
        seen.add(key)
        try:
            fm = problem.evaluator(policy).evaluate(policy, latency=False)
        except WorkbenchError:
            continue
        cons = _constraints(fm, problem.floor, spec.budget)
        violation = sum(max(v, 0.0) for v in cons.values())
        rows.append((values, _values_of(fm, _no_latency(spec)), violation))
    return _best(rows, spec, keep)


def _no_latency(spec: ObjectiveSpec) -> ObjectiveSpec:
    if not spec.latency:
        return spec
    return ObjectiveSpec(kind=spec.kind, quality_floor=spec.quality_floor,
                         relative_floor=spec.relative_floor, budget=spec.budget,
                         weight=spec.weight)


def _best(rows: list[tuple[dict[str, Any], list[float], float]], spec: ObjectiveSpec,
          keep: int) -> list[dict[str, Any]]:
    """Feasible rows first, best objective first (the Pareto front, cheapest first, for
    pareto); then the least-violating infeasible ones, so the sampler starts near the floor."""
    ok = [r[2] <= 0 and all(math.isfinite(v) for v in r[1]) for r in rows]
    feas = [r for r, good in zip(rows, ok, strict=True) if good]
    infeas = sorted((r for r, good in zip(rows, ok, strict=True) if not good),
                    key=lambda r: r[2])
    if spec.kind == "pareto" and feas:
        pts = np.array([[-v[0], v[1]] for _, v, _ in feas])
        front = [feas[i] for i in np.flatnonzero(_pareto_mask(pts))]
        front.sort(key=lambda r: r[1][1])
        step = max(1, len(front) // keep)
        chosen = front[::step][:keep]
    else:
        sign = 1.0 if spec.directions[0] == "minimize" else -1.0
        chosen = sorted(feas, key=lambda r: sign * r[1][0])[:keep]
    chosen += infeas[: max(0, keep - len(chosen))]
    return [values for values, _, _ in chosen]


__all__ = ["MAX_COMBINATIONS", "combinations", "screen"]
