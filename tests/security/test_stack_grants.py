"""The local stack's servers give each client only the grants it needs (docs/SECURITY.md §12): a Redis ACL
user per role of process, a PostgreSQL platform role that is no superuser and a demo role that reads the
demo data but not the platform's schema, a ClickHouse demo user confined to its databases. Each attack is
tried against the real servers and must be refused by the server itself; what a test makes it removes."""
from __future__ import annotations

import uuid
from datetime import date
from urllib.parse import urlparse

import pytest
import redis

from services.core.settings import load_settings
from services.core.stack_secrets import REDIS_ROLES, ROLE_OF_PRINCIPAL

PREFIX = f"t0grant-{uuid.uuid4().hex[:8]}."
NS = f"{PREFIX}rm:"


@pytest.fixture(scope="module")
def settings():
    s = load_settings()
    if s.redis_url == s.redis_url_configured:
        pytest.fail("the local stack has no derived Redis password: run `aietl up` first")
    return s


def as_process(settings, principal: str) -> redis.Redis:
    """A Redis client with the URL the process ``principal`` derives (services/core/stack_secrets.py)."""
    return redis.Redis.from_url(load_settings(kafka_principal=principal).redis_url, socket_timeout=5)


@pytest.fixture(scope="module")
def admin(settings):
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    yield client
    for key in client.scan_iter(match=f"{PREFIX}*", count=500):
        client.delete(key)
    client.close()


# ---------------------------------------------------------------------------------------------- Redis


def test_an_unauthenticated_redis_client_is_refused(settings):
    bare = redis.Redis.from_url(settings.redis_url_configured, socket_timeout=5)
    with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
        bare.set(f"{NS}pipeline:x", "{}")
    # a process that uses no Redis derives no credentials, so it is refused just the same
    assert "@" not in load_settings(kafka_principal="scheduler").redis_url
    with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
        as_process(settings, "scheduler").get(f"{NS}pipeline:x")


def test_every_role_has_its_own_user_and_password(settings, admin):
    urls = {p: load_settings(kafka_principal=p).redis_url for p in ROLE_OF_PRINCIPAL}
    assert len(set(urls.values())) == len(urls)  # no two roles share credentials
    for principal, role in ROLE_OF_PRINCIPAL.items():
        assert as_process(settings, principal).ping(), principal
        if role != "default":
            assert admin.acl_getuser(role)["enabled"], role
    assert set(REDIS_ROLES) <= {u if isinstance(u, str) else u.decode() for u in admin.acl_users()}


def test_a_child_process_never_inherits_the_parents_redis_password(settings):
    from services.processes import settings_env

    assert settings_env(settings)["AIETL_REDIS_URL"] == settings.redis_url_configured
    configured = urlparse(settings.redis_url_configured)
    assert (configured.username, configured.password) == (None, None)


def test_the_gateway_reads_the_read_model_but_cannot_write_it_or_flush(settings, admin):
    admin.set(f"{NS}pipeline:p1", '{"tenant_id": "a"}')
    gw = as_process(settings, "gateway")
    assert gw.get(f"{NS}pipeline:p1") == b'{"tenant_id": "a"}'
    for attempt in (lambda: gw.set(f"{NS}pipeline:p1", '{"tenant_id": "evil"}'),
                    lambda: gw.delete(f"{NS}pipeline:p1"),
                    lambda: gw.rpush(f"{NS}pipeline:p1:events", "{}"),
                    lambda: gw.hset(f"{NS}offsets", "t:0", 0),
                    lambda: gw.set(f"{PREFIX}executor:lease:p1", "me"),
                    lambda: gw.publish(f"{NS}pipeline:p1:live", "{}"),
                    gw.flushall, gw.flushdb, lambda: gw.config_get("requirepass"), lambda: gw.keys("*"),
                    lambda: gw.acl_list()):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert admin.get(f"{NS}pipeline:p1") == b'{"tenant_id": "a"}'
    # what the gateway writes itself: its counters and webhook replay guards
    assert gw.incr(f"{NS}limit:rate:who") == 1
    assert gw.set(f"{NS}hook:p1:seen:sig", 1, nx=True, ex=60)


def test_workers_reach_only_their_own_keys(settings, admin):
    projector, executor, router = (as_process(settings, p) for p in ("projector", "executor", "llm-router"))
    assert projector.set(f"{NS}pipeline:p2", "{}") and projector.publish(f"{NS}pipeline:p2:live", "{}") == 0
    assert executor.set(f"{PREFIX}executor:lease:p2", "me", nx=True, px=1000)
    assert router.incr(f"{PREFIX}llm:stats:calls") == 1
    for attempt in (lambda: projector.incr(f"{NS}limit:rate:who"),        # the gateway's counters
                    lambda: projector.set(f"{PREFIX}executor:lease:p2", "x"),
                    lambda: executor.set(f"{NS}pipeline:p2", "{}"),
                    lambda: router.get(f"{NS}pipeline:p2"),
                    lambda: as_process(settings, "planner").get(f"{PREFIX}llm:stats:calls"),
                    projector.flushall, executor.flushdb, lambda: router.config_set("appendonly", "no")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()


# ----------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def demo_pg(settings):
    import psycopg

    from services.demo.load import ensure_demo_data

    ensure_demo_data(settings)  # what `aietl demo` does first: the shop schema, readable by the demo role
    with psycopg.connect(host=settings.postgres_host, port=settings.postgres_port, dbname=settings.postgres_db,
                         user=settings.postgres_demo_user, password=settings.postgres_demo_password,
                         autocommit=True, connect_timeout=5) as conn:
        yield conn


def test_neither_postgres_role_is_a_superuser(settings):
    import psycopg

    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        rows = dict(conn.execute("SELECT rolname, rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls "
                                 "FROM pg_roles WHERE rolname IN (%s, %s)",
                                 (settings.postgres_user, settings.postgres_demo_user)).fetchall())
        assert rows == {settings.postgres_user: False, settings.postgres_demo_user: False}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE t0grant_evil LOGIN SUPERUSER")


def test_the_demo_role_reads_the_demo_data_and_nothing_of_the_platform(demo_pg):
    import psycopg

    assert demo_pg.execute("SELECT count(*) FROM shop.orders").fetchone()[0] > 0
    for attack in ("CREATE ROLE t0grant_evil LOGIN",
                   "SELECT * FROM aietl_meta.aietl_api_keys",
                   "SELECT * FROM aietl_meta.aietl_connections",
                   "SELECT rolpassword FROM pg_authid",
                   "DELETE FROM shop.orders",
                   "CREATE TABLE aietl_meta.t0grant_shadow (x int)",
                   "SELECT pg_read_file('postgresql.conf')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            demo_pg.execute(attack)


def test_the_demo_role_writes_only_what_it_creates(demo_pg):
    schema = f"t0grant_{uuid.uuid4().hex[:8]}"
    demo_pg.execute(f"CREATE SCHEMA {schema}")
    try:
        demo_pg.execute(f"CREATE TABLE {schema}.t (x int)")
        demo_pg.execute(f"INSERT INTO {schema}.t VALUES (1)")
        assert demo_pg.execute(f"SELECT count(*) FROM {schema}.t").fetchone()[0] == 1
        # a merge load stages its batch in a temp table (seen: every merge into PostgreSQL failed without it)
        demo_pg.execute(f"CREATE TEMP TABLE t0grant_stage (LIKE {schema}.t)")
        demo_pg.execute("DROP TABLE t0grant_stage")
    finally:
        demo_pg.execute(f"DROP SCHEMA {schema} CASCADE")


# ----------------------------------------------------------------------------------------- ClickHouse


def _ch_client(settings, user: str, password: str):
    from clickhouse_driver import Client

    return Client(settings.clickhouse_host, port=settings.clickhouse_port, user=user, password=password)


@pytest.fixture(scope="module")
def ch_admin(settings):
    client = _ch_client(settings, settings.clickhouse_user, settings.clickhouse_password)
    yield client
    client.disconnect()


@pytest.fixture(scope="module")
def ch_demo(settings):
    client = _ch_client(settings, settings.clickhouse_demo_user, settings.clickhouse_demo_password)
    yield client
    client.disconnect()


@pytest.fixture
def other_tenant_db(ch_admin):
    db = f"t0grant_{uuid.uuid4().hex[:8]}"
    ch_admin.execute(f"CREATE DATABASE {db}")
    ch_admin.execute(f"CREATE TABLE {db}.secrets (x String) ENGINE = MergeTree ORDER BY x")
    ch_admin.execute(f"INSERT INTO {db}.secrets VALUES", [("theirs",)])
    yield db
    ch_admin.execute(f"DROP DATABASE IF EXISTS {db}")


def test_the_clickhouse_demo_user_sees_only_its_databases(settings, ch_demo, other_tenant_db):
    from clickhouse_driver.errors import ServerException

    for attack in (f"SELECT * FROM {other_tenant_db}.secrets",
                   f"SELECT count() FROM {settings.clickhouse_database}.audit_log",
                   f"CREATE DATABASE {other_tenant_db}_2", f"DROP DATABASE {other_tenant_db}"):
        with pytest.raises(ServerException) as info:
            ch_demo.execute(attack)
        assert info.value.code == 291, attack  # DATABASE_ACCESS_DENIED
    # what the client needs (connector introspection) answers, listing only its own databases
    listed = {db for (db,) in ch_demo.execute("SELECT name FROM system.databases")}
    assert listed <= {*settings.clickhouse_demo_databases.split(","), "system"}
    assert other_tenant_db not in {db for (db,) in ch_demo.execute("SELECT DISTINCT database FROM system.tables")}


def test_the_clickhouse_demo_user_writes_where_the_demo_writes(ch_demo):
    table = f"analytics.t0grant_{uuid.uuid4().hex[:8]}"
    ch_demo.execute("CREATE DATABASE IF NOT EXISTS analytics")
    ch_demo.execute(f"CREATE TABLE {table} (d Date, v Float64) ENGINE = MergeTree ORDER BY d")
    try:
        ch_demo.execute(f"INSERT INTO {table} VALUES", [(date(2026, 1, 1), 1.5)])
        assert ch_demo.execute(f"SELECT sum(v) FROM {table}") == [(1.5,)]
    finally:
        ch_demo.execute(f"DROP TABLE IF EXISTS {table}")


def test_the_demo_role_may_load_into_public_and_the_platform_role_can_clean_up(settings, demo_pg):
    import psycopg

    table = f"public.t0grant_{uuid.uuid4().hex[:8]}"
    demo_pg.execute(f"CREATE TABLE {table} (x int)")
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as platform:
        assert platform.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
        platform.execute(f"DROP TABLE {table}")
    # the demo role is no member of the platform role: membership goes one way only
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        demo_pg.execute(f"SET ROLE {settings.postgres_user}")
