"""What a local model call costs, from measured throughput rather than the call's wall time.

Wall time depends on what else the machine is doing: the same 270M model cost 5x more per
request on a busy run than on a quiet one. So a local model's speed is measured once per model
file (SHA-256) and machine (CPU model, thread count), at a concurrency of one request at a time
(the local provider serialises calls): prompt processing (tokens/s in one batch) and generation
(tokens/s decoding one token per step), each the best of several trials (the trial least slowed
by other work, so closest to the machine's real speed). A trial whose process got less than
`CONTENDED_BELOW` of its threads' CPU time ran under contention; when even the best one did,
the measurement is flagged (its speeds are too low, its costs too high: measure again on a quiet
machine). Measurements live in `local_throughput.json` in the data directory.

A call then costs (prompt tokens / prompt tok/s + generated tokens / generation tok/s) x $/hour
/ 3600, written as per-1M-token prices so a policy file can carry them. Label scoring counts the
label tokens it decodes (small decode steps, priced like generated tokens); the prompt is
charged whole, as a hosted API would, though the shared few-shot prefix is computed once per run
(and the content-free label prior, once per prefix, is not charged). A local model with both
per-1M prices set (e.g. from an exported policy) is charged those prices instead.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import settings
from workbench.errors import WorkbenchError
from workbench.models import ModelSpec

if TYPE_CHECKING:
    import polars as pl

    from workbench.policy import Policy
    from workbench.providers.base import Provider
    from workbench.providers.llama import LoadedModel

STORE_FILE = "local_throughput.json"
PROMPT_BATCH = 64  # tokens evaluated at once per prompt trial (a short few-shot prompt)
GEN_TOKENS = 8  # tokens decoded one at a time per generation trial
TRIALS = 5
MIN_TRIALS = 2  # trials run even past the time budget
BUDGET_S = 15.0  # stop adding trials after this long (a slow model on a busy machine)
CONTENDED_BELOW = 0.6  # share of the threads' CPU time below which a trial was contended
CONCURRENCY = 1  # requests in flight while measuring (and while running: one at a time)
MEASURE_TEXT = ("The customer wrote that the parcel arrived late and the invoice shows a second "
                "charge for the same order, so they would like a refund or a call back. ")

Note = Callable[[str], None]
_MEMO: dict[str, Throughput] = {}  # measured in this process, by key (reused in any home)
_FILE_LOCK = threading.Lock()


def cpu_name() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux), part of a measurement's key."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _key(sha256: str, cpu: str, threads: int) -> str:
    return f"{sha256}|{cpu}|{threads}"


@dataclass(frozen=True)
class Throughput:
    """One stored speed measurement of a GGUF file on this machine at a thread count."""

    model_file: str
    sha256: str
    cpu: str
    threads: int
    prompt_tps: float  # best trial, tokens per second
    gen_tps: float
    prompt_cpu_share: float  # the best trial's process CPU time / (wall time x threads)
    gen_cpu_share: float
    contended: bool
    trials: int
    prompt_batch: int
    gen_tokens: int
    load_avg: float | None  # 1-minute load average when measured (for the record)
    cores: int
    measured_at: str
    concurrency: int = CONCURRENCY

    @property
    def key(self) -> str:
        """(file hash, CPU model, threads): what the measurement is valid for."""
        return _key(self.sha256, self.cpu, self.threads)

    def prices(self, usd_per_hour: float) -> tuple[float, float]:
        """(input, output) USD per 1M tokens at `usd_per_hour` for the machine."""
        per_s = float(usd_per_hour) / 3600.0
        return per_s / self.prompt_tps * 1e6, per_s / self.gen_tps * 1e6

    def describe(self) -> str:
        """One line: the speeds, where and when measured, and the contention flag."""
        text = (f"{tps_text(self.prompt_tps)} tok/s prompt, {tps_text(self.gen_tps)} tok/s "
                f"generation ({self.threads} thread{'s' if self.threads != 1 else ''}, one request at a "
                f"time, best of {self.trials} trials on {self.cpu}, {self.measured_at[:10]})")
        if self.contended:
            text += (f"; measured under contention (the process got "
                     f"{min(self.prompt_cpu_share, self.gen_cpu_share):.0%} of its CPU time), "
                     "so costs are overstated: measure again on a quiet machine")
        return text

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Throughput:
        """From the stored JSON (unknown fields ignored, so older files still load)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


def tps_text(value: float) -> str:
    """Tokens per second as shown to users (whole numbers from 10 up, two digits below)."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


# -- measuring -------------------------------------------------------------------------------


def _trial(model: LoadedModel, prompt: list[int], gen: list[int]) -> tuple[float, float,
                                                                              float, float]:
    """One prompt batch then `gen` single-token steps from an empty cache: (prompt seconds,
    prompt CPU share, generation seconds, generation CPU share)."""
    model.invalidate()
    w0, c0 = time.perf_counter(), time.process_time()
    model.decode(prompt, 1)
    w1, c1 = time.perf_counter(), time.process_time()
    for token in gen:
        model.decode([token], 1)
    w2, c2 = time.perf_counter(), time.process_time()
    threads = max(1, model.threads)
    return (w1 - w0, (c1 - c0) / max((w1 - w0) * threads, 1e-9),
            w2 - w1, (c2 - c1) / max((w2 - w1) * threads, 1e-9))


def measure_loaded(model: LoadedModel, sha256: str, *, trials: int = TRIALS,
                   note: Note | None = None) -> Throughput:
    """Measure a loaded model's speeds (best of `trials`, within `BUDGET_S` after the first
    `MIN_TRIALS`); the cache is left empty, so later calls recompute or restore their prefix."""
    if trials < 1:
        raise WorkbenchError("trials must be at least 1")
    n_gen = max(1, min(GEN_TOKENS, model.n_ctx // 4))
    n_prompt = max(1, min(PROMPT_BATCH, model.n_ctx - n_gen - 1))
    tokens = model.tokenize(MEASURE_TEXT * (1 + (n_prompt + n_gen) // 20), True)
    prompt, gen = tokens[:n_prompt], tokens[n_prompt:n_prompt + n_gen]
    results = []
    started = time.monotonic()
    with model.lock:
        try:
            model.invalidate()  # from an empty cache, whatever the model held
            model.decode(prompt[:8], 1)  # warm-up (first-call allocations), not counted
            for i in range(trials):
                if i >= MIN_TRIALS and time.monotonic() - started > BUDGET_S:
                    break
                results.append(_trial(model, prompt, gen))
                if note:
                    note(f"measuring {model.path.name}: trial {i + 1} of {trials}")
        finally:
            model.invalidate()
    best_p = min(results, key=lambda r: r[0])
    best_g = min(results, key=lambda r: r[2])
    shares = (min(best_p[1], 1.0), min(best_g[3], 1.0))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return Throughput(
        model_file=model.path.name, sha256=sha256, cpu=cpu_name(), threads=model.threads,
        prompt_tps=len(prompt) / best_p[0], gen_tps=len(gen) / best_g[2],
        prompt_cpu_share=round(shares[0], 3), gen_cpu_share=round(shares[1], 3),
        contended=min(shares) < CONTENDED_BELOW, trials=len(results), prompt_batch=len(prompt),
        gen_tokens=len(gen), load_avg=None if load is None else round(load, 2),
        cores=os.cpu_count() or 1, measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


# -- storing ---------------------------------------------------------------------------------


def _path(home: str | os.PathLike[str] | None) -> Path:
    return settings.home(home) / STORE_FILE


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"{path}: cannot read the stored local model speeds ({exc}); "
                             "delete the file and measure again") from None
    return data if isinstance(data, dict) else {}


def _write(path: Path, tp: Throughput) -> None:
    with _FILE_LOCK:
        data = _read(path)
        data[tp.key] = asdict(tp)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
            os.chmod(tmp, 0o644)  # like the store and catalog (mkstemp makes it owner-only)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def save(tp: Throughput, home: str | os.PathLike[str] | None = None) -> None:
    """Store a measurement in the data directory (replacing one with the same key)."""
    _write(_path(home), tp)


def stored(home: str | os.PathLike[str] | None = None) -> list[Throughput]:
    """Every measurement stored in the data directory, newest first."""
    items = [Throughput.from_data(v) for v in _read(_path(home)).values() if isinstance(v, dict)]
    return sorted(items, key=lambda t: t.measured_at, reverse=True)


def _identity(spec: ModelSpec) -> tuple[Path, str, int]:
    from workbench.local_files import file_digest
    from workbench.providers.llama import check_gguf, resolve_threads

    if spec.kind != "local-gguf":
        raise WorkbenchError(f"model {spec.name!r} is a hosted model; only local GGUF models "
                             "are measured (hosted ones are priced per token)")
    path = check_gguf(spec.model, spec.name)
    return path, file_digest(path), resolve_threads(spec.threads)


def lookup(spec: ModelSpec, home: str | os.PathLike[str] | None = None) -> Throughput | None:
    """The stored measurement for this local model on this machine, or None."""
    _, sha, threads = _identity(spec)
    data = _read(_path(home)).get(_key(sha, cpu_name(), threads))
    return Throughput.from_data(data) if isinstance(data, dict) else None


def ensure(spec: ModelSpec, home: str | os.PathLike[str] | None = None, *,
           force: bool = False, trials: int = TRIALS, note: Note | None = None) -> Throughput:
    """The measurement for a local model on this machine: stored, else measured (once per
    process; `note` gets progress messages) and stored; `force` measures again."""
    path, sha, threads = _identity(spec)
    key = _key(sha, cpu_name(), threads)
    if not force:
        found = _read(_path(home)).get(key)
        if isinstance(found, dict):
            return Throughput.from_data(found)
    tp = None if force else _MEMO.get(key)
    if tp is None:
        from workbench.providers.llama import load_model

        if note:
            note(f"measuring the speed of {spec.name} on this machine (once per model file and "
                 "machine; it sets the model's cost per token)")
        tp = measure_loaded(load_model(path, spec.n_ctx, threads), sha, trials=trials, note=note)
        _MEMO[key] = tp
    _write(_path(home), tp)
    return tp


# -- pricing calls ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalPrice:
    """How a local model's calls are charged: per-1M-token prices, from a measurement or set
    on the model, and the words that explain them."""

    input_per_mtok: float
    output_per_mtok: float
    usd_per_hour: float
    measurement: Throughput | None = None  # None: prices set on the model

    def cost(self, prompt_tokens: int, gen_tokens: int, gen_kind: str = "generated"
             ) -> tuple[float, dict[str, Any]]:
        """(USD, signals explaining it) for a call; `gen_kind` is 'generated' or 'scored'
        (label tokens decoded to score the labels)."""
        usd = (prompt_tokens * self.input_per_mtok + gen_tokens * self.output_per_mtok) / 1e6
        if gen_kind == "scored":
            gen_kind = f"label token{'s' if gen_tokens != 1 else ''} scored"
        tp = self.measurement
        if tp is None:
            basis = (f"local: {prompt_tokens:,} prompt tokens at ${self.input_per_mtok:.4g}/1M + "
                     f"{gen_tokens:,} {gen_kind} at ${self.output_per_mtok:.4g}/1M (prices set "
                     "on the model)")
            return usd, {"cost_basis": basis}
        basis = (f"local: {prompt_tokens:,} prompt tokens at {tps_text(tp.prompt_tps)} tok/s + "
                 f"{gen_tokens:,} {gen_kind} at {tps_text(tp.gen_tps)} tok/s, "
                 f"${self.usd_per_hour:.2f}/h (measured {tp.measured_at[:10]}"
                 + (", under contention" if tp.contended else "") + ")")
        return usd, {"cost_basis": basis, "cost_measure": {
            "prompt_tps": round(tp.prompt_tps, 3), "gen_tps": round(tp.gen_tps, 3),
            "usd_per_hour": self.usd_per_hour, "contended": tp.contended,
            "measured_at": tp.measured_at}}


def usd_per_hour(spec: ModelSpec) -> float:
    """The machine's price: the model's, else WORKBENCH_HARDWARE_USD_PER_HOUR."""
    rate = spec.hardware_usd_per_hour
    return float(rate if rate is not None else settings.get("WORKBENCH_HARDWARE_USD_PER_HOUR"))


def price(spec: ModelSpec, home: str | os.PathLike[str] | None = None, *,
          note: Note | None = None) -> LocalPrice:
    """The model's set per-1M prices when both are given, else prices from its measured
    speed on this machine (measured now if not stored)."""
    rate = usd_per_hour(spec)
    if spec.input_price_per_mtok is not None and spec.output_price_per_mtok is not None:
        return LocalPrice(spec.input_price_per_mtok, spec.output_price_per_mtok, rate)
    tp = ensure(spec, home, note=note)
    inp, out = tp.prices(rate)
    return LocalPrice(inp, out, rate, tp)


def measure_first(specs: Sequence[ModelSpec], home: str | os.PathLike[str] | None = None,
                  note: Note | None = None) -> None:
    """Before a run: measure the local models not measured on this machine yet, telling `note`
    (a run would otherwise pause silently for it on its first call)."""
    for spec in specs:
        if spec.kind == "local-gguf":
            price(spec, home, note=note)


def with_local_prices(policy: Policy, home: str | os.PathLike[str] | None = None) -> Policy:
    """`policy` with per-1M prices on each local model that has none and whose GGUF file is
    here, from its measured speed, so an exported file carries the local price (not 0)."""
    models = dict(policy.models)
    for name, spec in policy.models.items():
        if (spec.kind != "local-gguf" or None not in (spec.input_price_per_mtok,
                                                      spec.output_price_per_mtok)
                or not Path(spec.model).is_file()):
            continue
        inp, out = ensure(spec, home).prices(usd_per_hour(spec))
        models[name] = spec.replace(
            input_price_per_mtok=spec.input_price_per_mtok if spec.input_price_per_mtok
            is not None else inp,
            output_price_per_mtok=spec.output_price_per_mtok if spec.output_price_per_mtok
            is not None else out)
    return policy if models == policy.models else policy.model_copy(update={"models": models})


def provider_factory(home: str | os.PathLike[str] | None) -> Callable[[ModelSpec], Provider]:
    """`get_provider` whose local models find (and store) their measured speed in `home`."""
    from workbench.providers.base import get_provider

    def make(spec: ModelSpec) -> Provider:
        if spec.kind == "local-gguf":
            from workbench.providers.local import LocalProvider

            return LocalProvider(spec, home=home)
        return get_provider(spec)

    return make


def cost_sources(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Per model of recorded outcomes: how its costs were derived (one example `cost_basis`,
    or none for hosted/imported rows and local rows from before measured speeds) and whether
    any came from a measurement taken under contention."""
    import polars as pl

    if outcomes.height == 0 or "signals" not in outcomes.columns:
        return pl.DataFrame(schema={"model": pl.String, "cost_basis": pl.String,
                                    "contended": pl.Boolean})
    sig = pl.col("signals").cast(pl.String)
    return (outcomes.with_columns(
        sig.str.json_path_match("$.cost_basis").alias("cost_basis"),
        (sig.str.json_path_match("$.cost_measure.contended") == "true").alias("contended"))
        .group_by("model", maintain_order=True)
        .agg(pl.col("cost_basis").drop_nulls().first(), pl.col("contended").fill_null(False).any())
        .sort("model"))


def recost(store: Any, spec: ModelSpec, home: str | os.PathLike[str] | None = None) -> int:
    """Charge a local model's recorded calls again, in every workload, at its stored speed
    (after measuring it again, e.g. on a quiet machine): cached rows are not re-run, so without
    this they keep the speed they were charged at. Rows not charged from a measurement (hosted,
    imported, set prices) are left as they are. Returns the number of rows changed."""
    import polars as pl

    tp = lookup(spec, home)
    if tp is None:
        raise WorkbenchError(f"no speed measured for {spec.name!r} on this machine yet; run "
                             f"`workbench models calibrate {spec.name}` first")
    rate = usd_per_hour(spec)
    charge = LocalPrice(*tp.prices(rate), rate, tp)
    changed = 0
    for info in store.workloads():
        out = store.outcomes(info.name, [spec.name])
        out = out.filter(pl.col("signals").cast(pl.String).str.contains('"cost_measure"'))
        if out.height == 0:
            continue
        costs, signals = [], []
        for row in out.iter_rows(named=True):
            sig = json.loads(row["signals"])
            scored = sig.get("method") == "label_loglik"
            decoded = int(sig.get("label_tokens_scored", 0)) if scored else int(
                row["completion_tokens"] or 0)
            usd, basis = charge.cost(int(row["prompt_tokens"] or 0), decoded,
                                     "scored" if scored else "generated")
            sig.update(basis)
            costs.append(usd)
            signals.append(json.dumps(sig, default=str))
        frame = out.with_columns(pl.Series("cost_usd", costs, dtype=pl.Float64),
                                 pl.Series("signals", signals, dtype=pl.String))
        changed += store.write_outcomes(info.name, frame.drop("created", strict=False))
    return changed
