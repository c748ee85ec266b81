"""The policy review trail: who saved each policy version and why, and who approved or
rejected it, kept append-only in the catalog.

Every saved version gets a `PolicyVersionInfo` row in the same transaction as the version
itself (`Catalog.save_policy` calls `record_version`): author, time, reason, parent version
and content hash (`workbench.policy_content`). Reviews are `PolicyReviewEvent` rows appended
after it; nothing is ever updated or deleted (SQLite triggers refuse it). A version is a
draft until its first review; the rules:

- approve: a draft becomes approved. An approved version is approved again only when it needs
  a re-check (a model it uses changed since); the new approval records the models as they are
  now. A rejected version is never approved: save the fix as a new version.
- reject (a comment saying why is required): a draft becomes rejected; rejecting an approved
  version withdraws the approval (e.g. a problem found in production), so files of it then
  fail `workbench check --require-approved`. A rejection is final.
- with require_second_reviewer (WORKBENCH_REQUIRE_SECOND_REVIEWER or the CLI flag), nobody
  approves a version they saved. Names are the OS user, WORKBENCH_USER or --by: an audit trail
  for honest teammates, not authentication.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from workbench import settings
from workbench.catalog import Catalog, PolicyEntry
from workbench.errors import ConflictError, WorkbenchError
from workbench.policy import Policy
from workbench.policy_content import (
    body_hash,
    catalog_fingerprints,
    content_hash,
    model_changes,
    parse_body,
)

MAX_COMMENT_CHARS = 2000
MAX_NAME_CHARS = 100
_TRUE = ("1", "true", "yes", "on")


def _now() -> datetime:
    return datetime.now(UTC)


class PolicyVersionInfo(SQLModel, table=True):
    """Who saved a policy version, when, why, from which parent, and its content hash."""

    __tablename__ = "policy_version_info"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    version: int
    author: str | None = None
    saved: datetime = Field(default_factory=_now)
    reason: str = ""
    parent: int | None = None
    content_hash: str = Field(index=True)
    recorded: str = Field(default="at save", description="'at save' or 'later' (older rows)")


class PolicyReviewEvent(SQLModel, table=True):
    """One review decision on a policy version (appended, never changed)."""

    __tablename__ = "policy_review_events"
    __table_args__ = (UniqueConstraint("name", "version", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    version: int
    seq: int = Field(description="1, 2, ... per version: two reviewers at once cannot both win")
    decision: str
    reviewer: str
    at: datetime = Field(default_factory=_now)
    comment: str = ""
    content_hash: str
    model_fingerprints: dict[str, Any] = Field(default_factory=dict,
                                               sa_column=Column(JSON, nullable=False))
    second_reviewer_required: bool = False


_TABLES = (PolicyVersionInfo, PolicyReviewEvent)
_READY: set[str] = set()
_APPEND_ONLY = (("policies", "UPDATE"), ("policy_version_info", "UPDATE"),
                ("policy_version_info", "DELETE"), ("policy_review_events", "UPDATE"),
                ("policy_review_events", "DELETE"))


def ensure_tables(engine: Engine) -> None:
    """Create the review tables and the triggers keeping history append-only (once)."""
    key = str(engine.url)
    if key in _READY:
        return
    SQLModel.metadata.create_all(engine, tables=[t.__table__ for t in _TABLES])  # type: ignore[attr-defined]
    with engine.begin() as con:
        for table, action in _APPEND_ONLY:
            con.execute(text(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} BEFORE {action} ON "
                f"{table} BEGIN SELECT RAISE(ABORT, 'policy history is append-only: save a new "
                "version or append a review instead'); END"))
    _READY.add(key)


# -- who -----------------------------------------------------------------------------------------
def _clean_name(name: str, what: str) -> str:
    name = " ".join(str(name).split())
    if not name:
        raise WorkbenchError(f"{what} must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise WorkbenchError(f"{what} is {len(name)} characters; at most {MAX_NAME_CHARS}")
    return name


def current_user(given: str | None = None, *, required: bool = True) -> str | None:
    """Who is acting: `given` (--by), else WORKBENCH_USER, else the OS user name."""
    for value in (given, settings.get("WORKBENCH_USER")):
        if value and value.strip():
            return _clean_name(value, "the reviewer or author name")
    try:
        return _clean_name(getpass.getuser(), "the OS user name")
    except (OSError, KeyError, WorkbenchError):
        if not required:
            return None
        raise WorkbenchError("cannot tell who you are: pass --by NAME or set WORKBENCH_USER"
                             ) from None


def require_second_reviewer(flag: bool = False) -> bool:
    """Whether approving one's own version is refused: the flag or the setting."""
    return flag or settings.get("WORKBENCH_REQUIRE_SECOND_REVIEWER").strip().lower() in _TRUE


def _same_person(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


# -- recording a version ---------------------------------------------------------------------------
def record_version(session: Session, entry: PolicyEntry, *, author: str | None = None,
                   reason: str = "", parent: int | None = None) -> PolicyVersionInfo:
    """Add the review-trail row of a version being saved (same session and transaction as
    `entry`, so both are written or neither); the parent defaults to the previous version."""
    if parent is not None and not 1 <= parent < entry.version:
        raise WorkbenchError(
            f"parent version {parent} of policy {entry.name!r}: it must be an existing earlier "
            f"version (1 to {entry.version - 1})" if entry.version > 1 else
            f"policy {entry.name!r} has no versions yet, so version 1 has no parent")
    from workbench.export import assert_no_secrets

    reason = " ".join(reason.split())
    if len(reason) > MAX_COMMENT_CHARS:
        raise WorkbenchError(f"the reason is {len(reason)} characters; at most "
                             f"{MAX_COMMENT_CHARS}")
    assert_no_secrets(reason, "the reason for the change")
    info = PolicyVersionInfo(
        name=entry.name, version=entry.version, author=current_user(author, required=False),
        saved=entry.created, reason=reason,
        parent=parent if parent is not None else (entry.version - 1 or None),
        content_hash=body_hash(entry.body))
    session.add(info)
    return info


# -- reading the trail ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewEvent:
    """One review decision as read back."""

    decision: str
    reviewer: str
    at: datetime
    comment: str
    content_hash: str
    model_fingerprints: Mapping[str, Any]
    second_reviewer_required: bool
    seq: int
    event_id: int = 0  # catalog-wide order of events (ties in time are broken by it)


@dataclass(frozen=True)
class VersionRecord:
    """One policy version with its review trail; `needs_recheck` names the models that
    changed since its approval (empty unless approved)."""

    name: str
    version: int
    author: str | None
    saved: datetime
    reason: str
    parent: int | None
    content_hash: str
    recorded: str
    events: tuple[ReviewEvent, ...]
    needs_recheck: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        """draft, approved or rejected (the last decision)."""
        return self.events[-1].decision if self.events else "draft"

    @property
    def decision(self) -> ReviewEvent | None:
        """The last review event (None for a draft)."""
        return self.events[-1] if self.events else None

    @property
    def withdrawn(self) -> bool:
        """Rejected after having been approved."""
        return self.state == "rejected" and any(e.decision == "approved" for e in self.events)

    def approval_record(self) -> dict[str, Any] | None:
        """The approval as exported files carry it (None unless approved)."""
        if self.state != "approved" or self.decision is None:
            return None
        e = self.decision
        return {"policy": self.name, "version": self.version, "content_hash": self.content_hash,
                "reviewer": e.reviewer, "approved_at": _iso(e.at), "comment": e.comment}

    def describe(self) -> str:
        """One line: the state, who decided, when and why."""
        e = self.decision
        if e is None:
            return (f"{self.name} v{self.version} is a draft: not reviewed yet (saved by "
                    f"{self.author or 'an unrecorded author'} on {when(self.saved)})")
        verb = "approval withdrawn" if self.withdrawn else e.decision
        said = f": {e.comment}" if e.comment else ""
        line = f"{self.name} v{self.version} {verb} by {e.reviewer} on {when(e.at)}{said}"
        if self.needs_recheck:
            line += "; needs re-check: " + "; ".join(self.needs_recheck)
        return line

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for --json)."""
        return {
            "name": self.name, "version": self.version, "state": self.state,
            "author": self.author, "saved": _iso(self.saved), "reason": self.reason,
            "parent": self.parent, "content_hash": self.content_hash,
            "recorded": self.recorded, "needs_recheck": list(self.needs_recheck),
            "events": [{"decision": e.decision, "reviewer": e.reviewer, "at": _iso(e.at),
                        "comment": e.comment, "content_hash": e.content_hash,
                        "second_reviewer_required": e.second_reviewer_required}
                       for e in self.events],
        }


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite returns naive UTC


def _iso(at: datetime) -> str:
    return _utc(at).isoformat(timespec="seconds")


def when(at: datetime) -> str:
    """A time as people read it: '2026-12-01 05:40 UTC'."""
    return _utc(at).strftime("%Y-%m-%d %H:%M UTC")


def _infos(catalog: Catalog, names: Iterable[str]) -> dict[tuple[str, int], PolicyVersionInfo]:
    """Trail rows of the named policies; versions saved before the trail existed get one now
    (author unknown, parent the previous version, hash of the stored body)."""
    names = sorted(set(names))
    ensure_tables(catalog.engine)
    with catalog.session() as s:
        entries = s.exec(select(PolicyEntry).where(PolicyEntry.name.in_(names))).all()  # type: ignore[attr-defined]
        rows = s.exec(select(PolicyVersionInfo)
                      .where(PolicyVersionInfo.name.in_(names))).all()  # type: ignore[attr-defined]
        infos = {(r.name, r.version): r for r in rows}
        missing = [e for e in entries if (e.name, e.version) not in infos]
        if missing:
            for e in missing:
                infos[(e.name, e.version)] = PolicyVersionInfo(
                    name=e.name, version=e.version, author=None, saved=e.created,
                    parent=e.version - 1 or None, content_hash=body_hash(e.body),
                    recorded="later")
                s.add(infos[(e.name, e.version)])
            try:
                s.commit()
            except IntegrityError:  # another process filled them in at the same moment
                s.rollback()
                return _infos(catalog, names)
    return infos


def _events(catalog: Catalog, names: Iterable[str]) -> dict[tuple[str, int], list[ReviewEvent]]:
    out: dict[tuple[str, int], list[ReviewEvent]] = {}
    with catalog.session() as s:
        rows = s.exec(select(PolicyReviewEvent)
                      .where(PolicyReviewEvent.name.in_(sorted(set(names))))  # type: ignore[attr-defined]
                      .order_by(PolicyReviewEvent.seq)).all()
    for r in rows:
        out.setdefault((r.name, r.version), []).append(ReviewEvent(
            decision=r.decision, reviewer=r.reviewer, at=r.at, comment=r.comment,
            content_hash=r.content_hash, model_fingerprints=dict(r.model_fingerprints),
            second_reviewer_required=r.second_reviewer_required, seq=r.seq,
            event_id=r.id or 0))
    return out


def _records(catalog: Catalog, names: Iterable[str]) -> list[VersionRecord]:
    names = sorted(set(names))
    infos, events = _infos(catalog, names), _events(catalog, names)
    approved_fps = [evs[-1].model_fingerprints for evs in events.values()
                    if evs[-1].decision == "approved"]
    current = catalog_fingerprints(catalog, {m for fps in approved_fps for m in fps})
    out = []
    for (name, version), info in sorted(infos.items()):
        evs = tuple(events.get((name, version), ()))
        recheck: tuple[str, ...] = ()
        if evs and evs[-1].decision == "approved":
            fps = evs[-1].model_fingerprints
            recheck = tuple(model_changes(fps, {m: current.get(m) for m in fps}))
        out.append(VersionRecord(
            name=name, version=version, author=info.author, saved=info.saved,
            reason=info.reason, parent=info.parent, content_hash=info.content_hash,
            recorded=info.recorded, events=evs, needs_recheck=recheck))
    return out


def history(catalog: Catalog, name: str) -> list[VersionRecord]:
    """Every version of a policy with its trail, oldest first; NotFoundError names the known
    policies."""
    catalog.policy_versions(name)  # the clear error for an unknown name
    return _records(catalog, [name])


def approved_version(records: Iterable[VersionRecord]) -> VersionRecord | None:
    """The newest approved version among `records` (None when none is approved)."""
    approved = [r for r in records if r.state == "approved"]
    return max(approved, key=lambda r: r.version) if approved else None


def by_hash(catalog: Catalog, digest: str) -> list[VersionRecord]:
    """Every saved version (of any policy) whose content hash is `digest`."""
    ensure_tables(catalog.engine)
    names = [p.name for p in catalog.list_policies()]
    _infos(catalog, names)
    with catalog.session() as s:
        hit = set(s.exec(select(PolicyVersionInfo.name)
                         .where(PolicyVersionInfo.content_hash == digest)).all())
    return [r for r in _records(catalog, hit) if r.content_hash == digest]


def needing_recheck(catalog: Catalog) -> list[VersionRecord]:
    """Approved versions of every policy whose models changed since their approval."""
    return [r for r in _records(catalog, [p.name for p in catalog.list_policies()])
            if r.needs_recheck]


def decision_order(record: VersionRecord) -> tuple[datetime, int]:
    """When the version's last review decision was made (its save time for a draft), with
    the event's id to order decisions made in the same instant."""
    if not record.events:
        return _utc(record.saved), 0
    return _utc(record.events[-1].at), record.events[-1].event_id


def latest_decided(records: Iterable[VersionRecord]) -> VersionRecord | None:
    """The version whose last review decision is the most recent (None: all drafts). For
    versions of the same content this is the content's verdict: a later rejection of the
    same content overrides an earlier approval."""
    return max((r for r in records if r.events), key=decision_order, default=None)


def find_approval(catalog: Catalog, policy: Policy) -> VersionRecord | None:
    """The version approving exactly this policy's content, unless a later review of the same
    content rejected it."""
    verdict = latest_decided(by_hash(catalog, content_hash(policy)))
    return verdict if verdict is not None and verdict.state == "approved" else None


# -- deciding --------------------------------------------------------------------------------------
def _decide(catalog: Catalog, name: str, version: int | None, decision: str, *,
            by: str | None, comment: str, second: bool) -> VersionRecord:
    """Append one review event after checking the rules (module docstring); nothing is
    written when a rule refuses."""
    from workbench.export import assert_no_secrets

    if version is None:
        latest = catalog.get_policy(name).version
        raise WorkbenchError(f"say which version of {name!r} to {decision[:-1]}: "
                             f"{name}@VERSION (the latest is v{latest})")
    entry = catalog.get_policy(name, version)  # NotFoundError lists the versions
    reviewer = current_user(by)
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise WorkbenchError(f"the comment is {len(comment)} characters; at most "
                             f"{MAX_COMMENT_CHARS}")
    assert_no_secrets(comment, "the review comment")
    record = next(r for r in history(catalog, name) if r.version == version)
    if body_hash(entry.body) != record.content_hash:
        raise WorkbenchError(f"{name} v{version}: the stored policy no longer matches the hash "
                             "recorded when it was saved; the catalog was changed outside the "
                             "workbench, so it cannot be reviewed")
    label = f"{name} v{version}"
    if decision == "approved":
        policy = parse_body(entry.body, label)  # an invalid policy is never approved
        if record.state == "rejected":
            raise ConflictError(f"cannot approve {record.describe()}. A rejection is final: "
                                "save the fix as a new version and review that")
        if record.state == "approved" and not record.needs_recheck:
            raise ConflictError(f"nothing to do: {record.describe()}, and no model it "
                                "uses changed since")
        if second and record.author is None:
            raise WorkbenchError(
                f"cannot approve {label}: who saved it was not recorded (it predates the "
                "review trail), and a second reviewer is required; save it again as a new "
                "version and have someone else approve that")
        if second and _same_person(record.author, reviewer):
            raise WorkbenchError(
                f"cannot approve {label}: {reviewer} saved it, and a second reviewer is "
                "required (require_second_reviewer is on); ask someone else to approve it")
        fingerprints = catalog_fingerprints(catalog, policy.used_models)
    else:
        if not comment:
            raise WorkbenchError(f"say why you reject {label}: --comment TEXT is required")
        if record.state == "rejected":
            raise ConflictError(f"{record.describe()}; a rejection is final")
        fingerprints = {}
    ensure_tables(catalog.engine)
    with catalog.session() as s:
        done = s.exec(select(PolicyReviewEvent.id).where(
            PolicyReviewEvent.name == name, PolicyReviewEvent.version == version)).all()
        if len(done) != len(record.events):
            raise ConflictError(f"{label} was reviewed by someone else meanwhile; run "
                                f"`workbench policy history {name}` and decide again")
        s.add(PolicyReviewEvent(
            name=name, version=version, seq=len(done) + 1, decision=decision,
            reviewer=reviewer or "", comment=comment, content_hash=record.content_hash,
            model_fingerprints=fingerprints, second_reviewer_required=second))
        try:
            s.commit()
        except IntegrityError:
            raise ConflictError(f"{label} was reviewed by someone else at the same moment; "
                                f"run `workbench policy history {name}` and decide again"
                                ) from None
    return next(r for r in history(catalog, name) if r.version == version)


def approve(catalog: Catalog, name: str, version: int | None, *, by: str | None = None,
            comment: str = "", require_second: bool = False) -> VersionRecord:
    """Approve a saved version (rules in the module docstring); returns it as now recorded."""
    return _decide(catalog, name, version, "approved", by=by, comment=comment,
                   second=require_second_reviewer(require_second))


def reject(catalog: Catalog, name: str, version: int | None, *, by: str | None = None,
           comment: str = "") -> VersionRecord:
    """Reject a draft, or withdraw an approval; a comment is required."""
    return _decide(catalog, name, version, "rejected", by=by, comment=comment,
                   second=require_second_reviewer())
