"""The per-item reference replay used by the tests (lives in workbench/bench/reference.py so
the benchmark can reach it too)."""

from workbench.bench.reference import reference_replay

__all__ = ["reference_replay"]
