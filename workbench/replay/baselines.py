"""Baselines a policy is judged against: each single model, random routing between the cheap
and strong tier at the policy's strong share, and the oracle (per item the best answer,
cheapest among ties)."""

from __future__ import annotations

import numpy as np

from workbench.metrics import N_BOOT, Metrics, aggregate
from workbench.replay.workload import Workload


def _single_arrays(wl: Workload, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                       np.ndarray]:
    j = wl.col[model]
    rows = wl.has[:, j]
    q = np.where(wl.error[rows, j], 0.0, wl.quality[rows, j])
    return q, wl.cost[rows, j], wl.latency[rows, j], wl.error[rows, j]


def baselines(
    wl: Workload, *, strong_share: float, cheap: str, strong: str, seed: int = 0,
    n_boot: int = N_BOOT,
) -> dict[str, Metrics]:
    """Single models (over the items each has outcomes for), random routing between `cheap`
    and `strong` at `strong_share`, and the oracle (per item the highest quality, cheapest
    among ties: the cheapest correct model, or the cheapest overall when none is correct)."""

    def compute_fixed() -> dict[str, Metrics]:
        out: dict[str, Metrics] = {}
        for m in wl.models:
            q, c, lat, e = _single_arrays(wl, m)
            if q.size:
                out[f"single:{m}"] = aggregate(
                    q, c, lat, errored=e, strong=np.ones(q.size, dtype=bool),
                    answered_codes=np.zeros(q.size, dtype=np.int64), answered_names=(m,),
                    n_boot=n_boot, seed=seed,
                )
        # oracle: unscored or errored answers count as not correct when choosing
        qz = np.where(wl.has & ~wl.error, np.nan_to_num(wl.quality, nan=0.0), 0.0)
        qz = np.where(wl.has, qz, -np.inf)
        rows = wl.has.any(axis=1)
        best = qz.max(axis=1)
        cost_pick = np.where(qz == best[:, None], wl.cost, np.inf)
        pick = np.argmin(cost_pick, axis=1)
        r = np.arange(wl.n)
        out["oracle"] = aggregate(
            best[rows], wl.cost[r, pick][rows], wl.latency[r, pick][rows],
            answered_codes=pick[rows], answered_names=wl.models, n_boot=n_boot, seed=seed,
        )
        return out

    result = dict(wl.cached(("baselines", seed, n_boot), compute_fixed))
    if cheap in wl.col and strong in wl.col:
        jc, js = wl.col[cheap], wl.col[strong]
        rows = np.flatnonzero(wl.has[:, jc] & wl.has[:, js])
        if rows.size:
            rng = np.random.default_rng(seed)
            n_strong = int(round(strong_share * rows.size))
            to_strong = np.zeros(rows.size, dtype=bool)
            to_strong[rng.permutation(rows.size)[:n_strong]] = True
            col = np.where(to_strong, js, jc)
            q = np.where(wl.error[rows, col], 0.0, wl.quality[rows, col])
            result["random"] = aggregate(
                q, wl.cost[rows, col], wl.latency[rows, col], errored=wl.error[rows, col],
                strong=to_strong, answered_codes=to_strong.astype(np.int64),
                answered_names=(cheap, strong), n_boot=n_boot, seed=seed,
            )
    return result


__all__ = ["baselines"]
