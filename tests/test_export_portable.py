"""Exported files work elsewhere: local models named by file name and hash, resolved against a
models directory from another working directory; one llama_cpp.server config serving every
local model by name; LiteLLM reaching both through it; clear errors for a missing or
different file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.servers import LlamaServer, bundled_model_path
from workbench.cli import main
from workbench.export import build_litellm_router, load_litellm_config, load_policy_file
from workbench.local_files import file_digest
from workbench.policy import Policy
from workbench.router import PolicyRouter

LABELS = ["card", "transfer", "refund"]


def _place(src: Path, dst: Path) -> Path:
    """The GGUF at `dst` without copying 250 MB when a hard link is possible."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


@pytest.fixture()
def exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A policy with two local models (one inside the data directory) exported with its
    LiteLLM and llama_cpp.server configs."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WORKBENCH_MODELS_DIR", raising=False)
    bundled = bundled_model_path()
    small = _place(bundled, tmp_path / "home" / "models" / "small-q4.gguf")
    policy = Policy.validate_data({
        "name": "portable", "models": {
            "small": {"kind": "local-gguf", "model": str(small), "max_tokens": 4},
            "big": {"kind": "local-gguf", "model": str(bundled), "max_tokens": 4}},
        "tiers": [{"model": "small", "accept_above": 0.99}, {"model": "big"}]})
    src = tmp_path / "src.yaml"
    src.write_text(policy.to_yaml())
    out = tmp_path / "exported"
    assert main(["export", "--policy", str(src), "--out", str(out / "policy.yaml"),
                 "--litellm", str(out / "litellm.yaml"),
                 "--llama-server", str(out / "server.json")]) == 0
    return {"dir": out, "small": small, "bundled": bundled, "tmp": tmp_path}


def test_exported_policy_names_files_and_runs_from_another_directory(
        exported: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    out, tmp = exported["dir"], exported["tmp"]
    policy = load_policy_file(out / "policy.yaml")
    assert policy.models["small"].model == "small-q4.gguf"
    assert policy.models["big"].model == exported["bundled"].name
    files = policy.provenance.model_files  # type: ignore[union-attr]
    assert files["small"]["sha256"] == file_digest(exported["small"])
    assert str(tmp) not in (out / "policy.yaml").read_text()  # no path of this machine
    # another machine: the files in its own models folder, another working directory
    elsewhere = tmp / "elsewhere" / "models"
    _place(exported["small"], elsewhere / "small-q4.gguf")
    _place(exported["bundled"], elsewhere / exported["bundled"].name)
    (tmp / "cwd").mkdir()
    monkeypatch.chdir(tmp / "cwd")
    router = PolicyRouter.from_file(out / "policy.yaml", models_dir=elsewhere, log=False)
    assert router.check() == {"small": None, "big": None}
    result = router.complete("My card never arrived", labels=LABELS)
    assert result.error is None and result.text in LABELS
    assert router.configs["small"].model == str((elsewhere / "small-q4.gguf").resolve())


def test_missing_or_different_file_is_a_clear_error(
        exported: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    out, tmp = exported["dir"], exported["tmp"]
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp / "empty-home"))
    router = PolicyRouter.from_file(out / "policy.yaml", log=False)
    status = router.check()
    assert status["big"] is None  # the bundled file is found through its package
    assert "file 'small-q4.gguf' not found (looked in" in (status["small"] or "")
    # the cascade escalates past the missing tier instead of failing the request
    result = router.complete("I want my money back", labels=LABELS)
    assert result.model == "big" and result.text in LABELS
    fake = tmp / "fake"
    fake.mkdir()
    (fake / "small-q4.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    wrong = PolicyRouter.from_file(out / "policy.yaml", models_dir=fake, log=False)
    assert "small-q4.gguf is not the exported file" in (wrong.check()["small"] or "")


def test_one_llama_server_serves_both_local_models_for_litellm(
        exported: dict[str, Path]) -> None:
    out = exported["dir"]
    config = json.loads((out / "server.json").read_text())
    assert [m["model_alias"] for m in config["models"]] == ["small", "big"]
    assert {m["model"] for m in config["models"]} == {"small-q4.gguf",
                                                      exported["bundled"].name}
    header = (out / "litellm.yaml").read_text()
    assert "--config_file server.json" in header
    models = exported["tmp"] / "served"
    _place(exported["small"], models / "small-q4.gguf")
    _place(exported["bundled"], models / exported["bundled"].name)
    with LlamaServer(config_file=out / "server.json", cwd=models) as server:
        litellm_cfg = load_litellm_config(out / "litellm.yaml")
        bases = {e["litellm_params"]["api_base"] for e in litellm_cfg["model_list"]}
        assert len(bases) == 1  # one server, models chosen by name
        for entry in litellm_cfg["model_list"]:
            entry["litellm_params"]["api_base"] = server.api_base  # this test's free port
        router = build_litellm_router(litellm_cfg)
        for name in ("small", "big"):
            resp = router.completion(model=name, max_tokens=4,
                                     messages=[{"role": "user", "content": "Say hi"}])
            assert resp.choices[0].message.content is not None
