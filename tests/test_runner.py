"""Runner: real inference with the bundled model (cache, cancel, resume), the hosted path
through LiteLLM against a real llama_cpp.server (server killed mid-run, restart, bad key),
Banking77 with the local model, and metrics / side-by-side over stored outcome rows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workbench.catalog import bundled_model_path
from workbench.errors import WorkbenchError
from workbench.models import ModelSpec
from workbench.providers.base import (
    Provider,
    Request,
    Response,
    UnknownModelError,
    get_provider,
)
from workbench.runner import (
    bootstrap_mean_ci,
    cache_key,
    model_metrics,
    rescore,
    run,
    score_outputs,
    side_by_side,
)
from workbench.store import Store
from workbench.workloads.samples import SUPPORT_LABELS, load_samples

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class CountingProvider:
    """Wraps a real provider and counts the calls that reached the model."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.config = inner.config
        self.calls = 0

    def check(self) -> None:
        self.inner.check()

    def complete(self, request: Request) -> Response:
        self.calls += 1
        return self.inner.complete(request)

    def complete_many(self, requests: Sequence[Request], on_result: Callable | None = None,
                      should_stop: Callable[[], bool] | None = None) -> list[Response | None]:
        results = self.inner.complete_many(requests, on_result=on_result,
                                           should_stop=should_stop)
        self.calls += sum(r is not None for r in results)
        return results


class Counter:
    """A provider factory that remembers every CountingProvider it made."""

    def __init__(self) -> None:
        self.made: list[CountingProvider] = []

    def __call__(self, config: ModelSpec) -> Provider:
        p = CountingProvider(get_provider(config))
        self.made.append(p)
        return p  # type: ignore[return-value]

    @property
    def calls(self) -> int:
        return sum(p.calls for p in self.made)


def local_config(name: str = "gemma-local", **kw: object) -> ModelSpec:
    # One thread: on this shared 2-core machine llama.cpp's thread barrier makes 2 threads
    # several times slower than 1 whenever other processes compete for the cores.
    return ModelSpec(name=name, kind="local-gguf", model=str(bundled_model_path()),
                     tags=("local",), threads=1, **kw)  # type: ignore[arg-type]


@pytest.fixture
def triage(store: Store) -> Store:
    load_samples(store, ["support-triage"])
    return store


# -- pure parts (no inference) -----------------------------------------------------------------


def test_cache_key_depends_on_what_changes_outputs() -> None:
    base = ModelSpec(name="a", kind="litellm", model="openai/x", api_base="http://h/v1",
                     api_key_env="KEY_ONE")
    k = cache_key(base, "classification", "hello", ("a", "b"))
    assert len(k) == 64
    renamed = ModelSpec(name="b", kind="litellm", model="openai/x", api_base="http://h/v1",
                        api_key_env="KEY_TWO", input_price_per_mtok=3.0)
    assert cache_key(renamed, "classification", "hello", ("a", "b")) == k
    assert cache_key(base, "classification", "hello!", ("a", "b")) != k
    assert cache_key(base, "classification", "hello", ("a", "c")) != k
    assert cache_key(base, "qa", "hello", ("a", "b")) != k
    warmer = ModelSpec(name="a", kind="litellm", model="openai/x", api_base="http://h/v1",
                       temperature=0.9)
    assert cache_key(warmer, "classification", "hello", ("a", "b")) != k
    shot = ModelSpec(name="a", kind="litellm", model="openai/x", api_base="http://h/v1",
                     few_shot={"classification": [("hi", "a")]})
    assert cache_key(shot, "classification", "hello", ("a", "b")) != k


def test_cache_keys_unchanged_by_the_one_model_description() -> None:
    """Keys computed by the ModelConfig code (before ModelSpec): recorded runs stay cached."""
    specs = {
        "hosted": ModelSpec(name="a", kind="litellm", model="openai/x", api_base="http://h/v1/",
                            temperature=0.2, max_tokens=64,
                            templates={"classification": "Q: {input}\nA:"},
                            few_shot={"qa": [("1+1?", "2")],
                                      "classification": [("hi", "greeting")]},
                            api_key_env="KEY_ONE", input_price_per_mtok=1.0),
        "plain": ModelSpec(name="b", kind="litellm", model="openai/gpt-4o-mini"),
        "local-missing": ModelSpec(name="c", kind="local-gguf",
                                   model="/nonexistent/dir/tiny.gguf", n_ctx=4096, threads=2),
    }
    before = {
        "hosted": ("a90cc2d77a79a9a4",
                   "edb0f13b5dd3f9b6a3d63a64cd5449585f645f5ea7de3347ab9546892a83ff7d"),
        "plain": ("26c5450ed74a906a",
                  "ceb6e5e228d123214fdb7d6974c841ee0b7bc9b5593b9e4eb7b006fc8adc864b"),
        "local-missing": ("47553ef26c6c46e3",
                          "70fc59e611e142dafb7d1b54b186b6bae3b33db634509c23a58f9e1bd849dda9"),
    }
    for name, spec in specs.items():
        assert (spec.cache_hash(), cache_key(spec, "classification", "hello", ("a", "b"))) == (
            before[name]), name


def test_bootstrap_ci() -> None:
    rng = np.random.default_rng(1)
    values = (rng.random(400) < 0.7).astype(float)
    lo, hi = bootstrap_mean_ci(values, n_boot=2000, seed=3)
    assert lo < values.mean() < hi
    assert 0.05 < hi - lo < 0.15  # about 2 * 1.96 * sqrt(.21 / 400) = 0.09
    assert bootstrap_mean_ci(values, seed=3) == bootstrap_mean_ci(values, seed=3)
    assert bootstrap_mean_ci(np.ones(5)) == (1.0, 1.0)
    assert bootstrap_mean_ci(np.array([1.0, np.nan, 1.0])) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_mean_ci(np.array([]))))


def _recorded(triage: Store) -> list[str]:
    """Write recorded outcome rows for two models (as an importer would), return item ids."""
    ids = triage.items("support-triage", limit=40)["item_id"].to_list()
    rng = np.random.default_rng(0)
    rows = []
    for model, p_ok, cost, lat in (("cheap", 0.6, 0.0001, 100.0), ("big", 0.9, 0.002, 900.0)):
        ok = rng.random(len(ids)) < p_ok
        for i, item in enumerate(ids):
            err = "timeout" if (model == "cheap" and i == 3) else None
            rows.append({
                "item_id": item, "model": model, "output": None if err else
                ("billing" if ok[i] else "other"), "quality": 0.0 if err else float(ok[i]),
                "cost_usd": cost, "latency_ms": lat + i, "prompt_tokens": 50,
                "completion_tokens": 2, "error": err, "confidence": 0.5,
                "signals": "{}", "cache_key": None,
            })
    triage.write_outcomes("support-triage", pl.DataFrame(rows))
    return ids


def test_model_metrics_over_recorded_rows(triage: Store) -> None:
    ids = _recorded(triage)
    m = model_metrics(triage, "support-triage", ["cheap", "big"], seed=1)
    assert m["model"].to_list() == ["cheap", "big"]
    out = triage.outcomes("support-triage")
    for row in m.to_dicts():
        sub = out.filter(pl.col("model") == row["model"])
        assert row["n"] == len(ids)
        assert row["quality"] == pytest.approx(sub["quality"].mean())
        lo, hi = row["quality_ci"]
        assert lo <= row["quality"] <= hi and (lo, hi) == (row["quality_lo"], row["quality_hi"])
        assert row["cost_per_1k"] == pytest.approx(1000 * sub["cost_usd"].mean())
        # Binary quality: cost per success is total cost over the number of successes.
        assert row["cost_per_success"] == pytest.approx(
            sub["cost_usd"].sum() / (sub["quality"] >= 0.5).sum())
        assert row["latency_p50_ms"] == pytest.approx(np.quantile(sub["latency_ms"], 0.5))
        assert row["latency_p99_ms"] >= row["latency_p95_ms"] >= row["latency_p50_ms"]
        assert row["error_rate"] == pytest.approx(sub["error"].is_not_null().mean())
    assert m.filter(pl.col("model") == "cheap")["error_rate"][0] == pytest.approx(1 / len(ids))
    assert model_metrics(triage, "support-triage", ["cheap"], seed=1)["quality_ci"][0].to_list() \
        == m["quality_ci"][0].to_list()  # seeded


def test_score_outputs_and_rescore(triage: Store) -> None:
    q = score_outputs("classification", ["billing", None, "billing"], ["billing", "x", None])
    assert q[0] == 1.0 and q[1] == 0.0 and np.isnan(q[2])  # error 0, no reference unscored
    _recorded(triage)
    before = triage.outcomes("support-triage", ["big"])
    n = rescore(triage, "support-triage", ["big"], scorer="contains")
    after = triage.outcomes("support-triage", ["big"])
    assert n == before.height == after.height
    items = triage.items("support-triage").select("item_id", "reference")
    expected = after.join(items, on="item_id")
    assert (expected["quality"] == (expected["output"] == expected["reference"])
            .cast(pl.Float64)).all()
    assert after.drop("quality", "created").equals(before.drop("quality", "created"))
    assert triage.outcomes("support-triage", ["cheap"]).height == 40  # other model untouched


def test_side_by_side_flags(triage: Store) -> None:
    _recorded(triage)
    sbs = side_by_side(triage, "support-triage", ["big", "cheap"])
    assert {"item_id", "input", "reference", "big:output", "cheap:quality", "cheap:error",
            "models_disagree", "cheap_wrong", "has_error"} <= set(sbs.columns)
    assert sbs.height == 40
    disagree = sbs.filter(pl.col("models_disagree"))
    assert (disagree["big:output"] != disagree["cheap:output"]).all()
    # "cheap" is the cheapest model: cheap_wrong exactly where its quality is below 0.5.
    assert (sbs["cheap_wrong"] == (sbs["cheap:quality"] < 0.5)).all()
    assert sbs.filter(pl.col("has_error")).height == 1
    with pytest.raises(WorkbenchError, match="no outcomes for model"):
        side_by_side(triage, "support-triage", ["big", "ghost"])


def test_errors_before_running(triage: Store) -> None:
    with pytest.raises(WorkbenchError, match="at least one model"):
        run(triage, "support-triage", [])
    cfg = ModelSpec(name="x", kind="litellm", model="openai/x", api_base="http://127.0.0.1:9/v1")
    with pytest.raises(WorkbenchError, match="listed twice"):
        run(triage, "support-triage", [cfg, cfg])
    with pytest.raises(WorkbenchError, match="unknown workload"):
        run(triage, "nope", [cfg])
    with pytest.raises(WorkbenchError, match="unknown scorer"):
        run(triage, "support-triage", [cfg], scorer="fuzzy")
    with pytest.raises(WorkbenchError, match="unknown model 'ghost'"):
        run(triage, "support-triage", ["ghost"])  # names are looked up in the catalog
    assert triage.outcomes("support-triage").height == 0


def test_missing_gguf_is_a_clear_error(triage: Store, tmp_path: Path) -> None:
    cfg = ModelSpec(name="gone", kind="local-gguf", model=str(tmp_path / "gone.gguf"))
    with pytest.raises(UnknownModelError, match="gone"):
        run(triage, "support-triage", [cfg], limit=2)
    assert triage.outcomes("support-triage").height == 0


# -- real inference, local ---------------------------------------------------------------------


@pytest.mark.slow
def test_local_run_cancel_resume_and_cache(triage: Store) -> None:
    cfg = local_config()
    k, n = 6, 20
    seen: list[tuple[int, int, str]] = []
    first = Counter()
    s1 = run(triage, "support-triage", [cfg], limit=n, provider_factory=first,
             progress=lambda d, t, m: seen.append((d, t, m)),
             should_stop=lambda: bool(seen) and seen[-1][0] >= k, batch_size=4)
    assert s1.cancelled and first.calls == k
    assert s1.models[0].completed == k and s1.models[0].not_run == n - k
    assert triage.outcomes("support-triage").height == k  # finished rows kept
    assert seen[0] == (0, n, cfg.name) and seen[-1][0] == k

    second = Counter()
    s2 = run(triage, "support-triage", [cfg], limit=n, provider_factory=second)
    assert not s2.cancelled
    assert second.calls == n - k and s2.models[0].cached == k  # only the missing ones

    out = triage.outcomes("support-triage")
    assert out.height == n and out["error"].null_count() == n
    assert out["output"].is_in(list(SUPPORT_LABELS)).all()
    conf = out["confidence"].to_numpy()
    assert np.all((conf >= 0) & (conf <= 1))
    assert set(out["quality"].unique().to_list()) <= {0.0, 1.0}
    items = triage.items("support-triage", limit=n).join(out, on="item_id")
    assert (items["quality"] == (items["output"] == items["reference"]).cast(pl.Float64)).all()
    probs = [json.loads(s)["label_probs"] for s in out["signals"]]
    assert all(abs(sum(p.values()) - 1) < 1e-3 and set(p) == set(SUPPORT_LABELS) for p in probs)
    assert (out["cost_usd"] > 0).all() and (out["latency_ms"] > 0).all()

    third = Counter()
    s3 = run(triage, "support-triage", [cfg], limit=n, provider_factory=third)
    assert third.calls == 0 and s3.cached == n and s3.calls == 0

    # A change that alters outputs (generation params) invalidates the cache.
    changed = Counter()
    run(triage, "support-triage", [local_config(max_tokens=64)], limit=2,
        provider_factory=changed)
    assert changed.calls == 2
    # Local label scoring is deterministic (max_tokens does not enter it): the re-run rows
    # equal the stored ones, although the cache held other items when each was computed.
    after = triage.outcomes("support-triage")
    assert after.height == n
    assert after["item_id"].to_list() == out["item_id"].to_list()
    assert after["output"].to_list() == out["output"].to_list()
    assert after["confidence"].to_list() == out["confidence"].to_list()
    for old_s, new_s in zip(out["signals"], after["signals"], strict=True):
        old_p, new_p = json.loads(old_s)["label_probs"], json.loads(new_s)["label_probs"]
        assert new_p == pytest.approx(old_p, abs=1e-6)

    m = model_metrics(triage, "support-triage", [cfg.name]).to_dicts()[0]
    assert m["n"] == n and m["error_rate"] == 0
    assert m["quality"] == pytest.approx(after["quality"].mean())  # as stored after the re-run
    print(f"\nsupport-triage, bundled model, {n} items: accuracy {m['quality']:.3f} "
          f"CI {m['quality_ci']}, p50 {m['latency_p50_ms']:.0f} ms")


# -- hosted path through LiteLLM against a real llama_cpp.server ---------------------------------


@pytest.fixture
def server() -> Iterator[object]:
    from tests import servers

    yield from servers.llama_server_fixture(n_threads=1)  # see local_config on threads


@pytest.mark.slow
def test_hosted_server_killed_mid_run_then_resumed(
    triage: Store, server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_CONCURRENCY", "1")  # so "mid-run" is a definite point
    cfg = ModelSpec(name="srv", kind="litellm", model=server.litellm_model,  # type: ignore[attr-defined]
                    api_base=server.api_base, timeout_s=180, max_retries=0,  # type: ignore[attr-defined]
                    max_tokens=4)  # labels are short; each token costs the server a lot
    n, k = 6, 2
    ghost = ModelSpec(name="ghost", kind="litellm", model="openai/no-such-model",
                      api_base=server.api_base)  # type: ignore[attr-defined]
    with pytest.raises(UnknownModelError, match="no-such-model"):
        run(triage, "support-triage", [ghost], limit=n)
    assert triage.outcomes("support-triage").height == 0

    def kill_after_k(done: int, total: int, model: str) -> None:
        if done == k:
            server.kill()  # type: ignore[attr-defined]

    s1 = run(triage, "support-triage", [cfg], limit=n, progress=kill_after_k)
    out = triage.outcomes("support-triage")
    assert out.height == n and not s1.cancelled
    bad = out.filter(pl.col("error").is_not_null())
    after_kill = out.sort("item_id").tail(n - k)
    assert after_kill["error"].is_not_null().all()  # every item after the kill is an error row
    assert bad.height == s1.errors >= n - k
    assert bad["output"].is_null().all() and (bad["quality"] == 0).all()
    assert all(json.loads(s)["error_message"] for s in bad["signals"])
    assert set(after_kill["error"].to_list()) <= {"connection", "other"}

    server.restart()  # type: ignore[attr-defined]
    counter = Counter()
    s2 = run(triage, "support-triage", [cfg], limit=n, provider_factory=counter)
    assert counter.calls == bad.height and s2.cached == n - bad.height
    out = triage.outcomes("support-triage")
    assert out["error"].null_count() == n
    conf = out["confidence"].drop_nulls().to_numpy()
    assert np.all((conf >= 0) & (conf <= 1))


@pytest.mark.slow
def test_hosted_bad_key_is_an_auth_row_and_never_stored(
    triage: Store, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    from tests import servers

    wrong = "sk-wrong-" + "7f3a9c2e1b"
    monkeypatch.setenv("SRV_TEST_KEY", wrong)
    with servers.LlamaServer(api_key="sk-right-0123456789", n_threads=1) as srv:
        cfg = ModelSpec(name="locked", kind="litellm", model=srv.litellm_model,
                        api_base=srv.api_base, api_key_env="SRV_TEST_KEY", timeout_s=120)
        s = run(triage, "support-triage", [cfg], limit=2)
    out = triage.outcomes("support-triage")
    assert s.errors == 2 and set(out["error"].to_list()) == {"auth"}
    triage.cursor().execute("CHECKPOINT")
    blob = "".join(str(v) for v in out.rows())
    assert wrong not in blob and "sk-right" not in blob
    for f in home.iterdir():
        if f.is_file():
            assert wrong.encode() not in f.read_bytes(), f


# -- Banking77 with the local model ------------------------------------------------------------

INTENTS = ("card_arrival", "exchange_rate", "lost_or_stolen_card", "pending_transfer",
           "top_up_failed", "transfer_fee_charged")


@pytest.mark.slow
def test_banking77_local(store: Store) -> None:
    base = SHARED_DATA / "banking77"
    if not (base / "test.csv").exists():
        pytest.skip(f"shared data not available: {base}")
    test = pl.read_csv(base / "test.csv").filter(pl.col("category").is_in(INTENTS))
    train = pl.read_csv(base / "train.csv").filter(pl.col("category").is_in(INTENTS))
    # 5 test items per intent (30), 2 training examples per intent as few-shot (as in the issue).
    picked = test.group_by("category", maintain_order=True).head(5).sort("category", "text")
    shots = train.group_by("category", maintain_order=True).head(2).select("text", "category")
    items = picked.with_row_index("i").select(
        pl.format("b77-{}", pl.col("i").cast(pl.String).str.zfill(3)).alias("item_id"),
        pl.col("text").alias("input"), pl.col("category").alias("reference"))
    store.add_workload_frame("banking77-6", items, task_type="classification",
                             source="banking77 test", label_set=list(INTENTS))
    cfg = local_config("gemma-b77", few_shot={"classification": list(shots.iter_rows())})
    summary = run(store, "banking77-6", [cfg])
    assert summary.calls == 30 and summary.errors == 0
    out = store.outcomes("banking77-6")
    conf = out["confidence"].to_numpy()
    assert out.height == 30 and np.all((conf >= 0) & (conf <= 1))
    assert out["output"].is_in(list(INTENTS)).all()
    m = model_metrics(store, "banking77-6").to_dicts()[0]
    top = out.sort("confidence", descending=True).head(8)["quality"].mean()
    print(f"\nbanking77 (6 intents, 2-shot), bundled model, 30 items: accuracy "
          f"{m['quality']:.3f} CI {m['quality_ci']}; most confident quarter {top:.3f}; "
          f"p50 {m['latency_p50_ms']:.0f} ms/item")
    assert 0.0 <= m["quality"] <= 1.0
