"""Built-in sample workloads, generated deterministically from a seed (no downloads).

Three synthetic workloads give a new user something to route right away:
- `support-triage` (classification): customer messages with a gold category, easy and genuinely
  ambiguous ones, about a quarter carrying PII (emails, phones, Luhn-valid cards, IBANs).
- `field-extraction` (extraction): free-text orders and invoices with gold JSON
  (customer, amount, currency, date, items).
- `arithmetic-qa` (qa): word problems with exact numeric answers in graded difficulty.

Every item carries `difficulty` (easy/medium/hard) and `data_class` (public/pii). Tags hold the
PII types and the channel or style, never the gold answer (a policy routing on tags must not be
able to read the answer). Metadata records the generator template and its slot values so that
answers can be re-derived independently.

One module per generator (`support_triage`, `field_extraction`, `arithmetic_qa`); `common`
holds the item schema, shared fillers and PII generators. This module is the registry and the
public API.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from workbench.errors import WorkbenchError
from workbench.store import Store, WorkloadInfo
from workbench.workloads.samples.arithmetic_qa import _arithmetic_qa
from workbench.workloads.samples.common import (
    _ITEM_SCHEMA,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    GENERATOR_VERSION,
    LAST_NAMES,
    MONTHS,
    WEEKDAYS,
    SampleWorkload,
)
from workbench.workloads.samples.field_extraction import (
    CATALOG,
    COMPANIES,
    CURRENCIES,
    _field_extraction,
    number_words,
)
from workbench.workloads.samples.support_triage import (
    CARRIERS,
    CITIES,
    COUNTRIES,
    ERRORS,
    FEATURES,
    PLANS,
    PLATFORMS,
    PRODUCTS,
    SUPPORT_LABELS,
    _support_triage,
)

SAMPLE_NAMES: tuple[str, ...] = ("support-triage", "field-extraction", "arithmetic-qa")

# name -> (item id prefix, task type, label set, row builder)
_GENERATORS: dict[str, tuple[str, str, tuple[str, ...] | None,
                             Callable[[random.Random], tuple[list[dict[str, Any]], str]]]] = {
    "support-triage": ("st", "classification", SUPPORT_LABELS, _support_triage),
    "field-extraction": ("fx", "extraction", None, _field_extraction),
    "arithmetic-qa": ("aq", "qa", None, _arithmetic_qa),
}


def generate(name: str, seed: int = 0) -> SampleWorkload:
    """Generate one built-in sample workload; the same (name, seed) always gives equal items."""
    if name not in _GENERATORS:
        raise WorkbenchError(
            f"unknown sample workload {name!r}; valid names: {', '.join(SAMPLE_NAMES)}"
        )
    prefix, task_type, label_set, build = _GENERATORS[name]
    # A string seed is hashed with SHA-512 by `random`, so it is stable across processes.
    rng = random.Random(f"workbench-sample:{name}:{seed}")
    rows, description = build(rng)
    for i, row in enumerate(rows, start=1):
        row["item_id"] = f"{prefix}-{i:04d}"
    items = pl.DataFrame(rows, schema=_ITEM_SCHEMA)
    return SampleWorkload(name, task_type, description, label_set, items)


def load_samples(store: Store, names: Sequence[str] | None = None,
                 replace: bool = True) -> list[WorkloadInfo]:
    """Generate and store sample workloads (all by default), each in its own transaction;
    with replace=False an existing workload of the same name raises ConflictError."""
    chosen = list(SAMPLE_NAMES if names is None else names)
    samples = [generate(n) for n in chosen]  # validate every name before writing anything
    return [
        store.add_workload_frame(
            s.name, s.items, task_type=s.task_type, source=f"synthetic:{s.name}",
            synthetic=True, description=s.description, label_set=s.label_set, replace=replace,
        )
        for s in samples
    ]


__all__ = [
    "CARRIERS", "CATALOG", "CITIES", "COMPANIES", "COUNTRIES", "CURRENCIES", "EMAIL_DOMAINS",
    "ERRORS", "FEATURES", "FIRST_NAMES", "GENERATOR_VERSION", "LAST_NAMES", "MONTHS", "PLANS",
    "PLATFORMS", "PRODUCTS", "SAMPLE_NAMES", "SUPPORT_LABELS", "WEEKDAYS", "SampleWorkload",
    "generate", "load_samples", "number_words",
]
