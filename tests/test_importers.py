"""Importer tests on a real DuckDB file: item files with mappings, recorded-outcome layouts,
bad input (clear error, nothing written) and the real RouterBench / RouteLLM files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from workbench.errors import ImportError_
from workbench.store import Store
from workbench.workloads.importers import (
    ColumnMapping,
    detect_format,
    guess_mapping,
    import_file,
    preview_file,
    price_entry,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TRIAGE_CSV = '''id,text,label,difficulty,data_class,channel,customer
t1,"I was charged twice, please help",billing,easy,pii,email,c-9
t2,Where is my parcel?,shipping,easy,public,chat,c-2
t3,App crashes on login,technical,hard,public,chat,c-3
t4,"Refund for order 12, ""urgent""",refund,medium,public,email,c-4
t5,Card declined again,billing,medium,pii,phone,c-5
t6,Package arrived broken,shipping,hard,public,email,c-6
t7,Reset my password,technical,easy,public,chat,c-7
t8,Money back please,refund,easy,public,chat,c-8
t9,Invoice is wrong,billing,hard,public,email,c-1
t10,Tracking number missing,shipping,medium,public,chat,c-10
'''


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "wb.duckdb")
    yield s
    s.close()


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def snapshot(store: Store) -> tuple:
    """Full content of the three tables, to prove a failed import changed nothing."""
    cur = store.cursor()
    return tuple(
        cur.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
        for t in ("workloads", "items", "outcomes")
    )


TRIAGE_MAP = ColumnMapping(id="id", input="text", reference="label",
                           tags=["difficulty", "data_class", "channel"], metadata=["customer"])


# -- item files --------------------------------------------------------------------------------
def test_csv_with_mapping_fills_every_field(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "triage.csv", TRIAGE_CSV)
    info = import_file(store, path, "triage", mapping=TRIAGE_MAP)
    assert (info.n_items, info.n_models, info.task_type) == (10, 0, "classification")
    assert info.label_set == ("billing", "refund", "shipping", "technical")
    items = store.items("triage")
    row = items.filter(pl.col("item_id") == "t4").row(0, named=True)
    assert row["input"] == 'Refund for order 12, "urgent"'
    assert row["reference"] == "refund"
    assert row["difficulty"] == "medium" and row["data_class"] == "public"
    assert json.loads(row["tags"]) == {"channel": "email"}
    assert json.loads(row["metadata"]) == {"customer": "c-4"}
    assert row["labels"] is None  # the task's label set lives on the workload
    assert info.source == "csv:triage.csv"


def test_ids_default_to_padded_row_numbers_and_free_text_is_qa(
    store: Store, tmp_path: Path
) -> None:
    lines = ["question,answer"] + [f"What is {i} + {i}?,{2 * i}" for i in range(12)]
    path = write(tmp_path, "qa.csv", "\n".join(lines) + "\n")
    info = import_file(store, path, "qa", mapping=ColumnMapping(input="question",
                                                                 reference="answer"))
    assert info.task_type == "qa"
    items = store.items("qa")
    assert items["item_id"].to_list() == [f"{i:02d}" for i in range(1, 13)]
    assert items["input"][0] == "What is 0 + 0?"


def test_labels_column_and_task_type_override(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "multi.csv", "text,allowed,gold\na,x|y,x\nb,y| z,z\nc,x,x\n")
    mapping = ColumnMapping(input="text", reference="gold", labels="allowed")
    info = import_file(store, path, "multi", mapping=mapping)
    assert info.task_type == "classification"
    assert info.label_set == ("x", "y", "z")
    assert store.items("multi")["labels"].to_list() == [["x", "y"], ["y", "z"], ["x"]]
    info = import_file(store, path, "multi", mapping=mapping, task_type="qa", replace=True)
    assert info.task_type == "qa"


def test_jsonl_and_parquet_give_the_same_items_as_csv(store: Store, tmp_path: Path) -> None:
    frame = pl.read_csv(write(tmp_path, "t.csv", TRIAGE_CSV))
    jsonl = tmp_path / "t.jsonl"
    frame.write_ndjson(jsonl)
    parquet = tmp_path / "t.parquet"
    frame.write_parquet(parquet)
    import_file(store, tmp_path / "t.csv", "from-csv", mapping=TRIAGE_MAP)
    import_file(store, jsonl, "from-jsonl", mapping=TRIAGE_MAP)
    import_file(store, parquet, "from-parquet", mapping=TRIAGE_MAP)
    a, b, c = (store.items(n) for n in ("from-csv", "from-jsonl", "from-parquet"))
    assert a.equals(b) and a.equals(c)
    fps = {w.name: w.fingerprint for w in store.workloads()}
    assert fps["from-csv"] == fps["from-jsonl"] == fps["from-parquet"]


def test_jsonl_chat_messages_become_messages_and_text(store: Store, tmp_path: Path) -> None:
    rows = [
        {"id": "m1", "messages": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Hi?"}], "answer": "Hello"},
        {"id": "m2", "messages": [{"role": "user", "content": "Bye?"}], "answer": "Bye"},
    ]
    path = write(tmp_path, "chat.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    import_file(store, path, "chat", mapping=ColumnMapping(id="id", input="messages",
                                                           reference="answer"))
    items = store.items("chat")
    assert items["input"][0] == "Be brief.\n\nHi?"
    assert json.loads(items["messages"][1]) == rows[1]["messages"]


def test_mapping_is_guessed_from_conventional_names(store: Store, tmp_path: Path) -> None:
    assert guess_mapping(["a", "b"]) is None
    path = write(tmp_path, "triage.csv", TRIAGE_CSV)
    mapping = guess_mapping(preview_file(path).columns)
    assert mapping == ColumnMapping(id="id", input="text", reference="label",
                                    tags=["difficulty", "data_class"],
                                    metadata=["channel", "customer"])
    info = import_file(store, path, "guessed")
    assert info.n_items == 10 and info.task_type == "classification"


def test_preview_and_detect_format(tmp_path: Path) -> None:
    path = write(tmp_path, "triage.csv", TRIAGE_CSV)
    frame = preview_file(path, limit=3)
    assert frame.height == 3
    assert frame.columns == ["id", "text", "label", "difficulty", "data_class", "channel",
                             "customer"]
    assert detect_format(path) == "csv"
    long = write(tmp_path, "long.csv", "item_id,model,output,quality\n1,a,x,1\n")
    assert detect_format(long) == "long"
    rb = write(tmp_path, "rb.csv", ",sample_id,prompt,m1,m1|total_cost\n0,s,['p'],1,0.1\n")
    assert detect_format(rb) == "routerbench"
    rl = write(tmp_path, "rl.csv", "prompt,m1,m1_response\np,True,r\n")
    assert detect_format(rl) == "routellm"
    pq = tmp_path / "x.parquet"
    pl.DataFrame({"text": ["a"]}).write_parquet(pq)
    assert detect_format(pq) == "parquet"


# -- recorded outcomes -------------------------------------------------------------------------
LONG_CSV = """item_id,model,input,reference,output,quality,cost_usd,latency_ms,prompt_tokens,completion_tokens
q1,small,2+2?,4,4,1,0.0001,120,5,1
q1,large,2+2?,4,4,1,0.003,900,5,1
q2,small,3*3?,9,6,0,0.0001,110,5,1
q2,large,,9,9,1.0,0.003,950,5,1
q3,small,10/2?,5,,,,,,
"""


def test_long_format(store: Store, tmp_path: Path) -> None:
    info = import_file(store, write(tmp_path, "long.csv", LONG_CSV), "long")
    assert (info.n_items, info.n_models, info.n_outcomes) == (3, 2, 5)
    items = store.items("long")
    assert items["input"].to_list() == ["2+2?", "3*3?", "10/2?"]
    assert items["reference"].to_list() == ["4", "9", "5"]
    out = store.outcomes("long")
    large = out.filter(pl.col("model") == "large")
    assert large["quality"].to_list() == [1.0, 1.0]
    assert large["cost_usd"].sum() == pytest.approx(0.006)
    assert large["latency_ms"].to_list() == [900.0, 950.0]
    assert out["prompt_tokens"].drop_nulls().to_list() == [5, 5, 5, 5]
    assert out["confidence"].null_count() == out.height


def test_long_format_total_tokens_in_parquet(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "runs.parquet"
    pl.DataFrame({"item_id": ["a", "a", "b"], "model": ["m1", "m2", "m1"],
                  "quality": [True, False, True], "tokens": [10, 20, 30]}).write_parquet(path)
    info = import_file(store, path, "runs")
    assert info.source == "long:runs.parquet" and info.n_outcomes == 3
    out = store.outcomes("runs")
    assert out["quality"].to_list() == [1.0, 0.0, 1.0]
    assert out["completion_tokens"].to_list() == [10, 20, 30]
    assert "total" in json.loads(out["signals"][0])["tokens"]


ROUTERBENCH_CSV = (
    ",sample_id,prompt,eval_name,m-small,org/m-large,m-small|model_response,"
    "org/m-large|model_response,m-small|total_cost,org/m-large|total_cost,"
    "oracle_model_to_route_to\n"
    '7,s.1,"[\'Q1 part\', \'Q1 part\']",ev,1.0,1.0,A,A,0.0001,0.002,m-small\n'
    '8,s.2,"[""It\'s Q2""]",ev,0.0,1.0,B,C,0.0001,0.003,org/m-large\n'
    '9,s.2,"[\'Q3\']",ev,,0.0,,D,,0.004,no_model_correct\n'
)


def test_routerbench_wide_format(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "rb.csv", ROUTERBENCH_CSV)
    info = import_file(store, path, "rb")
    assert (info.n_items, info.n_models, info.n_outcomes) == (3, 2, 5)
    items = store.items("rb")
    # the repeated sample_id s.2 is disambiguated in file order
    assert items["item_id"].to_list() == ["s.1", "s.2#1", "s.2#2"]
    assert items["input"].to_list() == ["Q1 part", "It's Q2", "Q3"]
    meta = json.loads(items["metadata"][0])
    assert meta["prompt_parts"] == ["Q1 part", "Q1 part"]
    assert meta["index"] == "7" and meta["oracle_model_to_route_to"] == "m-small"
    assert json.loads(items["tags"][0]) == {"eval_name": "ev"}
    out = store.outcomes("rb")
    large = out.filter(pl.col("model") == "org/m-large")
    assert large["quality"].to_list() == [1.0, 1.0, 0.0]
    assert large["cost_usd"].to_list() == pytest.approx([0.002, 0.003, 0.004])
    assert large["output"].to_list() == ["A", "C", "D"]
    assert out["signals"].null_count() == out.height
    assert out["confidence"].null_count() == out.height


def test_routellm_format_estimates_cost_from_litellm_prices(
    store: Store, tmp_path: Path
) -> None:
    text = ("prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview,"
            "mistralai/Mixtral-8x7B-Instruct-v0.1_response,gpt-4-1106-preview_response\n"
            f"{'x' * 40},True,False,{'y' * 8},{'z' * 400}\n"
            "short,False,True,a,b\n")
    info = import_file(store, write(tmp_path, "rl.csv", text), "rl")
    assert (info.n_items, info.n_models, info.n_outcomes) == (2, 2, 4)
    out = store.outcomes("rl")
    gpt4 = out.filter(pl.col("model") == "gpt-4-1106-preview").sort("item_id")
    key, cin, cout = price_entry("gpt-4-1106-preview")
    assert gpt4["prompt_tokens"].to_list() == [10, 2]
    assert gpt4["completion_tokens"].to_list() == [100, 1]
    assert gpt4["cost_usd"][0] == pytest.approx(10 * cin + 100 * cout)
    assert gpt4["quality"].to_list() == [0.0, 1.0]
    signals = json.loads(gpt4["signals"][0])
    assert signals["cost_estimated"] is True and signals["price_entry"] == key
    assert (out["cost_usd"] > 0).all()


# -- bad input: clear error, nothing written -----------------------------------------------------
@pytest.fixture
def seeded(store: Store, tmp_path: Path) -> Store:
    """A store holding workload `w` already, so each failure can be checked to leave it alone."""
    import_file(store, write(tmp_path, "seed.csv", TRIAGE_CSV), "w", mapping=TRIAGE_MAP)
    return store


def assert_fails(store: Store, path: Path, *needles: str, name: str = "w", replace: bool = True,
                 **kwargs) -> str:
    before = snapshot(store)
    with pytest.raises(ImportError_) as err:
        import_file(store, path, name, replace=replace, **kwargs)
    message = str(err.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, message
    assert snapshot(store) == before
    return message


def test_empty_file(seeded: Store, tmp_path: Path) -> None:
    assert_fails(seeded, write(tmp_path, "empty.csv", ""), "empty")


def test_header_only_file(seeded: Store, tmp_path: Path) -> None:
    assert_fails(seeded, write(tmp_path, "h.csv", "id,text,label\n"), "no data rows",
                 mapping=ColumnMapping(id="id", input="text", reference="label"))


def test_wrong_delimiter(seeded: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "semi.csv", TRIAGE_CSV.replace(",", ";"))
    assert_fails(seeded, path, "delimiter looks wrong", "';'", mapping=TRIAGE_MAP)
    simple = write(tmp_path, "semi2.csv", "id;text;label\n1;hi;a\n2;yo;b\n")
    assert_fails(seeded, simple, "delimiter looks wrong", "'text' (input)",
                 mapping=ColumnMapping(id="id", input="text"))
    assert_fails(seeded, simple, "delimiter looks wrong")  # no mapping: cannot guess either
    commas = write(tmp_path, "semi3.csv", "id;text\n1;hello, world\n2;x\n")  # ragged rows
    assert_fails(seeded, commas, "delimiter looks wrong", "';'",
                 mapping=ColumnMapping(id="id", input="text"))
    info = import_file(seeded, simple, "semi", delimiter=";")
    assert info.n_items == 2


def test_non_utf8_bytes(seeded: Store, tmp_path: Path) -> None:
    data = b"id,text\n1,fine\n2,caf" + b"\xe9" + b" latin-1\n3,ok\n"
    offset = data.index(b"\xe9")
    path = write(tmp_path, "latin.csv", data)
    assert_fails(seeded, path, "not UTF-8", f"byte offset {offset}", "line 3", "row 2",
                 "0xe9", mapping=ColumnMapping(id="id", input="text"))
    jsonl = write(tmp_path, "latin.jsonl", b'{"text": "a"}\n{"text": "caf\xe9"}\n')
    assert_fails(seeded, jsonl, "not UTF-8", "line 2")


def test_missing_mapped_column_lists_available(seeded: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", TRIAGE_CSV)
    msg = assert_fails(seeded, path, "'question' (input)", "available columns",
                       mapping=ColumnMapping(id="id", input="question"))
    assert "'text'" in msg and "'customer'" in msg


def test_duplicate_item_ids(seeded: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "dup.csv", "id,text\na,x\nb,y\na,z\nc,w\na,v\n")
    assert_fails(seeded, path, "duplicate item id", "'a'", "rows 1, 3, 5",
                 mapping=ColumnMapping(id="id", input="text"))
    long = write(tmp_path, "dup_long.csv", "item_id,model,quality\n1,m,1\n2,m,0\n1,m,1\n")
    assert_fails(seeded, long, "duplicate", "'1 / m'", "rows 1, 3")


def test_empty_input_cell(seeded: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "blank.csv", "id,text\na,x\nb,\nc,  \n")
    assert_fails(seeded, path, "rows 2, 3", "column 'text'", "empty",
                 mapping=ColumnMapping(id="id", input="text"))


def test_non_numeric_cost_and_quality(seeded: Store, tmp_path: Path) -> None:
    long = write(tmp_path, "cost.csv",
                 "item_id,model,quality,cost_usd\n1,m,1,0.1\n2,m,0,abc\n3,m,1,0.2\n")
    assert_fails(seeded, long, "row 2", "column 'cost_usd'", "'abc' is not a number")
    quality = write(tmp_path, "q.csv", "item_id,model,quality\n1,m,1\n2,m,0.5\n3,m,great\n")
    assert_fails(seeded, quality, "row 3", "column 'quality'", "'great'")
    out_of_range = write(tmp_path, "q2.csv", "item_id,model,quality\n1,m,1\n2,m,7\n")
    assert_fails(seeded, out_of_range, "row 2", "[0, 1]")
    rb = write(tmp_path, "rb.csv", ROUTERBENCH_CSV.replace(",0.0001,0.003,", ",0.0001,n/a,"))
    assert_fails(seeded, rb, "row 2", "column 'org/m-large|total_cost'", "'n/a'")
    rl = write(tmp_path, "rl.csv", "prompt,m1,m1_response\np,True,r\nq,maybe,s\n")
    assert_fails(seeded, rl, "row 2", "column 'm1'", "'maybe'")


def test_name_collision_and_replace(seeded: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "long.csv", LONG_CSV)
    assert_fails(seeded, path, "already exists", "'w'", replace=False)
    info = import_file(seeded, path, "w", replace=True)
    assert info.n_outcomes == 5 and info.source == "long:long.csv"
    assert [w.name for w in seeded.workloads()] == ["w"]


def test_failed_replace_keeps_the_old_workload(seeded: Store, tmp_path: Path) -> None:
    # the duplicate is found after staging, inside the transaction that would replace `w`
    path = write(tmp_path, "dup.csv", "id,text\na,x\na,y\n")
    assert_fails(seeded, path, "duplicate", mapping=ColumnMapping(id="id", input="text"))
    assert seeded.workload("w").n_items == 10


def test_unknown_format_and_task_type(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", TRIAGE_CSV)
    with pytest.raises(ImportError_, match="unknown format 'xls'"):
        import_file(store, path, "x", format="xls")
    with pytest.raises(ImportError_, match="unknown task type"):
        import_file(store, path, "x", task_type="poetry")
    with pytest.raises(ImportError_, match="no such file"):
        import_file(store, tmp_path / "nope.csv", "x")
    assert store.workloads() == []


# -- real data (skipped when ../shared/data is absent) ------------------------------------------
def need(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"real data {path} not present (only on the project machine)")
    return path


def test_real_routerbench_arc_challenge(store: Store) -> None:
    info = import_file(store, need("routerbench/arc_challenge_test.csv"), "arc")
    assert (info.n_items, info.n_models) == (445, 11)
    stats = store.cursor().execute(
        "SELECT model, round(avg(quality), 3), round(avg(cost_usd), 6) FROM outcomes "
        "WHERE workload = 'arc' GROUP BY model"
    ).fetchall()
    by_model = {m: (q, c) for m, q, c in stats}
    assert by_model["gpt-4-1106-preview"] == (0.957, 0.005065)
    assert by_model["zero-one-ai/Yi-34B-Chat"] == (0.918, 0.000404)
    assert by_model["mistralai/mixtral-8x7b-chat"] == (0.863, 0.000303)


def test_real_routerbench_mbpp(store: Store) -> None:
    info = import_file(store, need("routerbench/mbpp_test.csv"), "mbpp", format="routerbench")
    assert (info.n_items, info.n_models) == (128, 11)
    assert info.n_outcomes == 128 * 11


def test_real_routellm_gsm8k(store: Store) -> None:
    path = need("routellm/gsm8k_responses.csv")
    assert detect_format(path) == "routellm"
    info = import_file(store, path, "gsm8k")
    assert (info.n_items, info.n_models, info.n_outcomes) == (1319, 2, 2638)
    out = store.outcomes("gsm8k")
    assert (out["cost_usd"] > 0).all()
    per_model = out.group_by("model").agg(pl.col("cost_usd").mean(), pl.col("quality").mean())
    costs = dict(zip(per_model["model"], per_model["cost_usd"], strict=True))
    assert costs["gpt-4-1106-preview"] > costs["mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert all(json.loads(s)["cost_estimated"] for s in out["signals"])
