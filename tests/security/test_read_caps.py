"""Every read the executor makes is bounded: PostgreSQL statement_timeout, ClickHouse max_execution_time /
max_result_rows, SQLite's progress handler, and a row/byte cap counted whatever the source."""
from __future__ import annotations

import sqlite3

import pytest

from services.connectors.registry import Connection
from services.executor.readers import ReadLimitExceeded, ReadLimits, read_clickhouse, read_postgres, read_sqlite
from tests.integration.stack_fixtures import ch, pg, settings  # noqa: F401

TENANT = "t-security"


def test_postgres_read_path_has_a_statement_timeout(pg):  # noqa: F811
    import psycopg

    with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
        list(read_postgres(pg, "SELECT pg_sleep(5)", limits=ReadLimits(timeout_s=1)))


def test_postgres_read_path_runs_only_queries(pg):  # noqa: F811
    """The extract runs as a server-side cursor in a READ ONLY transaction: DDL/DML cannot even be declared.
    (READ ONLY alone does not stop lo_create() or a superuser's file functions: the SQL allow-list does.)"""
    import psycopg

    with pytest.raises(psycopg.errors.SyntaxError):
        list(read_postgres(pg, "CREATE TABLE public.sec_should_not_exist (id int)"))
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        list(read_postgres(pg, "WITH d AS (DELETE FROM shop.orders WHERE false RETURNING *) SELECT * FROM d"))


def test_postgres_row_cap(pg):  # noqa: F811
    with pytest.raises(ReadLimitExceeded, match="cap of 10 rows"):
        list(read_postgres(pg, "SELECT g FROM generate_series(1, 100) g", batch_rows=5,
                           limits=ReadLimits(max_rows=10)))


def test_clickhouse_result_rows_are_capped_by_the_server(ch):  # noqa: F811
    from clickhouse_driver.errors import ServerException

    with pytest.raises(ServerException) as err:
        list(read_clickhouse(ch, "SELECT number FROM system.numbers LIMIT 100", batch_rows=10,
                             limits=ReadLimits(max_rows=5)))
    assert err.value.code == 396  # TOO_MANY_ROWS_OR_BYTES


def test_clickhouse_execution_time_is_capped_by_the_server(ch):  # noqa: F811
    from clickhouse_driver.errors import ServerException

    with pytest.raises(ServerException) as err:
        list(read_clickhouse(ch, "SELECT count() FROM system.numbers WHERE sleepEachRow(0.01) = 0",
                             limits=ReadLimits(timeout_s=1)))
    assert err.value.code in (159, 160)  # TIMEOUT_EXCEEDED, TOO_SLOW


@pytest.fixture
def sqlite_conn(tmp_path):
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER)")
        db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    return Connection(TENANT, "sq", "sqlite", {"path": str(path)})


def test_sqlite_row_cap(sqlite_conn):
    with pytest.raises(ReadLimitExceeded):
        list(read_sqlite(sqlite_conn, "SELECT id FROM t", batch_rows=5, limits=ReadLimits(max_rows=10)))


def test_sqlite_runaway_query_is_interrupted(sqlite_conn):
    endless = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        list(read_sqlite(sqlite_conn, endless, limits=ReadLimits(timeout_s=1)))
