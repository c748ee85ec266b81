"""`workbench log prune`: drop decision-log lines older than the policy's retention."""

from __future__ import annotations

import argparse

from workbench.cli import add_home
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `log prune`."""
    log = sub.add_parser("log", help="decision log upkeep")
    add_home(log)
    inner = log.add_subparsers(dest="log_command", metavar="ACTION", required=True)
    prune = inner.add_parser(
        "prune", help="remove lines older than the retention (crash-safe: writes a new file "
        "and atomically replaces the log)")
    add_home(prune)
    prune.add_argument("--policy", default=None,
                       help="policy file or catalog name[@version] whose "
                            "data_handling.retention_days applies")
    prune.add_argument("--days", type=int, default=None,
                       help="retention in days (instead of the policy's)")
    prune.add_argument("--log", default=None,
                       help="decision log JSONL (default: decisions.jsonl in the data directory)")
    prune.set_defaults(func=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune the log; print what was removed and kept."""
    from workbench import settings
    from workbench.decision_log import prune_log

    days = args.days
    if days is None and args.policy:
        from workbench.export import resolve_policy

        days = resolve_policy(args.policy, args.home).data_handling.retention_days
        if days is None:
            raise WorkbenchError(f"policy {args.policy!r} keeps decision-log lines forever (no "
                                 "data_handling.retention_days); give --days to prune anyway")
    if days is None:
        raise WorkbenchError("no retention: give --policy (its data_handling.retention_days) "
                             "or --days")
    if days < 0:
        raise WorkbenchError(f"--days {days}: a retention below 0 days is not possible; give 0 "
                             "or more")
    path = args.log or settings.home(args.home) / "decisions.jsonl"
    print(prune_log(path, days).summary())
    return 0
