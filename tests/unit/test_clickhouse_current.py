"""The ClickHouse DDL must also work on current ClickHouse, not only on the 18.16 OS package the stack runs:
the migrations (tables, hourly materialized views) and the target tables the SQL expert generates are
applied here to chDB, current ClickHouse in-process (no server), and rows flow through the views."""
import json

import pytest

chdb = pytest.importorskip("chdb")

from infra.clickhouse_migrations import discover, split_statements  # noqa: E402


@pytest.fixture
def session(tmp_path):
    from chdb import session as chs

    s = chs.Session(str(tmp_path / "chdb"))
    yield s
    s.cleanup() if hasattr(s, "cleanup") else s.close()


def rows(session, sql):
    out = session.query(sql, "JSONEachRow").bytes().decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_every_migration_applies_on_current_clickhouse_and_the_hourly_view_rolls_up(session):
    version = rows(session, "SELECT version() AS v")[0]["v"]
    assert int(version.split(".")[0]) >= 24, version
    for migration in discover():
        for stmt in split_statements(migration.sql("aietl_cur")):
            session.query(stmt)
    session.query("INSERT INTO aietl_cur.pipeline_runs (ts, tenant_id, pipeline_id, run_id, status, rows_written, "
                  "duration_ms) VALUES (now(), 't', 'p', 'r1', 'succeeded', 10, 5), (now(), 't', 'p', 'r2', "
                  "'succeeded', 7, 3)")
    got = rows(session, "SELECT sum(runs) AS runs, sum(total_rows_written) AS w FROM aietl_cur.pipeline_runs_hourly "
                        "WHERE pipeline_id = 'p' AND status = 'succeeded'")
    assert got == [{"runs": "2", "w": "17"}] or got == [{"runs": 2, "w": 17}]


@pytest.mark.parametrize("request_text", [
    "Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.orders",
    "Sync shop.orders from PostgreSQL into ClickHouse analytics.orders_latest, upserting on order_id",
    "Load only paid orders with a positive amount from PostgreSQL shop.orders into ClickHouse "
    "analytics.daily_revenue, summing amount per day",
])
def test_generated_target_tables_create_on_current_clickhouse(session, request_text):
    from services.spec_compiler import generate_sql
    from services.understanding import compile_request

    spec = compile_request(request_text)["spec"]
    columns = [["order_id", "bigint"], ["customer_id", "integer"], ["status", "text"], ["amount", "numeric(12,2)"],
               ["country", "text"], ["created_at", "timestamp without time zone"],
               ["updated_at", "timestamp without time zone"]]
    sql = generate_sql(spec, source_columns=columns)
    for stmt in sql.get("target_setup_sql") or []:
        session.query(stmt)
    session.query(sql["target_ddl"])
    table = spec["target"]["table"]
    assert rows(session, f"SELECT count() AS n FROM {table}") in ([{"n": "0"}], [{"n": 0}])
