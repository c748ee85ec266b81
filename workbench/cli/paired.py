"""`workbench paired A B`: two models or policies on the same items, with a paired interval of
the quality and cost differences, McNemar's test and the items needed when it is too close."""

from __future__ import annotations

import argparse
import json
import sys

from workbench.cli import add_home


def register(sub: argparse._SubParsersAction) -> None:
    """Add `paired`."""
    p = sub.add_parser("paired", help="compare two models or policies item by item (paired "
                                      "bootstrap, McNemar's test, items needed)")
    add_home(p)
    p.add_argument("a", metavar="A", help="a model with outcomes, a saved policy, "
                                          "model:NAME, policy:NAME or a policy file")
    p.add_argument("b", metavar="B", help="the other side, named the same ways")
    p.add_argument("--workload", required=True)
    p.add_argument("--detect", type=float, default=0.05, metavar="DIFF",
                   help="quality difference worth detecting, for the items-needed figure "
                        "(default 0.05 = 5 points)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", action="store_true", help="print every figure as JSON")
    p.set_defaults(func=cmd_paired)


def cmd_paired(args: argparse.Namespace) -> int:
    """Print the comparison (the answer first) or its JSON."""
    from workbench.catalog import Catalog
    from workbench.paired import compare, describe
    from workbench.store import open_store

    store = open_store(args.home)
    result = compare(store, args.workload, args.a, args.b, catalog=Catalog(args.home),
                     detect=args.detect, n_boot=args.n_boot, seed=args.seed)
    if args.json:
        json.dump(result.as_json(), sys.stdout, indent=2)
        print()
    else:
        print("\n".join(describe(result)))
    return 0
