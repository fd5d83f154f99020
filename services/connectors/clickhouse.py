"""ClickHouse introspection over the native protocol (clickhouse-driver); works with the 18.16 server.

params: host, port (9000), database (default), user (default), secure (false); secrets: password. Every
query runs with ``readonly=1``: introspection can never write to a source.
"""
from __future__ import annotations

import re

from services.connectors.introspect import Column, TableNotFound
from services.connectors.registry import Connection

SYSTEM_DATABASES = ("system", "INFORMATION_SCHEMA", "information_schema")
# Introspection and QA samples are small: bounded in time, rows and bytes (dry runs with small caps).
READONLY = {"max_execution_time": 30, "max_result_rows": 100_000, "max_result_bytes": 256 << 20,
            "result_overflow_mode": "throw", "readonly": 1}
UNKNOWN_TABLE_CODES = (60, 81)  # UNKNOWN_TABLE, UNKNOWN_DATABASE


def native_client(conn: Connection):
    from clickhouse_driver import Client  # imported here: no driver load at import time

    return Client(host=conn.param("host"), port=int(conn.param("port", 9000)),
                  database=conn.param("database", "default"), user=conn.param("user", "default"),
                  password=conn.secret("password", "") or "", secure=bool(conn.param("secure", False)),
                  connect_timeout=int(conn.param("connect_timeout", 5)), send_receive_timeout=30,
                  client_name="aietl-introspect")


def ch_execute(conn: Connection, query: str, params: dict | None = None, with_types: bool = False):
    client = native_client(conn)
    try:
        return client.execute(query, params, settings=READONLY, with_column_types=with_types)
    finally:
        client.disconnect()


def quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def split_name(conn: Connection, name: str) -> tuple[str, str]:
    """("database", "table") of "database.table"; a bare name is in the connection's database."""
    database, _, table = name.partition(".") if "." in name else (conn.param("database", "default"), "", name)
    if database in SYSTEM_DATABASES:
        raise TableNotFound(f"{name!r} is in a system database")
    return database, table


def unwrap(ch_type: str) -> tuple[str, bool]:
    """(type, nullable) with the Nullable / LowCardinality storage wrappers removed."""
    m = re.fullmatch(r"LowCardinality\((.*)\)", ch_type)
    t = m.group(1) if m else ch_type
    m = re.fullmatch(r"Nullable\((.*)\)", t)
    return (m.group(1), True) if m else (t, False)


def test(conn: Connection) -> str:
    return f"ClickHouse {ch_execute(conn, 'SELECT version()')[0][0]}"


def list_tables(conn: Connection) -> list[str]:
    rows = ch_execute(conn, "SELECT database, name FROM system.tables WHERE database NOT IN %(hidden)s "
                          "AND name NOT LIKE '.inner.%%' ORDER BY database, name",
                    {"hidden": SYSTEM_DATABASES})
    return [f"{db}.{table}" for db, table in rows]


def table_schema(conn: Connection, name: str) -> list[Column]:
    database, table = split_name(conn, name)
    # system.columns lists a table's columns in definition order (18.16 has no `position` column to sort by).
    rows = ch_execute(conn, "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
                    {"db": database, "t": table})
    if not rows:
        raise TableNotFound(f"no table {database}.{table} in connection {conn.name!r}")
    return [Column(col, *unwrap(t)) for col, t in rows]


def sample_rows(conn: Connection, name: str, limit: int) -> list[dict]:
    from clickhouse_driver.errors import ServerException

    database, table = split_name(conn, name)
    try:
        rows, types = ch_execute(conn, f"SELECT * FROM {quote(database)}.{quote(table)} LIMIT {int(limit)}",
                               with_types=True)
    except ServerException as exc:
        if exc.code in UNKNOWN_TABLE_CODES:
            raise TableNotFound(f"no table {database}.{table} in connection {conn.name!r}") from None
        raise
    names = [n for n, _ in types]
    return [dict(zip(names, row)) for row in rows]
