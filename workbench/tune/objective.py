"""What a study optimises: objectives, quality floors, constraint values and the choice of the best trial."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from workbench.errors import WorkbenchError
from workbench.tune.evaluate import FastMetrics

OBJECTIVES = ("min-cost", "max-quality", "weighted", "pareto")


Objective = Literal["min-cost", "max-quality", "weighted", "pareto"]


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
