"""Drift gate: does production traffic (a decision log) still look like the calibration workload?

Compared, log vs replay of the policy over the workload:
- escalation rate and refusal rate: two-proportion z-test; a difference counts when
  p < `alpha` and it is at least `min_rate_diff` in absolute terms;
- the cheap tier's confidence distribution: population stability index (PSI, on the
  reference's decile bins) and the two-sample Kolmogorov-Smirnov test; drift when
  PSI >= `psi_threshold` or KS p < `alpha`.
Below `min_samples` confidences on either side the distribution tests are skipped (noted).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.policy import Policy

PSI_THRESHOLD = 0.2
ALPHA = 0.01
MIN_RATE_DIFF = 0.05
MIN_SAMPLES = 20


@dataclass(frozen=True)
class DriftReport:
    """Comparison of a decision log with the calibration workload; `drifted` is the gate."""

    n_log: int
    n_reference: int
    escalation_log: float
    escalation_reference: float
    escalation_p: float
    refusal_log: float
    refusal_reference: float
    refusal_p: float
    n_conf_log: int
    n_conf_reference: int
    psi: float
    ks: float
    ks_p: float
    drifted: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["reasons"], d["notes"] = list(self.reasons), list(self.notes)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    def summary(self) -> str:
        """One line: DRIFT with the reasons, or ok with the figures."""
        figs = (f"escalation {self.escalation_log:.3f} vs {self.escalation_reference:.3f}, "
                f"refusal {self.refusal_log:.3f} vs {self.refusal_reference:.3f}, "
                f"PSI {self.psi:.3f}, KS {self.ks:.3f} (p={self.ks_p:.3g})")
        if self.drifted:
            return "DRIFT: " + "; ".join(self.reasons) + f" [{figs}]"
        return f"ok: no drift [{figs}]"


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`, on the reference's
    quantile bins (ties merged), with a small floor on empty bins."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.size == 0 or cur.size == 0:
        return math.nan
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1)
    eps = 1e-4
    rp = np.maximum(r / ref.size, eps)
    cp = np.maximum(c / cur.size, eps)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and asymptotic p-value (Kolmogorov series with
    Stephens' small-sample correction)."""
    x = np.sort(np.asarray(a, dtype=np.float64))
    y = np.sort(np.asarray(b, dtype=np.float64))
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan
    grid = np.concatenate([x, y])
    fx = np.searchsorted(x, grid, side="right") / x.size
    fy = np.searchsorted(y, grid, side="right") / y.size
    d = float(np.max(np.abs(fx - fy)))
    ne = x.size * y.size / (x.size + y.size)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    if lam < 1e-3:
        return d, 1.0
    j = np.arange(1, 101)
    p = float(2 * np.sum((-1.0) ** (j - 1) * np.exp(-2 * j**2 * lam**2)))
    return d, min(1.0, max(0.0, p))


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1.0 when undefined)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if k1 / n1 == k2 / n2 else 0.0
    z = abs(k1 / n1 - k2 / n2) / se
    return math.erfc(z / math.sqrt(2))


def read_decision_log(path: str | os.PathLike[str], policy: str | None = None) -> pl.DataFrame:
    """The decision log as a frame (refused, escalated, cheap_confidence...); only records of
    `policy` when given. Clear errors for a missing or empty log."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise WorkbenchError(f"decision log {p} does not exist")
    from workbench.router import read_log

    records = read_log(p)
    if policy is not None:
        records = [r for r in records if r.get("policy") == policy]
    if not records:
        who = f" for policy {policy!r}" if policy else ""
        raise WorkbenchError(f"decision log {p} has no records{who}")
    return pl.DataFrame(
        {
            "refused": [bool(r.get("refused")) for r in records],
            "escalated": [bool(r.get("escalated")) for r in records],
            "cheap_confidence": [r.get("cheap_confidence") for r in records],
        },
        schema={"refused": pl.Boolean, "escalated": pl.Boolean,
                "cheap_confidence": pl.Float64},
    )


def reference_from_workload(policy: Policy, store: Any, workload: str
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(escalated, refused, cheap-tier confidences) of replaying `policy` over a workload;
    confidences of the items the cheap tier was attempted on."""
    from workbench.replay import replay

    items = store.recorded_items(workload)
    outcomes = store.outcomes(workload, policy.used_models)
    result = replay(policy, items, outcomes)
    trace = result.trace
    cheap = policy.tier_models[0]
    tried_cheap = trace.select(
        pl.col("item_id"),
        pl.col("models_tried").cast(pl.String).fill_null("").str.split(">").list.first()
        .eq(cheap).alias("tried"),
    ).filter(pl.col("tried"))
    conf = (
        outcomes.filter(pl.col("model") == cheap)
        .select(pl.col("item_id").cast(pl.String), pl.col("confidence").cast(pl.Float64))
        .join(tried_cheap.select(pl.col("item_id").cast(pl.String)), on="item_id")
        .drop_nulls("confidence")["confidence"].to_numpy()
    )
    return (trace["escalated"].to_numpy(), trace["refused"].to_numpy(), conf)


def compare(
    log: pl.DataFrame,
    escalated_ref: np.ndarray,
    refused_ref: np.ndarray,
    conf_ref: np.ndarray,
    *,
    psi_threshold: float = PSI_THRESHOLD,
    alpha: float = ALPHA,
    min_rate_diff: float = MIN_RATE_DIFF,
    min_samples: int = MIN_SAMPLES,
) -> DriftReport:
    """The drift report of a log frame against reference arrays (see the module docstring)."""
    n_log, n_ref = log.height, int(escalated_ref.size)
    reasons: list[str] = []
    notes: list[str] = []
    answered = log.filter(~pl.col("refused"))
    esc_log_k = int(answered["escalated"].sum())
    ans_ref = ~refused_ref.astype(bool)
    esc_ref_k = int(escalated_ref[ans_ref].sum())
    n_ans_log, n_ans_ref = answered.height, int(ans_ref.sum())
    esc_log = esc_log_k / n_ans_log if n_ans_log else math.nan
    esc_ref = esc_ref_k / n_ans_ref if n_ans_ref else math.nan
    esc_p = two_proportion_p(esc_log_k, n_ans_log, esc_ref_k, n_ans_ref)
    if esc_p < alpha and abs(esc_log - esc_ref) >= min_rate_diff:
        reasons.append(f"escalation rate {esc_log:.3f} vs {esc_ref:.3f} (p={esc_p:.2g})")
    ref_log_k = int(log["refused"].sum())
    ref_ref_k = int(refused_ref.sum())
    ref_log, ref_ref = ref_log_k / n_log, ref_ref_k / n_ref if n_ref else math.nan
    ref_p = two_proportion_p(ref_log_k, n_log, ref_ref_k, n_ref)
    if ref_p < alpha and abs(ref_log - ref_ref) >= min_rate_diff:
        reasons.append(f"refusal rate {ref_log:.3f} vs {ref_ref:.3f} (p={ref_p:.2g})")
    conf_log = log["cheap_confidence"].drop_nulls().drop_nans().to_numpy()
    conf_ref = np.asarray(conf_ref, dtype=np.float64)
    conf_ref = conf_ref[~np.isnan(conf_ref)]
    value_psi = d = p_ks = math.nan
    if conf_log.size >= min_samples and conf_ref.size >= min_samples:
        value_psi = psi(conf_ref, conf_log)
        d, p_ks = ks_2samp(conf_ref, conf_log)
        if value_psi >= psi_threshold:
            reasons.append(f"cheap-tier confidence PSI {value_psi:.3f} >= {psi_threshold}")
        if p_ks < alpha:
            reasons.append(f"cheap-tier confidence KS {d:.3f} (p={p_ks:.2g} < {alpha})")
    else:
        notes.append(f"confidence tests skipped: {conf_log.size} log and {conf_ref.size} "
                     f"reference confidences (need {min_samples} each)")
    return DriftReport(
        n_log=n_log, n_reference=n_ref, escalation_log=esc_log, escalation_reference=esc_ref,
        escalation_p=esc_p, refusal_log=ref_log, refusal_reference=ref_ref, refusal_p=ref_p,
        n_conf_log=int(conf_log.size), n_conf_reference=int(conf_ref.size), psi=value_psi,
        ks=d, ks_p=p_ks, drifted=bool(reasons), reasons=tuple(reasons), notes=tuple(notes),
    )


def drift_report(
    policy: Policy,
    log_path: str | os.PathLike[str],
    store: Any,
    workload: str | None = None,
    **thresholds: Any,
) -> DriftReport:
    """Compare the decision log of `policy` with its calibration workload (`workload`, else
    the one named in the policy's provenance)."""
    name = workload or (policy.provenance.workload if policy.provenance else None)
    if not name:
        raise WorkbenchError(
            "no calibration workload: pass --workload, or export the policy with provenance "
            "naming its workload"
        )
    log = read_decision_log(log_path, policy.name)
    esc, ref, conf = reference_from_workload(policy, store, name)
    return compare(log, esc, ref, conf, **thresholds)
