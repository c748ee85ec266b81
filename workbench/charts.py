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
    """Scatter of quality against cost with one labelled point per row (models, policies)."""
    frame = points.to_pandas()
    fig = px.scatter(frame, x=x, y=y, text=label, title=title,
                     labels={x: "cost per request (USD)", y: "quality"})
    fig.update_traces(textposition="top center", marker={"size": 11})
    if highlight:
        sub = frame[frame[label].isin(list(highlight))]
        fig.add_trace(go.Scatter(x=sub[x], y=sub[y], mode="markers", name="selected",
                                 marker={"size": 16, "symbol": "star", "color": "#dc2626"}))
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10}, showlegend=False)
    return fig


def latency_box(outcomes: pl.DataFrame) -> go.Figure:
    """Latency distribution per model (box plot, ms)."""
    fig = px.box(outcomes.select("model", "latency_ms").to_pandas(), x="model", y="latency_ms",
                 points=False, title="Latency per call (ms)")
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig
