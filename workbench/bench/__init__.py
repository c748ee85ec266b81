"""Benchmarks run by `workbench bench NAME`; each module has `add_arguments` and `run`.

Every benchmark times our implementation against a baseline measured in the same run and ends
with one `RESULT bench=NAME ...` line of ratios, so figures compare across machines.
"""

BENCHMARKS = ("ingest", "local", "replay", "report", "tune")
