"""PostgreSQL introspection with psycopg 3: tables from pg_catalog, precise types via format_type().

params: host, port (5432), database, user, sslmode (optional); secrets: password. Reads run in READ ONLY
transactions with a statement timeout, so sampling a source can neither change nor stall it.
"""
from __future__ import annotations

from typing import Any

from services.connectors.introspect import Column, TableNotFound
from services.connectors.registry import SCHEMA as META_SCHEMA
from services.connectors.registry import Connection

STATEMENT_TIMEOUT_MS = 15_000
# aietl_meta holds the connection registry itself (encrypted secrets): never offered to agents as a source.
HIDDEN_SCHEMAS = ("pg_catalog", "information_schema", META_SCHEMA)


def pg_connect(conn: Connection):
    import psycopg  # imported here: no driver load at import time

    # Keyword arguments, not a DSN string: values with spaces or quotes cannot inject connection options.
    kwargs = {"host": conn.param("host"), "port": conn.param("port", 5432), "dbname": conn.param("database"),
              "user": conn.param("user"), "password": conn.secret("password"),
              "connect_timeout": int(conn.param("connect_timeout", 5)), "application_name": "aietl-introspect"}
    if conn.param("sslmode"):
        kwargs["sslmode"] = conn.param("sslmode")
    db = psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None})
    db.read_only = True  # every transaction on this session is READ ONLY
    return db


def run_query(conn: Connection, query, args: Any = None, dict_rows: bool = False) -> list:
    from psycopg.rows import dict_row

    with pg_connect(conn) as db:
        with db.transaction():
            db.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
            cur = db.cursor(row_factory=dict_row) if dict_rows else db.cursor()
            return cur.execute(query, args).fetchall()


def split_name(name: str) -> tuple[str, str]:
    """("schema", "table") of "schema.table"; a bare name is in public."""
    schema, _, table = name.partition(".") if "." in name else ("public", "", name)
    if schema in HIDDEN_SCHEMAS or schema.startswith("pg_"):
        raise TableNotFound(f"{name!r} is in a system schema")
    return schema, table


def test(conn: Connection) -> str:
    version = run_query(conn, "SELECT current_setting('server_version')")[0][0]
    return f"PostgreSQL {version}"


def list_tables(conn: Connection) -> list[str]:
    rows = run_query(conn, """
        SELECT n.nspname, c.relname
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
           AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%'
           AND has_table_privilege(c.oid, 'SELECT')
         ORDER BY 1, 2""", (list(HIDDEN_SCHEMAS),))
    return [f"{schema}.{table}" for schema, table in rows]


def table_schema(conn: Connection, name: str) -> list[Column]:
    schema, table = split_name(name)
    rows = run_query(conn, """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum""", (schema, table))
    if not rows:
        raise TableNotFound(f"no table {schema}.{table} in connection {conn.name!r}")
    return [Column(n, t, bool(nullable)) for n, t, nullable in rows]


def sample_rows(conn: Connection, name: str, limit: int) -> list[dict]:
    from psycopg import errors, sql

    schema, table = split_name(name)
    query = sql.SQL("SELECT * FROM {} LIMIT %s").format(sql.Identifier(schema, table))
    try:
        return run_query(conn, query, (limit,), dict_rows=True)
    except (errors.UndefinedTable, errors.InvalidSchemaName):
        raise TableNotFound(f"no table {schema}.{table} in connection {conn.name!r}") from None
