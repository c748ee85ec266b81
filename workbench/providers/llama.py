"""The llama.cpp layer under the local provider: loading a GGUF file once per process, the
model's KV cache with canonical prefix states (kept, saved and restored, never extended from
another prompt), and splitting a prompt into prefix and item tokens that match the whole
text's own tokenization. `workbench.providers.local` builds prompts and scores on top of it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench import settings
from workbench.providers.base import (
    ContextWindowError,
    UnknownModelError,
)

GGUF_MAGIC = b"GGUF"
# Saved prefix KV states kept per loaded model (about 18 KB per token for the bundled model).
MAX_SAVED_PREFIXES = 8


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
