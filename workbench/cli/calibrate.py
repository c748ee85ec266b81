"""`workbench calibrate`: set a cascade's cheap-tier threshold so at most a given share of
requests reaches the strong model; print the quality, cost and share that result, and write
the calibrated policy with `--out` (nothing is written when it fails)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.cli import add_home
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `calibrate`."""
    p = sub.add_parser("calibrate", help="set the cheap tier's threshold so that at most a "
                                         "share of requests goes to the strong model")
    add_home(p)
    p.add_argument("--workload", required=True)
    p.add_argument("--policy", required=True,
                   help="a policy file (.yaml/.yml/.json) or the name of a saved policy")
    p.add_argument("--strong-share", required=True, metavar="SHARE",
                   help="largest share sent to the strong (last) tier: 0.2 or 20%%")
    p.add_argument("--out", default=None, help="write the calibrated policy here")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", action="store_true", help="print every figure as JSON")
    p.set_defaults(func=cmd_calibrate)


def parse_share(text: str) -> float:
    """'0.2' or '20%' -> 0.2 (range checked by workbench.calibrate.check_share)."""
    from workbench.calibrate import check_share

    raw = text.strip()
    try:
        return check_share(float(raw[:-1]) / 100.0 if raw.endswith("%") else raw)
    except (ValueError, WorkbenchError):
        raise WorkbenchError(f"the strong share must be a number between 0 and 1 (0.2 = "
                             f"20%), got {text!r}") from None


def _policy(args: argparse.Namespace) -> Any:
    from workbench.policy import Policy

    if args.policy.lower().endswith((".yaml", ".yml", ".json")):
        if not Path(args.policy).is_file():
            raise WorkbenchError(f"policy file {args.policy!r} does not exist")
        return Policy.from_file(args.policy)
    from workbench.catalog import Catalog

    return Policy.from_yaml(Catalog(args.home).get_policy(args.policy).body)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Calibrate, print, and write the policy file when asked."""
    from workbench.calibrate import calibrate_workload
    from workbench.store import open_store

    share = parse_share(args.strong_share)  # before anything is read: bad input fails first
    if args.out and Path(args.out).suffix.lower() not in (".yaml", ".yml", ".json"):
        raise WorkbenchError(f"--out {args.out!r}: a policy file ends in .yaml, .yml or .json")
    store = open_store(args.home)
    policy = _policy(args)
    result = calibrate_workload(store, args.workload, policy, share, seed=args.seed)
    written = None
    if args.out:
        from workbench.export import provenance_from_store

        final = provenance_from_store(result.policy, store, args.workload, seed=args.seed)
        written = final.to_file(args.out)
    if args.json:
        out = result.as_json()
        out["written"] = str(written) if written else None
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    m = result.metrics
    print(f"{result.cheap} accepts at confidence >= {result.threshold:.4g} "
          f"({result.confidence_source} confidence)")
    print(f"  to {result.strong}: {result.n_strong} of {result.n} items "
          f"({result.strong_share:.1%}); target at most {result.target_share:.1%} "
          f"({result.limit} items)")
    print(f"  quality {m.quality:.4f} (95% CI {m.quality_ci[0]:.4f}-{m.quality_ci[1]:.4f}, "
          f"n={m.n_scored}); ${m.cost_per_request:.6g} per request")
    print(f"  plain quantile threshold {result.quantile_threshold:.4g}")
    if written:
        print(f"calibrated policy written to {written}")
    return 0
