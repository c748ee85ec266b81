"""`workbench models calibrate NAME`: measure a local model's speed on this machine, which sets
its cost per token (see workbench.local_cost); `--show` prints what is stored, `--recost`
charges recorded calls again at the stored speed."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from workbench.cli import add_home
from workbench.errors import WorkbenchError


def register(msub: argparse._SubParsersAction) -> None:
    """Add `models calibrate` under `workbench models`."""
    cal = msub.add_parser(
        "calibrate", help="measure a local model's speed on this machine (sets its cost)",
        description="Measure prompt and generation speed (tokens/s, one request at a time, best "
                    "of several trials) of a local GGUF model on this machine. Local calls are "
                    "charged from these speeds and the hardware $/hour, never from wall time, "
                    "so a busy machine does not make them dearer.")
    add_home(cal)
    cal.add_argument("name", help="catalog name of a local model")
    cal.add_argument("--trials", type=int, default=None,
                     help="trials per speed (default 5; the best is kept)")
    cal.add_argument("--show", action="store_true",
                     help="print the stored measurement without measuring")
    cal.add_argument("--recost", action="store_true",
                     help="charge the model's recorded calls (every workload) again at this "
                          "speed; cached calls are not re-run, so they keep their old cost "
                          "otherwise")
    cal.add_argument("--json", action="store_true", help="print the measurement as JSON")
    cal.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure (or show) the model's speed; print it with the per-1M prices it gives."""
    from workbench import local_cost
    from workbench.catalog import Catalog

    spec = Catalog(args.home).get(args.name)
    if spec.kind != "local-gguf":
        raise WorkbenchError(f"{args.name!r} is a hosted model: it is priced per token by its "
                             "provider; only local GGUF models are measured")
    trials = local_cost.TRIALS if args.trials is None else args.trials
    if not 1 <= trials <= 50:
        raise WorkbenchError(f"--trials must be between 1 and 50, got {trials}")
    if args.show:
        tp = local_cost.lookup(spec, args.home)
        if tp is None:
            raise WorkbenchError(f"no speed measured for {args.name!r} on this machine yet; run "
                                 f"`workbench models calibrate {args.name}`")
    else:
        tp = local_cost.ensure(spec, args.home, force=True, trials=trials,
                               note=lambda m: print(m, file=sys.stderr))
    rate = local_cost.usd_per_hour(spec)
    inp, out = tp.prices(rate)
    recosted = None
    if args.recost:
        from workbench.store import open_store

        recosted = local_cost.recost(open_store(args.home), spec, args.home)
    if args.json:
        print(json.dumps({"model": spec.name, **asdict(tp), "usd_per_hour": rate,
                          "input_price_per_mtok": inp, "output_price_per_mtok": out,
                          "recosted_rows": recosted}, indent=2))
        return 0
    print(f"{spec.name}: {tp.describe()}")
    print(f"at ${rate:.2f}/hour: ${inp:.4g} per 1M prompt tokens, ${out:.4g} per 1M generated "
          "tokens")
    if recosted is not None:
        print(f"charged {recosted} recorded call(s) of {spec.name} again at this speed")
    return 0
