"""Study storage (Optuna RDB: SQLite under the data directory, any SQLAlchemy URL, or in memory) and reading stored studies back."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import polars as pl

from workbench.errors import ConflictError, WorkbenchError
from workbench.policy import (
    Policy,
)
from workbench.tune.objective import ObjectiveSpec

IN_MEMORY = ":memory:"


def storage_url(storage: str | None, home: Any = None) -> str:
    """The study storage URL: given, or SQLite under the data directory."""
    if storage:
        return storage
    from workbench import settings

    return settings.studies_url(home)


def _redact(url: str) -> str:
    if url == IN_MEMORY:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


_MEMORY: dict[str, Any] = {}
# (server URL, heartbeat settings) -> its storage, opened once per process
_SERVERS: dict[tuple[str, tuple[tuple[str, int], ...]], Any] = {}


# masked URL (as shown in results, JSON and the catalog) -> the real one, for this process only,
# so `trial_policy(result.storage, ...)` works without a password ever leaving memory
_REAL_URLS: dict[str, str] = {}


def open_storage(url: str) -> Any:
    """An Optuna storage for `url` (':memory:' = one process-wide in-memory storage; SQLite
    gets a long busy timeout so several worker processes can share one file). RDB storages
    get Optuna's trial heartbeat, so a trial left running by a dead worker is failed later.
    A database server's storage is opened once per process and reused (one connection pool,
    not one per call)."""
    import optuna

    url = _REAL_URLS.get(url, url)
    if url == IN_MEMORY:
        return _MEMORY.setdefault(url, optuna.storages.InMemoryStorage())
    heartbeat = _heartbeat()
    kwargs: dict[str, Any] = {}
    sqlite = url.startswith("sqlite")
    if sqlite:
        kwargs = {"connect_args": {"timeout": 120}}
    else:  # a server: check pooled connections before use (it may have restarted)
        kwargs = {"pool_pre_ping": True}
        if url.startswith("postgresql"):  # an unreachable host fails in seconds, not minutes
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        key = (url, tuple(sorted(heartbeat.items())))
        if key in _SERVERS:
            return _SERVERS[key]
    last: Exception | None = None
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" since 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **heartbeat)
            if sqlite:
                _sqlite_wal(storage.engine)
            else:
                _SERVERS[key] = storage
            return storage
        except Exception as exc:  # workers starting together race to create the schema
            last = exc
            text = str(exc)
            if ("IntegrityError" not in type(exc).__name__ and "locked" not in text
                    and "already exists" not in text):
                break
            time.sleep(0.2 * (attempt + 1))
    assert last is not None
    raise WorkbenchError(_open_error(url, last)) from None


# how long a connection attempt to a database server may take before it counts as unreachable
CONNECT_TIMEOUT_S = 10


def _heartbeat() -> dict[str, Any]:
    """Optuna's heartbeat settings from WORKBENCH_TUNE_STALE_S: every worker records a
    heartbeat for its running trial every quarter of that period; a RUNNING trial whose
    heartbeat is older than the period (its worker died) is marked FAIL when any worker next
    starts a trial or opens the study. 0 turns the heartbeat off."""
    from workbench import settings

    raw = settings.get("WORKBENCH_TUNE_STALE_S")
    try:
        stale = int(raw)
        if stale < 0:
            raise ValueError
    except ValueError:
        raise WorkbenchError(f"WORKBENCH_TUNE_STALE_S must be a whole number of seconds (0 "
                             f"turns the heartbeat off), got {raw!r}") from None
    if stale == 0:
        return {}
    return {"heartbeat_interval": max(1, stale // 4), "grace_period": stale}


def fail_stale_trials(study: Any) -> None:
    """Mark trials of workers that stopped sending heartbeats FAIL (Optuna also does this
    before each new trial; calling it on opening covers a run that adds no trial)."""
    import optuna

    _quiet_optuna()
    optuna.storages.fail_stale_trials(study)


def _open_error(url: str, exc: Exception) -> str:
    """A one-line reason the storage cannot be opened, with the URL's password masked and
    never echoed by the driver's message either."""
    where = _redact(url)
    cause: BaseException | None = exc
    while cause is not None:  # SQLAlchemy wraps the missing driver module in an ImportError
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            how = {"psycopg": "pip install 'workbench[postgres]'",
                   "psycopg2": "pip install psycopg2-binary, or write the URL as "
                               "postgresql+psycopg://... and pip install 'workbench[postgres]'",
                   }.get(cause.name.split(".")[0], "install it into this environment")
            return (f"the study storage {where} needs the database driver {cause.name!r}, "
                    f"which is not installed: {how}")
        cause = cause.__cause__
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    detail = detail.replace("(psycopg.OperationalError) ", "").replace(
        "(psycopg2.OperationalError) ", "")
    password = _password(url)
    if password:
        detail = detail.replace(password, "***")
    if "OperationalError" in type(exc).__name__:
        return (f"cannot connect to the study storage {where}: {detail} (check that the "
                "database server is running and reachable, and the user, password and "
                "database name in the URL)")
    return f"cannot open study storage {where}: {type(exc).__name__}: {detail}"


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password or None
    except Exception:
        return None


def _sqlite_wal(engine: Any) -> None:
    """Write-ahead logging with synchronous=NORMAL: about 4x faster trials on SQLite and
    readers that do not block the writer, so worker processes share one file smoothly
    (committed trials survive a process crash; a power cut may lose the last few)."""
    import sqlalchemy

    def on_connect(dbapi_con: Any, _record: Any) -> None:
        dbapi_con.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened while creating tables lack the pragma
    with engine.connect() as con:
        con.exec_driver_sql("PRAGMA journal_mode=WAL")


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _existing_trials(storage: Any, name: str) -> int:
    try:
        sid = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(sid, deepcopy=False))


def _check_or_set_attrs(study: Any, attrs: dict[str, Any]) -> None:
    have = study.user_attrs
    if not have:
        for k, v in attrs.items():
            study.set_user_attr(k, json.loads(json.dumps(v, default=str)))
        return
    for k in ("workload", "test_workload", "holdout", "split_seed", "objective", "space",
              "base_policy"):
        want = json.loads(json.dumps(attrs[k], default=str))
        if k in have and have[k] != want:
            raise ConflictError(
                f"study {study.study_name!r} was created with a different {k} "
                f"({have[k]!r} vs {want!r}); resume it with the same settings or choose "
                "another study name"
            )


def _record_study(home: Any, name: str, url: str, workload: str, spec: ObjectiveSpec) -> None:
    """Record the study in the catalog (masked URL: the catalog never holds a password)."""
    try:
        from workbench.catalog import Catalog
    except ImportError:
        return
    Catalog(home).save_study(name, storage=_redact(url), workload=workload,
                             objective=spec.kind, replace=True)


def load_study(storage: str, study_name: str) -> Any:
    """An existing Optuna study; NotFound-style error listing the stored study names."""
    import optuna

    _quiet_optuna()
    st = open_storage(storage)
    try:
        return optuna.load_study(study_name=study_name, storage=st)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st)]
        raise WorkbenchError(
            f"no study {study_name!r} in {_redact(storage)}; studies: {', '.join(names) or 'none'}"
        ) from None


def trial_policy(storage: str, study_name: str, number: int) -> Policy:
    """The full policy a trial evaluated (stored as its `policy` user attribute)."""
    study = load_study(storage, study_name)
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            text = t.user_attrs.get("policy")
            if text is None:
                raise WorkbenchError(
                    f"trial {number} of {study_name!r} has no policy "
                    f"({t.state.name}; {t.user_attrs.get('error', 'not evaluated')})"
                )
            return Policy.from_json(text, source=f"{study_name} trial {number}")
    raise WorkbenchError(f"study {study_name!r} has no trial {number}")


def study_trials(storage: str, study_name: str) -> pl.DataFrame:
    """The trials frame of a stored study (number, state, values, feasible, metrics, params)."""
    return _trials_frame(load_study(storage, study_name))


def _trials_frame(study: Any) -> pl.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        m = t.user_attrs.get("metrics") or {}
        rows.append({
            "number": t.number, "state": t.state.name,
            "values": [float(v) for v in t.values] if t.values is not None else None,
            "feasible": bool(t.user_attrs.get("feasible", False)),
            "quality": m.get("quality"), "cost_per_request": m.get("cost_per_request"),
            "latency_p95_ms": m.get("latency_p95_ms"),
            "params": json.dumps(t.params, sort_keys=True),
            "error": t.user_attrs.get("error"),
        })
    schema = {"number": pl.Int64, "state": pl.String, "values": pl.List(pl.Float64),
              "feasible": pl.Boolean, "quality": pl.Float64, "cost_per_request": pl.Float64,
              "latency_p95_ms": pl.Float64, "params": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema=schema).sort("number")
