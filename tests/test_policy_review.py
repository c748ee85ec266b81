"""The policy review trail: append-only versions and review events, approve/reject through the
real CLI, `check --require-approved`, models changed after approval, the approval in exported
files, and the Export page (a real SQLite catalog and DuckDB store in a temporary home)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from workbench.catalog import Catalog
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.models import ModelSpec
from workbench.policy import Policy
from workbench.policy_content import content_hash

TRAIL_TABLES = ("policies", "policy_version_info", "policy_review_events")


def _policy(accept: float = 0.6, cheap: str = "cheap", **models: Any) -> dict[str, Any]:
    return {"schema_version": 2, "name": "triage",
            "models": {cheap: {"model": "openai/cheap", "input_price_per_mtok": 0.1,
                               "output_price_per_mtok": 0.2},
                       "strong": {"model": "openai/strong", "input_price_per_mtok": 1.0,
                                  "output_price_per_mtok": 4.0}, **models},
            "tiers": [{"model": cheap, "accept_above": accept}, {"model": "strong"}]}


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _rows(home: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the trail tables as stored (raw SQLite values)."""
    con = sqlite3.connect(home / "catalog.db")
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in TRAIL_TABLES}
    finally:
        con.close()


def _cli(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--home", str(home)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _recorded(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A workload 'runs' with recorded outcomes of cheap and strong (loaded by the CLI)."""
    runs = tmp_path / "runs.jsonl"
    runs.write_text("".join(
        json.dumps({"item_id": f"q{i}", "model": m, "output": "x", "quality": q,
                    "cost_usd": c}) + "\n"
        for i in range(6) for m, q, c in (("cheap", 1, 0.0001), ("strong", 1, 0.001))))
    assert _cli(capsys, home, "load", str(runs), "--name", "runs")[0] == 0


def test_edits_append_versions_and_never_rewrite_history(home: Path) -> None:
    cat = Catalog(home)
    from workbench.policy_review import approve, history

    first = cat.save_policy("triage", Policy.validate_data(_policy(0.6)).to_yaml(),
                            author="alice", reason="first cut")
    approve(cat, "triage", 1, by="bob", comment="replayed on runs")
    before = _rows(home)
    second = cat.save_policy("triage", Policy.validate_data(_policy(0.8)).to_yaml(),
                             author="alice", reason="stricter")
    after = _rows(home)
    assert (first.version, second.version) == (1, 2)
    for table in TRAIL_TABLES:  # everything written before is byte-identical afterwards
        assert after[table][:len(before[table])] == before[table]
    assert len(after["policies"]) == 2 and len(after["policy_review_events"]) == 1
    v1, v2 = history(cat, "triage")
    assert (v1.state, v2.state) == ("approved", "draft")
    assert (v2.author, v2.reason, v2.parent) == ("alice", "stricter", 1)
    assert v1.content_hash == content_hash(Policy.validate_data(_policy(0.6)))
    assert v1.content_hash != v2.content_hash

    # the database itself refuses to rewrite or delete history
    con = sqlite3.connect(home / "catalog.db")
    try:
        for statement in ("UPDATE policies SET body = 'x' WHERE version = 1",
                          "UPDATE policy_review_events SET decision = 'rejected'",
                          "DELETE FROM policy_review_events",
                          "UPDATE policy_version_info SET author = 'mallory'"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                con.execute(statement)
    finally:
        con.close()
    assert _rows(home) == after

    # a parent that is not an earlier version, or a key pasted into the reason, is refused
    # and nothing is saved
    with pytest.raises(WorkbenchError, match="parent version 5"):
        cat.save_policy("triage", Policy.validate_data(_policy(0.7)).to_yaml(), parent=5)
    pasted = "sk-" + "abcdefghijklmnop1234"  # built here: no key-like text in the repo
    with pytest.raises(WorkbenchError, match="the reason for the change: refusing") as info:
        cat.save_policy("triage", Policy.validate_data(_policy(0.7)).to_yaml(),
                        reason=f"tested with {pasted}")
    assert "sk-abc" not in str(info.value)
    assert _rows(home) == after


def test_same_content_hashes_the_same_whatever_the_provenance(home: Path) -> None:
    from workbench.export import with_provenance

    plain = Policy.validate_data(_policy(0.6))
    stamped = with_provenance(plain, workload="runs", train_metrics={"quality": 0.9})
    reordered = Policy.validate_data({**_policy(0.6), "description": ""})
    assert content_hash(plain) == content_hash(stamped) == content_hash(reordered)
    assert content_hash(plain) != content_hash(Policy.validate_data(_policy(0.61)))


def test_approve_and_reject_through_the_cli(home: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "p.yaml", _policy(0.6))
    code, out, _ = _cli(capsys, home, "policy", "save", "triage", "--file", str(path),
                        "--by", "alice", "--reason", "first cut")
    assert code == 0 and "saved triage v1 (author alice, parent none" in out
    _write(path, _policy(0.7))
    assert _cli(capsys, home, "policy", "save", "triage", "--file", str(path),
                "--by", "alice", "--reason", "stricter")[0] == 0
    saved = _rows(home)

    # bad requests: a clear one-line error each, and nothing written
    code, _, err = _cli(capsys, home, "policy", "approve", "triage@7", "--by", "bob")
    assert code == 2 and err.strip() == ("error: policy 'triage' has no version 7; "
                                         "versions: [1, 2]")
    code, _, err = _cli(capsys, home, "policy", "approve", "nosuch@1", "--by", "bob")
    assert code == 2 and "unknown policy 'nosuch'; known policies: triage" in err
    code, _, err = _cli(capsys, home, "policy", "approve", "triage", "--by", "bob")
    assert code == 2 and "say which version" in err and "latest is v2" in err
    code, _, err = _cli(capsys, home, "policy", "approve", "triage@2", "--by", "alice",
                        "--require-second-reviewer")
    assert code == 2 and "alice saved it, and a second reviewer is required" in err
    monkeypatch.setenv("WORKBENCH_USER", "Alice")  # the same person, whatever the case
    monkeypatch.setenv("WORKBENCH_REQUIRE_SECOND_REVIEWER", "1")
    code, _, err = _cli(capsys, home, "policy", "approve", "triage@2")
    assert code == 2 and "second reviewer is required" in err
    code, _, err = _cli(capsys, home, "policy", "reject", "triage@2", "--comment", "  ")
    assert code == 2 and "say why you reject triage v2" in err
    assert _rows(home) == saved

    # bob approves v2 (the second-reviewer rule holds); approving again is refused
    monkeypatch.setenv("WORKBENCH_USER", "bob")
    code, out, _ = _cli(capsys, home, "policy", "approve", "triage@2", "--comment",
                        "replayed on runs")
    assert code == 0 and out.startswith("triage v2 approved by bob on ")
    code, _, err = _cli(capsys, home, "policy", "approve", "triage", "--version", "2")
    assert code == 2 and err.startswith("error: nothing to do: triage v2 approved by bob")

    # v1 rejected; a rejection is final
    assert _cli(capsys, home, "policy", "reject", "triage@1", "--comment", "too loose")[0] == 0
    code, _, err = _cli(capsys, home, "policy", "approve", "triage@1", "--by", "carol")
    assert code == 2 and "A rejection is final" in err
    code, _, err = _cli(capsys, home, "policy", "reject", "triage@1", "--comment", "again")
    assert code == 2 and "a rejection is final" in err

    code, out, _ = _cli(capsys, home, "policy", "history", "triage", "--json")
    records = json.loads(out)
    assert [(r["version"], r["state"], r["author"]) for r in records] == [
        (1, "rejected", "alice"), (2, "approved", "alice")]
    assert records[1]["events"][0] | {"at": None} == {
        "decision": "approved", "reviewer": "bob", "at": None, "comment": "replayed on runs",
        "content_hash": records[1]["content_hash"], "second_reviewer_required": True}
    code, out, _ = _cli(capsys, home, "policy", "history", "triage")
    assert code == 0 and "too loose" in out and "stricter" in out

    # a third version: diffs against its parent and the approved version
    _write(path, _policy(0.9))
    assert _cli(capsys, home, "policy", "save", "triage", "--file", str(path), "--by", "carol",
                "--parent", "1", "--reason", "from v1")[0] == 0
    code, out, _ = _cli(capsys, home, "policy", "diff", "triage@3")
    assert code == 0
    parent, approved = out.split("== against the approved version (v2)")
    assert "== against its parent (v1)" in parent
    assert "-  accept_above: 0.6\n+  accept_above: 0.9" in parent
    assert "-  accept_above: 0.7\n+  accept_above: 0.9" in approved

    # withdrawing bob's approval of v2 needs a reason, and is recorded as a new event
    code, out, _ = _cli(capsys, home, "policy", "reject", "triage@2", "--comment",
                        "wrong labels in production")
    assert code == 0 and "approval withdrawn by bob" in out
    code, out, _ = _cli(capsys, home, "policy", "diff", "triage@3")
    assert "no version of 'triage' is approved yet" in out


def _approved_file(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """triage v1 saved by alice, approved by bob, exported to approved.yaml."""
    src = _write(tmp_path / "src.yaml", _policy(0.6))
    assert _cli(capsys, home, "policy", "save", "triage", "--file", str(src), "--by",
                "alice")[0] == 0
    assert _cli(capsys, home, "policy", "approve", "triage@1", "--by", "bob", "--comment",
                "looks right")[0] == 0
    out = tmp_path / "approved.yaml"
    code, stdout, _ = _cli(capsys, home, "export", "--policy", "triage@1", "--out", str(out))
    assert code == 0 and "approval: triage v1 approved by bob" in stdout
    return out


def test_export_names_the_approval(home: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.export import load_policy_file

    path = _approved_file(home, tmp_path, capsys)
    approval = load_policy_file(path).provenance.approval  # type: ignore[union-attr]
    assert approval is not None
    assert approval | {"approved_at": None} == {
        "policy": "triage", "version": 1, "reviewer": "bob", "comment": "looks right",
        "content_hash": content_hash(load_policy_file(path)), "approved_at": None}
    assert approval["approved_at"].endswith("+00:00")

    # a draft exports without an approval, and a stale one from an edited file is dropped
    edited = yaml.safe_load(path.read_text())
    edited["tiers"][0]["accept_above"] = 0.5
    _write(tmp_path / "edited.yaml", edited)
    code, _, err = _cli(capsys, home, "export", "--policy", str(tmp_path / "edited.yaml"),
                        "--out", str(tmp_path / "again.yaml"))
    assert code == 0 and "not approved" in err
    assert load_policy_file(tmp_path / "again.yaml").provenance.approval is None  # type: ignore[union-attr]


def test_check_require_approved(home: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    _recorded(home, tmp_path, capsys)
    approved = _approved_file(home, tmp_path, capsys)
    gate = ("check", "--workload", "runs", "--require-approved", "--policy")

    code, out, _ = _cli(capsys, home, *gate, str(approved))
    assert code == 0 and out.startswith("OK: ")
    assert "review: approved: triage v1 approved by bob on " in out
    # another data directory holds no catalog: nothing is approved there
    code, _, err = _cli(capsys, tmp_path / "elsewhere", *gate, str(approved))
    assert code == 2 and "no catalog at" in err and "nothing is approved there" in err
    assert not (tmp_path / "elsewhere" / "catalog.db").exists()
    # the same content, written by hand without provenance, is just as approved
    assert _cli(capsys, home, *gate, str(_write(tmp_path / "hand.yaml", _policy(0.6))))[0] == 0

    # edited after approval
    data = yaml.safe_load(approved.read_text())
    data["tiers"][0]["accept_above"] = 0.5
    edited = _write(tmp_path / "edited.yaml", data)
    code, out, _ = _cli(capsys, home, *gate, str(edited))
    assert code == 1 and out.count("\n") == 1
    assert out.startswith("FAIL: the policy file was edited after approval: it names triage v1 "
                          "approved by bob")
    # without the flag the gate passes but says so
    code, out, _ = _cli(capsys, home, "check", "--workload", "runs", "--policy", str(edited))
    assert code == 0 and "review: the policy file was edited after approval" in out

    # never saved; then saved but a draft; then rejected
    new = _write(tmp_path / "new.yaml", _policy(0.55))
    code, out, _ = _cli(capsys, home, *gate, str(new))
    assert code == 1 and "no saved policy version has this content" in out
    assert _cli(capsys, home, "policy", "save", "triage", "--file", str(new), "--by",
                "alice")[0] == 0
    code, out, _ = _cli(capsys, home, *gate, str(new))
    assert code == 1 and out.count("\n") == 1
    assert out.startswith("FAIL: not approved: triage v2 is a draft: not reviewed yet (saved "
                          "by alice on ")
    assert _cli(capsys, home, "policy", "reject", "triage@2", "--by", "bob", "--comment",
                "no holdout")[0] == 0
    code, out, _ = _cli(capsys, home, *gate, str(new))
    assert code == 1 and "triage v2 rejected by bob" in out and "no holdout" in out

    # the approved content saved again and rejected: the latest verdict on it counts
    assert _cli(capsys, home, "policy", "save", "triage", "--file",
                str(tmp_path / "hand.yaml"), "--by", "carol")[0] == 0
    assert _cli(capsys, home, *gate, str(approved))[0] == 0
    assert _cli(capsys, home, "policy", "reject", "triage@3", "--by", "bob", "--comment",
                "regressed on new traffic")[0] == 0
    code, out, _ = _cli(capsys, home, *gate, str(approved))
    assert code == 1 and "triage v3 rejected by bob" in out and "regressed" in out

    # a withdrawn approval fails the file it approved
    assert _cli(capsys, home, "policy", "reject", "triage@1", "--by", "bob", "--comment",
                "regressed")[0] == 0
    code, out, _ = _cli(capsys, home, *gate, str(approved))
    assert code == 1 and "approval withdrawn by bob" in out


def _gguf(path: Path, payload: bytes) -> Path:
    path.write_bytes(b"GGUF" + payload)
    return path


def test_model_changes_mark_policies_for_recheck(home: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.policy_review import approve, history

    _recorded(home, tmp_path, capsys)
    cat = Catalog(home)
    cat.add(ModelSpec(name="cheap", model="openai/cheap", input_price_per_mtok=0.1,
                      output_price_per_mtok=0.2))
    cat.add(ModelSpec(name="strong", model="openai/strong", input_price_per_mtok=1.0,
                      output_price_per_mtok=4.0))
    gguf = _gguf(tmp_path / "tiny.gguf", b"\x00" * 64)
    cat.add(ModelSpec(name="tiny", kind="local-gguf", model=str(gguf)))
    local = {"schema_version": 2, "name": "local",
             "models": {"tiny": {"kind": "local-gguf", "model": str(gguf)},
                        "strong": {"model": "openai/strong"}},
             "tiers": [{"model": "tiny", "accept_above": 0.5}, {"model": "strong"}]}
    cat.save_policy("triage", Policy.validate_data(_policy(0.6)).to_yaml(), author="alice")
    cat.save_policy("local", Policy.validate_data(local).to_yaml(), author="alice")
    cat.save_policy("other", Policy.validate_data(
        {**_policy(0.6, cheap="mini"), "models": {
            "mini": {"model": "openai/mini"}, "strong": {"model": "openai/strong"}},
         "tiers": [{"model": "mini"}]}).to_yaml(), author="alice")
    for name in ("triage", "local", "other"):
        approve(cat, name, 1, by="bob")
    assert all(not r.needs_recheck for n in ("triage", "local", "other")
               for r in history(cat, n))
    path = _write(tmp_path / "triage.yaml", _policy(0.6))
    gate = ("check", "--workload", "runs", "--require-approved", "--policy", str(path))
    assert _cli(capsys, home, *gate)[0] == 0

    # a price change through `workbench models edit`
    code, _, err = _cli(capsys, home, "models", "edit", "cheap", "--input-price", "0.15")
    assert code == 0 and err.startswith("approved policies using it now need a re-check")
    assert err.rstrip().endswith(": triage@1"), err  # not 'other', which does not use cheap
    (triage,) = history(cat, "triage")
    assert triage.needs_recheck == (
        "cheap: input price (USD per 1M tokens) 0.1 -> 0.15",)
    assert not history(cat, "other")[0].needs_recheck  # it does not use cheap
    # a model that was not in the catalog when reviewed keeps the policy's own description
    cat.add(ModelSpec(name="mini", model="openai/mini-2", input_price_per_mtok=9.0,
                      output_price_per_mtok=9.0))
    assert not history(cat, "other")[0].needs_recheck
    code, out, _ = _cli(capsys, home, *gate)
    assert code == 1 and out.startswith("FAIL: models changed since triage v1 was approved")
    assert "input price (USD per 1M tokens) 0.1 -> 0.15" in out
    code, out, _ = _cli(capsys, home, "check", "--workload", "runs", "--policy", str(path))
    assert code == 0 and "review: NEEDS RE-CHECK: " in out
    code, out, _ = _cli(capsys, home, "policy", "history", "triage")
    assert "NEEDS RE-CHECK: cheap: input price" in out

    # re-checked: approving the same version again records the models as they are now
    approve(cat, "triage", 1, by="bob", comment="replayed with the new price")
    assert not history(cat, "triage")[0].needs_recheck
    assert _cli(capsys, home, *gate)[0] == 0

    # a provider string change, and a model removed from the catalog
    cat.update("strong", model="openai/strong-2")
    assert history(cat, "triage")[0].needs_recheck == (
        "strong: provider string 'openai/strong' -> 'openai/strong-2'",)
    assert history(cat, "local")[0].needs_recheck == history(cat, "triage")[0].needs_recheck
    cat.delete("cheap")
    assert "cheap: no longer in the catalog" in history(cat, "triage")[0].needs_recheck

    # the local model's GGUF file replaced by a different one (by SHA-256), then back
    before = history(cat, "local")[0].needs_recheck
    _gguf(gguf, b"\x01" * 128)
    changed = history(cat, "local")[0].needs_recheck
    assert len(changed) == len(before) + 1
    assert any(line.startswith("tiny: GGUF file (SHA-256) ") for line in changed)
    other = _gguf(tmp_path / "other.gguf", b"\x00" * 64)  # the approved bytes, another path
    cat.update("tiny", model=str(other))
    assert history(cat, "local")[0].needs_recheck == before


def test_export_page_shows_history_and_approves(home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from workbench.policy_review import history

    root = Path(__file__).resolve().parents[1]
    cat = Catalog(home)
    cat.add(ModelSpec(name="cheap", model="openai/cheap", input_price_per_mtok=0.1,
                      output_price_per_mtok=0.2))
    cat.save_policy("triage", Policy.validate_data(_policy(0.6)).to_yaml(), author="alice",
                    reason="first cut")
    cat.save_policy("triage", Policy.validate_data(_policy(0.8)).to_yaml(), author="alice",
                    reason="stricter")
    monkeypatch.setenv("WORKBENCH_REQUIRE_SECOND_REVIEWER", "1")
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.switch_page("pages/export.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("triage v2 is a draft" in i.value for i in at.info)
    table = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(table["version"]) == [2, 1] and list(table["reason"]) == ["stricter",
                                                                          "first cut"]
    codes = [c.value for c in at.code]
    assert any("-  accept_above: 0.6\n+  accept_above: 0.8" in c for c in codes)
    assert any("no version of 'triage' is approved yet" in c.value for c in at.caption)

    # the author cannot approve her own change; nothing is recorded
    at.text_input(key="rt_by").set_value("alice")
    at.text_area(key="rt_comment").set_value("mine")
    at.button(key="rt_approve").click().run()
    assert any("alice saved it" in e.value for e in at.error)
    assert history(cat, "triage")[1].state == "draft"

    at.text_input(key="rt_by").set_value("bob")
    at.text_area(key="rt_comment").set_value("replayed on the holdout")
    at.button(key="rt_approve").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("approved by bob" in s.value and "replayed on the holdout" in s.value
               for s in at.success)
    v2 = history(cat, "triage")[1]
    assert (v2.state, v2.decision.reviewer) == ("approved", "bob")  # type: ignore[union-attr]
    file_text = next(c for c in at.code if "provenance" in c.value).value
    approval = yaml.safe_load(file_text.split("\n", 1)[1])["provenance"]["approval"]
    assert (approval["policy"], approval["version"], approval["reviewer"]) == ("triage", 2,
                                                                               "bob")

    # the catalog's price of cheap changes: the page flags the approved version
    cat.update("cheap", output_price_per_mtok=0.4)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("needs a re-check" in w.value and "cheap: output price (USD per 1M tokens) "
               "0.2 -> 0.4" in w.value for w in at.warning), [w.value for w in at.warning]
    table = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(table["needs re-check"]) == ["yes", ""]
