"""Using the review trail: the CI gate (`check --require-approved`), the approval named in
exported files, and the diffs a reviewer reads (against the parent and the approved version).

A policy file is matched to saved versions by its content hash (`workbench.policy_content`),
so it does not matter where the file came from: what counts is that exactly this content was
approved, in this catalog, and that the models it uses did not change since.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.catalog import Catalog
from workbench.policy import Policy, Provenance
from workbench.policy_content import body_yaml, content_hash, short, unified_diff
from workbench.policy_review import (
    VersionRecord,
    approved_version,
    by_hash,
    find_approval,
    history,
    latest_decided,
)


@dataclass(frozen=True)
class ApprovalCheck:
    """Whether a policy's exact content is approved and its models unchanged since."""

    ok: bool
    message: str
    content_hash: str
    approval: VersionRecord | None
    needs_recheck: tuple[str, ...]


def check_approved(catalog: Catalog, policy: Policy) -> ApprovalCheck:
    """The CI gate's view: approved content whose models did not change passes; an edited
    file, a draft, a rejected or withdrawn version, or changed models fail, with the reason."""
    digest = content_hash(policy)
    claimed = (policy.provenance.approval if policy.provenance else None) or {}
    matches = by_hash(catalog, digest)
    verdict = latest_decided(matches)
    approval = verdict if verdict is not None and verdict.state == "approved" else None
    if approval is not None:
        if approval.needs_recheck:
            return ApprovalCheck(False, (
                f"models changed since {approval.name} v{approval.version} was approved, so it "
                f"needs a re-check: {'; '.join(approval.needs_recheck)}. Replay it with the "
                "models as they are now, then approve it again (or save and approve an updated "
                "version)"), digest, approval, approval.needs_recheck)
        return ApprovalCheck(True, approval.describe(), digest, approval, ())
    if claimed and claimed.get("content_hash") not in (None, digest):
        message = (
            f"the policy file was edited after approval: it names {claimed.get('policy')} "
            f"v{claimed.get('version')} approved by {claimed.get('reviewer')} (content hash "
            f"{short(claimed.get('content_hash'))}), but its content now hashes to "
            f"{short(digest)}; save the edit as a new version and have it approved")
    elif matches:
        latest = verdict or max(matches, key=lambda r: (r.saved, r.version))
        message = f"not approved: {latest.describe()}"
    elif claimed:
        message = (f"the file names an approval of {claimed.get('policy')} "
                   f"v{claimed.get('version')} that this catalog does not hold (is --home the "
                   "catalog the policy was reviewed in?)")
    else:
        message = (f"not approved: no saved policy version has this content (hash "
                   f"{short(digest)}); save it with `workbench policy save` and have it "
                   "approved")
    return ApprovalCheck(False, message, digest, None, ())


def stamp_approval(policy: Policy, catalog: Catalog) -> Policy:
    """`policy` with provenance.approval naming the approval of its exact content, or with
    no approval when the content is not approved (a stale one from an older file is
    dropped)."""
    record = find_approval(catalog, policy)
    approval = record.approval_record() if record is not None else None
    if policy.provenance is None and approval is None:
        return policy
    data = (policy.provenance.model_dump() if policy.provenance else {}) | {"approval": approval}
    return policy.model_copy(update={"provenance": Provenance.model_validate(data)})


@dataclass(frozen=True)
class VersionDiff:
    """One diff a reviewer reads: what it compares and the unified diff of canonical YAML
    ('' when equal); `against` is None when there is nothing to compare with (`note` says
    why)."""

    title: str
    against: int | None
    text: str
    note: str = ""


def version_diffs(catalog: Catalog, name: str, version: int | None = None,
                  records: list[VersionRecord] | None = None) -> list[VersionDiff]:
    """The diffs of one version (the latest when None) against its parent and against the
    newest approved version, of the canonical content (provenance and defaults left out)."""
    records = records if records is not None else history(catalog, name)
    by_version = {r.version: r for r in records}
    version = version if version is not None else max(by_version)
    if version not in by_version:
        catalog.get_policy(name, version)  # NotFoundError listing the versions
    bodies = {e.version: e.body for e in catalog.policy_versions(name)}

    def text(v: int) -> str:
        return body_yaml(bodies[v], f"policy {name} v{v}")

    def diff(title: str, v: int) -> VersionDiff:
        return VersionDiff(title, v, unified_diff(text(v), text(version), f"{name} v{v}",
                                                  f"{name} v{version}"))

    parent = by_version[version].parent
    out = [diff(f"against its parent (v{parent})", parent) if parent in bodies else
           VersionDiff("against its parent", None, "", f"v{version} is the first version; it "
                       "has no parent")]
    approved = approved_version(records)
    if approved is None:
        out.append(VersionDiff("against the approved version", None, "",
                               f"no version of {name!r} is approved yet"))
    elif approved.version == version:
        out.append(VersionDiff("against the approved version", None, "",
                               f"v{version} is the approved version"))
    else:
        out.append(diff(f"against the approved version (v{approved.version})",
                        approved.version))
    return out
