"""`workbench policy save|history|diff|approve|reject`: the review trail of saved policies."""

from __future__ import annotations

import argparse
import json
from typing import Any

from workbench.cli import add_home
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `policy` and its sub-commands."""
    policy = sub.add_parser("policy", help="save, review, approve or reject policy versions")
    psub = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)

    save = psub.add_parser("save", help="save a policy file as a new version (a draft)")
    add_home(save)
    save.add_argument("name", help="catalog name of the policy")
    save.add_argument("--file", required=True, help="policy file (.yaml, .yml or .json)")
    save.add_argument("--reason", default="", help="why this change (shown in the history)")
    save.add_argument("--parent", type=int, default=None,
                      help="version this one was edited from (default: the latest)")
    save.add_argument("--workload", default=None, help="workload the policy was made for")
    _by(save, "author")
    save.set_defaults(func=cmd_save)

    hist = psub.add_parser("history", help="every version: author, reason, review state")
    add_home(hist)
    hist.add_argument("name")
    hist.add_argument("--json", action="store_true")
    hist.set_defaults(func=cmd_history)

    diff = psub.add_parser("diff", help="a version against its parent and the approved one")
    add_home(diff)
    diff.add_argument("ref", help="NAME or NAME@VERSION (default: the latest version)")
    diff.add_argument("--version", type=int, default=None)
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(func=cmd_diff)

    approve = psub.add_parser("approve", help="approve a version (appends a review event)")
    add_home(approve)
    approve.add_argument("ref", help="NAME@VERSION")
    approve.add_argument("--version", type=int, default=None)
    approve.add_argument("--comment", default="", help="what you checked")
    approve.add_argument("--require-second-reviewer", action="store_true",
                         help="refuse to approve a version you saved yourself (also "
                              "WORKBENCH_REQUIRE_SECOND_REVIEWER=1)")
    _by(approve, "reviewer")
    approve.set_defaults(func=cmd_approve)

    reject = psub.add_parser("reject", help="reject a draft or withdraw an approval")
    add_home(reject)
    reject.add_argument("ref", help="NAME@VERSION")
    reject.add_argument("--version", type=int, default=None)
    reject.add_argument("--comment", required=True, help="why (required)")
    _by(reject, "reviewer")
    reject.set_defaults(func=cmd_reject)


def _by(p: argparse.ArgumentParser, role: str) -> None:
    p.add_argument("--by", default=None, metavar="NAME",
                   help=f"{role} name (default: $WORKBENCH_USER, else the OS user)")


def _ref(args: argparse.Namespace) -> tuple[str, int | None]:
    """(name, version) from NAME[@VERSION] and --version (which must agree)."""
    name, at, given = str(args.ref).rpartition("@") if "@" in args.ref else (args.ref, "", "")
    version = None
    if at:
        if not given.isdigit() or int(given) < 1:
            raise WorkbenchError(f"{args.ref!r}: the version after @ must be a whole number "
                                 "from 1 up, e.g. triage@3")
        version = int(given)
    if args.version is not None:
        if version is not None and version != args.version:
            raise WorkbenchError(f"{args.ref!r} and --version {args.version} name different "
                                 "versions; give one")
        version = args.version
    if not name.strip():
        raise WorkbenchError("give the policy name, e.g. triage@3")
    return name, version


def _catalog(args: argparse.Namespace) -> Any:
    from workbench.catalog import Catalog

    return Catalog(args.home)


def cmd_save(args: argparse.Namespace) -> int:
    """Save a policy file as a new draft version with its author, reason and parent."""
    from workbench.export import load_policy_file
    from workbench.policy_content import content_hash, short
    from workbench.policy_review import history

    policy = load_policy_file(args.file)
    if policy.provenance is not None and policy.provenance.approval is not None:
        # an approval belongs to the review trail, not to the content saved for review
        policy = policy.model_copy(update={"provenance": policy.provenance.model_copy(
            update={"approval": None})})
    catalog = _catalog(args)
    entry = catalog.save_policy(args.name, policy.to_yaml(), workload=args.workload,
                                author=args.by, reason=args.reason, parent=args.parent)
    record = next(r for r in history(catalog, args.name) if r.version == entry.version)
    same = [r.version for r in history(catalog, args.name)
            if r.version != entry.version and r.content_hash == record.content_hash]
    print(f"saved {args.name} v{entry.version} (author {record.author or 'unknown'}, parent "
          f"{'v' + str(record.parent) if record.parent else 'none'}, content hash "
          f"{short(content_hash(policy))}): a draft until someone approves it")
    if same:
        print(f"note: same content as v{', v'.join(map(str, same))}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """Print every version of a policy with its review state, oldest first."""
    from workbench.policy_content import short
    from workbench.policy_review import history, when

    records = history(_catalog(args), args.name)
    if args.json:
        print(json.dumps([r.as_dict() for r in records], indent=2))
        return 0
    print(f"{'version':>7}  {'state':<9} {'saved (UTC)':<17} {'author':<14} {'parent':>6}  "
          f"{'content':<12}  reason")
    for r in records:
        saved = when(r.saved).removesuffix(" UTC")
        print(f"{'v' + str(r.version):>7}  {r.state:<9} {saved:<17} {r.author or '?':<14} "
              f"{'v' + str(r.parent) if r.parent else '-':>6}  {short(r.content_hash):<12}  "
              f"{r.reason or '-'}")
        for e in r.events:
            said = f": {e.comment}" if e.comment else ""
            print(f"{'':>9}{e.decision} by {e.reviewer} on {when(e.at)}{said}")
        if r.needs_recheck:
            print(f"{'':>9}NEEDS RE-CHECK: " + "; ".join(r.needs_recheck))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Print a version's diffs against its parent and the approved version."""
    from workbench.policy_approval import version_diffs

    name, version = _ref(args)
    diffs = version_diffs(_catalog(args), name, version)
    if args.json:
        print(json.dumps([d.__dict__ for d in diffs], indent=2))
        return 0
    for d in diffs:
        print(f"== {d.title}")
        print(d.note if d.against is None else (d.text or "(no differences)"))
    return 0


def _decided(record: Any) -> int:
    print(record.describe())
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve one version; every refusal is a one-line error and writes nothing."""
    from workbench.policy_review import approve

    name, version = _ref(args)
    return _decided(approve(_catalog(args), name, version, by=args.by, comment=args.comment,
                            require_second=args.require_second_reviewer))


def cmd_reject(args: argparse.Namespace) -> int:
    """Reject a draft, or withdraw an approval (files of it then fail the gate)."""
    from workbench.policy_review import reject

    name, version = _ref(args)
    return _decided(reject(_catalog(args), name, version, by=args.by, comment=args.comment))
