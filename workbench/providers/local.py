"""Local GGUF models through llama-cpp-python, with shared-prefix KV-cache reuse.

Each model file is loaded once per process per (path, n_ctx, threads) and guarded by a lock.
Prompts are rendered as (prefix, item) by `prompts.render`; the prefix (instructions + few-shot
examples) is the same for every item of a run, so its KV cache is computed once and reused:
for each item the context is rewound to the end of the prefix and only the item's tokens are
evaluated. For label tasks, each label's log-likelihood is then scored by evaluating only the
label's tokens (single-token labels need no evaluation at all: the item's last logits give
them). The split is checked: prefix + item (+ label) tokens must equal the tokenization of the
whole text; when a text boundary would tokenize differently, the boundary moves (trailing
whitespace into the next piece) or, failing that, the whole prompt's own tokens are used.

Labels are ranked by their summed log-likelihood minus the same label's log-likelihood for a
content-free input ("N/A", scored once per run): a base model's few-shot prior strongly favours
some labels, and removing it ranks far better. Measured with the bundled model (bench local):
support-triage 30 items, accuracy 0.23 by raw sum, 0.23 length-normalised, 0.67 calibrated;
Banking77 6 intents (2 shots each) 60 items: 0.30 sum, 0.20 mean, 0.65 calibrated.
Cost = hardware $/hour (config or WORKBENCH_HARDWARE_USD_PER_HOUR) x wall time.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench import settings
from workbench.providers.base import (
    ContextWindowError,
    ModelConfig,
    OtherProviderError,
    ProviderError,
    Request,
    Response,
    ResultCallback,
    StopCheck,
    UnknownModelError,
)
from workbench.providers.prompts import Rendered, render

GGUF_MAGIC = b"GGUF"
# "sum": rank labels by total log-likelihood; "mean": by per-token mean (length-normalised);
# "calibrated": total minus the label's log-likelihood for a content-free input.
LABEL_NORMALISATION = "calibrated"
CONTENT_FREE_INPUT = "N/A"


def check_gguf(path: str | os.PathLike[str], name: str | None = None) -> Path:
    """The resolved path of a readable GGUF file; UnknownModelError naming the problem."""
    p = Path(path).expanduser()
    who = f"model {name!r}: " if name else ""
    if not p.exists():
        raise UnknownModelError(f"{who}GGUF file not found: {p}")
    if not p.is_file():
        raise UnknownModelError(f"{who}GGUF path is not a file: {p}")
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise UnknownModelError(f"{who}cannot read GGUF file {p}: {exc}") from None
    if magic != GGUF_MAGIC:
        raise UnknownModelError(
            f"{who}{p} is not a GGUF file (first bytes {magic!r}, expected {GGUF_MAGIC!r})"
        )
    return p.resolve()


def resolve_threads(threads: int) -> int:
    """Threads for inference: the config's, else WORKBENCH_THREADS, else all cores."""
    n = int(threads or 0) or int(settings.get("WORKBENCH_THREADS") or 0)
    return n if n > 0 else (os.cpu_count() or 1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis (float64)."""
    x = logits.astype(np.float64, copy=False)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


@dataclass
class LoadedModel:
    """One llama.cpp model + context shared by every provider using the same file; all access
    goes through `lock`. `llm.input_ids[:llm.n_tokens]` is what the KV cache holds."""

    path: Path
    n_ctx: int
    threads: int
    llm: Any
    lock: threading.RLock = field(default_factory=threading.RLock)
    _eog: set[int] = field(default_factory=set)

    # -- tokens ------------------------------------------------------------------------
    def tokenize(self, text: str, bos: bool) -> list[int]:
        """Tokens of `text` (BOS only when `bos`), special tokens kept as text."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of tokens (invalid UTF-8 fragments dropped)."""
        return self.llm.detokenize(list(tokens)).decode("utf-8", errors="ignore")

    def is_eog(self, token: int) -> bool:
        """Whether a token ends generation (EOS, end-of-turn...)."""
        if token in self._eog:
            return True
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            self._eog.add(token)
            return True
        return False

    # -- evaluation ----------------------------------------------------------------------
    def n_past(self) -> int:
        """Number of tokens currently in the KV cache."""
        return int(self.llm.n_tokens)

    def rewind(self, n: int) -> None:
        """Keep only the first `n` cached tokens (the next decode drops the rest)."""
        self.llm.n_tokens = min(int(n), int(self.llm.n_tokens))

    def common_prefix(self, tokens: Sequence[int]) -> int:
        """Length of the longest prefix of `tokens` already in the KV cache."""
        n = min(self.n_past(), len(tokens))
        if n == 0:
            return 0
        cached = self.llm.input_ids[:n]
        diff = np.nonzero(cached != np.asarray(tokens[:n], dtype=cached.dtype))[0]
        return int(diff[0]) if diff.size else n

    def decode(self, tokens: Sequence[int], logit_rows: int = 1) -> np.ndarray:
        """Append `tokens` at the current position and return the logits of the last
        `logit_rows` of them (shape (rows, n_vocab)); nothing else is copied out."""
        import llama_cpp

        llm = self.llm
        if not tokens:
            raise ValueError("decode needs at least one token")
        if llm.n_tokens + len(tokens) > self.n_ctx:
            raise ContextWindowError(
                f"{len(tokens) + llm.n_tokens} tokens exceed the context window n_ctx="
                f"{self.n_ctx}; raise n_ctx in the model config or shorten the prompt"
            )
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        n_vocab = llm.n_vocab()
        first_row = len(tokens) - logit_rows
        out = np.empty((logit_rows, n_vocab), dtype=np.float32)
        for start in range(0, len(tokens), llm.n_batch):
            batch = list(tokens[start:start + llm.n_batch])
            n_past = int(llm.n_tokens)
            llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)
            wanted = [i for i in range(len(batch)) if start + i >= first_row]
            raw = llm._batch.batch
            for i in range(len(batch)):
                raw.logits[i] = i in wanted or False
            llm._ctx.decode(llm._batch)
            for i in wanted:
                ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, i)
                out[start + i - first_row] = np.ctypeslib.as_array(ptr, shape=(n_vocab,))
            llm.input_ids[n_past:n_past + len(batch)] = batch
            llm.n_tokens = n_past + len(batch)
        return out

    def logits_after(self, tokens: Sequence[int]) -> tuple[np.ndarray, int]:
        """Make the KV cache hold exactly `tokens` (reusing the cached common prefix) and
        return the next-token logits plus how many tokens had to be evaluated."""
        keep = min(self.common_prefix(tokens), len(tokens) - 1)  # re-run >= 1 for its logits
        self.rewind(keep)
        logits = self.decode(tokens[keep:], 1)[0]
        return logits, len(tokens) - keep


_MODELS: dict[tuple[str, int, int], LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def load_model(path: str | os.PathLike[str], n_ctx: int = 2048, threads: int = 0) -> LoadedModel:
    """The process-wide loaded model for (path, n_ctx, threads), loading it on first use."""
    resolved = check_gguf(path)
    n_threads = resolve_threads(threads)
    key = (str(resolved), int(n_ctx), n_threads)
    with _MODELS_LOCK:
        loaded = _MODELS.get(key)
        if loaded is None:
            from llama_cpp import Llama

            try:
                llm = Llama(
                    model_path=str(resolved), n_ctx=int(n_ctx), n_threads=n_threads,
                    n_threads_batch=n_threads, logits_all=False, verbose=False,
                    # Sliding-window models must keep every cell, or rewinding to the
                    # prefix would find evicted KV entries.
                    swa_full=True,
                )
            except Exception as exc:  # llama.cpp reports failures as ValueError/RuntimeError
                raise UnknownModelError(f"cannot load GGUF {resolved}: {exc}") from None
            loaded = LoadedModel(resolved, int(n_ctx), n_threads, llm)
            if not _MODELS:
                # free models before interpreter teardown unloads llama.cpp's bindings, which
                # otherwise makes Llama.__del__ print a TypeError at exit
                atexit.register(unload_all)
            _MODELS[key] = loaded
    return loaded


def unload_all() -> None:
    """Drop every loaded model (tests; frees memory)."""
    with _MODELS_LOCK:
        for loaded in _MODELS.values():
            with loaded.lock, contextlib.suppress(Exception):
                loaded.llm.close()
        _MODELS.clear()


# -- tokenization of a split prompt -------------------------------------------------------------


@dataclass(frozen=True)
class SplitTokens:
    """Tokens of a prompt as `prefix` + `rest`, with how the split was made.

    `mode`: "exact" (tokenize(prefix) + tokenize(item) == tokenize(whole)), "moved_space"
    (the boundary moved past trailing whitespace) or "token" (the whole prompt's tokens, cut
    where they stop agreeing with the prefix's)."""

    prefix: tuple[int, ...]
    rest: tuple[int, ...]
    mode: str

    @property
    def all(self) -> list[int]:
        """Prefix and rest tokens together."""
        return list(self.prefix) + list(self.rest)


def split_tokens(model: LoadedModel, prefix: str, item: str, *, bos: bool = True,
                 prefix_tokens: Sequence[int] | None = None) -> SplitTokens:
    """Tokenize prefix + item so the pieces equal the whole text's tokenization (see
    SplitTokens). `prefix_tokens` may pass the prefix's tokens when already known."""
    whole = model.tokenize(prefix + item, bos)
    p_tok = list(prefix_tokens) if prefix_tokens is not None else model.tokenize(prefix, bos)
    if whole[:len(p_tok)] == p_tok and model.tokenize(item, False) == whole[len(p_tok):]:
        return SplitTokens(tuple(p_tok), tuple(whole[len(p_tok):]), "exact")
    stripped = prefix.rstrip()
    if stripped != prefix:
        p2 = model.tokenize(stripped, bos)
        moved = prefix[len(stripped):] + item
        if whole[:len(p2)] == p2 and model.tokenize(moved, False) == whole[len(p2):]:
            return SplitTokens(tuple(p2), tuple(whole[len(p2):]), "moved_space")
    n = 0
    for a, b in zip(p_tok, whole, strict=False):
        if a != b:
            break
        n += 1
    n = max(0, n - 1)  # the last agreeing token may still merge differently
    return SplitTokens(tuple(whole[:n]), tuple(whole[n:]), "token")


def continuation_tokens(model: LoadedModel, prompt_text: str, prompt_tokens: Sequence[int],
                        continuation: str, bos: bool = True) -> tuple[int, list[int], bool]:
    """Where a continuation starts and its tokens: (start, tokens, exact). `exact` when
    tokenize(prompt) + tokenize(continuation) == tokenize(prompt + continuation); otherwise
    the whole text's tokens from the first position where they differ from the prompt's."""
    cont = model.tokenize(continuation, False)
    whole = model.tokenize(prompt_text + continuation, bos)
    if whole == list(prompt_tokens) + cont:
        return len(prompt_tokens), cont, True
    n = 0
    for a, b in zip(prompt_tokens, whole, strict=False):
        if a != b:
            break
        n += 1
    return n, whole[n:], False


# -- the provider ----------------------------------------------------------------------------------


@dataclass
class _PrefixCache:
    """The tokens of the last rendered prefix (the KV cache reuse itself lives in the model)."""

    text: str = ""
    tokens: tuple[int, ...] = ()
    stripped_tokens: tuple[int, ...] = ()


class LocalProvider:
    """A local GGUF model behind the Provider protocol (see `workbench.providers.base`)."""

    def __init__(self, config: ModelConfig) -> None:
        if config.kind != "local-gguf":
            raise UnknownModelError(f"model {config.name!r} is {config.kind!r}, not local-gguf")
        self.config = config
        self._model: LoadedModel | None = None
        self._prefix = _PrefixCache()
        self._content_free: dict[tuple[str, tuple[str, ...]], dict[str, float]] = {}
        rate = config.hardware_usd_per_hour
        self.usd_per_hour = float(
            rate if rate is not None else settings.get("WORKBENCH_HARDWARE_USD_PER_HOUR")
        )

    # -- setup ---------------------------------------------------------------------------
    def check(self) -> None:
        """Raise UnknownModelError when the GGUF file is missing, not GGUF or not loadable."""
        check_gguf(self.config.model, self.config.name)
        self.model  # noqa: B018 - loading is the check

    @property
    def model(self) -> LoadedModel:
        """The shared loaded model (loaded on first use)."""
        if self._model is None:
            self._model = load_model(self.config.model, self.config.n_ctx, self.config.threads)
        return self._model

    def render(self, request: Request) -> Rendered:
        """The request's few-shot prompt split into (shared prefix, item)."""
        return render(request.task_type, request.input, request.labels, self.config.templates,
                      self.config.few_shot, request.messages)

    def _split(self, rendered: Rendered) -> SplitTokens:
        model = self.model
        if self._prefix.text != rendered.prefix:
            self._prefix = _PrefixCache(rendered.prefix,
                                        tuple(model.tokenize(rendered.prefix, True)))
        return split_tokens(model, rendered.prefix, rendered.item,
                            prefix_tokens=self._prefix.tokens)

    # -- calls ---------------------------------------------------------------------------
    def complete(self, request: Request) -> Response:
        """Score labels (label tasks) or generate text; failures become error Responses."""
        t0 = time.perf_counter()
        try:
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

    def _cost(self, seconds: float) -> float:
        return self.usd_per_hour * seconds / 3600.0

    def score_labels(self, model: LoadedModel, request: Request
                     ) -> tuple[dict[str, float], dict[str, int], dict[str, Any]]:
        """Log-likelihood of each label as the continuation of the item's prompt, reusing the
        prefix KV cache. Returns (sum logprob per label, tokens per label, info)."""
        rendered = self.render(request)
        split = self._split(rendered)
        prompt = split.all
        before = model.common_prefix(prompt)
        base_logits, evaluated = model.logits_after(prompt)
        base_lp = log_softmax(base_logits)
        p_end = len(prompt)
        scores: dict[str, float] = {}
        lengths: dict[str, int] = {}
        exact_all = True
        # Next-token log-probs after prompt + a label's first j tokens, keyed by those tokens:
        # labels sharing leading tokens ("card_arrival", "card_linking") share the rows, and
        # labels are visited in token order so the KV cache already holds the shared part.
        rows_after: dict[tuple[int, ...], np.ndarray] = {(): base_lp}
        conts = {}
        for label in request.labels or ():
            conts[label] = continuation_tokens(model, rendered.text, prompt, " " + label)
        for label in sorted(conts, key=lambda lab: conts[lab][1]):
            start, cont, exact = conts[label]
            exact_all &= exact
            if start == p_end and cont:
                missing = [j for j in range(1, len(cont)) if tuple(cont[:j]) not in rows_after]
                if missing:
                    keep = model.common_prefix(prompt + cont[:-1])
                    keep = max(p_end, min(keep, p_end + missing[0] - 1))
                    model.rewind(keep)
                    todo = cont[keep - p_end:len(cont) - 1]
                    lps = log_softmax(model.decode(todo, len(todo)))
                    for r in range(len(todo)):
                        rows_after[tuple(cont[:keep - p_end + r + 1])] = lps[r]
                total = float(sum(rows_after[tuple(cont[:j])][cont[j]] for j in range(len(cont))))
            else:  # the label merges with the prompt's last token(s): score from `start`
                full = prompt[:start] + cont
                model.rewind(start - 1)
                rows = model.decode(full[start - 1:-1], len(cont))
                lps = log_softmax(rows)
                total = float(sum(lps[i, cont[i]] for i in range(len(cont))))
            scores[label] = total
            lengths[label] = max(1, len(cont))
        model.rewind(p_end)
        info = {"split": split.mode, "labels_exact": exact_all, "prefix_tokens": len(split.prefix),
                "item_tokens": len(split.rest), "evaluated_tokens": evaluated,
                "reused_tokens": before}
        return scores, lengths, info

    def content_free_scores(self, model: LoadedModel, request: Request) -> dict[str, float]:
        """Label log-likelihoods for a content-free input ("N/A") under the same prefix: the
        model's prior over labels, used for calibrated ranking. Computed once per
        (prefix, label set) and kept."""
        rendered = self.render(request)
        key = (rendered.prefix, tuple(request.labels or ()))
        if key not in self._content_free:
            probe = Request("__content_free__", request.task_type, CONTENT_FREE_INPUT,
                            request.labels)
            self._content_free[key] = self.score_labels(model, probe)[0]
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
        return Response(
            output=top, confidence=float(probs[order[0]]),
            label_probs={lab: float(p) for lab, p in zip(labels, probs, strict=True)},
            signals=signals, prompt_tokens=info["prefix_tokens"] + info["item_tokens"],
            completion_tokens=1, latency_ms=seconds * 1000, cost_usd=self._cost(seconds),
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
        before = model.common_prefix(prompt)
        logits, evaluated = model.logits_after(prompt)
        rng = None
        if cfg.temperature > 0:
            seed = int(hashlib.sha256(rendered.text.encode()).hexdigest()[:8], 16)
            rng = np.random.default_rng(seed)
        max_new = max(1, min(cfg.max_tokens, model.n_ctx - len(prompt)))
        generated: list[int] = []
        logprobs: list[float] = []
        text = ""
        stop_hit = None
        for _ in range(max_new):
            lp = log_softmax(logits)
            if rng is None:
                token = int(np.argmax(lp))
            else:
                scaled = lp / cfg.temperature
                p = np.exp(scaled - scaled.max())
                token = int(rng.choice(p.size, p=p / p.sum()))
            if model.is_eog(token):
                stop_hit = "eos"
                break
            generated.append(token)
            logprobs.append(float(lp[token]))
            text = model.detokenize(generated)
            cut = _first_stop(text, rendered.stop)
            if cut is not None:
                text = text[:cut]
                stop_hit = "stop"
                break
            if len(generated) == max_new:
                break
            logits = model.decode([token], 1)[0]
        model.rewind(len(prompt))
        seconds = time.perf_counter() - t0
        output = text.strip()
        signals: dict[str, Any] = {
            "method": "generate", "split": split.mode, "prefix_tokens": len(split.prefix),
            "item_tokens": len(split.rest), "evaluated_tokens": evaluated,
            "reused_tokens": before, "finish_reason": stop_hit or "length",
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
            latency_ms=seconds * 1000, cost_usd=self._cost(seconds),
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
