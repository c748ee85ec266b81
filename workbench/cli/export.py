"""`workbench export`, `route`, `serve` and `drift`: ship a policy, run it live, gate drift."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.cli import add_home
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `export`, `route`, `serve` and `drift`."""
    exp = sub.add_parser("export", help="write a policy file and/or a LiteLLM proxy config")
    add_home(exp)
    exp.add_argument("--policy", required=True, help="policy file, or catalog name[@version]")
    exp.add_argument("--out", default=None, help="policy file to write (.yaml, .yml or .json)")
    exp.add_argument("--litellm", default=None, help="LiteLLM proxy config YAML to write")
    exp.add_argument("--llama-server", default=None, metavar="JSON",
                     help="llama_cpp.server --config_file serving the policy's local models "
                          "by name (run it where the GGUF files are)")
    exp.add_argument("--workload", default=None,
                     help="fill provenance (fingerprint, replay metrics with CIs) from it")
    exp.add_argument("--holdout", default=None,
                     help="file with holdout item ids, one a line (train/holdout metrics)")
    exp.add_argument("--study", default=None, help="study name for provenance")
    exp.add_argument("--trial", type=int, default=None, help="trial number for provenance")
    exp.add_argument("--label-set", default=None, metavar="VERSION",
                     help="with --workload: replay metrics against a reviewed label set (a "
                          "number or 'latest'); the provenance names its version")
    exp.add_argument("--num-retries", type=int, default=2, help="LiteLLM num_retries")
    exp.add_argument("--timeout", type=float, default=60.0, help="LiteLLM timeout, seconds")
    exp.set_defaults(func=cmd_export)

    route = sub.add_parser("route", help="route one prompt live through a policy")
    add_home(route)
    _router_args(route)
    route.add_argument("prompt", help="the request text")
    route.add_argument("--labels", default=None, help="comma-separated label set (label task)")
    route.add_argument("--task-type", default=None)
    route.add_argument("--tag", action="append", default=[], help="request tag (repeatable)")
    route.add_argument("--json", action="store_true", help="print the result as JSON")
    route.set_defaults(func=cmd_route)

    serve = sub.add_parser("serve", help="OpenAI-compatible endpoint executing a policy")
    add_home(serve)
    _router_args(serve)
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--host", default="127.0.0.1",
                       help="bind address (default loopback; any other needs --token-env)")
    serve.add_argument("--token-env", default=None, metavar="VAR",
                       help="name of the environment variable holding the bearer token every "
                            "request must send (required beyond loopback)")
    serve.set_defaults(func=cmd_serve)

    drift = sub.add_parser("drift", help="compare a decision log with the calibration workload")
    add_home(drift)
    drift.add_argument("--policy", required=True, help="policy file, or catalog name[@version]")
    drift.add_argument("--log", required=True, help="decision log (JSONL) written by the router")
    drift.add_argument("--workload", default=None,
                       help="calibration workload (default: the policy's provenance)")
    drift.add_argument("--psi-threshold", type=float, default=0.2)
    drift.add_argument("--alpha", type=float, default=0.01, help="significance level")
    drift.add_argument("--min-rate-diff", type=float, default=0.05,
                       help="smallest absolute rate change that counts")
    drift.add_argument("--json", action="store_true")
    drift.set_defaults(func=cmd_drift)


def _router_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True, help="policy file, or catalog name[@version]")
    p.add_argument("--log", default=None,
                   help="decision log JSONL (default: decisions.jsonl in the data directory)")
    p.add_argument("--no-log", action="store_true", help="do not write a decision log")
    p.add_argument("--log-text", choices=("none", "redacted", "hashed", "full"), default=None,
                   help="request text in the log: none, PII-redacted, keyed hash or full "
                        "(default: the policy's data_handling.log_inputs; only as much as the "
                        "policy allows or less)")
    p.add_argument("--max-tokens", type=int, default=None, help="override every model's")
    p.add_argument("--models-dir", default=None,
                   help="where local GGUF files named by an exported policy are (default: "
                        "WORKBENCH_MODELS_DIR, the policy file's directory, data/models)")


def _router(args: argparse.Namespace) -> Any:
    from workbench import settings
    from workbench.export import resolve_policy
    from workbench.router import PolicyRouter

    policy = resolve_policy(args.policy, args.home)
    overrides = {"max_tokens": args.max_tokens} if args.max_tokens else {}
    log_path = args.log or settings.home(args.home) / "decisions.jsonl"
    ref = Path(args.policy)
    return PolicyRouter(policy, log_path=log_path, log=not args.no_log,
                        log_text=args.log_text, models_dir=args.models_dir,
                        policy_dir=ref.resolve().parent if ref.is_file() else None,
                        **overrides)


def cmd_export(args: argparse.Namespace) -> int:
    """Write the policy file and/or the LiteLLM config."""
    from workbench.export import (
        export_policy,
        provenance_from_store,
        resolve_policy,
        with_provenance,
        write_litellm_config,
    )

    if args.label_set is not None and not args.workload:
        raise WorkbenchError("--label-set needs --workload (the workload it labels)")
    if not args.out and not args.litellm and not args.llama_server:
        raise WorkbenchError("nothing to write: give --out, --litellm and/or --llama-server")
    policy = resolve_policy(args.policy, args.home)
    if args.workload:
        from workbench.store import open_store

        holdout = None
        if args.holdout:
            holdout = [x.strip() for x in Path(args.holdout).read_text().splitlines()
                       if x.strip()]
        policy = provenance_from_store(policy, open_store(args.home), args.workload,
                                       holdout_ids=holdout, study=args.study, trial=args.trial,
                                       label_set=args.label_set)
    else:
        policy = with_provenance(policy, study=args.study, trial=args.trial)
    policy = _stamp_approval(policy, args)
    if args.out:
        path = export_policy(policy, args.out)
        print(f"policy {policy.name!r} written to {path}")
    if args.litellm:
        path = write_litellm_config(policy, args.litellm, num_retries=args.num_retries,
                                    timeout_s=args.timeout)
        print(f"LiteLLM proxy config written to {path} (cascade thresholds stay in the policy)")
    if args.llama_server:
        from workbench.export import _atomic_write
        from workbench.local_files import llama_cpp_server_config

        config = llama_cpp_server_config(policy)
        path = _atomic_write(Path(args.llama_server), json.dumps(config, indent=2) + "\n")
        files = ", ".join(m["model"] for m in config["models"])
        print(f"llama_cpp.server config written to {path}: in the directory holding {files}, "
              f"run `python -m llama_cpp.server --config_file {path.name}`")
    return 0


def _stamp_approval(policy: Any, args: argparse.Namespace) -> Any:
    """The policy with provenance naming the approval of its exact content (none when it is
    not approved, or the data directory has no catalog), and a line saying which."""
    from workbench import settings

    if not (settings.home(args.home) / "catalog.db").is_file():
        return policy
    from workbench.catalog import Catalog
    from workbench.policy_approval import stamp_approval

    policy = stamp_approval(policy, Catalog(args.home))
    approval = policy.provenance.approval if policy.provenance else None
    if approval:
        print(f"approval: {approval['policy']} v{approval['version']} approved by "
              f"{approval['reviewer']} at {approval['approved_at']} (content hash "
              f"{approval['content_hash'][:12]})")
    else:
        print("note: this policy content is not approved (`workbench policy history`); "
              "`workbench check --require-approved` will refuse the file", file=sys.stderr)
    return policy


def cmd_route(args: argparse.Namespace) -> int:
    """Route one prompt and print the answer and the trace."""
    from workbench.router import route_text

    router = _router(args)
    print(router.data_handling_summary(), file=sys.stderr)
    try:
        labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
        result = router.complete(args.prompt, task_type=args.task_type, labels=labels,
                                 tags=args.tag or None)
    finally:
        router.close()
    if args.json:
        print(json.dumps(result.as_dict(), default=str))
    else:
        print(route_text(result))
    return 0 if (result.refused or not result.error) else 1


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the policy until interrupted."""
    import os

    from workbench.serve import PolicyServer, check_token

    token = None
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if not token.strip():
            raise WorkbenchError(f"--token-env {args.token_env}: that environment variable is "
                                 "unset or empty; put the bearer token in it")
    check_token(token, args.host)  # refuse before loading any model
    router = _router(args)
    problems = {m: e for m, e in router.check().items() if e}
    for model, err in problems.items():
        print(f"warning: model {model!r} is not usable now: {err}", file=sys.stderr)
    try:
        server = PolicyServer(router, args.host, args.port, token=token)
    except BaseException:
        router.close()
        raise
    auth = f"bearer token from ${args.token_env}" if token else "no token"
    print(f"serving policy {router.policy.name!r} at {server.base_url} ({auth}; "
          f"decision log: {router.log_path or 'off'}); Ctrl-C stops")
    print(router.data_handling_summary(), flush=True)
    try:
        server.serve_forever()
    finally:
        server.httpd.server_close()
        router.close()
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    """Exit 1 when the log drifted from the calibration workload, else 0."""
    from workbench.drift import drift_report
    from workbench.export import resolve_policy
    from workbench.store import open_store

    policy = resolve_policy(args.policy, args.home)
    report = drift_report(policy, args.log, open_store(args.home), args.workload,
                          psi_threshold=args.psi_threshold, alpha=args.alpha,
                          min_rate_diff=args.min_rate_diff)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(report.summary())
        for note in report.notes:
            print(f"note: {note}")
    return 1 if report.drifted else 0
