"""`workbench evaluate`, `workbench schema`, `workbench check`: replay policies from the shell."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from workbench.cli import add_home
from workbench.cli.labels import add_basis_options
from workbench.errors import WorkbenchError

EVALUATE_KEYS = (
    "quality", "quality_ci", "cost_per_request", "cost_per_success", "latency_p95_ms",
    "escalation_rate", "refusal_rate", "answered_by", "n",
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the evaluate, schema and check commands."""
    p = sub.add_parser("evaluate", help="replay a policy (or one model) over a stored workload")
    add_home(p)
    p.add_argument("--workload", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--policy", help="policy file (.yaml/.yml/.json)")
    group.add_argument("--single", metavar="MODEL", help="every item answered by MODEL")
    p.add_argument("--json", action="store_true", help="print JSON (with baselines)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_basis_options(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("schema", help="print the policy file JSON Schema")
    add_home(p)
    p.set_defaults(func=_schema)

    p = sub.add_parser("check", help="CI gate: replay a policy, exit 1 when it misses")
    add_home(p)
    p.add_argument("--policy", required=True)
    p.add_argument("--workload", required=True)
    p.add_argument("--quality-floor", type=float, default=None)
    p.add_argument("--max-cost", type=float, default=None, help="max US dollars per request")
    p.add_argument("--require-routing-pays", action="store_true",
                   help="also fail when the policy does not beat a random mix of single models "
                        "at its cost (paired bootstrap 95%% CI of the gain above 0)")
    p.add_argument("--require-approved", action="store_true",
                   help="also fail unless exactly this content was approved in the catalog "
                        "(`workbench policy approve`) and no model it uses changed since")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_basis_options(p)
    p.set_defaults(func=_check)


def _run(args: argparse.Namespace) -> Any:
    from workbench.policy import Policy, single
    from workbench.replay import evaluate_workload
    from workbench.store import open_store

    store = open_store(args.home)
    if getattr(args, "single", None):
        models = store.models_of(args.workload) if store.exists(args.workload) else []
        if store.exists(args.workload) and args.single not in models:
            raise WorkbenchError(
                f"model {args.single!r} has no outcomes on workload {args.workload!r}; "
                f"models with outcomes: {', '.join(models) or 'none'}"
            )
        policy = single(args.single)
    else:
        policy = Policy.from_file(args.policy)
    return evaluate_workload(store, args.workload, policy, seed=getattr(args, "seed", 0),
                             silver=args.silver, label_set=args.label_set)


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.6g}"


def _evaluate(args: argparse.Namespace) -> int:
    from workbench.replay import to_json

    result = _run(args)
    if args.json:
        json.dump(to_json(result), sys.stdout, indent=2)
        print()
        return 0
    m = result.metrics
    print(f"policy {result.policy.name!r} on {args.workload!r}: {m.n} items")
    if args.silver is not None or args.label_set is not None:
        from workbench.label_quality import quality_outcomes
        from workbench.store import open_store

        basis = quality_outcomes(open_store(args.home), args.workload, silver=args.silver,
                                 label_set=args.label_set).basis
        print(f"  quality here is {basis.describe()}")
    print(f"  quality           {_fmt(m.quality)}  95% CI [{_fmt(m.quality_ci[0])}, "
          f"{_fmt(m.quality_ci[1])}]")
    print(f"  cost per request  ${_fmt(m.cost_per_request)}   per success "
          f"${_fmt(m.cost_per_success)}")
    print(f"  latency p50/p95   {_fmt(m.latency_p50_ms)} / {_fmt(m.latency_p95_ms)} ms")
    print(f"  escalation {_fmt(m.escalation_rate)}  refusal {_fmt(m.refusal_rate)}  "
          f"strong share {_fmt(m.strong_share)}")
    print("  answered by       " + ", ".join(f"{k} {v:.3f}" for k, v in m.answered_by.items()))
    print("baselines (quality, $/request):")
    for name, b in sorted(result.baselines.items(), key=lambda kv: kv[1].cost_per_request):
        print(f"  {name:45s} {_fmt(b.quality):>9}  {_fmt(b.cost_per_request):>11}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from workbench.policy import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    print()
    return 0


def _routing_lines(args: argparse.Namespace, result: Any) -> tuple[Any, list[str]]:
    """Does routing pay on the checked workload: (verdict or None, lines to print)."""
    from workbench.routing_pays import describe, routing_pays
    from workbench.store import open_store

    store = open_store(args.home)
    try:
        outcomes = store.outcomes(args.workload)
        if args.silver is not None or args.label_set is not None:
            from workbench.label_quality import quality_outcomes

            outcomes = quality_outcomes(store, args.workload, silver=args.silver,
                                        label_set=args.label_set).outcomes
        verdict = routing_pays(result, store.recorded_items(args.workload), outcomes,
                               seed=args.seed)
    except WorkbenchError as exc:
        return None, [f"routing: cannot tell whether routing pays: {exc}"]
    return verdict, describe(verdict)


def _review(args: argparse.Namespace) -> Any:
    """The policy file's review state (workbench.policy_approval.ApprovalCheck), or None when
    the data directory has no catalog and approval is not required."""
    from workbench import settings
    from workbench.policy import Policy

    catalog_file = settings.home(args.home) / "catalog.db"
    if not catalog_file.is_file():
        if not args.require_approved:
            return None
        raise WorkbenchError(f"no catalog at {catalog_file}, so nothing is approved there; "
                             "give --home the data directory the policy was reviewed in")
    from workbench.catalog import Catalog
    from workbench.policy_approval import check_approved

    return check_approved(Catalog(args.home), Policy.from_file(args.policy))


def _review_lines(review: Any) -> list[str]:
    if review is None:
        return []
    if review.needs_recheck:
        return [f"review: NEEDS RE-CHECK: {review.message}"]
    return [f"review: {'approved: ' if review.ok else ''}{review.message}"]


def _check(args: argparse.Namespace) -> int:
    """One first line, OK or FAIL (the gate's answer), then whether routing pays and the
    review state (stdout on OK, stderr on FAIL so the failure stays one line)."""
    review = _review(args)
    if args.require_approved and not review.ok:
        print(f"FAIL: {review.message}")
        return 1
    result = _run(args)
    m = result.metrics
    verdict, lines = _routing_lines(args, result)
    fail = None
    if args.quality_floor is not None and not m.quality >= args.quality_floor:
        fail = (f"FAIL: quality {_fmt(m.quality)} is below the floor {args.quality_floor} "
                f"(95% CI [{_fmt(m.quality_ci[0])}, {_fmt(m.quality_ci[1])}], n={m.n})")
    elif args.max_cost is not None and not m.cost_per_request <= args.max_cost:
        fail = (f"FAIL: cost per request ${_fmt(m.cost_per_request)} is above the maximum "
                f"${args.max_cost}")
    elif args.require_routing_pays and (verdict is None or not verdict.pays):
        fail = ("FAIL: " + (verdict.message if verdict is not None else lines[0]))
    lines += _review_lines(review)
    if fail is not None:
        print(fail)
        for line in lines:
            print(line, file=sys.stderr)
        return 1
    print(f"OK: quality {_fmt(m.quality)}, cost per request ${_fmt(m.cost_per_request)}, "
          f"n={m.n}")
    for line in lines:
        print(line)
    return 0
