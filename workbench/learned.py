"""Learned multi-model router: hashed word/char n-grams + per-model logistic regression or kNN.

Pure numpy (no scikit-learn): texts are hashed into `n_features` buckets with a fixed random
table (stable across runs and library versions), features are log counts scaled to unit
length, and each model gets a logistic regression on its recorded success (quality; errors
count 0, unscored answers are left out) fitted by full-batch Nesterov gradient descent, or a
cosine kNN average. Fit only on a train split; `cross_fit_predict` gives out-of-fold
predictions for evaluating on the same items honestly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.policy import LearnedRouterSpec

_TABLE_SEED = 0x5EED_F00D
_MAX_POS = 32
_GOLD = np.uint64(0x9E3779B97F4A7C15)



def _tables(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_TABLE_SEED + seed)
    words = rng.integers(0, 2**63, size=(_MAX_POS, 256), dtype=np.uint64)
    chars = rng.integers(0, 2**63, size=(8, 256), dtype=np.uint64)
    return words, chars


def _bucket(h: np.ndarray, salt: int, dim: int) -> np.ndarray:
    """Mix a 64-bit hash and map it to [0, dim) by multiply-shift (no modulo)."""
    h = h ^ np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(31)
    return (((h >> np.uint64(32)) * np.uint64(dim)) >> np.uint64(32)).astype(np.int64)


def featurize(texts: pl.Series, spec: LearnedRouterSpec) -> np.ndarray:
    """Dense (n, n_features) float32 matrix of hashed n-gram log counts, rows of unit length."""
    s = texts.cast(pl.String).fill_null("").str.to_lowercase()
    n, dim = s.len(), spec.n_features
    lens = s.str.len_bytes().to_numpy().astype(np.int64)
    data = np.frombuffer("".join(s.to_list()).encode("utf-8"), dtype=np.uint8)
    doc = np.repeat(np.arange(n, dtype=np.int64), lens)
    wtab, ctab = _tables(spec.seed)
    keys: list[np.ndarray] = []
    if data.size:
        boundary = np.ones(data.size, dtype=bool)
        boundary[1:] = doc[1:] != doc[:-1]
        is_word = ((data >= 48) & (data <= 57)) | ((data >= 97) & (data <= 122)) | (data >= 128)
        prev = np.zeros(data.size, dtype=bool)
        prev[1:] = is_word[:-1]
        wstart = is_word & (~prev | boundary)
        wpos = np.flatnonzero(is_word)
        if wpos.size:
            word_id = np.cumsum(wstart)[wpos] - 1
            starts = np.flatnonzero(wstart)
            offset = np.minimum(wpos - starts[word_id], _MAX_POS - 1)
            contrib = wtab[offset, data[wpos]]
            seg = np.flatnonzero(np.r_[True, word_id[1:] != word_id[:-1]])
            wh = np.add.reduceat(contrib, seg)
            wdoc = doc[starts]
            keys.append(wdoc * dim + _bucket(wh, 1, dim))
            h_prev = wh
            for order in range(2, spec.word_ngrams + 1):
                h_prev = h_prev[:-1] * _GOLD + wh[order - 1:]
                first_doc = wdoc[:h_prev.size]
                same = first_doc == wdoc[order - 1:]
                keys.append((first_doc * dim + _bucket(h_prev, order, dim))[same])
        for size in spec.char_ngrams:
            m = data.size - size + 1
            if m <= 0:
                continue
            valid = doc[size - 1:] == doc[:m]
            h = np.zeros(m, dtype=np.uint64)
            for o in range(size):
                h += ctab[o % 8, data[o:o + m]]
            keys.append((doc[:m] * dim + _bucket(h, 100 + size, dim))[valid])
    flat = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    counts = np.bincount(flat, minlength=n * dim).reshape(n, dim).astype(np.float32)
    x = np.log1p(counts)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _targets(items: pl.DataFrame, outcomes: pl.DataFrame, models: Sequence[str]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(success (n, M), observed mask (n, M), mean cost per model) aligned to `items`."""
    ids = items["item_id"].cast(pl.String)
    index = pl.DataFrame({"item_id": ids, "_row": np.arange(items.height)})
    cols = {m: j for j, m in enumerate(models)}
    o = outcomes.filter(pl.col("model").is_in(list(models))).with_columns(
        pl.col("item_id").cast(pl.String)).join(index, on="item_id")
    n, k = items.height, len(models)
    y = np.zeros((n, k))
    mask = np.zeros((n, k), dtype=bool)
    rows = o["_row"].to_numpy()
    cj = np.array([cols[m] for m in o["model"].to_list()], dtype=np.int64)
    q = o["quality"].cast(pl.Float64).to_numpy()
    err = (o["error"].is_not_null().to_numpy() if "error" in o.columns
           else np.zeros(o.height, dtype=bool))
    q = np.where(err, 0.0, q)
    seen = ~np.isnan(q)
    y[rows[seen], cj[seen]] = q[seen]
    mask[rows[seen], cj[seen]] = True
    cost = o["cost_usd"].cast(pl.Float64).fill_null(0.0).to_numpy()
    mean_cost = np.array([cost[cj == j].mean() if (cj == j).any() else 0.0 for j in range(k)])
    return y, mask, mean_cost


def _idf(x: np.ndarray) -> np.ndarray:
    """Smoothed inverse document frequency per bucket (shared few-shot prefixes fade out)."""
    df = (x > 0).sum(axis=0)
    return (np.log((1.0 + x.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)


def _reweight(x: np.ndarray, idf: np.ndarray | None) -> np.ndarray:
    """Rows of `x` times idf, back to unit length."""
    if idf is None:
        return x
    z = x * idf[None, :]
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norms > 0, norms, 1.0)


def _top_eigenvalue(xt: np.ndarray, x_scaled: np.ndarray, iters: int = 20) -> float:
    """Largest eigenvalue of xt @ x_scaled by power iteration (deterministic start)."""
    v = np.ones(xt.shape[0], dtype=np.float32) / np.sqrt(xt.shape[0])
    lam = 0.0
    for _ in range(iters):
        u = xt @ (x_scaled @ v)
        lam = float(np.linalg.norm(u))
        if lam == 0.0:
            return 0.0
        v = u / lam
    return lam


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class LearnedRouter:
    """A fitted router: predicted success per model for new items."""

    spec: LearnedRouterSpec
    models: tuple[str, ...]
    mean_cost: dict[str, float]
    idf: np.ndarray | None = field(default=None, repr=False)
    weights: np.ndarray | None = field(default=None, repr=False)
    bias: np.ndarray | None = field(default=None, repr=False)
    train_x: np.ndarray | None = field(default=None, repr=False)
    train_y: np.ndarray | None = field(default=None, repr=False)
    train_mask: np.ndarray | None = field(default=None, repr=False)
    prior: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def fit(
        cls,
        items: pl.DataFrame,
        outcomes: pl.DataFrame,
        models: Sequence[str],
        spec: LearnedRouterSpec | None = None,
    ) -> LearnedRouter:
        """Fit on `items` (a train split) and their recorded `outcomes` for `models`."""
        spec = spec or LearnedRouterSpec()
        models = tuple(models)
        absent = sorted(set(models) - set(outcomes["model"].unique().to_list()))
        if absent:
            raise WorkbenchError(f"no outcomes to train the router for model(s) {absent}")
        y, mask, mean_cost = _targets(items, outcomes, models)
        x = featurize(items["input"], spec)
        idf = _idf(x)
        return cls._fit_arrays(spec, models, _reweight(x, idf), y, mask, mean_cost, idf)

    @classmethod
    def _fit_arrays(cls, spec: LearnedRouterSpec, models: tuple[str, ...], x: np.ndarray,
                    y: np.ndarray, mask: np.ndarray, mean_cost: np.ndarray,
                    idf: np.ndarray) -> LearnedRouter:
        counts = mask.sum(axis=0)
        prior = np.where(counts > 0, (y * mask).sum(axis=0) / np.maximum(counts, 1), 0.5)
        costs = {m: float(c) for m, c in zip(models, mean_cost, strict=True)}
        if spec.method == "knn":
            return cls(spec, models, costs, idf=idf, train_x=x, train_y=y, train_mask=mask,
                       prior=prior)
        p0 = np.clip(prior, 1e-3, 1 - 1e-3)
        b = np.log(p0 / (1 - p0)).astype(np.float32)
        dim = x.shape[1]
        used = np.flatnonzero((x != 0).any(axis=0))  # unused buckets keep weight 0
        x = x[:, used]
        w = np.zeros((used.size, len(models)), dtype=np.float32)
        vel_w = np.zeros_like(w)
        vel_b = np.zeros_like(b)
        scale = (mask / np.maximum(counts, 1)).astype(np.float32)
        yt = y.astype(np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        xt = np.ascontiguousarray(x.T)
        # step 1/L from the loss curvature, bias included as a constant feature:
        # L <= (max eig(X' diag(scale) X) + max eig(1' diag(scale) 1)) / 4 + l2
        lip = (_top_eigenvalue(xt, x * scale.max(axis=1, keepdims=True))
               + float(scale.sum(axis=0).max())) / 4.0 + spec.l2
        mom = np.float32(0.9)
        lr = np.float32(spec.learning_rate / max(lip, 1e-12))
        l2 = np.float32(spec.l2)
        for _ in range(spec.epochs):
            look_w = w + mom * vel_w
            look_b = b + mom * vel_b
            p = _sigmoid(x @ look_w + look_b)
            g = (p - yt) * scale
            grad_w = xt @ g + l2 * look_w
            grad_b = g.sum(axis=0)
            vel_w = mom * vel_w - lr * grad_w
            vel_b = mom * vel_b - lr * grad_b
            w = w + vel_w
            b = b + vel_b
        full = np.zeros((dim, len(models)), dtype=np.float32)
        full[used] = w
        return cls(spec, models, costs, idf=idf, weights=full, bias=b, prior=prior)

    def _predict_x(self, x: np.ndarray) -> np.ndarray:
        if self.spec.method == "knn":
            assert self.train_x is not None and self.train_y is not None
            assert self.train_mask is not None and self.prior is not None
            out = np.empty((x.shape[0], len(self.models)))
            k = min(self.spec.k, self.train_x.shape[0])
            for lo in range(0, x.shape[0], 4096):  # chunks bound the similarity matrix
                sim = x[lo:lo + 4096] @ self.train_x.T
                nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
                wts = np.maximum(np.take_along_axis(sim, nn, axis=1), 0.0) + 1e-6
                m = self.train_mask[nn]  # (b, k, M)
                yv = self.train_y[nn]
                num = (wts[:, :, None] * yv * m).sum(axis=1)
                den = (wts[:, :, None] * m).sum(axis=1)
                out[lo:lo + 4096] = np.where(den > 0, num / np.maximum(den, 1e-12), self.prior)
            return out
        assert self.weights is not None and self.bias is not None
        return _sigmoid(x @ self.weights + self.bias).astype(np.float64)

    def predict(self, items: pl.DataFrame) -> pl.DataFrame:
        """item_id and one column per model: predicted chance of success in [0, 1]."""
        parts = []
        for lo in range(0, items.height, 20_000):
            chunk = items.slice(lo, 20_000)
            parts.append(self._predict_x(_reweight(featurize(chunk["input"], self.spec),
                                                   self.idf)))
        p = np.vstack(parts) if parts else np.zeros((0, len(self.models)))
        return pl.DataFrame({"item_id": items["item_id"].cast(pl.String),
                             **{m: p[:, j] for j, m in enumerate(self.models)}})


def cross_fit_predict(
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    models: Sequence[str],
    spec: LearnedRouterSpec | None = None,
) -> pl.DataFrame:
    """Out-of-fold predictions: each item is scored by a router fitted on the other folds."""
    spec = spec or LearnedRouterSpec()
    models = tuple(models)
    n = items.height
    folds = min(spec.folds, n)
    if folds < 2:
        raise WorkbenchError("cross-fitting needs at least 2 items")
    y, mask, mean_cost = _targets(items, outcomes, models)
    x = featurize(items["input"], spec)
    fold = np.random.default_rng(spec.seed).permutation(n) % folds
    p = np.empty((n, len(models)))
    for f in range(folds):
        train = fold != f
        idf = _idf(x[train])
        router = LearnedRouter._fit_arrays(spec, models, _reweight(x[train], idf), y[train],
                                           mask[train], mean_cost, idf)
        p[~train] = router._predict_x(_reweight(x[~train], idf))
    return pl.DataFrame({"item_id": items["item_id"].cast(pl.String),
                         **{m: p[:, j] for j, m in enumerate(models)}})
