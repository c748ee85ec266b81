"""CLI data commands, in-process through `workbench.cli.main` and once through the installed
console script in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.store import open_store

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

ITEMS_CSV = """id,text,label,difficulty,channel,customer
a1,I was charged twice,billing,easy,email,c1
a2,Where is my parcel?,shipping,easy,chat,c2
a3,App crashes on login,technical,hard,chat,c3
a4,Charge on my card I do not know,billing,hard,email,c4
a5,Package lost,shipping,medium,chat,c5
a6,Cannot log in,technical,medium,phone,c6
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def items_csv(tmp_path: Path) -> Path:
    path = tmp_path / "items.csv"
    path.write_text(ITEMS_CSV, encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_load_with_mapping_then_list_query_delete(
    capsys: pytest.CaptureFixture[str], home: Path, items_csv: Path
) -> None:
    code, out, _ = run(capsys, "load", str(items_csv), "--name", "triage", "--home", str(home),
                       "--id-col", "id", "--input-col", "text", "--reference-col", "label",
                       "--tag-col", "difficulty", "--tag-col", "channel",
                       "--metadata-col", "customer")
    assert code == 0
    assert "6 items" in out and "classification" in out

    code, out, _ = run(capsys, "workloads", "--json", "--home", str(home))
    listed = json.loads(out)
    assert [w["name"] for w in listed] == ["triage"]
    assert listed[0]["n_items"] == 6
    assert listed[0]["label_set"] == ["billing", "shipping", "technical"]

    code, out, _ = run(capsys, "workloads", "--home", str(home))
    assert code == 0 and "triage" in out and "classification" in out

    code, out, _ = run(capsys, "sql", "--home", str(home), "--output", "csv",
                       "SELECT item_id, difficulty, tags->>'channel' AS channel FROM items "
                       "ORDER BY item_id")
    lines = out.strip().splitlines()
    assert lines[0] == "item_id,difficulty,channel"
    assert lines[1] == "a1,easy,email" and len(lines) == 7

    code, _, err = run(capsys, "sql", "--home", str(home), "DELETE FROM items")
    assert code == 2 and "only SELECT" in err
    assert open_store(home).workload("triage").n_items == 6

    code, out, _ = run(capsys, "delete", "triage", "--home", str(home))
    assert code == 0 and "deleted" in out
    code, out, _ = run(capsys, "workloads", "--json", "--home", str(home))
    assert json.loads(out) == []


def test_load_errors_exit_nonzero_with_message(
    capsys: pytest.CaptureFixture[str], home: Path, items_csv: Path, tmp_path: Path
) -> None:
    args = ("--home", str(home), "--input-col", "text", "--id-col", "id")
    assert run(capsys, "load", str(items_csv), "--name", "t", *args)[0] == 0
    code, _, err = run(capsys, "load", str(items_csv), "--name", "t", *args)
    assert code == 2 and "already exists" in err and str(items_csv) in err
    code, out, _ = run(capsys, "load", str(items_csv), "--name", "t", "--replace", *args)
    assert code == 0

    semi = tmp_path / "semi.csv"
    semi.write_text(ITEMS_CSV.replace(",", ";"), encoding="utf-8")
    code, _, err = run(capsys, "load", str(semi), "--name", "s", *args)
    assert code == 2 and "delimiter looks wrong" in err
    code, out, _ = run(capsys, "load", str(semi), "--name", "s", "--delimiter", ";", *args)
    assert code == 0 and "6 items" in out

    code, _, err = run(capsys, "load", str(items_csv), "--name", "x", "--home", str(home),
                       "--reference-col", "label")
    assert code == 2 and "--input-col" in err
    code, _, err = run(capsys, "delete", "nope", "--home", str(home))
    assert code == 2 and "unknown workload" in err


def test_auto_format_loads_long_outcomes(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "runs.jsonl"
    rows = [{"item_id": "q1", "model": "m1", "output": "4", "quality": 1, "cost_usd": 0.001},
            {"item_id": "q1", "model": "m2", "output": "5", "quality": 0, "cost_usd": 0.0001}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "load", str(path), "--name", "runs", "--home", str(home))
    assert code == 0 and "2 models" in out and "2 outcomes" in out
    code, out, _ = run(capsys, "sql", "--home", str(home), "--output", "json",
                       "SELECT model, quality FROM outcomes ORDER BY model")
    assert json.loads(out) == [{"model": "m1", "quality": 1.0}, {"model": "m2", "quality": 0.0}]


def test_samples_command(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, _ = run(capsys, "samples", "--home", str(home))
    assert code == 0
    names = {w.name for w in open_store(home).workloads()}
    assert {"support-triage", "field-extraction", "arithmetic-qa"} <= names
    created = {w.name: w.created for w in open_store(home).workloads()}
    code, out, _ = run(capsys, "samples", "--home", str(home))  # --keep is the default
    assert code == 0 and "kept existing" in out
    assert {w.name: w.created for w in open_store(home).workloads()} == created
    code, out, _ = run(capsys, "samples", "--replace", "--home", str(home))
    assert code == 0 and "support-triage" in out
    assert {w.name: w.created for w in open_store(home).workloads()} != created


def test_console_script_loads_real_routerbench(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "workbench"
    if not exe.exists():
        pytest.skip(f"console script {exe} not installed (pip install -e .)")
    path = DATA / "routerbench" / "arc_challenge_test.csv"
    if not path.exists():
        pytest.skip(f"real data {path} not present")
    home = tmp_path / "script-home"
    done = subprocess.run([str(exe), "load", str(path), "--name", "arc", "--home", str(home)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "445 items, 11 models" in done.stdout
    listed = subprocess.run([str(exe), "workloads", "--json", "--home", str(home)],
                            capture_output=True, text=True, timeout=120)
    info = json.loads(listed.stdout)[0]
    assert (info["name"], info["n_items"], info["n_models"]) == ("arc", 445, 11)
    bad = subprocess.run([str(exe), "load", str(tmp_path / "missing.csv"), "--name", "m",
                          "--home", str(home)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no such file" in bad.stderr and bad.stdout == ""
