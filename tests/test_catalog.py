"""Catalog: model CRUD, bundled defaults registered once, GGUF validation, no secrets stored,
policy versions and studies (real SQLite file in a temporary WORKBENCH_HOME)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from workbench import settings
from workbench.catalog import (
    BUNDLED_MODEL_NAME,
    Catalog,
    bundled_model_path,
    default_prices,
    validate_gguf,
)
from workbench.errors import ConflictError, NotFoundError, WorkbenchError
from workbench.models import ModelSpec


def hosted(name: str = "mini", **kw: object) -> ModelSpec:
    return ModelSpec(name=name, kind="litellm", model="openai/gpt-4o-mini", **kw)  # type: ignore[arg-type]


def test_model_crud_round_trip(home: Path) -> None:
    cat = Catalog(home)
    cfg = hosted(api_key_env="OPENAI_API_KEY", tags=("hosted",), temperature=0.2,
                 templates={"classification": "Q: {input}\nA:"},
                 few_shot={"qa": [("1+1?", "2")]}, input_price_per_mtok=1.0,
                 output_price_per_mtok=2.0)
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
    cat.add(hosted("alpha", input_price_per_mtok=1, output_price_per_mtok=1))
    cat.add(hosted("beta", input_price_per_mtok=1, output_price_per_mtok=1))
    with pytest.raises(NotFoundError, match="alpha, beta"):
        cat.get("gamma")
    with pytest.raises(NotFoundError, match="gamma"):
        cat.delete("gamma")


def test_default_prices_from_litellm_table(home: Path) -> None:
    inp, out = default_prices("gpt-4o-mini")
    assert inp is not None and out is not None and 0 < inp < out
    cat = Catalog(home)
    got = cat.add(hosted("priced"))
    assert (got.input_price_per_mtok, got.output_price_per_mtok) == (inp, out)
    # Overridable: an explicit price wins over the table.
    assert cat.add(hosted("own", input_price_per_mtok=9.0)).input_price_per_mtok == 9.0
    # Unknown to the table: no price rather than a made-up one.
    odd = cat.add(ModelSpec(name="odd", kind="litellm", model="openai/no-such-model-xyz",
                            api_base="http://127.0.0.1:9/v1"))
    assert odd.input_price_per_mtok is None


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
        cat.add(ModelSpec(name="bad", kind="local-gguf", model=str(text)))
    assert cat.names() == []


@pytest.mark.parametrize(
    "value",
    ["sk-proj-abc123def456ghi789", "AIzaSyA1234567890abcdefghijklmnop",
     "abcdef0123456789abcdef0123456789", "hf_abcdefghijklmnop1234"],
)
def test_key_values_are_refused_and_never_stored(home: Path, value: str) -> None:
    cat = Catalog(home)
    with pytest.raises(WorkbenchError, match="NAME of an environment variable") as info:
        cat.add(hosted("leaky", api_key_env=value, input_price_per_mtok=1, output_price_per_mtok=1))
    assert value not in str(info.value)
    cat.add(hosted("ok", api_key_env="OPENAI_API_KEY", input_price_per_mtok=1,
                   output_price_per_mtok=1))
    with pytest.raises(WorkbenchError):
        cat.update("ok", api_key_env=value)
    raw = (home / "catalog.db").read_bytes()
    assert value.encode() not in raw
    assert cat.get("ok").api_key_env == "OPENAI_API_KEY"


def test_value_of_a_set_variable_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_PROVIDER_KEY", "SECRETVALUE_123")
    with pytest.raises(WorkbenchError) as info:
        Catalog(home).add(hosted("x", api_key_env="SECRETVALUE_123", input_price_per_mtok=1,
                                 output_price_per_mtok=1))
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


# -- a catalog written by the ModelConfig-column code (catalog schema 1) ------------------------
V1_CATALOG = Path(__file__).parent / "data" / "catalog_v1.sql"


def _old_catalog(home: Path, sql: str | None = None) -> Path:
    """The catalog file the schema 1 code wrote (from its SQL dump) in `home`."""
    path = home / "catalog.db"
    con = sqlite3.connect(path)
    con.executescript(sql or V1_CATALOG.read_text())
    con.close()
    return path


def _columns(path: Path, table: str) -> list[str]:
    """Column names of `table` in the SQLite file."""
    con = sqlite3.connect(path)
    try:
        return [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
    finally:
        con.close()


def test_v1_catalog_is_migrated_on_open_without_losing_anything(home: Path) -> None:
    from workbench import catalog as catalog_module
    from workbench.policy import Policy

    path = _old_catalog(home)
    assert "input_price_per_m" in _columns(path, "models")
    cat = Catalog(home)
    assert _columns(path, "models") == ["id", "name", "spec", "created", "updated"]
    assert cat.list_models() == [
        ModelSpec(name="gpt-4o-mini", kind="litellm", model="gpt-4o-mini",
                  api_key_env="OPENAI_API_KEY", tags=("hosted",), input_price_per_mtok=0.15,
                  output_price_per_mtok=0.6),
        ModelSpec(name="inhouse", kind="litellm", model="openai/medium-served",
                  api_base="http://127.0.0.1:8011/v1", api_key_env="INHOUSE_API_KEY",
                  tags=("hosted", "eu"), temperature=0.3, max_tokens=64, timeout_s=30,
                  max_retries=1),
        ModelSpec(name="tiny-local", kind="local-gguf", model="/tmp/gen/opt/models/tiny-q4.gguf",
                  n_ctx=4096, threads=2, hardware_usd_per_hour=0.05,
                  tags=("local", "may-see-pii"),
                  templates={"classification": "Text: {input}\nLabel:"},
                  few_shot={"classification": [("my card was charged twice", "billing")]}),
    ]
    entries = {e.name: e for e in cat.entries()}
    assert (entries["tiny-local"].id, str(entries["tiny-local"].created)[:19]) == (
        1, "2026-11-30 23:50:49")
    # the other tables and facts are kept; a saved schema_version 1 policy still loads
    entry = cat.get_policy("triage")
    assert (entry.version, entry.workload, entry.metrics) == (1, "support-triage",
                                                              {"quality": 0.81})
    saved = Policy.from_yaml(entry.body)
    assert saved.models["inhouse"].model == "openai/medium-served"
    assert cat.get_study("triage-min-cost").objective == "min-cost"
    assert cat.ensure_defaults() == []  # the old catalog had registered them already
    con = sqlite3.connect(path)
    meta = dict(con.execute("SELECT key, value FROM catalog_meta"))
    con.close()
    assert meta["schema_version"] == "2" and "defaults_registered" in meta
    # the migrated catalog works as a new one, and opening it again changes nothing
    cat.update("inhouse", max_tokens=32)
    cat.add(hosted("new", input_price_per_mtok=1, output_price_per_mtok=2))
    before = path.read_bytes()
    catalog_module._ENGINES.pop(cat.url).dispose()
    again = Catalog(home)
    assert again.get("inhouse").max_tokens == 32 and len(again.names()) == 4
    assert path.read_bytes() == before


def test_catalog_migration_refuses_a_bad_row_and_changes_nothing(home: Path) -> None:
    sql = V1_CATALOG.read_text().replace("'gpt-4o-mini','litellm'", "'gpt-4o-mini','hosted'")
    path = _old_catalog(home, sql)
    before = path.read_bytes()
    with pytest.raises(WorkbenchError, match="cannot migrate model 'gpt-4o-mini'.*kind.*"
                                             "left unchanged"):
        Catalog(home)
    assert path.read_bytes() == before
    assert "input_price_per_m" in _columns(path, "models")


def test_newer_catalog_is_refused(home: Path) -> None:
    Catalog(home)
    con = sqlite3.connect(home / "catalog.db")
    con.execute("UPDATE catalog_meta SET value = '9' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    from workbench import catalog as catalog_module

    catalog_module._ENGINES.pop(settings.catalog_url(home)).dispose()
    with pytest.raises(WorkbenchError, match="schema version 9, newer than this workbench"):
        Catalog(home)


def test_model_rows_hold_the_one_description(home: Path) -> None:
    cat = Catalog(home)
    spec = hosted("row", api_key_env="OPENAI_API_KEY", input_price_per_mtok=1.0,
                  output_price_per_mtok=2.0, templates={"qa": "Q: {input}\nA:"})
    cat.add(spec)
    con = sqlite3.connect(home / "catalog.db")
    name, data = con.execute("SELECT name, spec FROM models").fetchone()
    con.close()
    assert name == "row" and ModelSpec.from_data(name, json.loads(data)) == spec
    assert "name" not in json.loads(data)
