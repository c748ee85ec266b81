"""`workbench gate add`: send a slice where the cheap model is worse to the strong tier, and
show the replay before and after."""

from __future__ import annotations

import argparse
import json

from workbench.cli import add_home


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `gate` command family."""
    p = sub.add_parser("gate", help="turn a flagged slice into a routing rule")
    gsub = p.add_subparsers(dest="gate_command", required=True, metavar="{add}")
    a = gsub.add_parser("add", help="send a slice to the strong tier; replay before and after")
    add_home(a)
    a.add_argument("--workload", required=True)
    a.add_argument("--policy", required=True,
                   help="a policy file (.yaml/.yml/.json) or a saved policy ('name' or "
                        "'name@version')")
    a.add_argument("--column", required=True,
                   help="slice column: tag, data_class, difficulty or input_length")
    a.add_argument("--slice", required=True, dest="value",
                   help="the slice's value, as `workbench report` lists it (e.g. 'hard', "
                        "'>2100 chars')")
    a.add_argument("--save", metavar="NAME", help="save the gated policy in the catalog")
    a.add_argument("--out", metavar="FILE", help="write the gated policy file")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    a.set_defaults(func=_add)


def _add(args: argparse.Namespace) -> int:
    from workbench.export import resolve_policy
    from workbench.gates import gate_effect
    from workbench.store import open_store

    store = open_store(args.home)
    policy = resolve_policy(args.policy, args.home)
    effect = gate_effect(store, args.workload, policy, args.column, args.value, seed=args.seed)
    gated = effect.policy
    if args.save:
        from workbench.catalog import Catalog

        gated = gated.model_copy(update={"name": args.save})
        entry = Catalog(args.home).save_policy(
            args.save, gated.to_yaml(), workload=args.workload,
            metrics={"replay": effect.after.as_dict()})
    if args.out:
        from workbench.export import export_policy

        export_policy(gated, args.out)
    if args.json:
        print(json.dumps(effect.as_json(), indent=2))
        return 0
    b, a = effect.before, effect.after
    print(f"Rule: {effect.rule}.")
    print(f"It newly sends {effect.gated_items} item(s) to the strong tier; the slice has "
          f"{effect.slice_items}.")
    print(f"{'':<18}{'before':>12}{'after':>12}")
    print(f"{'quality':<18}{b.quality:>12.3f}{a.quality:>12.3f}")
    print(f"{'  95% CI':<18}{_ci(b.quality_ci):>12}{_ci(a.quality_ci):>12}")
    print(f"{'$ / request':<18}{b.cost_per_request:>12.6f}{a.cost_per_request:>12.6f}")
    print(f"{'strong share':<18}{b.strong_share:>12.1%}{a.strong_share:>12.1%}")
    print(f"Replayed on {a.n} recorded items of {args.workload}.")
    if args.save:
        print(f"Saved {args.save} version {entry.version}.")
    if args.out:
        print(f"Wrote {args.out}.")
    return 0


def _ci(ci: tuple[float, float]) -> str:
    return f"{ci[0]:.3f}-{ci[1]:.3f}"
