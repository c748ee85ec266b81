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
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench import settings
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
from workbench.providers.prompts import Rendered, render

GGUF_MAGIC = b"GGUF"
# "sum": rank labels by total log-likelihood; "mean": by per-token mean (length-normalised);
# "calibrated": total minus the label's log-likelihood for a content-free input.
LABEL_NORMALISATION = "calibrated"
CONTENT_FREE_INPUT = "N/A"
# Saved prefix KV states kept per loaded model (about 18 KB per token for the bundled model).
MAX_SAVED_PREFIXES = 8
# Content-free label priors kept per provider: one per prefix, and retrieved few-shot examples
# give every item its own prefix (an evicted prior is recomputed to the same value).
MAX_CONTENT_FREE = 256


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
            f"{who}{p} is not a GGUF file (it does not start with the GGUF magic bytes; "
            "only those 4 bytes were read)"
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
    goes through `lock`. `llm.input_ids[:llm.n_tokens]` is what the KV cache holds.

    Evaluation is canonical, so results never depend on what ran before (see `enter_prefix`):
    a prompt's prefix KV is always the one computed from an empty cache in fixed chunks; it is
    kept in the cache while nothing overwrote it, else restored from a saved copy."""

    path: Path
    n_ctx: int
    threads: int
    llm: Any
    lock: threading.RLock = field(default_factory=threading.RLock)
    # How `enter_prefix` obtained the prefix KV: "reused", "restored" or "computed".
    stats: Counter[str] = field(default_factory=Counter)
    closed: bool = False  # set by unload_all; providers holding it load the model again
    _eog: set[int] = field(default_factory=set)
    # The canonical prefix held in cells [0, len) while nothing was decoded below its end.
    _prefix: tuple[int, ...] | None = None
    # Saved KV state of canonically computed prefixes, most recently used last.
    _states: OrderedDict[tuple[int, ...], Any] = field(default_factory=OrderedDict)

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

    # -- low-level evaluation ------------------------------------------------------------
    def n_past(self) -> int:
        """Number of tokens currently in the KV cache."""
        return int(self.llm.n_tokens)

    def rewind(self, n: int) -> None:
        """Keep only the first `n` cached tokens (the next decode drops the rest)."""
        n = max(0, int(n))
        if self._prefix is not None and n < len(self._prefix):
            self._prefix = None
        self.llm.n_tokens = min(n, int(self.llm.n_tokens))

    def invalidate(self) -> None:
        """Forget what the cache holds: call after using `llm` directly (outside this class),
        so the next prompt restores or recomputes its prefix instead of trusting the cache."""
        self._prefix = None
        self.llm.n_tokens = 0

    def decode(self, tokens: Sequence[int], logit_rows: int = 1) -> np.ndarray:
        """Append `tokens` at the current position and return the logits of the last
        `logit_rows` of them (shape (rows, n_vocab)); nothing else is copied out. Batches are
        cut every n_batch tokens from the first one, so equal calls decode equal batches."""
        import llama_cpp

        llm = self.llm
        if not tokens:
            raise ValueError("decode needs at least one token")
        if llm.n_tokens + len(tokens) > self.n_ctx:
            raise ContextWindowError(
                f"{len(tokens) + llm.n_tokens} tokens exceed the context window n_ctx="
                f"{self.n_ctx}; raise n_ctx in the model config or shorten the prompt"
            )
        if self._prefix is not None and llm.n_tokens < len(self._prefix):
            self._prefix = None
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        n_vocab = llm.n_vocab()
        first_row = len(tokens) - logit_rows
        out = np.empty((logit_rows, n_vocab), dtype=np.float32)
        for start in range(0, len(tokens), llm.n_batch):
            batch = list(tokens[start:start + llm.n_batch])
            n_past = int(llm.n_tokens)
            llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)
            raw = llm._batch.batch
            for i in range(len(batch)):
                raw.logits[i] = start + i >= first_row
            llm._ctx.decode(llm._batch)
            for i in range(max(0, first_row - start), len(batch)):
                ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, i)
                out[start + i - first_row] = np.ctypeslib.as_array(ptr, shape=(n_vocab,))
            llm.input_ids[n_past:n_past + len(batch)] = batch
            llm.n_tokens = n_past + len(batch)
        return out

    # -- canonical evaluation --------------------------------------------------------------
    def enter_prefix(self, tokens: Sequence[int]) -> str:
        """Make the KV cache hold exactly `tokens`, as computed from an empty cache in
        n_batch chunks (so every later step starts from the same bits whatever ran before);
        callers hold `lock`.

        Kept when the cache still holds that canonical computation ("reused"), else restored
        from its saved state into an emptied cache ("restored"), else computed and saved
        ("computed"). Returns which one; `stats` counts them."""
        key = tuple(int(t) for t in tokens)
        if self._prefix == key and self._holds(key):
            self.llm._ctx.kv_cache_seq_rm(-1, len(key), -1)
            self.llm.n_tokens = len(key)
            how = "reused"
        else:
            self._clear()
            state = self._states.get(key)
            if state is not None and self._restore(key, state):
                self._states.move_to_end(key)
                how = "restored"
            else:
                self._clear()
                if key:
                    self.decode(key, 0)
                    self._save(key)
                how = "computed"
            self._prefix = key
        self.stats[how] += 1
        return how

    def _holds(self, key: tuple[int, ...]) -> bool:
        """Whether cells [0, len(key)) still hold `key` (tokens, and no cell evicted)."""
        import llama_cpp

        llm = self.llm
        n = len(key)
        if n == 0:
            return True
        if llm.n_tokens < n or not np.array_equal(llm.input_ids[:n], key):
            return False
        mem = llm._ctx.memory
        return (llama_cpp.llama_memory_seq_pos_min(mem, 0) == 0
                and llama_cpp.llama_memory_seq_pos_max(mem, 0) >= n - 1)

    def _clear(self) -> None:
        """Empty the KV cache (cell metadata only; the next tokens go to cells 0, 1, ...)."""
        import llama_cpp

        llama_cpp.llama_memory_clear(self.llm._ctx.memory, False)
        self.llm.n_tokens = 0
        self._prefix = None

    def _save(self, key: tuple[int, ...]) -> None:
        """Keep the KV state of sequence 0 (holding exactly `key`) for `_restore`."""
        import ctypes

        import llama_cpp

        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        if n <= 0:
            return
        self._states[key] = (buf, int(n))
        while len(self._states) > MAX_SAVED_PREFIXES:
            self._states.popitem(last=False)

    def _restore(self, key: tuple[int, ...], state: tuple[Any, int]) -> bool:
        """Load a saved prefix state into the empty cache; False when llama.cpp refuses."""
        import llama_cpp

        buf, n = state
        if llama_cpp.llama_state_seq_set_data(self.llm._ctx.ctx, buf, n, 0) == n:
            self.llm.input_ids[:len(key)] = key
            self.llm.n_tokens = len(key)
            if self._holds(key):
                return True
        del self._states[key]
        return False

    def evaluate(self, prefix: Sequence[int], rest: Sequence[int]) -> tuple[np.ndarray, str]:
        """Next-token logits after prefix + rest, computed canonically: the prefix as in
        `enter_prefix`, then all of `rest` decoded from the prefix end (fixed batching).
        Returns (logits, how the prefix was obtained)."""
        if not rest:
            raise ValueError("evaluate needs at least one token after the prefix")
        how = self.enter_prefix(prefix)
        return self.decode(rest, 1)[0], how


def cpu_has_amx() -> bool:
    """Whether llama.cpp would run AMX tile code here: the CPU reports Intel AMX (Linux
    /proc/cpuinfo) and this llama.cpp build includes AMX kernels (a -march=native build on
    such a CPU; the Makefile's portable build does not). Those kernels crash with SIGILL on
    hosts whose worker threads lack the kernel's per-thread AMX permission, so they are not
    used there."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    if "amx_int8" not in flags and "amx_tile" not in flags:
        return False
    import llama_cpp

    return "AMX" in llama_cpp.llama_print_system_info().decode(errors="ignore")


@contextlib.contextmanager
def _model_params(*, extra_buffers: bool) -> Iterator[None]:
    """While loading a model: whether llama.cpp may use extra weight buffer types (AMX,
    repacked CPU layouts). `Llama()` takes no such argument, so its defaults are wrapped;
    callers hold _MODELS_LOCK."""
    import llama_cpp.llama_cpp as lib  # the module `Llama()` calls, not the package

    if extra_buffers:
        yield
        return
    original = lib.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = defaults
    try:
        yield
    finally:
        lib.llama_model_default_params = original


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
                with _model_params(extra_buffers=not cpu_has_amx()):
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
            with loaded.lock:
                loaded.closed = True
                loaded._states.clear()
                with contextlib.suppress(Exception):
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
    """The tokens of the last rendered prefix (the KV cache itself lives in the model)."""

    text: str = ""
    tokens: tuple[int, ...] = ()


class LocalProvider:
    """A local GGUF model behind the Provider protocol (see `workbench.providers.base`)."""

    def __init__(self, config: ModelSpec) -> None:
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
        # A label that merges with the prompt's last tokens rewrites the cache from inside the
        # item, so those go last, latest start first: each label then finds the item's KV
        # intact up to where it starts.
        for label in sorted(labels, key=lambda lab: (conts[lab][0] != p_end, -conts[lab][0])):
            start, cont, _ = conts[label]
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
                "item_tokens": len(split.rest)}
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
            latency_ms=seconds * 1000, cost_usd=self._cost(seconds),
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
        if win_logprobs:
            signals["logprob_mean"] = float(np.mean(win_logprobs))
            signals["logprob_min"] = float(np.min(win_logprobs))
        return Response(
            output=output, confidence=vote.share, label_probs=None, signals=signals,
            prompt_tokens=p_end, completion_tokens=sum(len(g) for g, _, _ in decoded),
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
