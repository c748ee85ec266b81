"""Learned router: learns text-dependent success, deterministic, honest cross-fitting."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from workbench.learned import LearnedRouter, cross_fit_predict, featurize
from workbench.policy import LearnedRouterSpec, Policy
from workbench.replay import replay

TOPICS = ["algebra proof", "weather chat", "refund order", "poem haiku", "integral calculus"]
HARD = {0, 4}


def synthetic(n: int = 600, models: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, len(TOPICS), n)
    items = pl.DataFrame({
        "item_id": [f"i{i}" for i in range(n)],
        "input": [f"please help with {TOPICS[t]} number {rng.integers(0, 1000)}" for t in topic],
    })
    hard = np.isin(topic, list(HARD))
    frames = []
    for j in range(models):
        p = np.where(hard, 0.1 + 0.4 * j, 0.9)
        frames.append(pl.DataFrame({
            "item_id": items["item_id"], "model": f"m{j}",
            "quality": (rng.random(n) < p).astype(float), "cost_usd": 0.001 * 10.0 ** j,
        }))
    return items, pl.concat(frames), hard


@pytest.mark.parametrize("method", ["logistic", "knn"])
def test_router_learns_which_texts_each_model_fails(method: str):
    items, outcomes, hard = synthetic()
    train, test = items.head(400), items.tail(200)
    spec = LearnedRouterSpec(method=method)
    router = LearnedRouter.fit(train, outcomes, ["m0", "m1", "m2"], spec)
    pred = router.predict(test)
    assert pred.columns == ["item_id", "m0", "m1", "m2"]
    p0 = pred["m0"].to_numpy()
    h = hard[400:]
    assert p0[h].mean() < 0.35 and p0[~h].mean() > 0.7
    again = LearnedRouter.fit(train, outcomes, ["m0", "m1", "m2"], spec).predict(test)
    assert again.equals(pred)
    assert router.mean_cost["m2"] == pytest.approx(0.1)


def test_featurize_is_stable_and_unit_length():
    spec = LearnedRouterSpec(n_features=256)
    x = featurize(pl.Series(["Hello world", "", None, "hello WORLD"]), spec)
    assert x.shape == (4, 256)
    assert np.allclose(np.linalg.norm(x[[0, 3]], axis=1), 1.0) and not x[1].any()
    assert np.array_equal(x[0], x[3])  # lower-cased


def test_cross_fitting_and_learned_preroute_in_replay():
    items, outcomes, hard = synthetic(n=300)
    spec = LearnedRouterSpec(method="knn", folds=3)
    oof = cross_fit_predict(items, outcomes, ["m0", "m2"], spec)
    assert oof.height == 300 and oof["m0"].to_numpy()[hard].mean() < 0.4
    policy = Policy.validate_data({
        "models": {f"m{j}": {"model": f"p/m{j}"} for j in range(3)},
        "router": spec.model_dump(),
        "preroute": {"kind": "learned", "cost_weight": 1.0},
        "tiers": [{"model": "m0"}, {"model": "m2"}],
    })
    res = replay(policy, items, outcomes)
    trace = res.trace
    to_strong = trace["answered_by"].cast(pl.String).to_numpy() == "m2"
    # the router sends mostly the hard topics to the strong model
    assert to_strong[hard].mean() > 0.8 and to_strong[~hard].mean() < 0.2
    assert res.metrics.quality > max(
        res.baselines["single:m0"].quality, 0.9 * res.baselines["single:m2"].quality)
    # a fitted router passed in is used instead of cross-fitting
    fitted = LearnedRouter.fit(items.head(150), outcomes, ["m0", "m2"], spec)
    held = items.tail(150)
    res2 = replay(policy, held, outcomes.filter(pl.col("item_id").is_in(held["item_id"].implode())),
                  router=fitted)
    assert res2.metrics.n == 150
