"""CLI: `workbench models [--json]`, `models add/delete/quantize`, `run`, `compare --json`,
through the real argparse entry point on a temporary data directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.catalog import BUNDLED_MODEL_NAME, Catalog
from workbench.cli import main
from workbench.store import open_store
from workbench.workloads.samples import load_samples


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_models_list_registers_bundled_model(home: Path, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    code, out, _ = cli(capsys, "models", "--home", str(home))
    assert code == 0 and BUNDLED_MODEL_NAME in out and "local,may-see-pii" in out
    code, out, _ = cli(capsys, "models", "--json", "--home", str(home))
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == [BUNDLED_MODEL_NAME]
    assert rows[0]["kind"] == "local-gguf" and rows[0]["key_status"] == "-"


def test_models_add_and_delete(home: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, out, err = cli(capsys, "models", "add", "mini", "--kind", "litellm", "--model",
                         "openai/gpt-4o-mini", "--api-key-env", "OPENAI_API_KEY", "--tag",
                         "hosted", "--tag", "cheap", "--max-tokens", "64", "--home", str(home))
    assert code == 0, err
    cfg = Catalog(home).get("mini")
    assert cfg.tags == ("hosted", "cheap") and cfg.max_tokens == 64
    assert cfg.input_price_per_mtok and cfg.output_price_per_mtok  # from LiteLLM's bundled table
    code, out, _ = cli(capsys, "models", "--json", "--home", str(home))
    mini = next(r for r in json.loads(out) if r["name"] == "mini")
    assert mini["key_status"] == "missing" and mini["api_key_env"] == "OPENAI_API_KEY"

    code, _, err = cli(capsys, "models", "add", "own", "--kind", "litellm", "--model",
                       "openai/gpt-4o-mini", "--input-price", "0.5", "--output-price", "1.5",
                       "--home", str(home))
    assert code == 0 and Catalog(home).get("own").input_price_per_mtok == 0.5

    code, _, err = cli(capsys, "models", "add", "mini", "--kind", "litellm", "--model",
                       "openai/x", "--home", str(home))
    assert code == 2 and "already exists" in err

    code, _, _ = cli(capsys, "models", "delete", "mini", "--home", str(home))
    assert code == 0 and "mini" not in Catalog(home).names()
    code, _, err = cli(capsys, "models", "delete", "mini", "--home", str(home))
    assert code == 2 and "unknown model 'mini'" in err and BUNDLED_MODEL_NAME in err


def test_models_add_refuses_a_key_value(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = "sk-live-4f9a8b7c6d5e4f3a2b1c"
    code, out, err = cli(capsys, "models", "add", "leak", "--kind", "litellm", "--model",
                         "openai/gpt-4o-mini", "--api-key-env", key, "--home", str(home))
    assert code == 2 and "NAME of an environment variable" in err
    assert key not in out + err and "leak" not in Catalog(home).names()
    assert key.encode() not in (home / "catalog.db").read_bytes()


def test_models_add_bad_gguf(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                             ) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model")
    code, _, err = cli(capsys, "models", "add", "fake", "--kind", "local-gguf", "--model",
                       str(fake), "--home", str(home))
    assert code == 2 and "not a GGUF" in err and str(fake) in err


def test_run_and_compare_errors(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "run", "--workload", "nope", "--model", BUNDLED_MODEL_NAME,
                       "--home", str(home))
    assert code == 2 and "unknown workload 'nope'" in err
    code, _, err = cli(capsys, "run", "--workload", "nope", "--model", "ghost",
                       "--home", str(home))
    assert code == 2 and "unknown model 'ghost'" in err
    store = open_store(home)
    load_samples(store, ["support-triage"])
    code, _, err = cli(capsys, "compare", "--workload", "support-triage", "--home", str(home))
    assert code == 2 and "no outcomes" in err
    code, _, err = cli(capsys, "run", "--workload", "support-triage", "--model",
                       BUNDLED_MODEL_NAME, "--limit", "0", "--home", str(home))
    assert code == 2 and "--limit" in err
    store.close()


@pytest.mark.slow
def test_run_then_compare_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(home)
    load_samples(store, ["support-triage"])
    code, out, err = cli(capsys, "run", "--workload", "support-triage", "--model",
                         BUNDLED_MODEL_NAME, "--limit", "3", "--home", str(home))
    assert code == 0, err
    assert "3/3" in err and BUNDLED_MODEL_NAME in err  # progress bar on stderr
    assert "3 model calls, 0 cached" in out
    code, out, _ = cli(capsys, "run", "--workload", "support-triage", "--model",
                       BUNDLED_MODEL_NAME, "--limit", "3", "--home", str(home))
    assert code == 0 and "0 model calls, 3 cached" in out

    code, out, _ = cli(capsys, "compare", "--workload", "support-triage", "--json",
                       "--home", str(home))
    rows = json.loads(out)
    assert code == 0 and len(rows) == 1
    row = rows[0]
    for key in ("quality", "quality_ci", "cost_per_request", "cost_per_success",
                "latency_p50_ms", "latency_p95_ms", "error_rate", "n"):
        assert key in row, key
    assert row["model"] == BUNDLED_MODEL_NAME and row["n"] == 3 and row["error_rate"] == 0
    assert 0 <= row["quality_ci"][0] <= row["quality"] <= row["quality_ci"][1] <= 1
    assert row["cost_per_request"] > 0
    code, out, _ = cli(capsys, "compare", "--workload", "support-triage", "--home", str(home))
    assert code == 0 and "95% CI" in out and BUNDLED_MODEL_NAME in out
    store.close()


def test_module_entry_point(home: Path) -> None:
    """`python -m workbench models --json` works as a separate process."""
    proc = subprocess.run(
        [sys.executable, "-m", "workbench", "models", "--json", "--home", str(home)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["name"] == BUNDLED_MODEL_NAME


@pytest.mark.slow
def test_models_quantize(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "models", "quantize", BUNDLED_MODEL_NAME, "--type", "Q3_K_M",
                         "--as", "gemma-q3", "--home", str(home))
    assert code == 0, err
    cat = Catalog(home)
    new = cat.get("gemma-q3")
    src = cat.get(BUNDLED_MODEL_NAME)
    assert new.kind == "local-gguf" and Path(new.model).exists()
    assert Path(new.model).read_bytes()[:4] == b"GGUF"
    assert Path(new.model).stat().st_size < Path(src.model).stat().st_size
    assert new.tags == src.tags
    code, _, err = cli(capsys, "models", "quantize", BUNDLED_MODEL_NAME, "--type", "Q3_K_M",
                       "--as", "gemma-q3", "--home", str(home))
    assert code == 2 and "already exists" in err
