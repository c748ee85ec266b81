"""Store: schema versioning, transactions, workload frames, read-only SQL."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import polars as pl
import pytest

from workbench.errors import ConflictError, NotFoundError, ReadOnlyError, WorkbenchError
from workbench.store import SCHEMA_VERSION, Store, open_store


def _items(n: int = 5) -> pl.DataFrame:
    return pl.DataFrame({
        "item_id": [f"i{k}" for k in range(n)],
        "input": [f"text {k}" for k in range(n)],
        "reference": ["a" if k % 2 else "b" for k in range(n)],
        "difficulty": ["easy"] * n,
        "data_class": ["public"] * n,
    })


def test_schema_version_recorded_and_reopen_is_idempotent(home: Path) -> None:
    st = open_store(home)
    assert st.schema_version() == SCHEMA_VERSION
    st.close()
    again = Store(home / "workbench.duckdb")
    assert again.schema_version() == SCHEMA_VERSION
    again.close()


def test_newer_schema_is_refused(home: Path) -> None:
    st = open_store(home)
    st.cursor().execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    st.close()
    with pytest.raises(WorkbenchError, match="newer than this workbench"):
        Store(home / "workbench.duckdb")


def test_add_list_and_read_workload(store: Store) -> None:
    info = store.add_workload_frame("w", _items(), task_type="classification", source="test",
                                    label_set=["a", "b"])
    assert info.n_items == 5 and info.label_set == ("a", "b")
    assert [w.name for w in store.workloads()] == ["w"]
    assert store.items("w")["item_id"].to_list() == [f"i{k}" for k in range(5)]
    assert len(info.fingerprint) == 16


def test_fingerprint_depends_on_content(store: Store) -> None:
    a = store.add_workload_frame("a", _items(), task_type="qa", source="t")
    b = store.add_workload_frame("b", _items(), task_type="qa", source="t")
    c = store.add_workload_frame("c", _items(6), task_type="qa", source="t")
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_name_collision_keeps_original(store: Store) -> None:
    store.add_workload_frame("w", _items(3), task_type="qa", source="t")
    with pytest.raises(ConflictError, match="already exists"):
        store.add_workload_frame("w", _items(5), task_type="qa", source="t")
    assert store.workload("w").n_items == 3
    assert store.add_workload_frame("w", _items(5), task_type="qa", source="t",
                                    replace=True).n_items == 5


def test_duplicate_ids_write_nothing(store: Store) -> None:
    bad = pl.concat([_items(3), _items(2)])
    with pytest.raises(WorkbenchError, match="duplicate item ids"):
        store.add_workload_frame("w", bad, task_type="qa", source="t")
    assert store.workloads() == []
    assert store.cursor().execute("SELECT count(*) FROM items").fetchone()[0] == 0


def test_failed_transaction_rolls_back(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as cur:
        cur.execute("INSERT INTO items (workload, item_id, input) VALUES ('x', '1', 't')")
        raise RuntimeError("boom")
    assert store.cursor().execute("SELECT count(*) FROM items").fetchone()[0] == 0


def test_outcomes_upsert_and_delete_cascade(store: Store) -> None:
    store.add_workload_frame("w", _items(2), task_type="qa", source="t")
    rows = pl.DataFrame({"item_id": ["i0", "i1"], "model": ["m", "m"], "quality": [1.0, 0.0],
                         "cost_usd": [0.1, 0.2]})
    assert store.write_outcomes("w", rows) == 2
    store.write_outcomes("w", rows.with_columns(pl.lit(0.5).alias("quality")))
    out = store.outcomes("w")
    assert out.height == 2 and out["quality"].to_list() == [0.5, 0.5]
    assert store.models_of("w") == ["m"]
    store.delete_workload("w")
    assert store.cursor().execute("SELECT count(*) FROM outcomes").fetchone()[0] == 0
    with pytest.raises(NotFoundError, match="unknown workload"):
        store.items("w")


def test_read_only_query_refuses_writes(store: Store) -> None:
    store.add_workload_frame("w", _items(2), task_type="qa", source="t")
    assert store.read_only_query("SELECT count(*) AS n FROM items")["n"].to_list() == [2]
    for sql in ("DELETE FROM items", "DROP TABLE items", "UPDATE items SET input = 'x'",
                "INSERT INTO items (workload, item_id, input) VALUES ('a','b','c')",
                "SELECT 1; DELETE FROM items", "CREATE TABLE t AS SELECT 1"):
        with pytest.raises(ReadOnlyError):
            store.read_only_query(sql)
    assert store.cursor().execute("SELECT count(*) FROM items").fetchone()[0] == 2


def test_cursor_per_thread(store: Store) -> None:
    store.add_workload_frame("w", _items(4), task_type="qa", source="t")
    counts: list[int] = []
    cursors: list[duckdb.DuckDBPyConnection] = []

    def work() -> None:
        cursors.append(store.cursor())
        counts.append(store.cursor().execute("SELECT count(*) FROM items").fetchone()[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [4, 4, 4, 4]
    assert len({id(c) for c in cursors}) == 4


def test_recorded_items_are_those_with_outcomes(store: Store) -> None:
    store.add_workload_frame("w", _items(4), task_type="qa", source="t")
    assert store.recorded_items("w").height == 0
    store.write_outcomes("w", pl.DataFrame({"item_id": ["i1", "i3"], "model": ["m", "m"]}))
    assert store.recorded_items("w")["item_id"].to_list() == ["i1", "i3"]
