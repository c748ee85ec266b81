"""`workbench labels`: quality without gold labels from the shell.

- `labels agreement --reference MODEL`: every model scored against MODEL's answers (agreement,
  not accuracy), optionally corrected by a reviewed label set;
- `labels queue`: the items worth reviewing (models disagree, or the cheap model is confident
  and wrong);
- `labels save`: append one review (a verdict on a model's answer, or the correct answer);
- `labels versions`: the label set's history, one line per version.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from workbench.cli import add_home
from workbench.errors import WorkbenchError


def add_basis_options(parser: argparse.ArgumentParser) -> None:
    """`--silver MODEL` and `--label-set VERSION`, shared by report and evaluate/check."""
    parser.add_argument("--silver", default=None, metavar="MODEL",
                        help="score every model against MODEL's answers instead of the gold "
                             "references (agreement with MODEL, not accuracy)")
    parser.add_argument("--label-set", default=None, metavar="VERSION",
                        help="recompute quality from a reviewed label set: a version number "
                             "or 'latest' (see `workbench labels versions`)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `labels` with its actions."""
    review = sub.add_parser("labels", help="silver references, the review queue and reviewed "
                                           "label sets (quality without gold labels)")
    add_home(review)
    rsub = review.add_subparsers(dest="labels_command", metavar="ACTION", required=True)

    agree = rsub.add_parser("agreement", help="per-model agreement with a reference model")
    add_home(agree)
    agree.add_argument("--workload", required=True)
    agree.add_argument("--reference", required=True, metavar="MODEL",
                       help="the model whose answers stand in for gold references")
    agree.add_argument("--label-set", default=None, metavar="VERSION",
                       help="also apply a reviewed label set (a number or 'latest')")
    agree.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    agree.add_argument("--seed", type=int, default=0)
    agree.add_argument("--json", action="store_true")
    agree.set_defaults(func=cmd_agreement)

    queue = rsub.add_parser("queue", help="items to review: disagreements and confident "
                                          "wrong answers of the cheap model")
    add_home(queue)
    queue.add_argument("--workload", required=True)
    queue.add_argument("--cheap", default=None, help="the cheap model (default: cheapest)")
    queue.add_argument("--reference", default=None, metavar="MODEL",
                       help="judge the cheap model against MODEL's answers")
    queue.add_argument("--min-confidence", type=float, default=0.8,
                       help="confidence at or above which a wrong answer is queued (0-1)")
    queue.add_argument("--include-reviewed", action="store_true")
    queue.add_argument("--limit", type=int, default=20, help="items to print")
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(func=cmd_queue)

    save = rsub.add_parser("save", help="append one review to the workload's label set")
    add_home(save)
    save.add_argument("--workload", required=True)
    save.add_argument("--item", required=True, help="item id")
    save.add_argument("--reviewer", required=True, help="your name (stored with the review)")
    what = save.add_mutually_exclusive_group(required=True)
    what.add_argument("--right", metavar="MODEL", help="MODEL's recorded answer is right")
    what.add_argument("--wrong", metavar="MODEL", help="MODEL's recorded answer is wrong")
    what.add_argument("--answer", metavar="TEXT", help="the correct answer, written out")
    save.set_defaults(func=cmd_save)

    versions = rsub.add_parser("versions", help="the label set's history, newest first")
    add_home(versions)
    versions.add_argument("--workload", required=True)
    versions.add_argument("--json", action="store_true")
    versions.set_defaults(func=cmd_versions)


def _num(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def cmd_agreement(args: argparse.Namespace) -> int:
    """Print each model's agreement with the reference (with a 95% CI), cost and errors."""
    from workbench.label_quality import basis_metrics
    from workbench.store import open_store

    table, basis = basis_metrics(open_store(args.home), args.workload, silver=args.reference,
                                 label_set=args.label_set, n_boot=args.n_boot, seed=args.seed)
    rows = table.to_dicts()
    if args.json:
        print(json.dumps({**basis.as_json(), "models": [
            {k: _num(v) for k, v in r.items()} for r in rows]}, indent=2, default=str))
        return 0
    print(f"{args.workload}: {basis.describe()}")
    if basis.n_silver_missing:
        print(f"  {basis.n_silver_missing} items left out: {args.reference} gave no "
              "answer to them")
    for r in rows:
        mark = "  (reference)" if r["model"] == args.reference else ""
        q = "n/a" if r["quality"] is None else (
            f"{r['quality']:.1%} [{r['quality_lo']:.1%}, {r['quality_hi']:.1%}]")
        print(f"  {r['model']:30s} agreement {q}  ${r['cost_per_request']:.6f}/request  "
              f"errors {r['error_rate']:.1%}{mark}")
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    """Print the queue (item, why, confidence of the cheap model)."""
    from workbench.review_queue import build_queue
    from workbench.store import open_store

    queue = build_queue(open_store(args.home), args.workload, cheap=args.cheap,
                        silver=args.reference, min_confidence=args.min_confidence,
                        include_reviewed=args.include_reviewed)
    if args.json:
        print(json.dumps({"workload": args.workload, "cheap": queue.cheap,
                          "basis": queue.basis.describe(), "size": queue.size,
                          "items": [{k: _num(v) for k, v in r.items()}
                                    for r in queue.items.to_dicts()]}, indent=2))
        return 0
    print(f"{queue.size} items to review on {args.workload} (cheap model {queue.cheap}; "
          f"{queue.basis.describe()})")
    for r in queue.items.head(max(args.limit, 0)).iter_rows(named=True):
        conf = "-" if r["cheap_confidence"] is None else f"{r['cheap_confidence']:.2f}"
        print(f"  {r['item_id']:20s} {r['reason']}  (confidence {conf}, "
              f"{r['n_answers']} different answers)")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    """Append the review and print its version."""
    from workbench.reviews import save_review
    from workbench.store import open_store

    store = open_store(args.home)
    if args.answer is not None:
        saved = save_review(store, args.workload, args.item, reviewer=args.reviewer,
                            answer=args.answer)
    else:
        model = args.right if args.right is not None else args.wrong
        if not model or not model.strip():
            raise WorkbenchError("name the model whose answer you judge")
        saved = save_review(store, args.workload, args.item, reviewer=args.reviewer,
                            model=model, verdict=args.right is not None)
    print(f"saved {saved.describe()}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    """Print one line per version, newest first."""
    from workbench.reviews import versions
    from workbench.store import open_store

    frame = versions(open_store(args.home), args.workload)
    if args.json:
        print(json.dumps(frame.to_dicts(), indent=2, default=str))
        return 0
    if frame.height == 0:
        print(f"{args.workload} has no reviews yet")
        return 0
    for r in frame.iter_rows(named=True):
        print(f"  v{r['version']:<5d} {r['created']:%Y-%m-%d %H:%M} UTC  {r['reviewer']:20s} "
              f"item {r['item_id']}  {r['saved']}")
    return 0


def compare_on_basis(args: argparse.Namespace) -> int:
    """`workbench compare --silver MODEL / --label-set V`: the per-model table with quality
    from that basis, headed by what it means (JSON rows carry it as `quality_basis`)."""
    from workbench.label_quality import basis_metrics
    from workbench.store import open_store

    table, basis = basis_metrics(open_store(args.home), args.workload, silver=args.silver,
                                 label_set=args.label_set, seed=args.seed)
    if args.models:
        unknown = [m for m in args.models if m not in set(table["model"].to_list())]
        if unknown:
            raise WorkbenchError(f"model {unknown[0]!r} has no outcomes on workload "
                                 f"{args.workload!r}; models with outcomes: "
                                 f"{', '.join(table['model'].to_list())}")
        table = table.filter(table["model"].is_in(list(args.models)))
    rows = table.to_dicts()
    if args.json:
        print(json.dumps([{**{k: _num(v) for k, v in r.items()},
                           "quality_basis": basis.describe()} for r in rows], indent=2))
        return 0
    print(f"quality here is {basis.describe()}")
    word = "agreement" if args.silver is not None else "quality"
    cells = [("model", "n", word, "95% CI", "$/request", "p50 ms", "p95 ms", "errors")]
    for r in rows:
        q = r["quality"]
        cells.append((
            r["model"], str(r["n"]), "n/a" if q is None else f"{q:.3f}",
            "-" if q is None else f"[{r['quality_lo']:.3f}, {r['quality_hi']:.3f}]",
            f"${r['cost_per_request']:.6f}",
            "-" if r["latency_p50_ms"] is None else f"{r['latency_p50_ms']:.0f}",
            "-" if r["latency_p95_ms"] is None else f"{r['latency_p95_ms']:.0f}",
            f"{r['error_rate']:.1%}"))
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0
