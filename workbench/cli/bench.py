"""`workbench bench NAME`: dispatch to workbench.bench.<NAME> (add_arguments, run)."""

from __future__ import annotations

import argparse
import importlib

from workbench.bench import BENCHMARKS
from workbench.cli import add_home


def register(sub: argparse._SubParsersAction) -> None:
    """Add `bench` with one sub-command per benchmark module."""
    parser = sub.add_parser("bench", help="run a benchmark against its in-run baseline")
    bench_sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name in BENCHMARKS:
        module = importlib.import_module(f"workbench.bench.{name}")
        p = bench_sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        add_home(p)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
