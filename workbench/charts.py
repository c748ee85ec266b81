"""Plotly figure builders from polars frames; pages only call these and st.plotly_chart."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.express as px
import plotly.graph_objects as go
import polars as pl


def distribution(items: pl.DataFrame, column: str, title: str | None = None) -> go.Figure:
    """Bar chart of how many items fall in each value of `column` (label, difficulty...)."""
    counts = (
        items.select(pl.col(column).cast(pl.String).fill_null("(none)"))
        .group_by(column)
        .len()
        .sort("len", descending=True)
    )
    fig = px.bar(counts.to_pandas(), x=column, y="len", title=title or f"Items by {column}",
                 labels={"len": "items"})
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def cost_quality(points: pl.DataFrame, *, x: str = "cost_per_request", y: str = "quality",
                 label: str = "model", highlight: Sequence[str] = (),
                 title: str = "Quality against cost per request") -> go.Figure:
    """Scatter of quality against cost with one labelled point per row (models, policies).
    The quality axis starts at 0, and rows with `quality_lo`/`quality_hi` get their interval
    as error bars, so differences inside the noise do not look large."""
    frame = points.to_pandas()
    bars = {}
    if y == "quality" and {"quality_lo", "quality_hi"} <= set(frame.columns):
        bars = {"error_y": frame["quality_hi"] - frame[y],
                "error_y_minus": frame[y] - frame["quality_lo"]}
    fig = px.scatter(frame, x=x, y=y, text=label, title=title,
                     labels={x: "cost per request (USD)", y: "quality"}, **bars)
    # labels alternate above and below the points in cost order, and may overflow the plot
    # area, so neighbours do not overlap and long model names are not clipped at the edges
    order = frame[x].rank(method="first").fillna(0).astype(int)
    fig.update_traces(textposition=["top center" if i % 2 else "bottom center" for i in order],
                      marker={"size": 11}, cliponaxis=False)
    if highlight:
        sub = frame[frame[label].isin(list(highlight))]
        fig.add_trace(go.Scatter(x=sub[x], y=sub[y], mode="markers", name="selected",
                                 marker={"size": 16, "symbol": "star", "color": "#dc2626"}))
    fig.update_layout(height=420, margin={"l": 40, "r": 90, "t": 50, "b": 30},
                      showlegend=False)
    if y == "quality":
        fig.update_yaxes(rangemode="tozero")
    return fig


def latency_box(outcomes: pl.DataFrame) -> go.Figure:
    """Latency distribution per model (box plot, ms)."""
    fig = px.box(outcomes.select("model", "latency_ms").to_pandas(), x="model", y="latency_ms",
                 points=False, title="Latency per call (ms)")
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def sweep(frame: pl.DataFrame, param: str, singles: pl.DataFrame | None = None,
          title: str | None = None) -> go.Figure:
    """Quality and cost against one threshold (`param`: its label for a person), with single
    models and the oracle as lines."""
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=frame["value"].to_list(), y=frame["quality"].to_list(),
                             name="quality", mode="lines+markers"), secondary_y=False)
    fig.add_trace(go.Scatter(x=frame["value"].to_list(),
                             y=frame["cost_per_request"].to_list(), name="cost / request",
                             mode="lines+markers", line={"dash": "dot"}), secondary_y=True)
    if singles is not None and singles.height:
        for row in singles.iter_rows(named=True):
            fig.add_hline(y=row["quality"], line={"width": 1, "color": "#94a3b8"},
                          annotation_text=f"{row['name']} {row['quality']:.2f}",
                          annotation_position="bottom right", secondary_y=False)
    fig.update_layout(title=title or f"Quality and cost as {param} varies", height=420,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    fig.update_xaxes(title_text=param)
    fig.update_yaxes(title_text="quality", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="USD per request", secondary_y=True)
    return fig


def paired_difference(difference: float, ci: tuple[float, float], label: str,
                      title: str = "Quality difference with its 95% interval") -> go.Figure:
    """One paired difference as a point with its interval on an axis that always shows 0, so
    an interval crossing 0 (no detectable difference) is plain to see."""
    lo, hi = ci
    span = max(abs(lo), abs(hi), abs(difference), 0.01) * 1.2
    fig = go.Figure(go.Scatter(
        x=[difference], y=[label], mode="markers", marker={"size": 12, "color": "#2563eb"},
        error_x={"type": "data", "symmetric": False, "array": [hi - difference],
                 "arrayminus": [difference - lo]}))
    fig.add_vline(x=0.0, line={"width": 1, "color": "#64748b", "dash": "dash"})
    fig.update_layout(title=title, height=200, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      showlegend=False)
    fig.update_xaxes(range=[-span, span], title_text="quality points (A - B)", zeroline=True)
    return fig
