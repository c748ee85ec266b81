"""Plotly figures of a `workbench.report.Report` and its one-page standalone HTML file.

Figures hold aggregates only (one point per model, slice or failure mode), so the HTML stays
small whatever the workload's size: plotly.js (about 4.8 MB) is embedded once, and the rest is
tens of kilobytes. The file needs no server or network (written for a decision meeting).
"""

from __future__ import annotations

import html
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import plotly.graph_objects as go
import polars as pl

from workbench.failures import FAILURE_MODES
from workbench.report import Report

MAX_SLICES_SHOWN = 40
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 50, "b": 10}, "height": 380}


def _err(values: list[float], lo: list[float], hi: list[float]) -> dict:
    return {"type": "data", "symmetric": False,
            "array": [max(h - v, 0.0) if _ok(h, v) else 0.0 for v, h in zip(values, hi,
                                                                              strict=True)],
            "arrayminus": [max(v - lo_, 0.0) if _ok(lo_, v) else 0.0 for v, lo_ in zip(
                values, lo, strict=True)]}


def _ok(*xs: float | None) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def share_figure(report: Report) -> go.Figure:
    """Share of requests each cheaper model can take at the target (bars with 95% CIs)."""
    opts = [o for o in report.options]
    names = [f"{o.model} ({o.cost_ratio:.1f}x cheaper)" if math.isfinite(o.cost_ratio)
             else f"{o.model} (free)" for o in opts]
    shares = [o.share for o in opts]
    fig = go.Figure(go.Bar(
        x=shares, y=names, orientation="h",
        error_x=_err(shares, [o.share_ci[0] for o in opts], [o.share_ci[1] for o in opts]),
        hovertext=[o.rule_text for o in opts], marker_color="#2563eb"))
    z = report.settings.headline.keep_quality
    fig.update_layout(title=f"Share of requests each model can take at >= {z:.0%} of "
                            f"{report.strong}'s quality", **_LAYOUT)
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%", title_text="share of requests")
    fig.update_yaxes(autorange="reversed")
    return fig


def saving_figure(report: Report) -> go.Figure:
    """Monthly saving per cheaper model at the stated volume (bars with 95% CIs)."""
    opts = list(report.options)
    vals = [o.monthly_saving_usd for o in opts]
    fig = go.Figure(go.Bar(
        x=vals, y=[o.model for o in opts], orientation="h", marker_color="#16a34a",
        error_x=_err(vals, [o.monthly_saving_ci[0] for o in opts],
                     [o.monthly_saving_ci[1] for o in opts])))
    n = report.settings.headline.requests_per_day
    fig.update_layout(title=f"Saving per month at {n:,.0f} requests per day (USD)", **_LAYOUT)
    fig.update_xaxes(tickprefix="$", rangemode="tozero")
    fig.update_yaxes(autorange="reversed")
    return fig


def cost_quality_figure(report: Report) -> go.Figure:
    """Each model's quality (95% CI) against its cost per request (log scale when costs span
    more than a factor of 20)."""
    m = report.models.filter(pl.col("quality").is_not_null())
    q = m["quality"].to_list()
    cost = m["cost_per_request"].to_list()
    fig = go.Figure(go.Scatter(
        x=cost, y=q, mode="markers+text", text=m["model"].to_list(), textposition="top center",
        error_y=_err(q, m["quality_lo"].to_list(), m["quality_hi"].to_list()),
        marker={"size": 10, "color": ["#dc2626" if x == report.strong else "#2563eb"
                                      for x in m["model"].to_list()]}))
    positive = [c for c in cost if c and c > 0]
    log = bool(positive) and max(positive) / min(positive) > 20
    fig.update_layout(title="Quality against cost per request (strong model in red)",
                      **_LAYOUT | {"height": 420})
    fig.update_xaxes(type="log" if log else "linear", title_text="USD per request")
    fig.update_yaxes(title_text="quality (95% CI)")
    return fig


def slice_figure(report: Report, column: str) -> go.Figure:
    """Quality per model and slice of one column (heatmap; '!' marks a flagged slice, where
    the model is significantly worse than on the rest after the BH correction)."""
    frame = report.slices.filter(pl.col("column") == column)
    top = sorted(frame.group_by("slice").agg(pl.col("n").max()).sort("n", descending=True)
                 .head(MAX_SLICES_SHOWN)["slice"].to_list(), key=_slice_order)
    models = frame["model"].unique().sort().to_list()
    cells = {(r["model"], r["slice"]): r for r in frame.iter_rows(named=True)}
    z, text = [], []
    for model in models:
        row_z, row_t = [], []
        for s in top:
            r = cells.get((model, s))
            qv = r["quality"] if r else None
            row_z.append(qv)
            mark = "!" if r and r["flagged"] else ""
            row_t.append("" if qv is None else f"{qv:.2f}{mark}")
        z.append(row_z)
        text.append(row_t)
    fig = go.Figure(go.Heatmap(z=z, x=top, y=models, text=text, texttemplate="%{text}",
                               colorscale="RdYlGn", zmin=0, zmax=1,
                               colorbar={"title": "quality"}))
    fig.update_layout(title=f"Quality by {column} ('!' = significantly worse than the model's "
                            "own average, BH-corrected)",
                      **_LAYOUT | {"height": 120 + 28 * max(len(models), 3)})
    return fig


def _slice_order(name: str) -> tuple[int, float, str]:
    """Input-length buckets in length order ("<=N", "a-b", ">N"); other slices by name."""
    m = re.match(r"^(<=|>)?(\d+)(?:-(\d+))? chars$", name)
    if m is None:
        return (3, 0.0, name)
    rank = {"<=": 0, None: 1, ">": 2}[m.group(1)]
    return (rank, float(m.group(2)), name)


def failure_figure(report: Report) -> go.Figure:
    """Failure modes per model: stacked rates over each model's outcomes."""
    f = report.failures
    fig = go.Figure()
    models = f["model"].unique().sort().to_list()
    for mode in FAILURE_MODES:
        sub = {r["model"]: r["rate"] for r in f.filter(pl.col("mode") == mode).iter_rows(
            named=True)}
        if not sub:
            continue
        fig.add_trace(go.Bar(name=mode.replace("_", " "), y=models,
                             x=[sub.get(m, 0.0) for m in models], orientation="h"))
    fig.update_layout(title="Failure modes per model (share of its outcomes)", barmode="stack",
                      **_LAYOUT | {"height": 140 + 26 * max(len(models), 3)})
    fig.update_xaxes(tickformat=".0%")
    fig.update_yaxes(autorange="reversed")
    return fig


def report_figures(report: Report) -> dict[str, go.Figure]:
    """Every figure of the report by name: share, saving, cost_quality, failures and one
    `slices:<column>` per slice column."""
    figs = {"share": share_figure(report), "saving": saving_figure(report),
            "cost_quality": cost_quality_figure(report), "failures": failure_figure(report)}
    for column in report.slice_columns:
        if report.slices.filter(pl.col("column") == column).height:
            figs[f"slices:{column}"] = slice_figure(report, column)
    return figs


def _table(frame: pl.DataFrame, columns: dict[str, str], max_rows: int = 50) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label in columns.values())
    rows = []
    for r in frame.head(max_rows).iter_rows(named=True):
        cells = []
        for c in columns:
            v = r[c]
            if isinstance(v, float):
                v = "" if not math.isfinite(v) else (f"{v:.4g}" if abs(v) < 1 else f"{v:,.2f}")
            elif isinstance(v, list):
                v = ", ".join(map(str, v))
            cells.append(f"<td>{html.escape(str(v if v is not None else ''))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p>... {frame.height - max_rows} more rows</p>" if frame.height > max_rows else ""
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


def report_html(report: Report) -> str:
    """The one-page standalone HTML report (plotly.js embedded once, no network needed)."""
    from plotly.offline import get_plotlyjs

    h = report.settings.headline
    opts = pl.DataFrame([{
        "model": o.model, "rule": o.rule_text, "share": f"{o.share:.0%}",
        "share_ci": f"{o.share_ci[0]:.0%}-{o.share_ci[1]:.0%}",
        "ratio": o.cost_ratio,
        "kept": f"{o.quality_kept:.1%}" if math.isfinite(o.quality_kept) else "",
        "saving": o.monthly_saving_usd,
        "saving_ci": f"${o.monthly_saving_ci[0]:,.0f}-${o.monthly_saving_ci[1]:,.0f}",
    } for o in report.options]) if report.options else pl.DataFrame()
    figs = report_figures(report)
    divs = "\n".join(f'<div class="fig">{fig.to_html(full_html=False, include_plotlyjs=False)}'
                     "</div>" for fig in figs.values())
    mix = (", ".join(f"{k} {v:g}" for k, v in h.mix.items()) + f" (by {h.mix_by})"
           if h.mix else "as recorded")
    flagged = report.flagged()
    parts = [
        f"<h1>Routing report: {html.escape(report.workload)}</h1>",
        f'<p class="headline">{html.escape(report.sentence)}</p>',
        *([f'<p><b>Quality here is {html.escape(report.basis["basis"])}.</b></p>']
          if report.basis else []),
        "<p class=\"small\">"
        f"{report.n_items:,} items; strong model {html.escape(report.strong)}; quality kept "
        f">= {h.keep_quality:.0%}; {h.requests_per_day:,.0f} requests/day, 30-day month; "
        f"traffic mix {html.escape(mix)}; 95% bootstrap intervals ({h.n_boot} replicates, "
        "the rule re-chosen in each). In-sample figures: confirm on a held-out split. "
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>",
        "<h2>Cheaper models</h2>",
        _table(opts, {"model": "model", "rule": "moved requests", "share": "share",
                      "share_ci": "95% CI", "ratio": "x cheaper", "kept": "quality kept",
                      "saving": "USD/month", "saving_ci": "95% CI"}) if opts.height else
        "<p>No model is cheaper than the strong one.</p>",
        "<h2>Slices where a model is significantly worse than its own average</h2>",
        _table(flagged, {"model": "model", "column": "column", "slice": "slice", "n": "n",
                         "quality": "quality", "rest_quality": "rest", "q_value": "BH q"})
        if flagged.height else "<p>No slice is significantly worse than its model's average "
        f"(Benjamini-Hochberg, FDR {report.settings.alpha:g}).</p>",
        divs,
        "<h2>Failure modes with example items</h2>",
        _table(report.failures.filter(pl.col("mode") != "ok"),
               {"model": "model", "mode": "mode", "count": "count", "rate": "rate",
                "examples": "example items"}, max_rows=200),
    ]
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1em}"
             ".headline{font-size:1.3em;background:#eff6ff;padding:.8em;border-radius:6px}"
             ".small{color:#475569;font-size:.9em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #cbd5e1;padding:3px 8px;font-size:.85em;text-align:left}"
             ".fig{margin:1em 0}")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Routing report: {html.escape(report.workload)}</title>"
            f"<style>{style}</style><script>{get_plotlyjs()}</script></head><body>"
            + "\n".join(parts) + "</body></html>")


def write_html(report: Report, path: str | Path) -> int:
    """Write the HTML report to `path`; returns its size in bytes."""
    text = report_html(report)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target.stat().st_size
