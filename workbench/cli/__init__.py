"""The `workbench` command line: one argparse tree, a module per command family.

Each module in COMMAND_MODULES exposes `register(subparsers)`, adding its commands; every
command gets `--home` and returns an exit code. Every command is always registered, whatever
extras are installed. Errors the user can fix (WorkbenchError) print one line on stderr and
exit 2, and so does a command reaching a package of an extra that is not installed (the line
names the extra, see workbench.extras); nothing else is caught, so bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from workbench.errors import WorkbenchError
from workbench.extras import missing_extra

COMMAND_MODULES = (
    "workbench.cli.data",
    "workbench.cli.models",
    "workbench.cli.policy",
    "workbench.cli.tune",
    "workbench.cli.export",
    "workbench.cli.bench",
    "workbench.cli.report",
    "workbench.cli.labels",
    "workbench.cli.review_trail",
    "workbench.cli.log",
    "workbench.cli.paired",
    "workbench.cli.calibrate",
    "workbench.cli.gate",
)


def add_home(parser: argparse.ArgumentParser) -> None:
    """Add the common `--home` option (data directory; default WORKBENCH_HOME)."""
    # SUPPRESS: a nested sub-command's default must not wipe a --home given before it
    parser.add_argument(
        "--home", default=argparse.SUPPRESS,
        help="data directory (default: $WORKBENCH_HOME or data/)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every command family registered (whatever extras are installed)."""
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="LLM routing workbench: workloads, models, routing policies, tuning, export.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Give every (sub-)command the default `command_name` ('workbench tune', ...); the
    deepest parser reached sets it last, so it names the command that runs."""
    parser.set_defaults(command_name=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _name_commands(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `workbench` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "home"):
        args.home = None
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc, f"`{getattr(args, 'command_name', 'workbench')}`")
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
