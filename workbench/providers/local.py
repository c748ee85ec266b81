"""Local GGUF models through llama-cpp-python, with shared-prefix KV-cache reuse.

Each model file is loaded once per process per (path, n_ctx, threads) and guarded by a lock.
Prompts are rendered as (prefix, item) by `prompts.render`; the prefix (instructions + few-shot
examples) is the same for every item of a run, so its KV cache is computed once and reused.
The split is checked: prefix + item (+ label) tokens must equal the tokenization of the whole
text; when a text boundary would tokenize differently, the boundary moves (trailing whitespace
into the next piece) or, failing that, the whole prompt's own tokens are used.

Evaluation is canonical, so a request's output, confidence and signals never depend on what
was evaluated before (llama.cpp's numerics depend on the batch shape):
- the prefix KV is always the one computed from an empty cache in n_batch chunks; it stays in
  the cache while nothing overwrites it, and is otherwise restored from a saved copy of that
  state (llama_state_seq_get/set_data), never extended from another prompt's common prefix;
- the item's tokens are decoded from exactly the prefix end, all at once;
- each label is scored on its own from exactly the item end (single-token labels need no
  evaluation: the item's last logits give them); the content-free prior is an item like any.

Labels are ranked by their summed log-likelihood minus the same label's log-likelihood for a
content-free input ("N/A", scored once per run): a base model's few-shot prior strongly favours
some labels, and removing it ranks far better. Measured with the bundled model (bench local,
one Xeon host; figures move by a few items between CPUs): support-triage 30 items, accuracy
0.27 by raw sum, 0.27 length-normalised, 0.60 calibrated; Banking77 6 intents (2 shots each)
60 items: 0.33 sum, 0.22 mean, 0.65 calibrated.
Cost is per token from the model's measured speed on this machine (`workbench.local_cost`),
never the call's wall time, so a busy machine does not make the same call dearer.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.local_cost import LocalPrice, price
from workbench.models import ModelSpec
from workbench.providers.base import (
    ContextWindowError,
    OtherProviderError,
    ProviderError,
    Request,
    Response,
    ResultCallback,
    StopCheck,
    UnknownModelError,
)
from workbench.providers.llama import (
    LoadedModel,
    SplitTokens,
    check_gguf,
    continuation_tokens,
    load_model,
    log_softmax,
    split_tokens,
)
from workbench.providers.prompts import Rendered, render

# "sum": rank labels by total log-likelihood; "mean": by per-token mean (length-normalised);
# "calibrated": total minus the label's log-likelihood for a content-free input.
LABEL_NORMALISATION = "calibrated"
CONTENT_FREE_INPUT = "N/A"
# Content-free label priors kept per provider: one per prefix, and retrieved few-shot examples
# give every item its own prefix (an evicted prior is recomputed to the same value).
MAX_CONTENT_FREE = 256


# -- the provider ----------------------------------------------------------------------------------


@dataclass
class _PrefixCache:
    """The tokens of the last rendered prefix (the KV cache itself lives in the model)."""

    text: str = ""
    tokens: tuple[int, ...] = ()


class LocalProvider:
    """A local GGUF model behind the Provider protocol (see `workbench.providers.base`)."""

    def __init__(self, config: ModelSpec, home: str | os.PathLike[str] | None = None) -> None:
        """`home`: the data directory holding measured speeds (default WORKBENCH_HOME)."""
        if config.kind != "local-gguf":
            raise UnknownModelError(f"model {config.name!r} is {config.kind!r}, not local-gguf")
        self.config = config
        self.home = home
        self._model: LoadedModel | None = None
        self._price: LocalPrice | None = None
        self._prefix = _PrefixCache()
        self._content_free: dict[tuple[str, tuple[str, ...]], dict[str, float]] = {}

    # -- setup ---------------------------------------------------------------------------
    def check(self) -> None:
        """Raise UnknownModelError when the GGUF file is missing, not GGUF or not loadable."""
        check_gguf(self.config.model, self.config.name)
        self.model  # noqa: B018 - loading is the check
        self.price  # noqa: B018 - the speed is measured (once) before the first call

    @property
    def price(self) -> LocalPrice:
        """How calls are charged: set per-1M prices, else the measured speed (see local_cost)."""
        if self._price is None:
            self._price = price(self.config, self.home)
        return self._price

    @property
    def model(self) -> LoadedModel:
        """The shared loaded model (loaded on first use, and again after `unload_all`)."""
        if self._model is None or self._model.closed:
            self._model = load_model(self.config.model, self.config.n_ctx, self.config.threads)
        return self._model

    def render(self, request: Request) -> Rendered:
        """The request's few-shot prompt split into (shared prefix, item); the request's own
        examples (`Request.few_shot`, chosen by workbench.fewshot) replace the config's."""
        return render(request.task_type, request.input, request.labels, self.config.templates,
                      self.config.few_shot, request.messages, request.few_shot)

    def _split(self, rendered: Rendered) -> SplitTokens:
        """The rendered prompt's tokens as (prefix, rest), rest never empty."""
        model = self.model
        if self._prefix.text != rendered.prefix:
            self._prefix = _PrefixCache(rendered.prefix,
                                        tuple(model.tokenize(rendered.prefix, True)))
        split = split_tokens(model, rendered.prefix, rendered.item,
                             prefix_tokens=self._prefix.tokens)
        if not split.rest and split.prefix:  # evaluation needs >= 1 token after the prefix
            split = SplitTokens(split.prefix[:-1], split.prefix[-1:], split.mode)
        return split

    # -- calls ---------------------------------------------------------------------------
    def complete(self, request: Request) -> Response:
        """Score labels (label tasks) or generate text; failures become error Responses."""
        t0 = time.perf_counter()
        try:
            self.price  # noqa: B018 - measured (if ever) before the call, not inside it
            t0 = time.perf_counter()  # ... and not in its latency
            model = self.model
            with model.lock:
                if request.labels:
                    resp = self._classify(model, request, t0)
                else:
                    resp = self._generate(model, request, t0)
            return resp
        except ProviderError as exc:
            return Response.failure(exc, (time.perf_counter() - t0) * 1000)
        except Exception as exc:  # a llama.cpp failure on one item is an error row
            err = OtherProviderError(f"model {self.config.name!r}: {type(exc).__name__}: {exc}")
            return Response.failure(err, (time.perf_counter() - t0) * 1000)

    def _cost(self, prompt_tokens: int, decoded: int, signals: dict[str, Any],
              kind: str = "generated") -> float:
        """The call's cost from its token counts; the derivation goes into `signals`."""
        usd, basis = self.price.cost(prompt_tokens, decoded, kind)
        signals.update(basis)
        return usd

    def score_labels(self, model: LoadedModel, request: Request
                     ) -> tuple[dict[str, float], dict[str, int], dict[str, Any]]:
        """Log-likelihood of each label as the continuation of the item's prompt. Canonical,
        so scores never depend on the cache: the prompt as in `LoadedModel.evaluate`, then
        each label on its own from the item's end (no rows shared between labels). Returns
        (sum logprob per label, tokens per label, info)."""
        rendered = self.render(request)
        split = self._split(rendered)
        prompt = split.all
        base_logits, _ = model.evaluate(split.prefix, split.rest)
        base_lp = log_softmax(base_logits)
        p_end = len(prompt)
        scores: dict[str, float] = {}
        lengths: dict[str, int] = {}
        labels = list(dict.fromkeys(request.labels or ()))
        conts = {lab: continuation_tokens(model, rendered.text, prompt, " " + lab)
                 for lab in labels}
        exact_all = all(exact for _, _, exact in conts.values())
        decoded = 0  # label tokens decoded (a label's first token needs none at the item end)
        # A label that merges with the prompt's last tokens rewrites the cache from inside the
        # item, so those go last, latest start first: each label then finds the item's KV
        # intact up to where it starts.
        for label in sorted(labels, key=lambda lab: (conts[lab][0] != p_end, -conts[lab][0])):
            start, cont, _ = conts[label]
            decoded += len(cont) - (1 if start == p_end else 0) if cont else 0
            if not cont:
                total = 0.0
            elif start == p_end:  # the usual case: the label's first token needs no decode
                total = float(base_lp[cont[0]])
                if len(cont) > 1:
                    model.rewind(p_end)
                    lps = log_softmax(model.decode(cont[:-1], len(cont) - 1))
                    total += float(sum(lps[j, cont[j + 1]] for j in range(len(cont) - 1)))
            else:  # the label merges with the prompt's last token(s): score from `start`
                start = max(1, start)
                full = prompt[:start] + cont
                model.rewind(start - 1)
                lps = log_softmax(model.decode(full[start - 1:-1], len(cont)))
                total = float(sum(lps[i, cont[i]] for i in range(len(cont))))
            scores[label] = total
            lengths[label] = max(1, len(cont))
        scores = {lab: scores[lab] for lab in labels}  # in the request's order
        info = {"split": split.mode, "labels_exact": exact_all, "prefix_tokens": len(split.prefix),
                "item_tokens": len(split.rest), "label_tokens_scored": decoded}
        return scores, lengths, info

    def content_free_scores(self, model: LoadedModel, request: Request) -> dict[str, float]:
        """Label log-likelihoods for a content-free input ("N/A") under the same prefix: the
        model's prior over labels, used for calibrated ranking. Scored canonically like any
        item, so it is the same whenever it is computed; kept per (prefix, label set)."""
        rendered = self.render(request)
        key = (rendered.prefix, tuple(request.labels or ()))
        if key not in self._content_free:
            probe = Request("__content_free__", request.task_type, CONTENT_FREE_INPUT,
                            request.labels, few_shot=request.few_shot)
            self._content_free[key] = self.score_labels(model, probe)[0]
            while len(self._content_free) > MAX_CONTENT_FREE:
                self._content_free.pop(next(iter(self._content_free)))
        return self._content_free[key]

    def _classify(self, model: LoadedModel, request: Request, t0: float) -> Response:
        prior = self.content_free_scores(model, request)
        scores, lengths, info = self.score_labels(model, request)
        labels = list(scores)
        total = np.array([scores[lab] for lab in labels])
        mean = total / np.array([lengths[lab] for lab in labels])
        calibrated = total - np.array([prior[lab] for lab in labels])
        ranking = {"sum": total, "mean": mean, "calibrated": calibrated}[LABEL_NORMALISATION]
        probs = np.exp(ranking - ranking.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        top = labels[int(order[0])]
        margin = float(probs[order[0]] - (probs[order[1]] if len(order) > 1 else 0.0))
        entropy = float(-(probs * np.log(np.clip(probs, 1e-300, None))).sum())
        seconds = time.perf_counter() - t0
        signals = {
            **info,
            "method": "label_loglik",
            "normalisation": LABEL_NORMALISATION,
            "margin": margin,
            "entropy": entropy,
            "entropy_norm": entropy / math.log(len(labels)) if len(labels) > 1 else 0.0,
            "label_logprob": float(scores[top]),
            "label_logprob_mean": float(scores[top] / lengths[top]),
            "label_logprobs": {lab: float(v) for lab, v in scores.items()},
            "top_label_by_sum": labels[int(np.argmax(total))],
            "top_label_by_mean": labels[int(np.argmax(mean))],
            "top_label_calibrated": labels[int(np.argmax(calibrated))],
            "output_chars": len(top),
        }
        output, confidence = top, float(probs[order[0]])
        prompt_tokens, decoded = (info["prefix_tokens"] + info["item_tokens"],
                                  info["label_tokens_scored"])
        cfg = self.config
        if cfg.samples > 1:
            # Self-consistency from the one scoring pass: n labels drawn from the tempered
            # distribution; the majority is the answer and its share the confidence.
            from workbench import consistency

            kind = consistency.vote_kind(request.task_type, True, cfg.vote_on)
            rng = consistency.sample_rng(cfg.seed, consistency.request_key(request))
            drawn = consistency.draw_labels(labels, probs, cfg.samples, cfg.sample_temperature,
                                            rng)
            by_prob = [labels[int(i)] for i in order]  # a tie goes to the likelier label
            vote = consistency.majority(drawn, kind, prefer=by_prob)
            output, confidence = vote.answer or top, vote.share
            signals.update(consistency.signals(vote, drawn, kind, cfg.sample_temperature,
                                               cfg.seed, "label_probs"))
            signals["output_chars"] = len(output)
            seconds = time.perf_counter() - t0
        return Response(
            output=output, confidence=confidence,
            label_probs={lab: float(p) for lab, p in zip(labels, probs, strict=True)},
            signals=signals, prompt_tokens=prompt_tokens, completion_tokens=1,
            latency_ms=seconds * 1000,
            cost_usd=self._cost(prompt_tokens, decoded, signals, "scored"),
        )

    def _generate(self, model: LoadedModel, request: Request, t0: float) -> Response:
        cfg = self.config
        rendered = self.render(request)
        split = self._split(rendered)
        prompt = split.all
        if len(prompt) + 1 > model.n_ctx:
            raise ContextWindowError(
                f"model {cfg.name!r}: prompt of {len(prompt)} tokens does not fit n_ctx="
                f"{model.n_ctx}"
            )
        logits, _ = model.evaluate(split.prefix, split.rest)
        max_new = max(1, min(cfg.max_tokens, model.n_ctx - len(prompt)))
        if cfg.samples > 1:
            return self._generate_samples(model, request, rendered, split, logits, max_new, t0)
        rng = None
        if cfg.temperature > 0:
            seed = int(hashlib.sha256(rendered.text.encode()).hexdigest()[:8], 16)
            rng = np.random.default_rng(seed)
        text, generated, logprobs, stop_hit = self._decode_answer(
            model, logits, max_new, cfg.temperature, rng, rendered.stop)
        seconds = time.perf_counter() - t0
        output = text.strip()
        signals: dict[str, Any] = {
            "method": "generate", "split": split.mode, "prefix_tokens": len(split.prefix),
            "item_tokens": len(split.rest), "finish_reason": stop_hit or "length",
            "output_chars": len(output),
        }
        confidence = None
        if logprobs:
            mean = float(np.mean(logprobs))
            signals["logprob_mean"] = mean
            signals["logprob_min"] = float(np.min(logprobs))
            confidence = math.exp(mean)
        return Response(
            output=output, confidence=confidence, label_probs=None, signals=signals,
            prompt_tokens=len(prompt), completion_tokens=len(generated),
            latency_ms=seconds * 1000,
            cost_usd=self._cost(len(prompt), len(generated), signals),
        )

    def _decode_answer(self, model: LoadedModel, logits: np.ndarray, max_new: int,
                       temperature: float, rng: np.random.Generator | None,
                       stop: Sequence[str]) -> tuple[str, list[int], list[float], str | None]:
        """Decode one answer from the prompt's end, whose next-token `logits` are given and
        whose KV the cache holds up to there: greedy when `rng` is None, else drawn at
        `temperature`. Returns (text, tokens, their logprobs, "eos" / "stop" / None)."""
        generated: list[int] = []
        logprobs: list[float] = []
        text = ""
        stop_hit = None
        for _ in range(max_new):
            lp = log_softmax(logits)
            if rng is None:
                token = int(np.argmax(lp))
            else:
                scaled = lp / temperature
                p = np.exp(scaled - scaled.max())
                token = int(rng.choice(p.size, p=p / p.sum()))
            if model.is_eog(token):
                stop_hit = "eos"
                break
            generated.append(token)
            logprobs.append(float(lp[token]))
            text = model.detokenize(generated)
            cut = _first_stop(text, stop)
            if cut is not None:
                text = text[:cut]
                stop_hit = "stop"
                break
            if len(generated) == max_new:
                break
            logits = model.decode([token], 1)[0]
        return text, generated, logprobs, stop_hit

    def _generate_samples(self, model: LoadedModel, request: Request, rendered: Rendered,
                          split: SplitTokens, logits: np.ndarray, max_new: int,
                          t0: float) -> Response:
        """Self-consistency by generation: `samples` answers drawn at `sample_temperature`,
        each decoded from the prompt's end (the cache is cut back there before each, so every
        answer starts from the same state), from one seeded stream per request. The majority
        answer is the output and its share the confidence; all n decodes are paid for."""
        from workbench import consistency

        cfg = self.config
        p_end = len(split.prefix) + len(split.rest)
        rng = consistency.sample_rng(cfg.seed, consistency.request_key(request))
        answers: list[str] = []
        decoded: list[tuple[list[int], list[float], str | None]] = []
        for _ in range(cfg.samples):
            model.rewind(p_end)
            text, generated, logprobs, stop_hit = self._decode_answer(
                model, logits, max_new, cfg.sample_temperature, rng, rendered.stop)
            answers.append(text.strip())
            decoded.append((generated, logprobs, stop_hit))
        kind = consistency.vote_kind(request.task_type, False, cfg.vote_on)
        vote = consistency.majority(answers, kind)
        output = vote.answer if vote.answer is not None else answers[0]
        _, win_logprobs, win_stop = decoded[answers.index(output)]
        seconds = time.perf_counter() - t0
        signals: dict[str, Any] = {
            "method": "generate", "split": split.mode, "prefix_tokens": len(split.prefix),
            "item_tokens": len(split.rest), "finish_reason": win_stop or "length",
            "output_chars": len(output),
            **consistency.signals(vote, answers, kind, cfg.sample_temperature, cfg.seed,
                                  "generate"),
        }
        n_decoded = sum(len(g) for g, _, _ in decoded)
        if win_logprobs:
            signals["logprob_mean"] = float(np.mean(win_logprobs))
            signals["logprob_min"] = float(np.min(win_logprobs))
        return Response(
            output=output, confidence=vote.share, label_probs=None, signals=signals,
            prompt_tokens=p_end, completion_tokens=n_decoded, latency_ms=seconds * 1000,
            cost_usd=self._cost(p_end, n_decoded, signals),
        )

    def complete_many(
        self,
        requests: Sequence[Request],
        on_result: ResultCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> list[Response | None]:
        """Run requests one after another (the prefix KV cache is shared between them);
        stop before the next item when `should_stop()` is true."""
        self.check()
        results: list[Response | None] = [None] * len(requests)
        for i, request in enumerate(requests):
            if should_stop is not None and should_stop():
                break
            results[i] = self.complete(request)
            if on_result is not None:
                on_result(i, results[i])  # type: ignore[arg-type]
        return results


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest stop sequence in `text` (ignoring leading whitespace), or None."""
    lead = len(text) - len(text.lstrip())
    hits = [text.find(s, lead) for s in stops]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else None
