"""The tenant catalog against the real PostgreSQL, ClickHouse and Redis of the stack.

Tables live in a schema / database of their own (named to sort first, so the per-connection table cap
cannot leave them out); the tenant's connections, the schema, the database and the cache key are removed
afterwards.
"""
from __future__ import annotations

import uuid
from datetime import date

import pytest

pytest.importorskip("cryptography")

from services.connectors.catalog import TenantCatalog, build_catalog  # noqa: E402
from services.connectors.registry import ConnectionRegistry  # noqa: E402
from services.connectors.secrets import SecretCipher, generate_key  # noqa: E402
from services.core.settings import load_settings  # noqa: E402

pytestmark = pytest.mark.integration


def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture
def tenant(settings):
    name = f"t-cat-{uid()}"
    yield name
    import psycopg

    with psycopg.connect(settings.postgres_dsn, autocommit=True) as db:
        db.execute("DELETE FROM aietl_meta.aietl_connections WHERE tenant_id = %s", (name,))


@pytest.fixture
def registry(settings, tenant):
    reg = ConnectionRegistry(settings.postgres_dsn, SecretCipher([generate_key().encode()]))
    reg.create(tenant, "wh", "postgres", {"host": settings.postgres_host, "port": settings.postgres_port,
                                          "database": settings.postgres_db, "user": settings.postgres_user},
               {"password": settings.postgres_password}, is_default=True)
    reg.create(tenant, "ch", "clickhouse", {"host": settings.clickhouse_host, "port": settings.clickhouse_port,
                                            "user": settings.clickhouse_user},
               {"password": settings.clickhouse_password} if settings.clickhouse_password else {})
    return reg


@pytest.fixture
def tables(settings):
    import psycopg
    from clickhouse_driver import Client

    name = f"a0cat_{uid()}"
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as db:
        db.execute(f"""CREATE SCHEMA {name};
            CREATE TABLE {name}.order_lines (order_id bigint, qty integer, unit_price numeric(12,2),
                                             note text, created_at timestamp);
            INSERT INTO {name}.order_lines
            SELECT i % 3, i, 1.50 * i, repeat('x', 60), timestamp '2024-05-01' + i * interval '1 day'
              FROM generate_series(1, 30) i;""")
    ch = Client(settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                password=settings.clickhouse_password or "")
    ch.execute(f"CREATE DATABASE {name}")
    ch.execute(f"CREATE TABLE {name}.payments (payment_id UInt64, amt Nullable(Decimal(12, 2)), paid_on Date) "
               "ENGINE = MergeTree ORDER BY payment_id")
    ch.execute(f"INSERT INTO {name}.payments VALUES", [(1, None, date(2024, 5, 1)), (2, 7, date(2024, 5, 2))])
    yield name
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {name} CASCADE")
    ch.execute(f"DROP DATABASE IF EXISTS {name}")
    ch.disconnect()


def _table(catalog: dict, conn: str, name: str) -> dict:
    [c] = [c for c in catalog["connections"] if c["name"] == conn]
    found = [t for t in c["tables"] if t["name"] == name]
    assert found, f"{name} not in {conn}: {[t['name'] for t in c['tables']][:20]}"
    return found[0]


def test_the_catalog_lists_real_tables_columns_types_and_a_few_distinct_short_samples(settings, registry, tenant,
                                                                                      tables):
    catalog = build_catalog(registry, tenant, hidden=(settings.clickhouse_database,))
    conns = {c["name"]: c for c in catalog["connections"]}
    assert {n: (c["kind"], c["default"]) for n, c in conns.items()} == {"wh": ("postgres", True),
                                                                       "ch": ("clickhouse", True)}
    lines = _table(catalog, "wh", f"{tables}.order_lines")
    cols = {c["name"]: c for c in lines["columns"]}
    assert list(cols) == ["order_id", "qty", "unit_price", "note", "created_at"]  # definition order
    assert cols["unit_price"]["type"] == "numeric(12,2)" and cols["created_at"]["type"].startswith("timestamp")
    assert sorted(cols["order_id"]["samples"]) == ["0", "1", "2"]  # distinct values only
    assert cols["qty"]["samples"] == ["1", "2", "3", "4", "5"]  # at most five
    assert cols["note"]["samples"] == ["x" * 40]  # short: cut to 40 characters
    pay = {c["name"]: c for c in _table(catalog, "ch", f"{tables}.payments")["columns"]}
    assert pay["amt"]["type"] == "Decimal(12, 2)" and pay["amt"]["samples"] == ["7"]  # NULL is no sample
    assert pay["paid_on"]["samples"] == ["2024-05-01", "2024-05-02"]
    # The platform's own schemas never appear: its registry, ClickHouse's system tables, its metrics database.
    names = [t["name"] for c in catalog["connections"] for t in c["tables"]]
    assert not [n for n in names if n.split(".")[0] in ("aietl_meta", "system", "information_schema",
                                                          "pg_catalog", settings.clickhouse_database)]


def test_the_catalog_is_cached_per_tenant_and_refreshed_on_demand(settings, registry, tenant, tables):
    import psycopg
    import redis

    r = redis.Redis.from_url(settings.redis_url)
    prefix = f"t{uid()}-cat."
    cat = TenantCatalog(registry, r, prefix, ttl_s=60)
    try:
        first = cat.get(tenant)
        assert r.exists(f"{prefix}catalog:{tenant}") and 0 < r.ttl(f"{prefix}catalog:{tenant}") <= 60
        with psycopg.connect(settings.postgres_dsn, autocommit=True) as db:
            db.execute(f"CREATE TABLE {tables}.refunds (refund_id bigint)")
        cached = cat.get(tenant)
        assert cached == first  # within the TTL: the cached catalog, without reading the servers
        assert f"{tables}.refunds" not in [t["name"] for t in cached["connections"][1]["tables"]] + \
            [t["name"] for t in cached["connections"][0]["tables"]]
        fresh = cat.get(tenant, refresh=True)
        assert _table(fresh, "wh", f"{tables}.refunds")["columns"] == [
            {"name": "refund_id", "type": "bigint", "samples": []}]
        assert cat.get(tenant) == fresh
    finally:
        r.delete(f"{prefix}catalog:{tenant}")
        r.close()


def test_a_connection_registered_after_the_catalog_was_cached_is_in_the_next_catalog(settings, tenant, tables):
    """A worker warms the catalog at start, before the tenant's connections exist: the cached (empty) catalog
    must not outlive the registration (the first drafts of a fresh deployment asked which database held a
    table its connection had)."""
    import redis

    reg = ConnectionRegistry(settings.postgres_dsn, SecretCipher([generate_key().encode()]))
    r = redis.Redis.from_url(settings.redis_url)
    prefix = f"t{uid()}-cat."
    cat = TenantCatalog(reg, r, prefix, ttl_s=600)
    try:
        assert cat.get(tenant)["connections"] == []
        reg.create(tenant, "wh", "postgres", {"host": settings.postgres_host, "port": settings.postgres_port,
                                              "database": settings.postgres_db, "user": settings.postgres_user},
                   {"password": settings.postgres_password}, is_default=True)
        _table(cat.get(tenant), "wh", f"{tables}.order_lines")
        reg.delete(tenant, "wh")
        assert cat.get(tenant)["connections"] == []
    finally:
        r.delete(f"{prefix}catalog:{tenant}")
        r.close()


def test_an_unreachable_connection_is_reported_without_hiding_the_others(settings, registry, tenant, tables):
    registry.create(tenant, "down", "postgres", {"host": "127.0.0.1", "port": 1, "database": "x", "user": "x"})
    catalog = build_catalog(registry, tenant)
    down = next(c for c in catalog["connections"] if c["name"] == "down")
    assert down["tables"] == [] and "127.0.0.1" in down["error"]
    _table(catalog, "wh", f"{tables}.order_lines")


def test_a_text_column_with_few_values_lists_them_all_and_a_name_like_column_does_not(settings, registry, tenant,
                                                                                      tables):
    import psycopg

    statuses = ["open", "closed", "on_hold", "in-review", "lost", "won", "new"]
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {tables}.tickets (ticket_id integer, state text, owner text, score integer)")
        db.execute(f"""INSERT INTO {tables}.tickets
            SELECT i, (%s::text[])[1 + i %% 7], 'owner ' || i, i %% 3 FROM generate_series(1, 200) i""",
                   (statuses,))
    catalog = build_catalog(registry, tenant, hidden=(settings.clickhouse_database,))
    cols = {c["name"]: c for c in _table(catalog, "wh", f"{tables}.tickets")["columns"]}
    assert sorted(cols["state"]["samples"]) == sorted(statuses) and cols["state"]["values"] is True
    assert len(cols["owner"]["samples"]) == 5 and "values" not in cols["owner"]  # 200 distinct: no category
    assert "values" not in cols["score"]  # numbers are compared as numbers, never linked as words


def test_primary_keys_are_listed_for_postgres_tables_and_clickhouse_replacing_tables_only(settings, registry, tenant,
                                                                                          tables):
    """The key a sync without 'upserting on ...' uses: PostgreSQL's primary key in key order, the sorting key of
    a Replacing engine; a table without one (and a plain MergeTree's ORDER BY) lists none."""
    import psycopg
    from clickhouse_driver import Client

    with psycopg.connect(settings.postgres_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {tables}.visits (clinic text, visit_no int, seen_on date, "
                   f"PRIMARY KEY (visit_no, clinic))")
    ch = Client(settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                password=settings.clickhouse_password or "")
    try:
        ch.execute(f"CREATE TABLE {tables}.readings (sensor String, at DateTime, v Float64) "
                   "ENGINE = ReplacingMergeTree ORDER BY (sensor, at)")
        ch.execute(f"CREATE TABLE {tables}.by_day (at DateTime, v Float64) "
                   "ENGINE = ReplacingMergeTree ORDER BY toDate(at)")
    finally:
        ch.disconnect()
    catalog = build_catalog(registry, tenant, hidden=(settings.clickhouse_database,))
    assert _table(catalog, "wh", f"{tables}.visits")["primary_key"] == ["visit_no", "clinic"]
    assert "primary_key" not in _table(catalog, "wh", f"{tables}.order_lines")
    assert _table(catalog, "ch", f"{tables}.readings")["primary_key"] == ["sensor", "at"]
    assert "primary_key" not in _table(catalog, "ch", f"{tables}.payments")  # MergeTree: ORDER BY is no key
    assert "primary_key" not in _table(catalog, "ch", f"{tables}.by_day")  # an expression, not columns
