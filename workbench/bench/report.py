"""Report figures: the vectorized report (headline, slices, failure modes) vs row by row.

Synthetic workload: N items (tags, difficulty, data class, inputs of varied length) with
outcomes of 5 models (binary quality depending on skill and difficulty, cost, latency,
confidence in steps of 0.01, provider errors, empty outputs, refusals). Ours: the whole
report (`report_from_frames`: headline with bootstrap intervals, per-slice breakdown with
intervals and BH flags, failure modes), timed cold; then the views as a page serves them
from data indexed once (median of `--repeat`): the headline after a what-if change (another
quality target), the slice view and the failure view, in wall and process CPU time (CPU time
stays meaningful on a machine shared with other work; it counts every thread). The reference computes the point figures
row by row in Python (per-item loops and dicts; no bootstrap intervals, so the ratio is
conservative) on the first `--reference-items` items, scaled linearly to N; both run on that
subset and must agree: each option's moved share and saving, every slice quality and p-value,
and every failure count. Also writes the HTML report and states its size (target < 5 MB).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.failures import ERROR_MODES, REFUSAL_PATTERN, classify, failure_table
from workbench.headline import (
    DAYS_PER_MONTH,
    HeadlineSettings,
    better_option,
    cheaper_options_prepared,
)
from workbench.report import Report, ReportSettings, report_from_frames
from workbench.report_data import prepare
from workbench.slicing_stats import MIN_TEST_ITEMS, NONE_SLICE, breakdown_prepared
from workbench.verifiers import ESCAPED_WS, LABEL_STRIP

MODELS = ("tiny", "small", "medium", "large", "frontier")
SKILL = np.array([0.55, 0.7, 0.8, 0.88, 0.93])
PRICE = np.array([0.00001, 0.0001, 0.0005, 0.002, 0.01])
TAGS = ("billing", "login", "refund", "shipping", "api", "legal", "math", "chitchat")
COLUMNS = ("tag", "data_class", "difficulty", "input_length")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `workbench bench report`."""
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--reference-items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="what-if repeats for the median")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)


def synthetic(n: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Items and outcomes of the benchmark workload (vectorized generation)."""
    rng = np.random.default_rng(seed)
    ids = pl.Series("item_id", np.arange(n)).cast(pl.String)
    t1, t2 = rng.integers(0, len(TAGS), n), rng.integers(0, len(TAGS), n)
    two = rng.random(n) < 0.3
    tags_np = np.array(TAGS)
    tags = pl.Series(np.where(two, np.char.add(np.char.add('["', tags_np[t1]),
                                               np.char.add('","', np.char.add(tags_np[t2], '"]'))),
                              np.char.add(np.char.add('["', tags_np[t1]), '"]')))
    diff = rng.integers(0, 3, n)
    length = np.minimum(rng.lognormal(5.5, 1.0, n).astype(np.int64) + 5, 8000)
    words = pl.DataFrame({"k": length}).select(
        pl.lit("word " * 1600).str.slice(0, pl.col("k")))["literal"]
    items = pl.DataFrame({
        "item_id": ids, "input": words,
        "difficulty": pl.Series(np.array(["easy", "medium", "hard"])[diff]),
        "data_class": pl.Series(np.array(["public", "internal", "pii"])[rng.integers(0, 3, n)]),
        "tags": tags, "labels": pl.Series([None] * n, dtype=pl.List(pl.String)),
    })
    frames = []
    for j, model in enumerate(MODELS):
        p = np.clip(SKILL[j] - 0.12 * (diff - 1) * (1 - SKILL[j]) * 3
                    - 0.25 * (t1 == 6) * (j < 2), 0.02, 0.99)
        quality = (rng.random(n) < p).astype(np.float64)
        err_kind = rng.random(n)
        error = np.select([err_kind < 0.004, err_kind < 0.007, err_kind < 0.009,
                           err_kind < 0.010], ["timeout", "rate_limit", "context_window",
                                               "other"], "")
        has_err = error != ""
        out_kind = rng.random(n)
        output = np.where(quality == 1.0, "the answer",
                          np.select([out_kind < 0.05, out_kind < 0.10], ["", "I'm sorry, I "
                                     "cannot help with that"], "a wrong answer"))
        conf = np.clip(0.35 * quality + 0.65 * rng.random(n), 0, 1).round(2)
        frames.append(pl.DataFrame({
            "item_id": ids, "model": pl.Series([model] * n),
            "output": pl.Series(output).set(pl.Series(has_err), None),
            "quality": np.where(has_err, 0.0, quality),
            "cost_usd": np.where(has_err, 0.0, PRICE[j] * (0.5 + rng.random(n))).round(9),
            "latency_ms": (80.0 * (j + 1) * (0.5 + rng.random(n))).round(3),
            "error": pl.Series(error).set(pl.Series(~has_err), None),
            "confidence": np.where(has_err, np.nan, conf),
        }).with_columns(pl.col("confidence").fill_nan(None)))
    return items, pl.concat(frames)


# -- the reference: the same point figures, row by row ----------------------------------------
def _ref_tags(raw: str | None) -> list[str]:
    value = json.loads(raw) if raw else []
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    return [str(v) for v in value] or [NONE_SLICE]


def _ref_length_labels(lengths: list[int]) -> list[str]:
    xs = sorted(lengths)
    cuts = sorted({xs[math.floor(p * (len(xs) - 1))] for p in (0.25, 0.5, 0.75)})
    cuts = [c for c in cuts if c < xs[-1]]
    labels = [f"<={cuts[0]} chars"] + [f"{a + 1}-{b} chars" for a, b in zip(cuts, cuts[1:],
                                                                          strict=False)]
    labels.append(f">{cuts[-1]} chars")
    return [labels[bisect.bisect_left(cuts, x)] for x in lengths]


def reference(items: pl.DataFrame, outcomes: pl.DataFrame, settings: ReportSettings
              ) -> dict[str, Any]:
    """Point figures of the report computed with Python loops over rows."""
    h = settings.headline
    item_rows = items.to_dicts()
    slices_of: dict[str, dict[str, list[str]]] = {c: {} for c in COLUMNS}
    lengths = [len(r["input"] or "") for r in item_rows]
    length_labels = _ref_length_labels(lengths)
    for r, length_label in zip(item_rows, length_labels, strict=True):
        iid = r["item_id"]
        slices_of["tag"][iid] = _ref_tags(r["tags"])
        slices_of["data_class"][iid] = [r["data_class"] or NONE_SLICE]
        slices_of["difficulty"][iid] = [r["difficulty"] or NONE_SLICE]
        slices_of["input_length"][iid] = [length_label]
    rows = outcomes.to_dicts()
    by_model: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        by_model[r["model"]][r["item_id"]] = r
    # failure modes
    refusal = re.compile(REFUSAL_PATTERN)
    fails: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        out = r["output"]
        if r["error"] is not None:
            mode = ERROR_MODES.get(r["error"], "provider_error")
        elif out is None or re.sub(ESCAPED_WS, " ", out).strip(LABEL_STRIP) == "":
            mode = "empty_output"
        elif r["quality"] is not None and r["quality"] >= settings.success_threshold:
            mode = "ok"
        elif refusal.search(out[:200]):
            mode = "refusal"
        elif r["quality"] is None:
            mode = "unscored"
        else:
            mode = "wrong_answer"
        fails[(r["model"], mode)] += 1
    # slices: mean quality and the slice-vs-rest z-test
    tests = []
    for column in COLUMNS:
        for model, per_item in by_model.items():
            acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
            tot = [0.0, 0.0, 0.0]
            for iid, r in per_item.items():
                q = r["quality"]
                if q is None:
                    continue
                tot[0] += 1
                tot[1] += q
                tot[2] += q * q
                for s in slices_of[column][iid]:
                    a = acc[s]
                    a[0] += 1
                    a[1] += q
                    a[2] += q * q
            for s, (n, sq, sq2) in acc.items():
                rn, rs, rs2 = tot[0] - n, tot[1] - sq, tot[2] - sq2
                mean, rmean = sq / n, (rs / rn if rn else math.nan)
                p = math.nan
                if n >= MIN_TEST_ITEMS and rn >= MIN_TEST_ITEMS:
                    vs = max(sq2 / n - mean**2, 0.0) * n / (n - 1)
                    vr = max(rs2 / rn - rmean**2, 0.0) * rn / (rn - 1)
                    se = math.sqrt(vs / n + vr / rn)
                    z = (mean - rmean) / se if se > 0 else (-1e9 if mean < rmean else 0.0)
                    p = 0.5 * math.erfc(-z / math.sqrt(2.0))
                tests.append((column, s, model, mean, p))
    # headline points: per cheaper model, the rule with the largest saving
    strong = h.strong or max(by_model, key=lambda m: (
        sum(r["quality"] for r in by_model[m].values() if r["quality"] is not None)
        / max(1, sum(r["quality"] is not None for r in by_model[m].values())),
        sum(r["cost_usd"] or 0.0 for r in by_model[m].values()) / len(by_model[m])))
    per_month = h.requests_per_day * DAYS_PER_MONTH
    options = {}
    for model, per_item in by_model.items():
        if model == strong:
            continue
        pairs = [(iid, r, by_model[strong][iid]) for iid, r in per_item.items()
                 if iid in by_model[strong] and r["quality"] is not None
                 and by_model[strong][iid]["quality"] is not None]
        n = len(pairs)
        tot_cc = sum(r["cost_usd"] or 0.0 for _, r, _ in pairs) / n
        tot_cs = sum(s["cost_usd"] or 0.0 for _, _, s in pairs) / n
        if tot_cc >= tot_cs:
            continue
        best = None
        rules: list[tuple[str, str | None]] = [("everything", None), ("confidence", None)]
        rules += [("slices", c) for c in COLUMNS]
        for rule, column in rules:
            blocks: dict[Any, list[float]] = defaultdict(lambda: [0.0] * 6)
            for iid, r, s in pairs:
                if rule == "everything":
                    key: Any = "(all)"
                elif rule == "confidence":
                    key = -(r["confidence"] if r["confidence"] is not None else -math.inf)
                else:
                    assert column is not None
                    key = slices_of[column][iid][0]
                b = blocks[key]
                b[0] += 1 / n
                b[1] += r["quality"] / n
                b[2] += s["quality"] / n
                b[3] += (r["cost_usd"] or 0.0) / n
                b[4] += (s["cost_usd"] or 0.0) / n
                b[5] += 1
            if rule == "slices" and len(blocks) < 2:
                continue
            keys = sorted(blocks)
            if rule != "confidence":
                keys = [k for k in keys if blocks[k][5] >= h.min_slice_items]
                keys.sort(key=lambda k: -(blocks[k][1] - h.keep_quality * blocks[k][2])
                          / blocks[k][0])
            moved: list[Any] = []
            run, best_k = 0.0, 0
            for i, k in enumerate(keys):
                run += blocks[k][1] - h.keep_quality * blocks[k][2]
                if run >= -1e-12 * max(1.0, abs(run)):
                    best_k = i + 1
            moved = keys[:best_k]
            if rule == "slices" and len(moved) == len(blocks):
                continue
            share = sum(blocks[k][0] for k in moved)
            cc_all = sum(b[3] for b in blocks.values())
            cs_rest = sum(b[4] for k, b in blocks.items() if k not in set(moved))
            routed = (cc_all if rule == "confidence" else sum(blocks[k][3] for k in moved))
            saving = per_month * (tot_cs - (routed + cs_rest))
            if best is None or better_option((saving, share), best[0]):
                best = ((saving, share), rule)
        assert best is not None
        options[model] = (best[0][1], best[0][0], best[1])
    return {"failures": dict(fails), "slices": tests, "options": options, "strong": strong}


def _compare(ours: Report, ref: dict[str, Any]) -> list[str]:
    """Differences between our report and the reference's point figures (empty: agree)."""
    problems = []
    if ours.strong != ref["strong"]:
        problems.append(f"strong model {ours.strong} vs {ref['strong']}")
    got = {o.model: (o.share, o.monthly_saving_usd, o.rule) for o in ours.options}
    for model, (share, saving, rule) in ref["options"].items():
        g = got.get(model)
        if g is None or abs(g[0] - share) > 1e-9 or abs(g[1] - saving) > 1e-6 * max(
                1.0, abs(saving)) or g[2] != rule:
            problems.append(f"option {model}: ours {g}, reference {(share, saving, rule)}")
    counts = {(r["model"], r["mode"]): r["count"] for r in ours.failures.iter_rows(named=True)}
    if counts != ref["failures"]:
        problems.append("failure counts differ")
    cells = {(r["column"], r["slice"], r["model"]): r for r in ours.slices.iter_rows(named=True)}
    for column, s, model, mean, p in ref["slices"]:
        r = cells.get((column, s, model))
        if r is None or abs(r["quality"] - mean) > 1e-9 or (
                (r["p_value"] is None) != math.isnan(p)
                or (r["p_value"] is not None and abs(r["p_value"] - p) > 1e-9)):
            problems.append(f"slice {column}={s} {model} differs")
            break
    return problems


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def run(args: argparse.Namespace) -> int:
    """Time the report on N items and the reference on a subset; print RESULT."""
    n, n_ref = args.items, min(args.reference_items, args.items)
    if n < 1000:
        raise WorkbenchError("--items must be at least 1000")
    t0 = time.perf_counter()
    items, outcomes = synthetic(n, args.seed)
    gen_s = time.perf_counter() - t0
    settings = ReportSettings(headline=HeadlineSettings(n_boot=args.n_boot, seed=args.seed),
                              slice_columns=COLUMNS)
    t0 = time.perf_counter()
    report = report_from_frames(items, outcomes, settings, workload="bench")
    cold_s = time.perf_counter() - t0
    # the views as a page serves them: data prepared once; a what-if (another Z, N or mix)
    # recomputes the headline only; the slice and failure views do not depend on it
    prep = prepare(items, outcomes)
    views: dict[str, list[tuple[float, float]]] = {"headline": [], "slices": [], "failures": []}
    for i in range(args.repeat):
        changed = HeadlineSettings(keep_quality=0.9 + 0.01 * (i + 1), n_boot=args.n_boot,
                                   seed=args.seed)
        views["headline"].append(_timed(
            lambda changed=changed: cheaper_options_prepared(prep, changed, columns=COLUMNS)))
        views["slices"].append(_timed(lambda: breakdown_prepared(
            prep, COLUMNS, n_boot=args.n_boot, seed=args.seed)))
        views["failures"].append(_timed(lambda: failure_table(classify(items, outcomes))))
    wall = {k: statistics.median(w for w, _ in v) for k, v in views.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in views.items()}
    views_s, views_cpu = wall["headline"] + wall["slices"], cpu["headline"] + cpu["slices"]
    with tempfile.TemporaryDirectory() as tmp:
        from workbench.report_charts import write_html

        t0 = time.perf_counter()
        html_bytes = write_html(report, Path(tmp) / "report.html")
        html_s = time.perf_counter() - t0
    sub_items = items.head(n_ref)
    sub_out = outcomes.filter(pl.col("item_id").is_in(sub_items["item_id"].implode()))
    ours_sub = report_from_frames(sub_items, sub_out, settings, workload="bench")
    c0, t0 = time.process_time(), time.perf_counter()
    ref = reference(sub_items, sub_out, settings)
    ref_s, ref_cpu = time.perf_counter() - t0, time.process_time() - c0
    ref_scaled, ref_cpu_scaled = ref_s * n / n_ref, ref_cpu * n / n_ref
    all_views_s = views_s + wall["failures"]
    all_views_cpu = views_cpu + cpu["failures"]
    problems = _compare(ours_sub, ref)

    print(f"synthetic workload: {n:,} items x {len(MODELS)} models (generated in {gen_s:.2f} s)")
    print(report.sentence)
    print(f"{'run':52s} {'seconds':>9s}")
    print(f"{'ours: whole report, cold (index + all figures)':52s} {cold_s:9.3f}")
    print(f"{'median of the views (data indexed once)':52s} {'wall s':>9s} {'cpu s':>9s}")
    for key, label in (("headline", "ours: headline after a what-if change"),
                       ("slices", "ours: slice view"), ("failures", "ours: failure view")):
        print(f"{label:52s} {wall[key]:9.3f} {cpu[key]:9.3f}")
    print(f"{'HTML report written':52s} {html_s:9.3f}  ({html_bytes / 1e6:.2f} MB)")
    print(f"{f'reference (points only) on {n_ref:,} items':52s} {ref_s:9.3f} {ref_cpu:9.3f}")
    print(f"{f'reference scaled to {n:,} items':52s} {ref_scaled:9.3f} {ref_cpu_scaled:9.3f}")
    print(f"agreement on {n_ref:,} items: {'equal' if not problems else '; '.join(problems)}")
    if problems:
        raise WorkbenchError("the report and the row-by-row reference disagree: "
                             + "; ".join(problems[:3]))
    print(f"ratio reference / our three views: {ref_scaled / all_views_s:.1f}x wall, "
          f"{ref_cpu_scaled / all_views_cpu:.1f}x cpu; / whole cold report "
          f"{ref_scaled / cold_s:.1f}x; headline + slice views {views_s:.3f} s wall, "
          f"{views_cpu:.3f} s cpu (target < 1 s; wall time is inflated on a busy machine)")
    print(f"RESULT bench=report ratio={ref_scaled / all_views_s:.1f} "
          f"cpu_ratio={ref_cpu_scaled / all_views_cpu:.1f} "
          f"cold_ratio={ref_scaled / cold_s:.1f} cold_s={cold_s:.3f} "
          f"views_s={views_s:.3f} views_cpu_s={views_cpu:.3f} "
          f"views_under_1s={'yes' if views_s < 1.0 else 'no'} html_mb={html_bytes / 1e6:.2f} "
          f"html_under_5mb={'yes' if html_bytes < 5e6 else 'no'}")
    return 0
