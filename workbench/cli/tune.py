"""Tuning commands: `tune` (run or resume an Optuna study on a workload's train split and write
the best policy with its train and holdout metrics, and say whether routing pays on the
holdout) and `tune-trial` (export any trial's policy).

Progress goes to stderr; `--json` prints the machine-readable result on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from workbench.cli import add_home
from workbench.errors import WorkbenchError
from workbench.extras import require

ROWS = (
    ("quality", "quality"), ("quality 95% CI", "quality_ci"),
    ("$ / request", "cost_per_request"), ("$ / success", "cost_per_success"),
    ("latency p95 ms", "latency_p95_ms"), ("escalation rate", "escalation_rate"),
    ("refusal rate", "refusal_rate"), ("items", "n"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.6f}" if abs(value) < 0.01 else f"{value:.4f}"
    return str(value)


def _parse_fixed(pairs: list[str] | None) -> dict[str, Any]:
    fixed: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise WorkbenchError(f"--fix expects PATH=VALUE (e.g. tiers.0.accept_above=0.7), "
                                 f"got {pair!r}")
        path, raw = pair.split("=", 1)
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        fixed[path.strip()] = value
    return fixed


def _progress_printer(every: int) -> Any:
    def show(p: Any) -> None:
        if p.done % every and p.done != p.total:
            return
        best = ""
        if p.best and "cost_per_request" in p.best:
            best = (f"; best: quality {_fmt(p.best.get('quality'))} at "
                    f"${_fmt(p.best.get('cost_per_request'))}/request (trial {p.best['number']})")
        elif p.best and "pareto_size" in p.best:
            best = f"; Pareto front: {p.best['pareto_size']} trials"
        print(f"trial {p.done}/{p.total}; feasible {p.feasible_share:.0%}{best}",
              file=sys.stderr, flush=True)

    return show


def _tune(args: argparse.Namespace) -> int:
    """Run or resume a study and write the best policy."""
    require("optuna", "`workbench tune`")
    from workbench import tune as tn
    from workbench.policy import Policy
    from workbench.store import open_store

    if args.test_workload and args.holdout_given:
        raise WorkbenchError("give either --test-workload or --holdout, not both")
    store = open_store(args.home)
    base = Policy.from_file(args.policy) if args.policy else None
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()] \
        if args.candidates else None
    methods = [m.strip() for m in args.router_methods.split(",") if m.strip()] \
        if args.router_methods else None
    settings = tn.StudySettings.create(
        args.objective, quality_floor=args.quality_floor, budget=args.budget,
        weight=args.weight, latency=args.latency, trials=args.trials, holdout=args.holdout,
        test_workload=args.test_workload, storage=args.storage, study_name=args.study,
        seed=args.seed, worker=args.worker, fixed=_parse_fixed(args.fix),
        candidates=tuple(candidates or ()), router_methods=tuple(methods or ()),
        sampler=args.sampler,
    )
    result = tn.tune(store, args.workload, base, settings,
                     progress=_progress_printer(max(1, args.trials // 20)), home=args.home)
    out = simpler_out = None
    if args.out:
        out = result.best_policy.to_file(args.out)
        if result.simpler_policy is not None:
            simpler_out = result.simpler_policy.to_file(_simpler_path(args.out))
    if args.json:
        data = result.as_json()
        data["out"] = str(out) if out else None
        data["simpler_out"] = str(simpler_out) if simpler_out else None
        print(json.dumps(data, indent=2, default=str))
        return 0
    print(f"study {result.study_name} in {result.storage}: {result.n_trials} trials; "
          f"best trial {result.best_trial}")
    print(result.split)
    width = max(len(r[0]) for r in ROWS)
    print(f"{'':<{width}}  {'train':>22}  {'holdout':>22}")
    for label, key in ROWS:
        print(f"{label:<{width}}  {_fmt(result.train.get(key)):>22}  "
              f"{_fmt(result.holdout.get(key)):>22}")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    _print_routing(result)
    if out:
        print(f"policy written to {out}")
    if simpler_out and result.simpler_policy is not None:
        model = result.simpler_policy.tier_models[0]
        print(f"simpler policy ({model} alone) written to {simpler_out}: routing does not "
              "pay, so deploy it rather than the tuned one")
    return 0


def _simpler_path(out: str) -> str:
    """best.yaml -> best.simpler.yaml (next to the tuned policy)."""
    from pathlib import Path

    p = Path(out)
    return str(p.with_name(f"{p.stem}.simpler{p.suffix}"))


def _print_routing(result: Any) -> None:
    """Does routing pay (holdout, paired per item), and which policy the tuner prefers."""
    from workbench.routing_pays import describe

    if result.routing is None:
        print("routing: cannot tell whether routing pays (see the warnings)")
        return
    for line in describe(result.routing):
        print(line)
    if result.routing_note:
        print(f"  {result.routing_note}")


def _trial(args: argparse.Namespace) -> int:
    """Write the policy a stored trial evaluated."""
    require("optuna", "`workbench tune-trial`")
    from workbench import tune as tn

    policy = tn.trial_policy(tn.storage_url(args.storage, args.home), args.study, args.number)
    if args.out:
        print(f"policy of trial {args.number} written to {policy.to_file(args.out)}")
    else:
        print(policy.to_yaml(), end="")
    return 0


class _HoldoutAction(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        namespace.holdout = values
        namespace.holdout_given = True


def register(sub: argparse._SubParsersAction) -> None:
    """Add `tune` and `tune-trial`."""
    from workbench.tune import OBJECTIVES, SAMPLERS

    p = sub.add_parser("tune", help="tune a policy with Optuna on a train split; report holdout")
    add_home(p)
    p.add_argument("--workload", required=True, help="workload to tune on")
    p.add_argument("--test-workload", default=None,
                   help="workload used as the holdout (then all of --workload is train)")
    p.add_argument("--holdout", type=float, default=0.3, action=_HoldoutAction,
                   help="share of items held out (default 0.3)")
    p.add_argument("--objective", required=True, choices=OBJECTIVES)
    p.add_argument("--quality-floor", default=None,
                   help="minimum quality: 0.9, or '95%%' of the best single model's quality")
    p.add_argument("--budget", type=float, default=None, help="max $ per request")
    p.add_argument("--weight", type=float, default=None,
                   help="weighted objective: quality points per $ (quality - weight x cost)")
    p.add_argument("--latency", action="store_true",
                   help="pareto: also minimise p95 latency")
    p.add_argument("--trials", type=int, default=100, help="new trials this run adds")
    p.add_argument("--storage", default=None,
                   help="SQLAlchemy URL of the study storage (default: SQLite under --home)")
    p.add_argument("--study", default=None, help="study name (default: from the settings)")
    p.add_argument("--seed", type=int, default=0, help="split and sampler seed")
    p.add_argument("--worker", type=int, default=0,
                   help="index of this worker when several share one study (default 0)")
    p.add_argument("--policy", default=None, help="base policy file (default: built from the "
                   "workload's quality/cost frontier)")
    p.add_argument("--candidates", default=None,
                   help="comma-separated models each tier may be filled with")
    p.add_argument("--router-methods", default=None,
                   help="comma-separated learned-router methods to search (logistic,knn)")
    p.add_argument("--fix", action="append", metavar="PATH=VALUE",
                   help="fix a policy field, e.g. tiers.0.accept_above=0.7 (repeatable)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    p.add_argument("--out", default=None, help="write the best policy here (.yaml or .json)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_tune, holdout_given=False)

    t = sub.add_parser("tune-trial", help="write the policy of one trial of a stored study")
    add_home(t)
    t.add_argument("--study", required=True)
    t.add_argument("--number", type=int, required=True, help="trial number")
    t.add_argument("--storage", default=None, help="study storage URL (default: under --home)")
    t.add_argument("--out", default=None, help="policy file to write (default: print YAML)")
    t.set_defaults(func=_trial)
