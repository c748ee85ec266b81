"""Plotly figures for the Tune page: Pareto front against single models and the oracle,
optimization history and parameter importances. Built from a TuneResult or a stored study."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl

from workbench.tune import TuneResult, load_study

_LAYOUT = {"height": 460, "margin": {"l": 10, "r": 10, "t": 50, "b": 10}}


def pareto_figure(result: TuneResult, split: str = "holdout") -> go.Figure:
    """Quality against cost per request on `split` ('train' or 'holdout'): every feasible
    trial (train only), the tuned Pareto front (hover: the policy), single models with their
    95% CIs, and the oracle. Cost is on a log axis (models differ by 100x)."""
    if split not in ("train", "holdout"):
        raise ValueError("split must be 'train' or 'holdout'")
    fig = go.Figure()
    if split == "train":
        feas = result.trials.filter(pl.col("feasible") & pl.col("quality").is_not_null())
        fig.add_trace(go.Scatter(
            x=feas["cost_per_request"].to_list(), y=feas["quality"].to_list(), mode="markers",
            name="feasible trials", marker={"size": 5, "color": "#94a3b8", "opacity": 0.5},
            text=[f"trial {n}" for n in feas["number"].to_list()],
            hovertemplate="%{text}<br>quality %{y:.4f}<br>$%{x:.6f}/request<extra></extra>",
        ))
    q_col = "quality" if split == "train" else "holdout_quality"
    c_col = "cost_per_request" if split == "train" else "holdout_cost_per_request"
    front = result.pareto.sort(c_col)
    fig.add_trace(go.Scatter(
        x=front[c_col].to_list(), y=front[q_col].to_list(), mode="lines+markers",
        name="tuned policies (Pareto front on train)", line={"shape": "hv", "color": "#2563eb"},
        marker={"size": 8, "color": "#2563eb"},
        customdata=np.column_stack([front["number"].to_numpy(),
                                    np.array(front["summary"].to_list(), dtype=object)])
        if front.height else None,
        hovertemplate="trial %{customdata[0]}<br>quality %{y:.4f}<br>$%{x:.6f}/request"
                      "<br>%{customdata[1]}<extra></extra>",
    ))
    singles = result.singles.filter(pl.col("split") == split)
    if singles.height:
        q = singles["quality"].to_numpy()
        fig.add_trace(go.Scatter(
            x=singles["cost_per_request"].to_list(), y=q.tolist(), mode="markers+text",
            name="single models", text=singles["model"].to_list(), textposition="top center",
            marker={"size": 10, "symbol": "diamond", "color": "#f97316"},
            error_y={"type": "data", "symmetric": False,
                     "array": (singles["quality_hi"].to_numpy() - q).tolist(),
                     "arrayminus": (q - singles["quality_lo"].to_numpy()).tolist(),
                     "thickness": 1},
            hovertemplate="%{text}<br>quality %{y:.4f}<br>$%{x:.6f}/request<extra></extra>",
        ))
    oracle = result.oracle.get(split)
    if oracle and oracle.get("quality") is not None:
        fig.add_trace(go.Scatter(
            x=[oracle["cost_per_request"]], y=[oracle["quality"]], mode="markers+text",
            name="oracle", text=["oracle"], textposition="bottom center",
            marker={"size": 14, "symbol": "star", "color": "#16a34a"},
            hovertemplate="oracle (cheapest correct model per item)<br>quality %{y:.4f}"
                          "<br>$%{x:.6f}/request<extra></extra>",
        ))
    best = result.train if split == "train" else result.holdout
    if best.get("quality") is not None:
        fig.add_trace(go.Scatter(
            x=[best["cost_per_request"]], y=[best["quality"]], mode="markers",
            name=f"chosen policy (trial {result.best_trial})",
            marker={"size": 16, "symbol": "circle-open", "color": "#dc2626",
                    "line": {"width": 3}},
        ))
    if result.quality_floor is not None:
        fig.add_hline(y=result.quality_floor, line_dash="dot", line_color="#64748b",
                      annotation_text="quality floor")
    fig.update_layout(title=f"Quality against cost ({split})", xaxis_type="log",
                      xaxis_title="cost per request (USD, log scale)", yaxis_title="quality",
                      legend={"orientation": "h", "y": -0.2}, **_LAYOUT)
    return fig


def history_figure(result: TuneResult) -> go.Figure:
    """Objective value per trial with the best-so-far line (single objective), or quality
    and cost per trial (Pareto studies); infeasible trials are drawn hollow."""
    trials = result.trials.filter(pl.col("state") == "COMPLETE").sort("number")
    fig = go.Figure()
    if trials.height == 0:
        fig.update_layout(title="No completed trials yet", **_LAYOUT)
        return fig
    numbers = trials["number"].to_list()
    feasible = trials["feasible"].to_list()
    symbols = ["circle" if f else "circle-open" for f in feasible]
    if result.objective.kind == "pareto":
        fig.add_trace(go.Scatter(x=numbers, y=trials["quality"].to_list(), mode="markers",
                                 name="quality", marker={"symbol": symbols}))
        fig.add_trace(go.Scatter(x=numbers, y=trials["cost_per_request"].to_list(),
                                 mode="markers", name="$ / request", yaxis="y2",
                                 marker={"symbol": symbols}))
        fig.update_layout(yaxis2={"overlaying": "y", "side": "right", "title": "$ / request"})
    else:
        values = [v[0] if v else math.nan for v in trials["values"].to_list()]
        minimize = result.objective.kind == "min-cost"
        best: list[float] = []
        current = math.inf if minimize else -math.inf
        for v, f in zip(values, feasible, strict=True):
            if f and not math.isnan(v):
                current = min(current, v) if minimize else max(current, v)
            best.append(current if math.isfinite(current) else math.nan)
        label = {"min-cost": "$ / request", "max-quality": "quality",
                 "weighted": "quality - weight x cost"}[result.objective.kind]
        fig.add_trace(go.Scatter(x=numbers, y=values, mode="markers", name=label,
                                 marker={"symbol": symbols, "color": "#2563eb"}))
        fig.add_trace(go.Scatter(x=numbers, y=best, mode="lines", name="best feasible so far",
                                 line={"color": "#dc2626"}))
        fig.update_layout(yaxis_title=label)
    fig.update_layout(title="Optimization history (hollow = infeasible)", xaxis_title="trial",
                      **_LAYOUT)
    return fig


def importance_figure(storage: str, study_name: str, target: str = "auto") -> go.Figure:
    """Parameter importances (optuna.importance with its default evaluator) of a stored
    study; for Pareto studies the target is quality (target='cost' for cost per request)."""
    import optuna

    study = load_study(storage, study_name)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    fig = go.Figure()
    if len(complete) < 4 or not complete[0].params:
        fig.update_layout(title="Parameter importances need at least 4 completed trials",
                          **_LAYOUT)
        return fig
    fn: Any = None
    if len(study.directions) > 1:
        # the default evaluator ranks by low target values: negate quality (maximised)
        fn = ((lambda t: t.values[1]) if target == "cost"  # noqa: E731
              else (lambda t: -t.values[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importances = optuna.importance.get_param_importances(study, target=fn)
    names = list(importances)[::-1]
    fig.add_trace(go.Bar(x=[importances[n] for n in names], y=names, orientation="h",
                         marker={"color": "#2563eb"}))
    fig.update_layout(title="Parameter importances (share of explained variance)",
                      xaxis_title="importance", **_LAYOUT)
    return fig


def params_frame(result: TuneResult) -> pl.DataFrame:
    """The trials frame with one column per searched parameter (for tables and filters)."""
    params = [json.loads(p) for p in result.trials["params"].to_list()]
    keys = sorted({k for p in params for k in p})
    cols = {k: [p.get(k) for p in params] for k in keys}
    extra = pl.DataFrame({k: pl.Series(k, v, strict=False) for k, v in cols.items()})
    return pl.concat([result.trials.drop("params"), extra], how="horizontal")
