"""Connection registry and introspection against the real local stack (PostgreSQL, ClickHouse, Kafka).

Every test uses its own tenant, schema, database and topic (uuid suffixes) and removes them afterwards.
File, SQLite and HTTP-API introspection need no server and are not marked integration.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

pytest.importorskip("cryptography")

from services.connectors import introspect, typemap  # noqa: E402
from services.connectors.introspect import Column, TableNotFound  # noqa: E402
from services.connectors.registry import (ConnectionExists, ConnectionNotFound, ConnectionRegistry,  # noqa: E402
                                          Connection, InvalidConnection)
from services.connectors.secrets import SecretCipher, SecretsError, generate_key  # noqa: E402
from services.core.settings import load_settings  # noqa: E402
from services.core.kafka_auth import client_conf


def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture(scope="module")
def key():
    return generate_key()


@pytest.fixture
def tenant(settings):
    name = f"t-{uid()}"
    yield name
    import psycopg

    with psycopg.connect(settings.postgres_dsn, autocommit=True) as db:
        if db.execute("SELECT to_regclass('aietl_meta.aietl_connections')").fetchone()[0]:
            db.execute("DELETE FROM aietl_meta.aietl_connections WHERE tenant_id = %s", (name,))


@pytest.fixture
def registry(settings, key):
    return ConnectionRegistry(settings.postgres_dsn, SecretCipher([key.encode()]))


def pg_params(settings) -> dict:
    return {"host": settings.postgres_host, "port": settings.postgres_port, "database": settings.postgres_db,
            "user": settings.postgres_user}


def ch_params(settings) -> dict:
    return {"host": settings.clickhouse_host, "port": settings.clickhouse_port, "user": settings.clickhouse_user}


def ch_secrets(settings) -> dict:
    return {"password": settings.clickhouse_password} if settings.clickhouse_password else {}


# ---------------------------------------------------------------- sources

@pytest.fixture
def pg_table(settings):
    """A schema of its own with an `orders` table of many types; yields "schema.orders"."""
    import psycopg

    schema = f"ct_{uid()}"
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as db:
        db.execute(f"""
            CREATE SCHEMA {schema};
            CREATE TABLE {schema}.orders (
                id bigint PRIMARY KEY, qty integer NOT NULL, amount numeric(12,2) NOT NULL, note text,
                code varchar(8), paid boolean, day date, created_at timestamp, seen_at timestamptz,
                ratio double precision, tags text[], payload jsonb, ref uuid);
            INSERT INTO {schema}.orders VALUES
                (1, 2, 19.90, 'first', 'A1', true, '2024-05-01', '2024-05-01 10:00:00', now(), 0.5,
                 '{{a,b}}', '{{"k": 1}}', gen_random_uuid()),
                (2, 1, 5.00, NULL, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL);""")
    yield f"{schema}.orders"
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


def ch(settings, query: str) -> str:
    """Run a statement over ClickHouse's HTTP interface (inline INSERT ... VALUES works there); TSV back."""
    import urllib.parse
    import urllib.request

    url = f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}/?" + urllib.parse.urlencode(
        {"user": settings.clickhouse_user, "password": settings.clickhouse_password})
    with urllib.request.urlopen(url, data=query.encode(), timeout=30) as resp:
        return resp.read().decode()


@pytest.fixture
def ch_table(settings):
    """A database of its own with an `orders` table; yields "database.orders"."""
    database = f"ct_{uid()}"
    ch(settings, f"CREATE DATABASE {database}")
    ch(settings, f"CREATE TABLE {database}.orders (id Int64, amount Decimal(12, 2), city Nullable(String), "
                 "ts DateTime, day Date, tags Array(String), flag UInt8) ENGINE = MergeTree ORDER BY id")
    ch(settings, f"INSERT INTO {database}.orders VALUES (1, 19.90, 'Oslo', '2024-05-01 10:00:00', "
                 "'2024-05-01', ['a', 'b'], 1), (2, 5.00, NULL, '2024-05-02 11:00:00', '2024-05-02', [], 0)")
    yield f"{database}.orders"
    ch(settings, f"DROP DATABASE {database}")


# ---------------------------------------------------------------- registry

@pytest.mark.integration
def test_create_get_list_delete_and_errors(registry, tenant, settings):
    created = registry.create(tenant, "src", "postgres", pg_params(settings), {"password": "pw"})
    assert created.kind == "postgres" and created.secrets == {"password": "pw"}
    got = registry.get(tenant, "src")
    assert got.params["port"] == settings.postgres_port and got.secrets == {"password": "pw"}
    assert registry.list(tenant) == [{**got.public(), "secrets": {"password": "***set***"}}]

    with pytest.raises(ConnectionExists, match="'src' already exists"):
        registry.create(tenant, "src", "postgres", pg_params(settings))
    with pytest.raises(InvalidConnection, match="unknown connection kind"):
        registry.create(tenant, "x", "mongo", {})
    with pytest.raises(InvalidConnection, match="needs params: host"):
        registry.create(tenant, "x", "clickhouse", {"port": 9000})
    with pytest.raises(ConnectionNotFound):
        registry.get(f"other-{tenant}", "src")  # tenants never see each other's connections

    registry.delete(tenant, "src")
    with pytest.raises(ConnectionNotFound, match="no connection named 'src'"):
        registry.get(tenant, "src")
    with pytest.raises(ConnectionNotFound):
        registry.delete(tenant, "src")
    assert registry.list(tenant) == []


@pytest.mark.integration
def test_default_is_marked_one_else_first_created(registry, tenant, settings):
    assert registry.default_for(tenant, "clickhouse") is None
    with pytest.raises(ConnectionNotFound, match="no clickhouse connection"):
        registry.resolve(tenant, "clickhouse")
    registry.create(tenant, "first", "clickhouse", ch_params(settings))
    registry.create(tenant, "second", "clickhouse", ch_params(settings))
    registry.create(tenant, "pg", "postgres", pg_params(settings))
    assert registry.default_for(tenant, "clickhouse").name == "first"

    registry.create(tenant, "third", "clickhouse", ch_params(settings), is_default=True)
    assert registry.default_for(tenant, "clickhouse").name == "third"
    registry.create(tenant, "fourth", "clickhouse", ch_params(settings), is_default=True)
    defaults = [c["name"] for c in registry.list(tenant) if c["is_default"]]
    assert defaults == ["fourth"]  # one default per kind

    assert registry.resolve(tenant, "clickhouse").name == "fourth"
    assert registry.resolve(tenant, name="second").name == "second"
    assert registry.resolve(tenant, "postgres").name == "pg"
    with pytest.raises(InvalidConnection, match="is a clickhouse connection, not postgres"):
        registry.resolve(tenant, "postgres", name="second")
    with pytest.raises(InvalidConnection):
        registry.resolve(tenant)


@pytest.mark.integration
def test_secrets_are_encrypted_at_rest_and_masked(registry, tenant, settings):
    import psycopg

    password, api_key = f"pw-{uid()}", f"sk-{uid()}"
    registry.create(tenant, "api", "http", {"base_url": "http://127.0.0.1:1"},
                    {"api_key": api_key, "headers": {"X-Token": password}})
    with psycopg.connect(settings.postgres_dsn) as db:
        raw = db.execute("SELECT t::text, encode(secrets, 'escape') FROM aietl_meta.aietl_connections t "
                         "WHERE tenant_id = %s", (tenant,)).fetchone()
    assert password not in raw[0] and api_key not in raw[0]
    assert password not in raw[1] and api_key not in raw[1]

    listed = registry.list(tenant)
    assert listed[0]["secrets"] == {"api_key": "***set***", "headers": "***set***"}
    assert password not in json.dumps(listed) and api_key not in json.dumps(listed)
    conn = registry.get(tenant, "api")
    assert api_key not in repr(conn) and password not in str(conn)

    wrong = ConnectionRegistry(settings.postgres_dsn, SecretCipher([generate_key().encode()]))
    with pytest.raises(SecretsError, match="cannot decrypt"):
        wrong.get(tenant, "api")
    assert wrong.list(tenant)[0]["secrets"] == listed[0]["secrets"]  # listing needs no key


@pytest.mark.integration
def test_schema_creation_is_idempotent_and_concurrent(settings, key, tenant):
    errors = []

    def first_use(i):
        try:
            reg = ConnectionRegistry(settings.postgres_dsn, SecretCipher([key.encode()]))
            reg.create(tenant, f"c{i}", "file", {"folder": "/tmp"})
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(ConnectionRegistry(settings.postgres_dsn, SecretCipher([key.encode()])).list(tenant)) == 6


# ---------------------------------------------------------------- PostgreSQL

@pytest.mark.integration
def test_postgres_introspection(registry, tenant, settings, pg_table):
    registry.create(tenant, "pg", "postgres", pg_params(settings), {"password": settings.postgres_password})
    conn = registry.resolve(tenant, "postgres")

    ok, detail, latency = introspect.test(conn)
    assert ok and detail.startswith("PostgreSQL") and latency > 0
    tables = introspect.list_tables(conn)
    assert pg_table in tables
    assert not any(t.startswith(("pg_catalog.", "information_schema.", "aietl_meta.")) for t in tables)

    cols = {c.name: c for c in introspect.table_schema(conn, pg_table)}
    assert list(cols)[:3] == ["id", "qty", "amount"]
    assert cols["amount"] == Column("amount", "numeric(12,2)", False)
    assert cols["id"].type == "bigint" and not cols["id"].nullable
    assert cols["note"] == Column("note", "text", True)
    assert cols["code"].type == "character varying(8)"
    assert cols["created_at"].type == "timestamp without time zone"
    assert cols["seen_at"].type == "timestamp with time zone"
    assert cols["tags"].type == "text[]" and cols["payload"].type == "jsonb"
    mapped = {n: typemap.to_clickhouse(c.type, c.nullable) for n, c in cols.items()}
    assert mapped["amount"] == "Decimal(12, 2)" and mapped["id"] == "Int64" and mapped["qty"] == "Int32"
    assert mapped["note"] == "Nullable(String)" and mapped["paid"] == "Nullable(UInt8)"
    assert mapped["created_at"] == "Nullable(DateTime)" and mapped["tags"] == "Array(String)"

    rows = introspect.sample_rows(conn, pg_table, limit=1)
    assert len(rows) == 1 and rows[0]["amount"] == Decimal("19.90")
    assert len(introspect.sample_rows(conn, pg_table)) == 2
    with pytest.raises(TableNotFound):
        introspect.table_schema(conn, pg_table + "_missing")
    with pytest.raises(TableNotFound):
        introspect.sample_rows(conn, "aietl_meta.aietl_connections")  # the registry is never a source


@pytest.mark.integration
def test_postgres_reads_are_read_only(settings, pg_table):
    import psycopg

    from services.connectors import postgres

    conn = Connection("t", "pg", "postgres", pg_params(settings), {"password": settings.postgres_password})
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        postgres.run_query(conn, f"DELETE FROM {pg_table}")


@pytest.mark.integration
def test_a_failed_test_reports_why_without_the_password(settings):
    secret = f"wrong-{uid()}"
    conn = Connection("t", "pg", "postgres", pg_params(settings), {"password": secret})
    ok, detail, _ = introspect.test(conn)
    assert not ok and "password authentication failed" in detail and secret not in detail
    down = Connection("t", "pg", "postgres", {**pg_params(settings), "port": 1}, {})
    ok, detail, _ = introspect.test(down)
    assert not ok and detail
    with pytest.raises(introspect.IntrospectionError, match="postgres connection 'pg'"):
        introspect.list_tables(down)


# ---------------------------------------------------------------- ClickHouse (18.16)

@pytest.mark.integration
def test_clickhouse_introspection(registry, tenant, settings, ch_table):
    registry.create(tenant, "ch", "clickhouse", ch_params(settings), ch_secrets(settings))
    conn = registry.get(tenant, "ch")
    ok, detail, _ = introspect.test(conn)
    assert ok and detail.startswith("ClickHouse")
    tables = introspect.list_tables(conn)
    assert ch_table in tables and not any(t.startswith("system.") for t in tables)

    cols = introspect.table_schema(conn, ch_table)
    assert [c.name for c in cols] == ["id", "amount", "city", "ts", "day", "tags", "flag"]
    by_name = {c.name: c for c in cols}
    assert by_name["amount"] == Column("amount", "Decimal(12, 2)", False)
    assert by_name["city"] == Column("city", "String", True)
    assert by_name["tags"].type == "Array(String)"
    assert typemap.to_postgres(by_name["amount"].type) == "numeric(12,2)"
    assert typemap.to_postgres(by_name["ts"].type) == "timestamp without time zone"

    rows = introspect.sample_rows(conn, ch_table, limit=10)
    assert [r["id"] for r in rows] == [1, 2] and rows[0]["amount"] == Decimal("19.90") and rows[1]["city"] is None
    with pytest.raises(TableNotFound):
        introspect.sample_rows(conn, ch_table + "_missing")
    with pytest.raises(TableNotFound):
        introspect.table_schema(conn, "system.tables")


@pytest.mark.integration
def test_clickhouse_reads_are_read_only(settings, ch_table):
    from clickhouse_driver.errors import ServerException

    from services.connectors import clickhouse

    conn = Connection("t", "ch", "clickhouse", ch_params(settings), ch_secrets(settings))
    with pytest.raises(ServerException, match="readonly"):
        clickhouse.ch_execute(conn, f"INSERT INTO {ch_table} (id) VALUES (3)")


@pytest.mark.integration
def test_mapped_postgres_table_is_valid_ddl_on_the_real_clickhouse(registry, tenant, settings, pg_table):
    """PostgreSQL columns → to_clickhouse → CREATE TABLE on the 18.16 server → same types back."""
    conn = Connection("t", "pg", "postgres", pg_params(settings), {"password": settings.postgres_password})
    cols = introspect.table_schema(conn, pg_table)
    ddl_cols = ", ".join(f"`{c.name}` {typemap.to_clickhouse(c.type, c.nullable)}" for c in cols)
    database = f"ct_{uid()}"
    ch(settings, f"CREATE DATABASE {database}")
    try:
        ch(settings, f"CREATE TABLE {database}.copy ({ddl_cols}) ENGINE = MergeTree ORDER BY id")
        ch(settings, f"INSERT INTO {database}.copy (id, qty, amount) VALUES (1, 2, 19.90)")
        back = introspect.table_schema(Connection("t", "ch", "clickhouse", ch_params(settings), ch_secrets(settings)),
                                       f"{database}.copy")
        types = {c.name: (c.type, c.nullable) for c in back}
        assert types["amount"] == ("Decimal(12, 2)", False)
        assert types["note"] == ("String", True)
        assert types["ref"] == ("UUID", True)
        assert types["tags"] == ("Array(String)", False)
        assert ch(settings, f"SELECT toString(amount) FROM {database}.copy") == "19.90\n"
    finally:
        ch(settings, f"DROP DATABASE {database}")


# ---------------------------------------------------------------- files (no server)

@pytest.fixture
def data_folder(tmp_path):
    (tmp_path / "customers.csv").write_text(
        "id,name,city,balance,joined,active,signed_up_at,zip\n"
        "1,Ann,Oslo,10.50,2024-01-02,true,2024-01-02 10:00:00,0150\n"
        "2,Bob,,7.25,2024-02-03,false,2024-02-03T11:30:00,0151\n"
        "3,Cid,Rome,100.00,2024-03-04,true,2024-03-04 12:00:00,0152\n", encoding="utf-8")
    (tmp_path / "events.jsonl").write_text(
        json.dumps({"id": 1, "kind": "click", "tags": ["a", "b"], "meta": {"x": 1}, "at": "2024-05-01T10:00:00Z",
                    "score": 1.5}) + "\n\n"
        + json.dumps({"id": 2, "kind": "view", "tags": [], "score": 2, "extra": True}) + "\n", encoding="utf-8")
    (tmp_path / "items.xml").write_text(
        "<?xml version='1.0'?><catalog><meta>ignored</meta>"
        "<item sku='A1'><name>Pen</name><price>1.20</price><color>red</color><color>blue</color></item>"
        "<item sku='B2'><name>Ink</name><price>3.45</price><stock>7</stock></item>"
        "<item sku='C3'><name>Pad</name><price>2.00</price></item></catalog>", encoding="utf-8")
    (tmp_path / "orders.json").write_text(json.dumps({"data": [{"id": 1, "total": 2.5}, {"id": 2, "total": None}]}))
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": pa.array([1, 2], pa.int64()), "amount": pa.array([Decimal("1.10"), None],
                                                                              pa.decimal128(12, 2)),
                      "names": pa.array([["a"], []], pa.list_(pa.string()))},
                     schema=pa.schema([pa.field("id", pa.int64(), nullable=False),
                                       pa.field("amount", pa.decimal128(12, 2)),
                                       pa.field("names", pa.list_(pa.string()))]))
    pq.write_table(table, tmp_path / "metrics.parquet")
    (tmp_path / "readme.txt").write_text("not data")
    (tmp_path / "sub").mkdir()
    return tmp_path


def file_conn(folder) -> Connection:
    return Connection("t", "files", "file", {"folder": str(folder)}, {})


def test_file_tables_and_types(data_folder):
    conn = file_conn(data_folder)
    assert introspect.test(conn)[0]
    assert introspect.list_tables(conn) == ["customers.csv", "events.jsonl", "items.xml", "metrics.parquet",
                                            "orders.json"]

    csv_cols = {c.name: c for c in introspect.table_schema(conn, "customers.csv")}
    assert csv_cols["id"] == Column("id", "int", False)
    assert csv_cols["city"] == Column("city", "text", True)  # the empty city
    assert csv_cols["balance"].type == "decimal(18,2)"
    assert csv_cols["joined"].type == "date" and csv_cols["active"].type == "bool"
    assert csv_cols["signed_up_at"].type == "timestamp"
    assert csv_cols["zip"].type == "text"  # leading zeros: a code, not a number
    assert typemap.from_inferred(csv_cols["balance"].type, "clickhouse") == "Decimal(18, 2)"
    assert typemap.from_inferred("text", "clickhouse", csv_cols["city"].nullable) == "Nullable(String)"

    ev = {c.name: c for c in introspect.table_schema(conn, "events.jsonl")}
    assert ev["tags"] == Column("tags", "array<text>", False) and ev["meta"] == Column("meta", "json", True)
    assert ev["id"].type == "int" and ev["score"].type == "float" and ev["at"].type == "timestamptz"
    assert ev["extra"] == Column("extra", "bool", True)

    xml = {c.name: c for c in introspect.table_schema(conn, "items.xml")}
    assert xml["sku"] == Column("sku", "text", False) and xml["price"].type == "decimal(18,2)"
    assert xml["stock"] == Column("stock", "int", True) and xml["color"] == Column("color", "array<text>", True)

    pq_cols = introspect.table_schema(conn, "metrics.parquet")
    assert pq_cols == [Column("id", "int", False), Column("amount", "decimal(12,2)", True),
                       Column("names", "array<text>", True)]
    assert [c.type for c in introspect.table_schema(conn, "orders.json")] == ["int", "float"]


def test_file_sample_rows_and_safety(data_folder):
    conn = file_conn(data_folder)
    rows = introspect.sample_rows(conn, "customers.csv", limit=2)
    assert len(rows) == 2 and rows[1]["city"] is None and rows[0]["name"] == "Ann"
    assert introspect.sample_rows(conn, "events.jsonl")[0]["tags"] == ["a", "b"]
    assert [r["sku"] for r in introspect.sample_rows(conn, "items.xml")] == ["A1", "B2", "C3"]
    assert introspect.sample_rows(conn, "metrics.parquet", 1) == [{"id": 1, "amount": Decimal("1.10"),
                                                                    "names": ["a"]}]
    for bad in ("../customers.csv", "/etc/passwd", "readme.txt", "missing.csv", "sub"):
        with pytest.raises(TableNotFound):
            introspect.table_schema(conn, bad)
    (data_folder / "broken.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(introspect.IntrospectionError, match="line 2"):
        introspect.table_schema(conn, "broken.jsonl")
    ok, detail, _ = introspect.test(file_conn(data_folder / "nope"))
    assert not ok and "does not exist" in detail


def test_sqlite_introspection(tmp_path):
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price NUMERIC(8,2))")
        db.execute("INSERT INTO items VALUES (1, 'pen', 1.5)")
    conn = Connection("t", "lite", "sqlite", {"path": str(path)}, {})
    assert introspect.test(conn)[0]
    assert introspect.list_tables(conn) == ["items"]
    assert introspect.table_schema(conn, "items") == [Column("id", "INTEGER", False), Column("name", "TEXT", False),
                                                      Column("price", "NUMERIC(8,2)", True)]
    assert introspect.sample_rows(conn, "items") == [{"id": 1, "name": "pen", "price": 1.5}]
    with pytest.raises(TableNotFound):
        introspect.sample_rows(conn, 'items"; DROP TABLE items; --')


def test_http_api_introspection(monkeypatch):
    monkeypatch.setenv("AIETL_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")  # the local API (docs/SECURITY.md)
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            seen["auth"] = self.headers.get("Authorization")
            body = json.dumps({"data": {"items": [{"id": 1, "name": "a"}, {"id": 2, "name": None}]}}).encode()
            self.send_response(200 if self.path != "/health" else 204)
            self.end_headers()
            self.wfile.write(body if self.path != "/health" else b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = Connection("t", "api", "http", {"base_url": f"http://127.0.0.1:{server.server_port}",
                                               "endpoints": ["/items"], "records_path": "data.items",
                                               "health_path": "/health"}, {"api_key": "sk-test-123"})
        assert introspect.test(conn)[:2] == (True, "HTTP 204")
        assert seen["auth"] == "Bearer sk-test-123"
        assert introspect.list_tables(conn) == ["/items"]
        assert introspect.table_schema(conn, "/items") == [Column("id", "int", False), Column("name", "text", True)]
        assert len(introspect.sample_rows(conn, "/items", 1)) == 1
        with pytest.raises(TableNotFound):
            introspect.table_schema(conn, "http://evil.example/")
    finally:
        server.shutdown()


# ---------------------------------------------------------------- Kafka

@pytest.fixture
def kafka_topic(settings):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_conf(settings))
    topic = f"ct-connections-{uid()}"
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    producer = Producer(client_conf(settings))
    for i in range(5):
        value = {"order_id": i, "amount": 10.5 + i, "status": "paid", "ts": f"2024-05-0{i + 1}T10:00:00",
                 "items": [i, i + 1]}
        if i == 4:
            value["coupon"] = "X"
        producer.produce(topic, key=str(i).encode(), value=json.dumps(value).encode())
    assert producer.flush(30) == 0
    yield topic
    admin.delete_topics([topic])[topic].result(30)


@pytest.mark.integration
def test_kafka_introspection(registry, tenant, settings, kafka_topic, monkeypatch):
    # The test broker is the platform's own: only topics an admin shares are visible (docs/SECURITY.md).
    monkeypatch.setenv("AIETL_KAFKA_SHARED_TOPICS", kafka_topic)
    registry.create(tenant, "bus", "kafka", {"bootstrap": settings.kafka_bootstrap})
    conn = registry.resolve(tenant, "kafka")
    ok, detail, _ = introspect.test(conn)
    assert ok and "broker" in detail
    topics = introspect.list_tables(conn)
    assert kafka_topic in topics and not any(t.startswith("__") for t in topics)

    cols = {c.name: c for c in introspect.table_schema(conn, kafka_topic)}
    assert cols["order_id"] == Column("order_id", "int", False)
    assert cols["amount"].type == "float" and cols["status"].type == "text"
    assert cols["ts"].type == "timestamp" and cols["items"].type == "array<int>"
    assert cols["coupon"] == Column("coupon", "text", True)
    rows = introspect.sample_rows(conn, kafka_topic, limit=10)
    assert sorted(r["order_id"] for r in rows) == [0, 1, 2, 3, 4]
    assert len(introspect.sample_rows(conn, kafka_topic, limit=3)) == 3
    with pytest.raises(TableNotFound):
        introspect.table_schema(conn, f"{kafka_topic}-missing")


@pytest.mark.integration
def test_kafka_avro_messages_of_our_schemas_are_decoded(settings, monkeypatch):
    monkeypatch.setenv("AIETL_KAFKA_SHARED_TOPICS", "ct-connections-avro-*")  # the platform's broker
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from services.connectors.kafka_topics import decode_value
    from services.core.avro import build_codec
    from services.core.messages import Message, new_envelope

    name = "aietl.pipelines.v1.PipelineRequested"
    payload = {"description": "copy orders", "name": "orders", "labels": {}}
    msg = Message(name, new_envelope(name, tenant_id="t1", actor="test", pipeline_id="p1"), payload)
    admin = AdminClient(client_conf(settings))
    topic = f"ct-connections-avro-{uid()}"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    try:
        producer = Producer(client_conf(settings))
        producer.produce(topic, value=build_codec().encode(name, msg.to_record()))
        assert producer.flush(30) == 0
        conn = Connection("t", "bus", "kafka", {"bootstrap": settings.kafka_bootstrap}, {})
        cols = {c.name: c for c in introspect.table_schema(conn, topic)}
        assert cols["description"].type == "text" and cols["envelope"].type == "json"
    finally:
        admin.delete_topics([topic])[topic].result(30)
    assert decode_value(b'{"a": 1}') == {"a": 1} and decode_value(b"plain") == {"value": "plain"}
    with pytest.raises(introspect.IntrospectionError, match="unknown schema fingerprint"):
        decode_value(b"\xc3\x01" + b"\x00" * 8 + b"x")


# ---------------------------------------------------------------- HTTP API

@pytest.fixture
def client(settings, key, tenant):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from gateway_api import problems
    from gateway_api.app import _redis
    from gateway_api.routers import connections
    from services.identity.keys import build_store
    from services.projector.readmodel import Keys

    app = FastAPI()
    problems.install(app)
    app.include_router(connections.router)
    # The routes act for the tenant of the caller's key (an admin: it creates and introspects).
    store = build_store(settings)
    api_key, info = store.create(tenant, "admin", name="test_connections")
    ns = f"t-conn-{uid()}:"
    app.state.deps = SimpleNamespace(settings=load_settings(secret_key=key), redis=_redis(settings), keys=Keys(ns))
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {api_key}"}) as c:
            yield c
            c.portal.call(_drop_keys, app.state.deps.redis, ns)
    finally:
        store.delete([info.prefix])


async def _drop_keys(redis, ns):
    async for k in redis.scan_iter(f"{ns}*"):
        await redis.delete(k)
    await redis.aclose()


@pytest.mark.integration
def test_http_routes(client, settings, pg_table):
    assert not hasattr(client.app.state, "connection_registry")  # built lazily, on first use
    body = {"name": "shop", "kind": "postgres", "params": pg_params(settings),
            "secrets": {"password": settings.postgres_password}, "is_default": True}
    r = client.post("/api/v1/connections", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/api/v1/connections/shop"
    assert r.json()["secrets"] == {"password": "***set***"} and "password" not in r.json()["params"]

    dup = client.post("/api/v1/connections", json=body)
    assert dup.status_code == 409 and dup.headers["content-type"].startswith("application/problem+json")
    assert "already exists" in dup.json()["detail"]
    extra = client.post("/api/v1/connections", json={**body, "name": "other", "owner": "me"})
    assert extra.status_code == 422 and "owner" in extra.json()["detail"]
    bad_kind = client.post("/api/v1/connections", json={**body, "name": "other", "kind": "oracle"})
    assert bad_kind.status_code == 422
    missing = client.post("/api/v1/connections", json={"name": "other", "kind": "postgres", "params": {}})
    assert missing.status_code == 422 and "needs params" in missing.json()["detail"]
    in_params = client.post("/api/v1/connections", json={**body, "name": "other",
                                                         "params": {**body["params"], "password": "x"}})
    assert in_params.status_code == 422 and "secrets" in in_params.json()["detail"]

    listed = client.get("/api/v1/connections").json()["items"]
    assert [c["name"] for c in listed] == ["shop"] and listed[0]["secrets"] == {"password": "***set***"}
    assert client.get("/api/v1/connections/shop").json()["is_default"] is True

    tested = client.post("/api/v1/connections/shop/test").json()
    assert tested["ok"] is True and tested["latency_ms"] > 0
    assert pg_table in client.get("/api/v1/connections/shop/tables").json()["tables"]
    schema = client.get(f"/api/v1/connections/shop/tables/{pg_table}/schema").json()
    amount = next(c for c in schema["columns"] if c["name"] == "amount")
    assert amount["type"] == "numeric(12,2)" and amount["nullable"] is False
    assert amount["mapped"] == {"clickhouse": "Decimal(12, 2)", "postgres": "numeric(12,2)",
                                "duckdb": "DECIMAL(12,2)"}
    sample = client.get(f"/api/v1/connections/shop/tables/{pg_table}/sample", params={"limit": 1}).json()
    assert sample["rows"][0]["amount"] == "19.90"
    missing_table = client.get(f"/api/v1/connections/shop/tables/{pg_table}_nope/schema")
    assert missing_table.status_code == 404

    assert client.delete("/api/v1/connections/shop").status_code == 204
    gone = client.get("/api/v1/connections/shop")
    assert gone.status_code == 404 and gone.headers["content-type"].startswith("application/problem+json")
    assert client.delete("/api/v1/connections/shop").status_code == 404
