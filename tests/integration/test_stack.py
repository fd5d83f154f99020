"""The local stack (infra.stack) against the real servers: Kafka, Redis, ClickHouse, PostgreSQL."""
from __future__ import annotations

import time

import pytest

from infra import stack
from infra.clickhouse_migrations import apply_migrations, discover, http_query, split_statements
from services.core.settings import load_settings
from services.core.kafka_auth import client_conf

ANALYTICS_TABLES = {"pipeline_runs", "run_batches", "llm_calls", "api_requests", "audit_log", "execution_logs"}
HOURLY_VIEWS = {"pipeline_runs_hourly_mv", "llm_calls_hourly_mv"}


@pytest.fixture(scope="module")
def settings():
    s = load_settings()
    stack.up(s, log=lambda _m: None)  # idempotent: a no-op when the session already brought it up
    return s


def _rows(settings, sql: str) -> list[list[str]]:
    return [line.split("\t") for line in http_query(settings, sql).splitlines() if line]


@pytest.mark.integration
def test_every_component_healthy(settings):
    statuses = stack.status(settings)
    assert [s.name for s in statuses] == ["kafka", "redis", "clickhouse", "postgres"]
    for s in statuses:
        assert s.healthy, f"{s.name} at {s.address}: {s.detail}"
        assert s.address


@pytest.mark.integration
def test_second_up_is_idempotent_and_fast(settings):
    before = {s.name: (s.managed, s.pid) for s in stack.status(settings)}
    logged: list[str] = []
    t0 = time.monotonic()
    again = stack.up(settings, log=logged.append)
    elapsed = time.monotonic() - t0
    assert elapsed < 15, f"second up took {elapsed:.1f}s"
    assert all(s.healthy for s in again)
    assert {s.name: (s.managed, s.pid) for s in again} == before  # nothing restarted or replaced
    assert not [m for m in logged if m.startswith(("starting", "initdb", "formatting", "apt-get"))], logged


@pytest.mark.integration
def test_clickhouse_has_analytics_tables_and_hourly_views(settings):
    db = settings.clickhouse_database
    rows = _rows(settings, f"SELECT name, engine FROM system.tables WHERE database = '{db}'")
    engines = dict((name, engine) for name, engine in rows)
    assert ANALYTICS_TABLES <= set(engines), sorted(engines)
    for t in ANALYTICS_TABLES:
        assert engines[t] == "MergeTree", (t, engines[t])
    views = {name for name, engine in engines.items() if engine == "MaterializedView"}
    assert HOURLY_VIEWS <= views, views


@pytest.mark.integration
def test_hourly_view_rolls_up_inserts(settings):
    db = settings.clickhouse_database
    tenant = f"test-stack-{int(time.time() * 1000)}"
    http_query(settings, f"INSERT INTO {db}.llm_calls (ts, tenant_id, request_id, provider, model, task, status,"
                         f" cache, prompt_tokens, completion_tokens, cost_usd, latency_ms) VALUES "
                         f"(now(), '{tenant}', 'r1', 'builtin', 'm', 'plan', 'ok', 'miss', 10, 5, 0.5, 100),"
                         f"(now(), '{tenant}', 'r2', 'builtin', 'm', 'plan', 'error', 'exact', 1, 0, 0, 7)")
    got = _rows(settings, f"SELECT sum(calls), sum(errors), sum(cache_hits), sum(total_prompt_tokens) "
                          f"FROM {db}.llm_calls_hourly WHERE tenant_id = '{tenant}'")
    assert got == [["2", "1", "1", "11"]]


@pytest.mark.integration
def test_migrations_recorded_once(settings):
    db = settings.clickhouse_database
    assert apply_migrations(settings, log=lambda _m: None) == []  # already applied: nothing to do
    rows = _rows(settings, f"SELECT version, count() FROM {db}.schema_migrations GROUP BY version ORDER BY version")
    assert [int(v) for v, _ in rows] == [m.version for m in discover()]
    assert all(c == "1" for _, c in rows), rows


@pytest.mark.integration
def test_postgres_role_can_create_schemas(settings):
    import psycopg
    with psycopg.connect(settings.postgres_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS test_stack_probe")
        conn.execute("DROP SCHEMA test_stack_probe")
        assert conn.execute("SELECT current_user").fetchone()[0] == settings.postgres_user


@pytest.mark.integration
def test_redis_and_kafka_answer(settings):
    import redis
    from confluent_kafka.admin import AdminClient
    r = redis.Redis.from_url(settings.redis_url)
    assert r.ping()
    md = AdminClient(client_conf(settings)).list_topics(timeout=10)
    assert md.brokers


def test_split_statements_respects_quotes_and_comments():
    sql = """-- a; comment
    CREATE TABLE t (a String DEFAULT 'x;y'); /* block; */ SELECT "q;";
    ;  -- trailing only
    """
    assert split_statements(sql) == ["-- a; comment\n    CREATE TABLE t (a String DEFAULT 'x;y')",
                                     '/* block; */ SELECT "q;"']


def test_migrations_are_numbered_and_use_placeholder():
    found = discover()
    assert found and found[0].version == 1
    assert "{{database}}" not in found[0].sql("somedb")
    for m in found:  # must also run on ClickHouse 18.16 (the Debian package)
        code = "\n".join(line for line in m.sql("x").splitlines() if not line.strip().startswith("--"))
        for banned in ("Map(", "DateTime64", "LowCardinality"):
            assert banned not in code, (m.name, banned)
