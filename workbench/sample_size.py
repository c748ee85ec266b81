"""How many items a comparison needs, and whether an interval is too narrow to decide.

A quality figure on 12 items (95% CI 0.50-1.00) cannot tell two models apart; the honest thing
is to say so and give the number of items that would. The formulas are the standard normal
approximations at a two-sided significance level `alpha` and a `power`:

- two independent proportions (each model on its own items), per arm (Fleiss, Levin and Paik,
  *Statistical Methods for Rates and Proportions*, 3rd ed., eq. 4.14, no continuity
  correction): n = (z_a sqrt(2 pbar qbar) + z_b sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2;
- paired proportions, McNemar's test (Connor 1987, *Biometrics* 43:207-211), in pairs:
  n = (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2 / delta^2, where psi is the share of
  discordant items and delta the difference in accuracy;
- a paired mean difference (fractional quality): n = ((z_a + z_b) sd / delta)^2.

Pure standard library; `workbench.paired` and the Compare and Route pages use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from workbench.errors import WorkbenchError

ALPHA = 0.05
POWER = 0.8
DETECT = 0.05  # the default difference worth detecting: 5 quality points


def _z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def _check(alpha: float, power: float, delta: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise WorkbenchError(f"significance level must be strictly between 0 and 1, got {alpha}")
    if not 0.0 < power < 1.0:
        raise WorkbenchError(f"power must be strictly between 0 and 1, got {power}")
    if not math.isfinite(delta) or delta == 0.0:
        raise WorkbenchError(f"the difference to detect must be a non-zero number, got {delta}")


def n_two_proportions(p1: float, p2: float, *, alpha: float = ALPHA,
                      power: float = POWER) -> int:
    """Items per model to detect accuracy `p1` against `p2` when each model is scored on its
    own items (two-sided test at `alpha`, with `power`); rounded up."""
    for p in (p1, p2):
        if not 0.0 <= p <= 1.0:
            raise WorkbenchError(f"a proportion must be between 0 and 1, got {p}")
    _check(alpha, power, p1 - p2)
    pbar = (p1 + p2) / 2.0
    num = (_z(1.0 - alpha / 2.0) * math.sqrt(2.0 * pbar * (1.0 - pbar))
           + _z(power) * math.sqrt(p1 * (1.0 - p1) + p2 * (1.0 - p2)))
    return math.ceil(num**2 / (p1 - p2) ** 2 - 1e-9)


def n_paired_proportions(p_a_only: float, p_b_only: float, *, alpha: float = ALPHA,
                         power: float = POWER) -> int:
    """Items (pairs) McNemar's test needs to detect the difference when a share `p_a_only`
    of items only A gets right and `p_b_only` only B; rounded up."""
    psi, delta = p_a_only + p_b_only, p_a_only - p_b_only
    if p_a_only < 0 or p_b_only < 0 or psi > 1.0:
        raise WorkbenchError(f"discordant shares must be >= 0 and sum to at most 1, got "
                             f"{p_a_only} and {p_b_only}")
    _check(alpha, power, delta)
    num = (_z(1.0 - alpha / 2.0) * math.sqrt(psi)
           + _z(power) * math.sqrt(max(psi - delta**2, 0.0)))
    return math.ceil(num**2 / delta**2 - 1e-9)


def n_paired_mean(sd_difference: float, delta: float, *, alpha: float = ALPHA,
                  power: float = POWER) -> int:
    """Items to detect a mean paired difference `delta` when per-item differences have
    standard deviation `sd_difference` (fractional quality scores); rounded up."""
    if not math.isfinite(sd_difference) or sd_difference < 0:
        raise WorkbenchError(f"standard deviation must be >= 0, got {sd_difference}")
    _check(alpha, power, delta)
    n = ((_z(1.0 - alpha / 2.0) + _z(power)) * sd_difference / delta) ** 2
    return max(2, math.ceil(n - 1e-9))


@dataclass(frozen=True)
class Precision:
    """Is one quality figure precise enough to tell it from a model `detect` worse? `decisive`
    when the interval's half-width is at most `detect`; `items_needed` per model to detect
    that difference on independent items (fewer suffice when paired); `message` says it."""

    estimate: float
    ci: tuple[float, float]
    n: int
    detect: float
    decisive: bool
    items_needed: int | None
    message: str

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"estimate": self.estimate, "ci": list(self.ci), "n": self.n,
                "detect": self.detect, "decisive": self.decisive,
                "items_needed": self.items_needed, "message": self.message}


def points(delta: float) -> str:
    """A quality difference in points of 100: 0.05 -> '5 points'."""
    v = abs(delta) * 100
    text = f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"
    return f"{text} point{'' if text == '1' else 's'}"


def precision(estimate: float, ci: tuple[float, float], n: int, *, detect: float = DETECT,
              alpha: float = ALPHA, power: float = POWER) -> Precision:
    """Whether a quality of `estimate` (interval `ci`, `n` scored items) can tell a `detect`
    difference, and how many items would (n_two_proportions against estimate - detect, or
    + detect near 0)."""
    if not 0.0 < detect < 1.0:
        raise WorkbenchError(f"the difference to detect must be between 0 and 1, got {detect}")
    lo, hi = ci
    if n == 0 or not (math.isfinite(estimate) and math.isfinite(lo) and math.isfinite(hi)):
        return Precision(estimate, ci, n, detect, False, None,
                         "no scored items: nothing to decide on")
    p = min(max(estimate, 0.0), 1.0)
    other = p - detect if p - detect >= 0.0 else p + detect
    need = n_two_proportions(p, other, alpha=alpha, power=power)
    half = (hi - lo) / 2.0
    decisive = half <= detect + 1e-12
    span = f"{estimate:.3f} (95% CI {lo:.3f}-{hi:.3f}, n={n})"
    if decisive:
        message = f"quality {span}: precise enough to tell a difference of {points(detect)}"
    else:
        message = (f"quality {span}: too few items to decide, the interval spans "
                   f"{points(hi - lo)}; telling a difference of {points(detect)} needs about "
                   f"{need:,} items per model (fewer when both run on the same items)")
    return Precision(estimate, (lo, hi), n, detect, decisive, need, message)


__all__ = ["ALPHA", "DETECT", "POWER", "Precision", "n_paired_mean", "n_paired_proportions",
           "n_two_proportions", "points", "precision"]
