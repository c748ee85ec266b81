"""`workbench report`: the cost-first report of a workload (headline, slices, failure modes)
as text, JSON (`--json`) or a one-page standalone HTML file (`--html out.html`)."""

from __future__ import annotations

import argparse
import json
import math

from workbench.cli import add_home
from workbench.cli.labels import add_basis_options
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `report`."""
    p = sub.add_parser("report", help="what share of requests a cheaper model can take, the "
                                      "monthly saving, slices and failure modes")
    add_home(p)
    p.add_argument("--workload", required=True)
    p.add_argument("--strong", default=None,
                   help="the strong model (default: the highest mean quality)")
    p.add_argument("--keep", default="95", metavar="PERCENT",
                   help="quality to keep, %% of the strong model's (default 95)")
    p.add_argument("--requests-per-day", default="10000", metavar="N",
                   help="traffic volume for the monthly saving (default 10000)")
    p.add_argument("--route-by", default=None,
                   help="routing rule: a slice column (tag, data_class, difficulty, "
                        "input_length, label), confidence or everything (default: best of all)")
    p.add_argument("--mix", default=None, metavar="SLICE=WEIGHT,...",
                   help="what-if traffic mix over the slices of --mix-by (relative weights; "
                        "slices not named get none)")
    p.add_argument("--mix-by", default=None, help="slice column of --mix")
    p.add_argument("--slices", default=None, metavar="COL,...",
                   help="slice columns of the breakdown (default: every column that splits "
                        "the workload)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="false discovery rate of the slice flags (Benjamini-Hochberg)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print every figure as JSON")
    p.add_argument("--html", default=None, metavar="PATH",
                   help="write the one-page HTML report here")
    add_basis_options(p)
    p.set_defaults(func=cmd_report)


def _positive(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise WorkbenchError(f"{what} must be a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise WorkbenchError(f"{what} must be a positive number, got {text!r}")
    return value


def parse_mix(text: str) -> dict[str, float]:
    """'a=0.5,b=0.3' -> {'a': 0.5, 'b': 0.3}; one-line errors for malformed parts."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, weight = part.rpartition("=")
        if not sep or not name.strip():
            raise WorkbenchError(f"traffic mix part {part!r} is not SLICE=WEIGHT")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            raise WorkbenchError(f"traffic weight of slice {name.strip()!r} must be a number, "
                                 f"got {weight!r}") from None
    if not mix:
        raise WorkbenchError("the traffic mix is empty; give SLICE=WEIGHT pairs")
    return mix


def cmd_report(args: argparse.Namespace) -> int:
    """Build the report; print the headline (or JSON) and write the HTML file if asked."""
    from workbench.headline import HeadlineSettings
    from workbench.report import ReportSettings, build_report
    from workbench.store import open_store

    keep = _positive(args.keep, "--keep (percent of quality to keep)")
    if keep > 100:
        raise WorkbenchError(f"--keep is a percentage in (0, 100], got {args.keep!r}")
    settings = ReportSettings(
        headline=HeadlineSettings(
            strong=args.strong, keep_quality=keep / 100.0,
            requests_per_day=_positive(args.requests_per_day, "--requests-per-day"),
            route_by=args.route_by, mix=parse_mix(args.mix) if args.mix else None,
            mix_by=args.mix_by, n_boot=args.n_boot, seed=args.seed),
        slice_columns=tuple(c.strip() for c in args.slices.split(",") if c.strip())
        if args.slices else None,
        alpha=args.alpha,
    )
    settings.validate()
    report = build_report(open_store(args.home), args.workload, settings, silver=args.silver,
                          label_set=args.label_set)
    size = None
    if args.html:
        from workbench.report_charts import write_html

        size = write_html(report, args.html)
    if args.json:
        from workbench.context_use import context_use

        data = {**report.as_json(), "context_use": context_use(
            open_store(args.home), args.workload, home=args.home).as_json()}
        print(json.dumps(data, indent=2, default=str))
    else:
        if report.basis:
            print(f"quality here is {report.basis['basis']}")
        print(report.sentence)
        for o in report.options:
            print(f"  {o.model}: {o.share:.0%} ({o.share_ci[0]:.0%}-{o.share_ci[1]:.0%}) "
                  f"{o.rule_text}; ${o.monthly_saving_usd:,.0f}/month "
                  f"(${o.monthly_saving_ci[0]:,.0f}-${o.monthly_saving_ci[1]:,.0f})")
        flagged = report.flagged()
        print(f"flagged slices (significantly worse, BH FDR {settings.alpha:g}): "
              f"{flagged.height}")
        for r in flagged.head(20).iter_rows(named=True):
            print(f"  {r['model']} on {r['column']}={r['slice']}: quality {r['quality']:.3f} "
                  f"vs {r['rest_quality']:.3f} elsewhere (n={r['n']}, q={r['q_value']:.2g})")
    if size is not None:
        import sys

        print(f"wrote {args.html} ({size / 1e6:.2f} MB)", file=sys.stderr if args.json
              else sys.stdout)
    return 0
