"""Reopen a finished study as the result it produced, so the Tune page opens on the last
study (Home's or another session's) rather than on an empty form.

A study stores what it was run with (objective, base policy, split, candidates) as user
attributes; running it again with zero new trials rebuilds the same report from its trials.
"""

from __future__ import annotations

from typing import Any

from workbench.errors import WorkbenchError
from workbench.policy import Policy
from workbench.tune.objective import ObjectiveSpec
from workbench.tune.problem import StudySettings
from workbench.tune.reports import TuneResult
from workbench.tune.storage import load_study
from workbench.tune.study import tune


def settings_of(storage: str, study_name: str) -> tuple[str, Policy, StudySettings]:
    """(workload, base policy, settings with no new trials) a stored study was run with."""
    study = load_study(storage, study_name)
    a = study.user_attrs
    missing = [k for k in ("workload", "objective", "base_policy", "holdout", "split_seed")
               if k not in a]
    if missing:
        raise WorkbenchError(f"study {study_name!r} was not made by the workbench's tuner "
                             f"(it lacks {', '.join(missing)}); it cannot be reopened")
    settings = StudySettings(
        objective=ObjectiveSpec(**a["objective"]), trials=0, holdout=float(a["holdout"]),
        test_workload=a.get("test_workload"), storage=storage, study_name=study_name,
        seed=int(a["split_seed"]), fixed=a.get("fixed") or {},
        candidates=tuple(a.get("candidates") or ()),
        router_methods=tuple(a.get("router_methods") or ()))
    base = Policy.from_json(a["base_policy"], source=f"study {study_name}")
    return a["workload"], base, settings


def reopen(store: Any, storage: str, study_name: str, *, home: Any = None) -> TuneResult:
    """The result of a stored study, rebuilt from its trials (no trial is run)."""
    workload, base, settings = settings_of(storage, study_name)
    if not store.exists(workload):
        raise WorkbenchError(f"study {study_name!r} tuned workload {workload!r}, which is no "
                             "longer stored")
    return tune(store, workload, base, settings, home=home, record=False)
