"""The executor's data plane against the real local stack (PostgreSQL, ClickHouse 18.16, Kafka).

Every test works in its own schema / database / topic / folder (uuid suffixes) and removes it afterwards.
Connections are built directly as ``Connection`` objects behind a tiny registry (``resolve`` only), so no
encrypted registry rows are needed. Batches are 3 rows so every source spans several batches.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections import defaultdict
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.connectors.kafka_topics import client_config
from services.connectors.registry import Connection
from services.executor.plan import run_pipeline
from tests.integration.stack_fixtures import Registry, uid
from services.executor.readers import (read_clickhouse, read_file, read_http, read_kafka, read_postgres,
                                       read_sqlite)
from services.executor.batches import ReadStats
from services.executor.writers import open_writer, WriterError

pytestmark = pytest.mark.integration
TENANT = "t-executor"
B = 3  # rows per batch in every test


@pytest.fixture
def files(tmp_path):
    return Connection(TENANT, "fs", "file", {"folder": str(tmp_path)})


def _orders_pg(db, schema: str, n: int = 7) -> None:
    db.execute(f"CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, amount numeric(12,2), note text, "
               "created_at timestamp, paid boolean)")
    with db.cursor() as cur:
        cur.executemany(f"INSERT INTO {schema}.orders VALUES (%s, %s, %s, %s, %s)",
                        [(i, Decimal(f"{i}.25"), None if i == 2 else f"n{i}", dt.datetime(2026, 1, 1, i), i % 2 == 0)
                         for i in range(1, n + 1)])


def _sizes(batches) -> tuple[list[int], list]:
    got = list(batches)
    return [b.num_rows for b in got], got


# ================================================================ readers

def test_postgres_reader_streams_typed_batches(pg, pgdb):
    db, schema = pgdb
    _orders_pg(db, schema)
    stats = ReadStats(cursor_column="created_at")
    sizes, got = _sizes(read_postgres(pg, f"SELECT * FROM {schema}.orders ORDER BY id", batch_rows=B, stats=stats))
    assert sizes == [3, 3, 1]
    schema_ = got[0].schema
    assert schema_.field("amount").type == pa.decimal128(12, 2) and schema_.field("id").type == pa.int64()
    assert schema_.field("created_at").type == pa.timestamp("us") and schema_.field("paid").type == pa.bool_()
    assert got[0].column("amount").to_pylist()[0] == Decimal("1.25") and got[0].column("note")[1].as_py() is None
    assert (stats.rows, stats.batches) == (7, 3) and stats.bytes > 0
    assert stats.high_water_mark == dt.datetime(2026, 1, 1, 7)


def test_clickhouse_reader_streams_typed_batches(ch, chdb):
    client, db = chdb
    client.execute(f"CREATE TABLE {db}.t (id UInt64, amount Decimal(12, 2), ts DateTime, s Nullable(String)) "
                   "ENGINE = MergeTree ORDER BY id")
    client.execute(f"INSERT INTO {db}.t VALUES", [(i, Decimal(f"{i}.50"), dt.datetime(2026, 1, 1, i), None)
                                                 for i in range(1, 8)])
    stats = ReadStats(cursor_column="id")
    sizes, got = _sizes(read_clickhouse(ch, f"SELECT * FROM {db}.t ORDER BY id", batch_rows=B, stats=stats))
    assert sizes == [3, 3, 1] and stats.high_water_mark == 7
    assert got[0].schema.field("amount").type == pa.decimal128(12, 2)
    assert pa.types.is_timestamp(got[0].schema.field("ts").type)
    assert got[2].column("amount")[0].as_py() == Decimal("7.50")


def _write_files(folder) -> None:
    rows = [{"id": i, "name": f"n{i}", "price": i * 1.5} for i in range(1, 8)]
    (folder / "a.csv").write_text("id,name,price\n" + "".join(f"{r['id']},{r['name']},{r['price']}\n" for r in rows))
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "a.xml").write_text("<items>" + "".join(
        f"<item id='{r['id']}'><name>{r['name']}</name><price>{r['price']}</price></item>" for r in rows) + "</items>")
    pq.write_table(pa.Table.from_pylist(rows), folder / "a.parquet")


@pytest.mark.parametrize("name", ["a.csv", "a.jsonl", "a.xml", "a.parquet"])
def test_file_readers_stream_batches(files, tmp_path, name):
    _write_files(tmp_path)
    stats = ReadStats()
    sizes, got = _sizes(read_file(files, name, batch_rows=B, stats=stats))
    assert sizes == [3, 3, 1] and stats.rows == 7
    rows = [r for b in got for r in b.to_pylist()]
    assert [str(r["id"]) for r in rows] == [str(i) for i in range(1, 8)] and rows[6]["name"] == "n7"
    if name != "a.xml":  # XML is text
        assert pa.types.is_integer(got[0].schema.field("id").type)
        assert pa.types.is_floating(got[0].schema.field("price").type)


def test_file_reader_refuses_paths_outside_the_folder(files):
    from services.executor.readers import ReaderError

    with pytest.raises(ReaderError):
        list(read_file(files, "../x.csv"))


def test_sqlite_reader(tmp_path):
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(1, 8)])
    conn = Connection(TENANT, "sq", "sqlite", {"path": str(path)})
    stats = ReadStats(cursor_column="id")
    sizes, got = _sizes(read_sqlite(conn, "SELECT * FROM t WHERE id > :cursor ORDER BY id", {"cursor": 2},
                                    batch_rows=B, stats=stats))
    assert sizes == [3, 2] and stats.high_water_mark == 7


@pytest.fixture
def topic(kafka):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(kafka))
    name = f"ex.{uid()}"
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(15)
    yield name
    admin.delete_topics([name])[name].result(15)


def _produce(kafka, topic: str, rows: list[dict]) -> None:
    from confluent_kafka import Producer

    p = Producer(client_config(kafka))
    for r in rows:
        p.produce(topic, json.dumps(r).encode())
    assert p.flush(15) == 0


def test_kafka_reader_is_bounded_and_returns_next_offsets(kafka, topic):
    _produce(kafka, topic, [{"id": i, "v": f"x{i}"} for i in range(7)])
    stats = ReadStats()
    sizes, _ = _sizes(read_kafka(kafka, topic, {}, batch_rows=B, stats=stats))
    assert sizes == [3, 3, 1] and stats.next_offsets == {"0": 7}
    again = ReadStats()
    assert _sizes(read_kafka(kafka, topic, stats.next_offsets, batch_rows=B, stats=again))[0] == []
    _produce(kafka, topic, [{"id": 7, "v": "x7"}, {"id": 8, "v": "x8"}])
    third = ReadStats()
    sizes, got = _sizes(read_kafka(kafka, topic, stats.next_offsets, batch_rows=B, stats=third))
    assert sizes == [2] and got[0].column("id").to_pylist() == [7, 8] and third.next_offsets == {"0": 9}


def test_kafka_reader_decodes_avro_single_object(kafka, topic):
    from services.core.avro import build_codec

    codec = build_codec()
    schema = next(s for s in codec.catalog if s.parsed.get("type") == "record" and all(
        "default" in f or f["type"] == "string" for f in s.parsed["fields"]))
    record = {f["name"]: f.get("default", "x") for f in schema.parsed["fields"]}
    from confluent_kafka import Producer

    p = Producer(client_config(kafka))
    p.produce(topic, codec.encode(schema.name, record))
    p.flush(15)
    sizes, got = _sizes(read_kafka(kafka, topic, batch_rows=B))
    assert sizes == [1] and set(got[0].schema.names) == set(record)


class _Api:
    """A tiny JSON API on a free port: ``pages`` maps a request path (with query) to its JSON body."""

    def __init__(self, pages: dict):
        self.auth: list = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                api.auth.append(self.headers.get("Authorization"))
                body = json.dumps(pages.get(self.path, {"data": []})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_http_reader_follows_next_links_with_auth(monkeypatch):
    monkeypatch.setenv("AIETL_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")  # the local API (docs/SECURITY.md)
    api = _Api({"/items": {"data": [{"id": 1}, {"id": 2}], "next": "/items?p=2"},
                "/items?p=2": {"data": [{"id": 3}, {"id": 4}], "next": "/items?p=3"},
                "/items?p=3": {"data": [{"id": 5}], "next": None}})
    try:
        conn = Connection(TENANT, "api", "http", {"base_url": api.base, "records_path": "data"}, {"api_key": "k1"})
        sizes, got = _sizes(read_http(conn, "/items", batch_rows=B))
    finally:
        api.close()
    assert sizes == [3, 2] and [r["id"] for b in got for r in b.to_pylist()] == [1, 2, 3, 4, 5]
    assert api.auth == ["Bearer k1"] * 3


def test_http_page_param_until_an_empty_page_and_incremental_run(files, monkeypatch):
    monkeypatch.setenv("AIETL_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")  # the local API (docs/SECURITY.md)
    pages = {f"/v?page={n}": {"data": [{"id": 2 * n - 1, "ts": f"2026-01-0{n}"}, {"id": 2 * n, "ts": f"2026-01-0{n}"}]}
             for n in (1, 2, 3)}
    pages.update({f"/v?since=2026-01-02&page={n}": body for n, body in
                  ((1, pages["/v?page=1"]), (2, pages["/v?page=2"]), (3, pages["/v?page=3"]))})
    api = _Api(pages)
    try:
        conn = Connection(TENANT, "api", "http", {"base_url": api.base, "records_path": "data", "page_param": "page"})
        sizes, _ = _sizes(read_http(conn, "/v", batch_rows=B))
        assert sizes == [3, 3]
        # the API ignores `since` here: the run still keeps only rows newer than the cursor
        spec = {"source": {"kind": "http", "connection": "api", "url": "/v"},
                "target": {"kind": "file", "connection": "fs", "path": "v.jsonl"},
                "incremental": {"cursor_column": "ts"}}
        totals = run_pipeline(spec, {}, Registry(conn, files), TENANT, run_id="h1", params={},
                              cursor="2026-01-02", batch_rows=B)
    finally:
        api.close()
    assert (totals.rows_read, totals.rows_written, totals.high_water_mark) == (2, 2, "2026-01-03")


def test_kafka_source_run_continues_from_the_offsets(kafka, topic, files):
    _produce(kafka, topic, [{"id": i} for i in range(5)])
    spec = {"source": {"kind": "kafka", "connection": "kf", "topic": topic, "message_format": "json"},
            "target": {"kind": "file", "connection": "fs", "path": "k.csv"}}
    reg = Registry(kafka, files)
    first = run_pipeline(spec, {}, reg, TENANT, run_id="k1", params={}, cursor=None, batch_rows=B)
    assert (first.rows_read, first.batches, json.loads(first.high_water_mark)) == (5, 2, {"0": 5})
    _produce(kafka, topic, [{"id": 5}])
    second = run_pipeline(spec, {}, reg, TENANT, run_id="k2", params={}, cursor=first.high_water_mark, batch_rows=B)
    assert second.rows_read == 1 and json.loads(second.high_water_mark) == {"0": 6}
    assert [r["id"] for b in read_file(files, "k.csv") for r in b.to_pylist()] == [0, 1, 2, 3, 4, 5]


# ================================================================ writers

def _rows(ids, tag="a"):
    return pa.RecordBatch.from_pylist(
        [{"id": i, "name": f"{tag}{i}", "amount": Decimal(f"{i}.10")} for i in ids],
        schema=pa.schema([("id", pa.int64()), ("name", pa.string()), ("amount", pa.decimal128(12, 2))]))


def _load(conn, target, run_id, batches, artifacts=None):
    with open_writer(conn, target, run_id=run_id, artifacts=artifacts) as w:
        for no, b in enumerate(batches):
            w.write(b, f"{run_id}:{no}")
        w.finish()
        return w.rows_written


def _pg_rows(db, table):
    return db.execute(f"SELECT id, name, amount FROM {table} ORDER BY id, name").fetchall()


def test_postgres_append_twice_and_redelivery(pg, pgdb):
    db, schema = pgdb
    target = {"kind": "postgres", "table": f"{schema}.t", "load_mode": "append"}
    assert _load(pg, target, "r1", [_rows([1, 2, 3]), _rows([4])]) == 4
    assert _load(pg, target, "r2", [_rows([1, 2, 3]), _rows([4])]) == 4
    assert len(_pg_rows(db, f"{schema}.t")) == 8
    # r1's batch 0 re-delivered (e.g. after a crash, by a new writer): not loaded again
    assert _load(pg, target, "r1", [_rows([1, 2, 3])]) == 0
    assert len(_pg_rows(db, f"{schema}.t")) == 8
    assert db.execute("SELECT amount FROM " + schema + ".t WHERE id = 1 LIMIT 1").fetchone()[0] == Decimal("1.10")


def test_postgres_replace_swaps_in_one_transaction(pg, pgdb):
    db, schema = pgdb
    target = {"kind": "postgres", "table": f"{schema}.t", "load_mode": "replace"}
    _load(pg, target, "r1", [_rows([1, 2, 3]), _rows([4])])
    with open_writer(pg, target, run_id="r2") as w:
        w.write(_rows([7, 8], "b"), "r2:0")
        # mid-run the old table is intact and readable
        assert [r[0] for r in _pg_rows(db, f"{schema}.t")] == [1, 2, 3, 4]
        w.finish()
    assert _pg_rows(db, f"{schema}.t") == [(7, "b7", Decimal("7.10")), (8, "b8", Decimal("8.10"))]
    # a finished replace re-delivered does not swap again
    assert _load(pg, target, "r2", [_rows([9])]) == 0
    assert [r[0] for r in _pg_rows(db, f"{schema}.t")] == [7, 8]
    leftovers = db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)).fetchone()[0]
    assert leftovers == 1


def test_postgres_merge_on_keys(pg, pgdb):
    db, schema = pgdb
    target = {"kind": "postgres", "table": f"{schema}.t", "load_mode": "merge", "keys": ["id"]}
    _load(pg, target, "r1", [_rows([1, 2, 3]), _rows([4])])
    _load(pg, target, "r2", [_rows([3, 4, 5], "b"), _rows([5], "c")])
    got = _pg_rows(db, f"{schema}.t")
    assert [(r[0], r[1]) for r in got] == [(1, "a1"), (2, "a2"), (3, "b3"), (4, "b4"), (5, "c5")]


def test_postgres_writer_uses_the_draft_ddl(pg, pgdb):
    db, schema = pgdb
    artifacts = {"target_setup_sql": [f"CREATE SCHEMA IF NOT EXISTS {schema}_x"],
                 "target_ddl": f"CREATE TABLE IF NOT EXISTS {schema}_x.t (id bigint PRIMARY KEY, name text, "
                               "amount numeric(12,2))"}
    try:
        target = {"kind": "postgres", "table": f"{schema}_x.t", "load_mode": "merge", "keys": ["id"]}
        _load(pg, target, "r1", [_rows([1, 2])], artifacts)
        _load(pg, target, "r2", [_rows([2], "z")], artifacts)
        assert _pg_rows(db, f"{schema}_x.t") == [(1, "a1", Decimal("1.10")), (2, "z2", Decimal("2.10"))]
    finally:
        db.execute(f"DROP SCHEMA IF EXISTS {schema}_x CASCADE")
        db.execute("DELETE FROM aietl_meta.loaded_batches WHERE target LIKE %s", (schema + "_x.%",))


def _ch_rows(client, table, final=False):
    return client.execute(f"SELECT id, name, amount FROM {table} {'FINAL' if final else ''} ORDER BY id, name")


def test_clickhouse_append_twice_and_redelivery(ch, chdb):
    client, db = chdb
    target = {"kind": "clickhouse", "table": f"{db}.t", "load_mode": "append"}
    _load(ch, target, "r1", [_rows([1, 2, 3]), _rows([4])])
    _load(ch, target, "r2", [_rows([1, 2, 3]), _rows([4])])
    assert len(_ch_rows(client, f"{db}.t")) == 8
    assert _load(ch, target, "r1", [_rows([1, 2, 3])]) == 0
    assert len(_ch_rows(client, f"{db}.t")) == 8


def test_clickhouse_append_after_a_crash_between_insert_and_key_record_loads_once(ch, chdb):
    client, db = chdb
    target = {"kind": "clickhouse", "table": f"{db}.t", "load_mode": "append"}
    _load(ch, target, "r0", [_rows([10])])
    # What a crashed attempt leaves: its intents recorded, batch 0 inserted, no key records.
    client.execute(f"INSERT INTO {db}.aietl_batch_intents (target, batch_key, count_before, rows) VALUES",
                   [(f"{db}.t", "r1:0", 1, 3)])
    client.execute(f"INSERT INTO {db}.t (id, name, amount) VALUES", [(i, f"a{i}", Decimal(f"{i}.10")) for i in (1, 2, 3)])
    client.execute(f"INSERT INTO {db}.aietl_batch_intents (target, batch_key, count_before, rows) VALUES",
                   [(f"{db}.t", "r1:1", 4, 1)])  # batch 1's insert never happened
    with open_writer(ch, target, run_id="r1") as w:
        assert w.write(_rows([1, 2, 3]), "r1:0") == 0 and w.landed_before
        assert w.write(_rows([4]), "r1:1") == 1 and not w.landed_before
        w.finish()
    assert [r[0] for r in _ch_rows(client, f"{db}.t")] == [1, 2, 3, 4, 10]


def test_clickhouse_append_refuses_to_guess_when_another_writer_changed_the_table(ch, chdb):
    client, db = chdb
    target = {"kind": "clickhouse", "table": f"{db}.t", "load_mode": "append"}
    _load(ch, target, "r0", [_rows([10])])
    client.execute(f"INSERT INTO {db}.aietl_batch_intents (target, batch_key, count_before, rows) VALUES",
                   [(f"{db}.t", "r1:0", 1, 3)])
    client.execute(f"INSERT INTO {db}.t (id, name, amount) VALUES", [(99, "x", Decimal("1.00"))])
    with pytest.raises(WriterError, match="another writer"):
        _load(ch, target, "r1", [_rows([1, 2, 3])])


def test_clickhouse_replace_renames_staging_in(ch, chdb):
    client, db = chdb
    target = {"kind": "clickhouse", "table": f"{db}.t", "load_mode": "replace"}
    _load(ch, target, "r1", [_rows([1, 2, 3]), _rows([4])])
    with open_writer(ch, target, run_id="r2") as w:
        w.write(_rows([7, 8], "b"), "r2:0")
        assert [r[0] for r in _ch_rows(client, f"{db}.t")] == [1, 2, 3, 4]
        w.finish()
    assert _ch_rows(client, f"{db}.t") == [(7, "b7", Decimal("7.10")), (8, "b8", Decimal("8.10"))]
    assert _load(ch, target, "r2", [_rows([9])]) == 0
    tables = {r[0] for r in client.execute(f"SHOW TABLES FROM {db}")}
    assert tables == {"t", "aietl_loaded_batches"}


def test_clickhouse_merge_reads_one_row_per_key_with_final(ch, chdb):
    client, db = chdb
    target = {"kind": "clickhouse", "table": f"{db}.t", "load_mode": "merge", "keys": ["id"]}
    _load(ch, target, "r1", [_rows([1, 2, 3]), _rows([4])])
    _load(ch, target, "r2", [_rows([3, 4], "b"), _rows([5], "c")])
    _load(ch, target, "r2", [_rows([3, 4], "b")])  # re-delivered: skipped (and harmless anyway)
    got = _ch_rows(client, f"{db}.t", final=True)
    assert [(r[0], r[1]) for r in got] == [(1, "a1"), (2, "a2"), (3, "b3"), (4, "b4"), (5, "c5")]


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl", "out.parquet"])
def test_file_writer_append_and_replace(files, name):
    target = {"kind": "file", "path": name, "load_mode": "append"}
    _load(files, target, "r1", [_rows([1, 2, 3]), _rows([4])])
    _load(files, target, "r2", [_rows([5, 6])])
    assert _load(files, target, "r2", [_rows([5, 6])]) == 0  # a finished run is not appended twice
    got = [r for b in read_file(files, name) for r in b.to_pylist()]
    assert [int(r["id"]) for r in got] == [1, 2, 3, 4, 5, 6]
    _load(files, {**target, "load_mode": "replace"}, "r3", [_rows([9], "z")])
    got = [r for b in read_file(files, name) for r in b.to_pylist()]
    assert [(int(r["id"]), r["name"]) for r in got] == [(9, "z9")]
    assert sorted(p.name for p in files_dir(files).iterdir() if not p.name.startswith(".")) == [name]


def files_dir(conn):
    from pathlib import Path

    return Path(conn.param("folder"))


def test_sqlite_writer_modes(tmp_path):
    conn = Connection(TENANT, "sq", "sqlite", {"path": str(tmp_path / "w.db")})
    t = {"kind": "sqlite", "table": "t", "load_mode": "append"}
    _load(conn, t, "r1", [_rows([1, 2])])
    _load(conn, t, "r2", [_rows([1, 2])])
    assert _load(conn, t, "r1", [_rows([1, 2])]) == 0
    count = lambda: sqlite3.connect(tmp_path / "w.db").execute("SELECT count(*) FROM t").fetchone()[0]  # noqa: E731
    assert count() == 4
    _load(conn, {**t, "load_mode": "replace"}, "r3", [_rows([5])])
    assert count() == 1
    m = {**t, "table": "m", "load_mode": "merge", "keys": ["id"]}
    _load(conn, m, "r4", [_rows([1, 2])])
    _load(conn, m, "r5", [_rows([2, 3], "b")])
    got = sqlite3.connect(tmp_path / "w.db").execute("SELECT id, name FROM m ORDER BY id").fetchall()
    assert got == [(1, "a1"), (2, "b2"), (3, "b3")]


def test_kafka_writer_produces_json(kafka, topic):
    _load(kafka, {"kind": "kafka", "topic": topic}, "r1", [_rows([1, 2, 3]), _rows([4])])
    got = [r for b in read_kafka(kafka, topic) for r in b.to_pylist()]
    assert [r["id"] for r in got] == [1, 2, 3, 4] and got[0]["amount"] == "1.10"


# ================================================================ runs

def test_incremental_second_run_reads_only_newer_rows(pg, ch, pgdb, chdb):
    from services.spec_compiler.sqlgen import generate_sql

    db, schema = pgdb
    _, chname = chdb
    _orders_pg(db, schema)
    spec = {"source": {"kind": "postgres", "connection": "pg", "table": f"{schema}.orders"},
            "target": {"kind": "clickhouse", "connection": "ch", "table": f"{chname}.orders_raw",
                       "load_mode": "append"},
            "incremental": {"cursor_column": "created_at"}}
    cols = [("id", "bigint"), ("amount", "numeric(12,2)"), ("note", "text"), ("created_at", "timestamp"),
            ("paid", "boolean")]
    artifacts = generate_sql(spec, cols)
    calls = []
    first = run_pipeline(spec, artifacts, Registry(pg, ch), TENANT, run_id="i1", params={}, cursor=None,
                         batch_rows=B, on_batch=lambda *a: calls.append(a))
    assert (first.rows_read, first.rows_written, first.batches) == (7, 7, 3)
    assert first.high_water_mark == "2026-01-01 07:00:00" and [c[1] for c in calls] == [3, 3, 1]
    db.execute(f"INSERT INTO {schema}.orders VALUES (8, 8.25, 'n8', '2026-01-01 08:00', true), "
               f"(9, 9.25, 'n9', '2026-01-01 09:00', false)")
    second = run_pipeline(spec, artifacts, Registry(pg, ch), TENANT, run_id="i2", params={},
                          cursor=first.high_water_mark, batch_rows=B)
    assert (second.rows_read, second.rows_written) == (2, 2) and second.high_water_mark == "2026-01-01 09:00:00"
    none = run_pipeline(spec, artifacts, Registry(pg, ch), TENANT, run_id="i3", params={},
                        cursor=second.high_water_mark, batch_rows=B)
    assert none.rows_read == 0 and none.high_water_mark == second.high_water_mark
    assert chdb[0].execute(f"SELECT count(), sum(amount) FROM {chname}.orders_raw")[0] == (9, Decimal("47.25"))


def test_p02_postgres_to_clickhouse_daily_sums(pg, ch, pgdb, chdb):
    from services.domain.spec import PipelineSpec
    from services.spec_compiler.sqlgen import generate_sql

    db, schema = pgdb
    client, chname = chdb
    db.execute(f"CREATE TABLE {schema}.orders (order_id bigint, status text, amount numeric(12,2), "
               "created_at timestamp)")
    rows = [(i, ["paid", "pending"][i % 3 == 0], Decimal(f"{(i * 37) % 50 - 5}.{i % 100:02d}"),
             dt.datetime(2026, 1, 1 + i % 4, i % 24)) for i in range(1, 41)]
    with db.cursor() as cur:
        cur.executemany(f"INSERT INTO {schema}.orders VALUES (%s, %s, %s, %s)", rows)
    spec = PipelineSpec.model_validate({
        "source": {"kind": "postgres", "connection": "pg", "table": f"{schema}.orders"},
        "target": {"kind": "clickhouse", "connection": "ch", "table": f"{chname}.daily_revenue",
                   "load_mode": "replace"},
        "filters": [{"column": "status", "op": "=", "value": "paid"}, {"column": "amount", "op": ">", "value": 0}],
        "aggregate": {"period": "day", "time_column": "created_at",
                      "measures": [{"fn": "sum", "column": "amount", "alias": "revenue"}]}}).model_dump()
    artifacts = generate_sql(spec, [("order_id", "bigint"), ("status", "text"), ("amount", "numeric(12,2)"),
                                    ("created_at", "timestamp without time zone")])
    totals = run_pipeline(spec, artifacts, Registry(pg, ch), TENANT, run_id="p02", params={}, cursor=None,
                          batch_rows=B)
    want: dict = defaultdict(Decimal)
    for _, status, amount, created in rows:
        if status == "paid" and amount > 0:
            want[created.date()] += amount
    got = dict(client.execute(f"SELECT day, revenue FROM {chname}.daily_revenue ORDER BY day"))
    assert got == dict(want) and totals.rows_written == len(want) == 4 and totals.batches == 2


def test_webhook_file_source_reads_the_named_file(files, tmp_path, pg, pgdb):
    db, schema = pgdb
    (tmp_path / "inbox").mkdir()
    _write_files(tmp_path / "inbox")
    spec = {"source": {"kind": "file", "connection": "fs", "format": "csv", "path_param": "file",
                       "folder": "inbox"},
            "target": {"kind": "postgres", "connection": "pg", "table": f"{schema}.items", "load_mode": "append"},
            "transform": {"sql": "SELECT id, upper(name) AS name FROM batch WHERE id > 2"}}
    totals = run_pipeline(spec, {}, Registry(files, pg), TENANT, run_id="w1", params={"file": "a.csv"},
                          cursor=None, batch_rows=B)
    assert (totals.rows_read, totals.rows_written) == (7, 5)
    assert db.execute(f"SELECT min(id), max(name) FROM {schema}.items").fetchone() == (3, "N7")
    from services.executor.readers import ReaderError

    with pytest.raises(ReaderError):
        run_pipeline(spec, {}, Registry(files, pg), TENANT, run_id="w2", params={"file": "../a.csv"}, cursor=None)
