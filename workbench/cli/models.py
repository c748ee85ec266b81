"""`workbench models ...`, `workbench run` and `workbench compare`: the model catalog, running
workloads on models, and the per-model comparison table."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from typing import Any, TextIO

from workbench.cli import add_home
from workbench.cli.labels import add_basis_options
from workbench.errors import WorkbenchError
from workbench.extras import MissingExtraError, require


def register(sub: argparse._SubParsersAction) -> None:
    """Add `models` (list/add/edit/delete/quantize/calibrate), `run` and `compare`."""
    models = sub.add_parser("models", help="list, add, delete or re-quantize model configs")
    add_home(models)
    models.add_argument("--json", action="store_true", help="print a JSON list")
    models.set_defaults(func=cmd_list)
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")

    add = msub.add_parser("add", help="register a model config")
    add_home(add)
    add.add_argument("name")
    add.add_argument("--kind", required=True, choices=("local-gguf", "litellm"))
    add.add_argument("--model", required=True,
                     help="LiteLLM model string (provider/model) or path of a GGUF file")
    add.add_argument("--api-base", default=None, help="URL of an OpenAI-compatible server")
    add.add_argument("--api-key-env", default=None,
                     help="NAME of the environment variable holding the key (never the key)")
    add.add_argument("--tag", action="append", default=[], help="tag (repeatable)")
    add.add_argument("--input-price", type=float, default=None, help="USD per 1M input tokens")
    add.add_argument("--output-price", type=float, default=None,
                     help="USD per 1M output tokens")
    add.add_argument("--hardware-usd-per-hour", type=float, default=None,
                     help="local models: machine price per hour")
    add.add_argument("--max-tokens", type=int, default=None)
    add.add_argument("--temperature", type=float, default=None)
    add.add_argument("--n-ctx", type=int, default=None)
    add.add_argument("--threads", type=int, default=None)
    add.add_argument("--timeout", type=float, default=None, help="seconds per hosted call")
    _add_sampling_options(add)
    add_few_shot_args(add)
    add.set_defaults(func=cmd_add)

    edit = msub.add_parser("edit", help="change fields of a model config")
    add_home(edit)
    edit.add_argument("name")
    edit.add_argument("--max-tokens", type=int, default=None)
    edit.add_argument("--temperature", type=float, default=None)
    edit.add_argument("--timeout", type=float, default=None, help="seconds per hosted call")
    edit.add_argument("--input-price", type=float, default=None, help="USD per 1M input tokens")
    edit.add_argument("--output-price", type=float, default=None,
                      help="USD per 1M output tokens")
    _add_sampling_options(edit)
    add_few_shot_args(edit)
    edit.add_argument("--no-few-shot", action="store_true",
                      help="stop drawing few-shot examples from a workload")
    edit.set_defaults(func=cmd_edit)

    delete = msub.add_parser("delete", help="remove a model config (outcomes are kept)")
    add_home(delete)
    delete.add_argument("name")
    delete.set_defaults(func=cmd_delete)

    quant = msub.add_parser("quantize", help="re-quantize a local model into a new entry")
    add_home(quant)
    quant.add_argument("name")
    quant.add_argument("--type", required=True, dest="qtype", help="e.g. Q3_K_M, Q2_K")
    quant.add_argument("--as", dest="new_name", default=None, help="name of the new entry")
    quant.set_defaults(func=cmd_quantize)
    from workbench.cli import local_speed

    local_speed.register(msub)

    run = sub.add_parser("run", help="run a workload on one or more models (cached, resumable)")
    add_home(run)
    run.add_argument("--workload", required=True)
    run.add_argument("--model", action="append", required=True, dest="models",
                     help="catalog model name (repeatable)")
    run.add_argument("--limit", type=int, default=None, help="only the first N items")
    run.add_argument("--scorer", default=None, help="scorer name (default: per task type)")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")
    add_few_shot_args(run, for_run=True)
    run.set_defaults(func=cmd_run)

    compare = sub.add_parser("compare", help="per-model quality, cost and latency on a workload")
    add_home(compare)
    compare.add_argument("--workload", required=True)
    compare.add_argument("--model", action="append", dest="models", default=None,
                         help="only these models (repeatable; default all with outcomes)")
    add_basis_options(compare)
    compare.add_argument("--json", action="store_true", help="print a JSON list")
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    compare.set_defaults(func=cmd_compare)


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Self-consistency options (ModelSpec.samples, sample_temperature, seed, vote_on)."""
    parser.add_argument("--samples", type=int, default=None,
                        help="self-consistency: answers per item (1-50; 1 = off); the "
                        "confidence becomes the majority's share")
    parser.add_argument("--sample-temperature", type=float, default=None,
                        help="self-consistency: temperature of the answers (0 < T <= 2)")
    parser.add_argument("--seed", type=int, default=None, help="self-consistency: seed")
    parser.add_argument("--vote-on", default=None,
                        choices=("label", "choice", "number", "json", "text"),
                        help="self-consistency: how answers are compared (default: by task)")


def _sampling_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The self-consistency fields given on the command line."""
    given = {"samples": args.samples, "sample_temperature": args.sample_temperature,
             "seed": args.seed, "vote_on": args.vote_on}
    return {k: v for k, v in given.items() if v is not None}


def _catalog(args: argparse.Namespace) -> Any:
    from workbench.catalog import Catalog

    catalog = Catalog(args.home)
    try:
        catalog.ensure_defaults()
    except MissingExtraError as exc:  # router-only install: no bundled local model to register
        print(f"note: {exc}", file=sys.stderr)
    return catalog


def _key_status(config: Any) -> str:
    """'set' / 'missing' / '-' (no key needed) for a config's key; never the key itself."""
    if config.kind != "litellm" or (config.api_base and not config.api_key_env):
        return "-"
    from workbench.providers.base import ProviderError
    from workbench.providers.hosted import resolve_api_key

    try:
        return "set" if resolve_api_key(config) else "missing"
    except ProviderError:
        return "unknown model"


def cmd_list(args: argparse.Namespace) -> int:
    """Print the catalog as a table or JSON."""
    catalog = _catalog(args)
    configs = catalog.list_models()
    if args.json:
        rows = [{**c.model_dump(mode="json"), "key_status": _key_status(c)} for c in configs]
        print(json.dumps(rows, indent=2))
        return 0
    header = ("name", "kind", "model", "$in/1M", "$out/1M", "tags", "key")
    table = [
        (c.name, c.kind, _short(c.model), _price(c.input_price_per_mtok),
         _price(c.output_price_per_mtok), ",".join(c.tags), _key_status(c))
        for c in configs
    ]
    _print_table(header, table)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """Register a model from the command-line flags."""
    from workbench.models import ModelSpec

    fields: dict[str, Any] = {
        "name": args.name, "kind": args.kind, "model": args.model,
        "api_base": args.api_base, "api_key_env": args.api_key_env, "tags": tuple(args.tag),
        "input_price_per_mtok": args.input_price, "output_price_per_mtok": args.output_price,
        "hardware_usd_per_hour": args.hardware_usd_per_hour,
    }
    optional = {"max_tokens": args.max_tokens, "temperature": args.temperature,
                "n_ctx": args.n_ctx, "threads": args.threads, "timeout_s": args.timeout}
    fields.update({k: v for k, v in optional.items() if v is not None})
    fields.update(_sampling_fields(args))
    source = few_shot_source(args)
    if source is not None:
        _check_source(args, source)
        fields["few_shot_source"] = source
    config = _catalog(args).add(ModelSpec(**fields))
    print(f"added model {config.name} ({config.kind}: {_short(config.model)}); prices "
          f"in/out per 1M: {_price(config.input_price_per_mtok)}/"
          f"{_price(config.output_price_per_mtok)}"
          + (f"; few-shot {source.describe()}" if source else ""))
    return 0


# -- few-shot examples drawn from a workload (workbench.fewshot) --------------------------------


def add_few_shot_args(parser: argparse.ArgumentParser, for_run: bool = False) -> None:
    """The --few-shot-* options of `models add/edit` and `run`."""
    from workbench.fewshot import SELECTS

    who = "every model of this run (stored as <model>+fs-...)" if for_run else "the model"
    group = parser.add_argument_group(
        "few-shot examples from a workload",
        f"give {who} examples drawn from a train workload's labelled items, never the "
        "items being scored")
    group.add_argument("--few-shot-from", metavar="WORKLOAD", default=None,
                       help="the train workload whose items are the examples")
    group.add_argument("--few-shot-select", choices=SELECTS, default=None,
                       help="similar (default): the k items most similar to the request "
                       "(BM25); per-label: k items of each label (one shared prompt, cheaper)")
    group.add_argument("--few-shot-k", type=int, default=None, metavar="K",
                       help="examples in all (similar) or per label (per-label); default 8")
    group.add_argument("--few-shot-answers", default=None, metavar="reference|MODEL",
                       help="answers from the references (default) or from MODEL's recorded "
                       "outputs on the train workload (in-context distillation)")
    group.add_argument("--few-shot-seed", type=int, default=None, metavar="N",
                       help="per-label: which items are drawn (default 0)")


def few_shot_source(args: argparse.Namespace, current: Any = None) -> Any:
    """The FewShotSource the --few-shot-* flags ask for, changing `current` where given;
    None when neither names a workload."""
    from workbench.fewshot import FewShotSource

    given = {"workload": args.few_shot_from, "select": args.few_shot_select,
             "k": args.few_shot_k, "answers_from": args.few_shot_answers,
             "seed": args.few_shot_seed}
    given = {k: v for k, v in given.items() if v is not None}
    if current is None and "workload" not in given:
        if given:
            flags = ", ".join(f"--few-shot-{k.split('_')[0]}" for k in given)
            raise WorkbenchError(f"{flags} need(s) --few-shot-from WORKLOAD")
        return None
    base = current.model_dump() if current is not None else {}
    try:
        return FewShotSource(**{**base, **given})
    except ValueError as exc:
        from pydantic import ValidationError

        if not isinstance(exc, ValidationError):
            raise
        first = exc.errors()[0]
        raise WorkbenchError(f"--few-shot-{first['loc'][0]}: "
                             f"{first['msg'].removeprefix('Value error, ')}") from None


def _few_shot_changes(args: argparse.Namespace) -> dict[str, Any]:
    """`models edit`: the few_shot_source change the --few-shot-* / --no-few-shot flags ask
    for (checked against the store), or nothing."""
    if args.no_few_shot:
        if any(v is not None for v in (args.few_shot_from, args.few_shot_select,
                                          args.few_shot_k, args.few_shot_answers,
                                          args.few_shot_seed)):
            raise WorkbenchError("--no-few-shot cannot be combined with --few-shot-* options")
        return {"few_shot_source": None}
    current = _catalog(args).get(args.name).few_shot_source
    source = few_shot_source(args, current)
    if source is None or source == current:
        return {}
    _check_source(args, source)
    return {"few_shot_source": source}


def _check_source(args: argparse.Namespace, source: Any) -> None:
    """Refuse a source whose workload or answering model is unknown, or that has fewer
    answered items than k, before anything is saved (labels are checked when a run starts)."""
    from workbench import fewshot
    from workbench.store import open_store

    fewshot.check_source(open_store(args.home), source)  # the process's shared store


def cmd_edit(args: argparse.Namespace) -> int:
    """Change the given fields of a catalog model (validated as a whole before saving)."""
    given = {"max_tokens": args.max_tokens, "temperature": args.temperature,
             "timeout_s": args.timeout, "input_price_per_mtok": args.input_price,
             "output_price_per_mtok": args.output_price}
    changes = {k: v for k, v in given.items() if v is not None}
    changes.update(_sampling_fields(args))
    changes.update(_few_shot_changes(args))
    if not changes:
        raise WorkbenchError("nothing to change: give at least one option (see `workbench "
                             "models edit --help`)")
    catalog = _catalog(args)
    config = catalog.update(args.name, **changes)
    print(f"updated model {config.name}: " + ", ".join(
        f"{k}={getattr(config, k)}" for k in changes))
    _say_recheck(catalog, config.name)
    return 0


def _say_recheck(catalog: Any, model: str) -> None:
    """Name the approved policies this model change puts into "needs re-check" (stderr)."""
    from workbench.policy_review import needing_recheck

    hit = [r for r in needing_recheck(catalog)
           if any(line.startswith(f"{model}:") for line in r.needs_recheck)]
    if hit:
        print("approved policies using it now need a re-check (`workbench policy approve` "
              "again after replaying them): " + ", ".join(f"{r.name}@{r.version}" for r in hit),
              file=sys.stderr)


def cmd_delete(args: argparse.Namespace) -> int:
    """Remove a model from the catalog."""
    _catalog(args).delete(args.name)
    print(f"deleted model {args.name}")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """Re-quantize a local model with llama.cpp and register the result as a new entry."""
    require("llama_cpp", "`workbench models quantize`")
    from workbench.providers.quantize import requantize

    catalog = _catalog(args)
    source = catalog.get(args.name)
    if source.kind != "local-gguf":
        raise WorkbenchError(f"model {args.name!r} is {source.kind}; only local-gguf models can "
                             "be re-quantized")
    new_name = args.new_name or f"{args.name}-{args.qtype.lower()}"
    if new_name in catalog.names():
        raise WorkbenchError(f"a model named {new_name!r} already exists; pick --as NEW")
    from pathlib import Path

    from workbench import settings

    out_dir = settings.home(args.home) / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / (re.sub(r"[^A-Za-z0-9._-]+", "_", new_name) + ".gguf")
    print(f"quantizing {_short(source.model)} to {args.qtype} ...", file=sys.stderr)
    path = Path(requantize(source.model, target, args.qtype))
    config = catalog.add(source.replace(name=new_name, model=str(path)))
    size = path.stat().st_size / 1e6
    print(f"added model {config.name} ({args.qtype}, {size:.1f} MB): {path}")
    return 0


class ProgressBar:
    """A one-line text progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.monotonic()
        self.last = 0.0
        self.tty = self.stream.isatty()

    def __call__(self, done: int, total: int, model: str) -> None:
        now = time.monotonic()
        if not self.tty and done < total and now - self.last < 5:
            return
        self.last = now
        frac = done / total if total else 1.0
        filled = int(round(self.width * frac))
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {done}/{total} {model} {now - self.started:.0f}s"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def cmd_run(args: argparse.Namespace) -> int:
    """Run the workload on the chosen models with a progress bar; prints a summary."""
    from workbench.runner import run
    from workbench.store import open_store

    if args.limit is not None and args.limit <= 0:
        raise WorkbenchError("--limit must be a positive number of items")
    catalog = _catalog(args)
    configs = [catalog.get(name) for name in args.models]
    source = few_shot_source(args)
    if source is not None:
        from workbench.fewshot import with_source

        configs = [with_source(c, source) for c in configs]
        print(f"few-shot {source.describe()}: outcomes stored as "
              f"{', '.join(c.name for c in configs)}", file=sys.stderr)
    store = open_store(args.home)
    from workbench.local_cost import measure_first, provider_factory

    measure_first(configs, args.home, lambda m: print(m, file=sys.stderr))  # once per machine
    bar = ProgressBar()
    try:
        summary = run(store, args.workload, configs, limit=args.limit, progress=bar,
                      scorer=args.scorer, provider_factory=provider_factory(args.home))
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
        return 0
    _print_table(
        ("model", "items", "cached", "run", "errors", "seconds"),
        [(m.model, m.total, m.cached, m.completed, m.errors, f"{m.seconds:.1f}")
         for m in summary.models],
    )
    print(f"workload {summary.workload}: {summary.calls} model calls, {summary.cached} cached, "
          f"{summary.errors} errors, scorer {summary.scorer}")
    return 0


COMPARE_KEYS = ("quality", "quality_ci", "cost_per_request", "cost_per_success",
                "latency_p50_ms", "latency_p95_ms", "error_rate", "n")


def cmd_compare(args: argparse.Namespace) -> int:
    """Print per-model metrics for a workload (table or JSON)."""
    from workbench.runner import model_metrics
    from workbench.store import open_store

    if args.silver is not None or args.label_set is not None:
        from workbench.cli.labels import compare_on_basis

        return compare_on_basis(args)
    store = open_store(args.home)
    metrics = model_metrics(store, args.workload, args.models, seed=args.seed)
    if metrics.height == 0:
        raise WorkbenchError(f"workload {args.workload!r} has no outcomes yet; run "
                             "`workbench run --workload ... --model ...` first")
    rows = metrics.to_dicts()
    if args.json:
        out = [{"model": r["model"], **{k: _json_num(r[k]) for k in COMPARE_KEYS},
                "cost_per_1k": _json_num(r["cost_per_1k"]),
                "latency_p99_ms": _json_num(r["latency_p99_ms"])} for r in rows]
        print(json.dumps(out, indent=2))
        return 0
    _print_table(
        ("model", "n", "quality", "95% CI", "$/request", "$/success", "p50 ms", "p95 ms",
         "errors"),
        [(r["model"], r["n"], f"{r['quality']:.3f}",
          f"[{r['quality_lo']:.3f}, {r['quality_hi']:.3f}]", _money(r["cost_per_request"]),
          _money(r["cost_per_success"]), _ms(r["latency_p50_ms"]),
          _ms(r["latency_p95_ms"]), f"{r['error_rate']:.1%}") for r in rows],
    )
    return 0


# -- formatting --------------------------------------------------------------------------------


def _json_num(v: Any) -> Any:
    if isinstance(v, list):
        return [_json_num(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


def _price(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _money(v: float | None) -> str:
    return "-" if v is None else f"${v:.6f}"


def _ms(v: float | None) -> str:
    """Milliseconds, or '-' when not recorded (e.g. RouterBench has no latencies)."""
    return "-" if v is None or not math.isfinite(v) else f"{v:.0f}"


def _print_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
