"""Catalog: model CRUD, bundled defaults registered once, GGUF validation, no secrets stored,
policy versions and studies (real SQLite file in a temporary WORKBENCH_HOME)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from workbench.catalog import (
    BUNDLED_MODEL_NAME,
    Catalog,
    bundled_model_path,
    default_prices,
    validate_gguf,
)
from workbench.errors import ConflictError, NotFoundError, WorkbenchError
from workbench.providers.base import ModelConfig


def hosted(name: str = "mini", **kw: object) -> ModelConfig:
    return ModelConfig(name=name, kind="litellm", model="openai/gpt-4o-mini", **kw)  # type: ignore[arg-type]


def test_model_crud_round_trip(home: Path) -> None:
    cat = Catalog(home)
    cfg = hosted(api_key_env="OPENAI_API_KEY", tags=("hosted",), temperature=0.2,
                 templates={"classification": "Q: {input}\nA:"},
                 few_shot={"qa": [("1+1?", "2")]}, input_price_per_m=1.0,
                 output_price_per_m=2.0)
    added = cat.add(cfg)
    assert added == cfg
    assert cat.get("mini") == cfg
    assert [c.name for c in cat.list_models()] == ["mini"]
    assert cat.list_models(tag="hosted") == [cfg] and cat.list_models(tag="local") == []

    updated = cat.update("mini", temperature=0.7, tags=("hosted", "cheap"))
    assert updated.temperature == 0.7 and updated.tags == ("hosted", "cheap")
    assert Catalog(home).get("mini") == updated  # persisted, new object

    renamed = cat.update("mini", name="mini2")
    assert renamed.name == "mini2" and cat.names() == ["mini2"]

    with pytest.raises(ConflictError, match="mini2"):
        cat.add(hosted("mini2"))
    cat.delete("mini2")
    assert cat.names() == []


def test_unknown_model_lists_names(home: Path) -> None:
    cat = Catalog(home)
    cat.add(hosted("alpha", input_price_per_m=1, output_price_per_m=1))
    cat.add(hosted("beta", input_price_per_m=1, output_price_per_m=1))
    with pytest.raises(NotFoundError, match="alpha, beta"):
        cat.get("gamma")
    with pytest.raises(NotFoundError, match="gamma"):
        cat.delete("gamma")


def test_default_prices_from_litellm_table(home: Path) -> None:
    inp, out = default_prices("gpt-4o-mini")
    assert inp is not None and out is not None and 0 < inp < out
    cat = Catalog(home)
    got = cat.add(hosted("priced"))
    assert (got.input_price_per_m, got.output_price_per_m) == (inp, out)
    # Overridable: an explicit price wins over the table.
    assert cat.add(hosted("own", input_price_per_m=9.0)).input_price_per_m == 9.0
    # Unknown to the table: no price rather than a made-up one.
    odd = cat.add(ModelConfig(name="odd", kind="litellm", model="openai/no-such-model-xyz",
                              api_base="http://127.0.0.1:9/v1"))
    assert odd.input_price_per_m is None


def test_defaults_registered_once(home: Path) -> None:
    cat = Catalog(home)
    assert cat.ensure_defaults() == [BUNDLED_MODEL_NAME]
    cfg = cat.get(BUNDLED_MODEL_NAME)
    assert cfg.kind == "local-gguf" and cfg.tags == ("local", "may-see-pii")
    assert Path(cfg.model) == bundled_model_path()
    assert cfg.hardware_usd_per_hour is not None and cfg.hardware_usd_per_hour > 0
    assert cat.ensure_defaults() == []
    assert cat.names() == [BUNDLED_MODEL_NAME]
    cat.delete(BUNDLED_MODEL_NAME)
    assert Catalog(home).ensure_defaults() == []  # a deleted default stays deleted
    assert cat.names() == []


def test_local_model_setting_respected(home: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = bundled_model_path()
    copy = tmp_path / "other.gguf"
    copy.symlink_to(real)
    monkeypatch.setenv("WORKBENCH_LOCAL_MODEL", str(copy))
    Catalog(home).ensure_defaults()
    assert Catalog(home).get(BUNDLED_MODEL_NAME).model == str(copy.resolve())


def test_gguf_validation(home: Path, tmp_path: Path) -> None:
    assert validate_gguf(bundled_model_path()).stat().st_size > 1_000_000
    text = tmp_path / "notes.gguf"
    text.write_text("hello, not a model\n")
    with pytest.raises(WorkbenchError, match="not a GGUF"):
        validate_gguf(text)
    with pytest.raises(WorkbenchError, match="not found"):
        validate_gguf(tmp_path / "missing.gguf")
    with pytest.raises(WorkbenchError, match="not a file"):
        validate_gguf(tmp_path)
    cat = Catalog(home)
    with pytest.raises(WorkbenchError, match="not a GGUF"):
        cat.add(ModelConfig(name="bad", kind="local-gguf", model=str(text)))
    assert cat.names() == []


@pytest.mark.parametrize(
    "value",
    ["sk-proj-abc123def456ghi789", "AIzaSyA1234567890abcdefghijklmnop",
     "abcdef0123456789abcdef0123456789", "hf_abcdefghijklmnop1234"],
)
def test_key_values_are_refused_and_never_stored(home: Path, value: str) -> None:
    cat = Catalog(home)
    with pytest.raises(WorkbenchError, match="NAME of an environment variable") as info:
        cat.add(hosted("leaky", api_key_env=value, input_price_per_m=1, output_price_per_m=1))
    assert value not in str(info.value)
    cat.add(hosted("ok", api_key_env="OPENAI_API_KEY", input_price_per_m=1,
                   output_price_per_m=1))
    with pytest.raises(WorkbenchError):
        cat.update("ok", api_key_env=value)
    raw = (home / "catalog.db").read_bytes()
    assert value.encode() not in raw
    assert cat.get("ok").api_key_env == "OPENAI_API_KEY"


def test_value_of_a_set_variable_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_PROVIDER_KEY", "SECRETVALUE_123")
    with pytest.raises(WorkbenchError) as info:
        Catalog(home).add(hosted("x", api_key_env="SECRETVALUE_123", input_price_per_m=1,
                                 output_price_per_m=1))
    assert "SECRETVALUE_123" not in str(info.value)


def test_api_base_with_credentials_refused(home: Path) -> None:
    with pytest.raises(WorkbenchError, match="credentials"):
        Catalog(home).add(hosted("x", api_base="http://user:pw@127.0.0.1:8000/v1"))
    with pytest.raises(WorkbenchError, match="credentials"):
        Catalog(home).add(hosted("x", api_base="http://127.0.0.1:8000/v1?api_key=abc"))


def test_policy_versions(home: Path) -> None:
    cat = Catalog(home)
    first = cat.save_policy("triage", "tiers: [a]\n", workload="support-triage",
                            metrics={"quality": 0.8})
    second = cat.save_policy("triage", {"tiers": ["a", "b"]}, metrics={"quality": 0.9})
    cat.save_policy("other", "x: 1\n")
    assert (first.version, second.version) == (1, 2)
    assert cat.get_policy("triage").version == 2
    assert cat.get_policy("triage", 1).body == "tiers: [a]\n"
    assert cat.get_policy("triage", 1).metrics == {"quality": 0.8}
    assert [p.version for p in cat.policy_versions("triage")] == [1, 2]
    assert [(p.name, p.version) for p in cat.list_policies()] == [("other", 1), ("triage", 2)]
    with pytest.raises(NotFoundError, match="versions: \\[1, 2\\]"):
        cat.get_policy("triage", 7)
    with pytest.raises(NotFoundError, match="other, triage"):
        cat.get_policy("nope")
    with pytest.raises(WorkbenchError):
        cat.save_policy("triage", "   ")


def test_studies(home: Path) -> None:
    cat = Catalog(home)
    cat.save_study("s1", storage="sqlite:///x.db", workload="w", objective="quality-cost")
    with pytest.raises(ConflictError):
        cat.save_study("s1", storage="sqlite:///x.db", workload="w", objective="o")
    cat.save_study("s1", storage="sqlite:///y.db", workload="w", objective="o", replace=True)
    assert cat.get_study("s1").storage == "sqlite:///y.db"
    assert [s.name for s in cat.list_studies("w")] == ["s1"]
    cat.delete_study("s1")
    with pytest.raises(NotFoundError):
        cat.get_study("s1")


def test_catalog_file_has_expected_tables(home: Path) -> None:
    Catalog(home)
    con = sqlite3.connect(home / "catalog.db")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert {"models", "policies", "studies"} <= tables
