"""The tenant catalog: what data a tenant's registered connections hold, for understanding requests.

The planner sends it with every plan task (the offline understanding links "order lines" or "created
date" to real tables and columns with it; LLM prompts carry a slice of it), and ``GET /api/v1/catalog``
shows it. Shape (stable; consumers rely on it)::

    {"connections": [
        {"name": "warehouse-pg", "kind": "postgres", "default": true,
         "tables": [{"name": "shop.orders",
                     "columns": [{"name": "amount", "type": "numeric(12,2)", "samples": ["10.50", "99.00"]}]}],
         "error": "..."}            # only when the connection could not be read; tables is then []
     ],
     "truncated": false}            # true when a cap below dropped tables, columns or samples

* ``name`` is the table as the pipeline spec names it: ``schema.table`` (PostgreSQL), ``database.table``
  (ClickHouse), the table (SQLite), the file name relative to the folder (file connections).
* ``type`` is spelled as the source spells it (``introspect.Column.type``).
* ``samples`` are at most 5 distinct non-null values of the column, as strings of at most 40 characters,
  from the first rows of the table - or, for a text column with at most MAX_VALUES distinct values among
  its first VALUE_ROWS rows (a category: status, city, channel), all of them, and ``"values": true``. The
  understanding links words such as "completed appointments" or «из Москвы» to these values.
* ``primary_key`` (only when the table has one): the columns that identify a row, in key order - the
  PostgreSQL primary key (``pg_index``), or the sorting key of a ClickHouse ``Replacing*MergeTree`` (that
  engine keeps one row per sorting key; a plain MergeTree's ORDER BY is not a key, so it is not listed).
  Files and topics have none. A sync with no key named upserts on it.
* ``default`` is true for the connection the planner uses for its kind (the registry's default, else the
  first of that kind).
* Kafka topics and HTTP endpoints are listed as connections without tables: sampling a topic means
  consuming it, and a busy cluster has many topics that are not datasets.

Bounded: at most MAX_TABLES tables per connection, MAX_COLUMNS columns per table and MAX_BYTES of JSON
in all (later tables lose their samples, then are left out; ``truncated`` says so). The platform's own
schemas (``aietl_meta``, the ClickHouse database of the platform's metrics, ``system``,
``information_schema``, ``pg_catalog``) are never listed.

Cached per tenant in Redis for TTL_S seconds (key ``{topic_prefix}catalog:{tenant}``); ``refresh=True``
rebuilds it. Everything here is blocking; callers on an event loop use ``asyncio.to_thread``.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Optional

from services.connectors.registry import Connection, ConnectionError_, ConnectionRegistry, RegistryUnavailable

log = logging.getLogger(__name__)

TTL_S = 60
MAX_TABLES = 100
MAX_COLUMNS = 60
MAX_SAMPLES = 5
MAX_SAMPLE_CHARS = 40
SAMPLE_ROWS = 20
MAX_VALUES = 30
VALUE_ROWS = 2000  # rows read for the distinct values of text columns (bounded: never a full scan)
MAX_BYTES = 256_000  # the catalog rides in a Kafka message (the plan task's input)
TABLE_KINDS = ("postgres", "clickhouse", "sqlite", "file")
HIDDEN_SCHEMAS = frozenset({"aietl_meta", "system", "information_schema", "INFORMATION_SCHEMA", "pg_catalog"})


# ---------------------------------------------------------------- building

def build_catalog(registry: ConnectionRegistry, tenant: str, hidden: Iterable[str] = ()) -> dict[str, Any]:
    """The catalog of ``tenant``, read now from every registered connection (uncached)."""
    hidden_schemas = HIDDEN_SCHEMAS | set(hidden)
    listed = registry.list(tenant)
    defaults: dict[str, str] = {}
    for item in listed:  # same rule as SourceAccess.default_connections
        if item.get("is_default") or item["kind"] not in defaults:
            defaults[item["kind"]] = item["name"]
    out = []
    for item in listed:
        entry: dict[str, Any] = {"name": item["name"], "kind": item["kind"],
                                 "default": defaults.get(item["kind"]) == item["name"], "tables": []}
        if item["kind"] in TABLE_KINDS:
            try:
                entry["tables"] = _tables(registry.get(tenant, item["name"]), hidden_schemas)
            except Exception as exc:  # one unreachable server must not hide the others
                entry["error"] = str(exc)[:300]
        out.append(entry)
    return _bounded({"connections": out, "truncated": False})


def _tables(conn: Connection, hidden: frozenset) -> list[dict[str, Any]]:
    if conn.kind == "postgres":
        return _postgres_tables(conn, hidden)
    if conn.kind == "clickhouse":
        return _clickhouse_tables(conn, hidden)
    return _generic_tables(conn)


def _postgres_tables(conn: Connection, hidden: frozenset) -> list[dict[str, Any]]:
    """One session: every column of every visible table in one query, then a few rows per table."""
    from psycopg import sql
    from psycopg.rows import dict_row

    from services.connectors.postgres import STATEMENT_TIMEOUT_MS, pg_connect

    tables: dict[str, list[dict]] = {}
    with pg_connect(conn) as db:
        with db.transaction():
            db.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
            rows = db.execute("""
                SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
                   AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%'
                   AND has_table_privilege(c.oid, 'SELECT')
                 ORDER BY n.nspname, c.relname, a.attnum""", (sorted(hidden),)).fetchall()
            keys = {f"{schema}.{table}": list(cols) for schema, table, cols in db.execute("""
                SELECT n.nspname, c.relname, array_agg(a.attname ORDER BY k.ord)
                  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                 WHERE i.indisprimary AND n.nspname <> ALL(%s)
                 GROUP BY n.nspname, c.relname""", (sorted(hidden),)).fetchall()}
        for schema, table, column, type_ in rows:
            name = f"{schema}.{table}"
            if name in tables or len(tables) < MAX_TABLES:
                tables.setdefault(name, []).append({"name": column, "type": type_})
        out = []
        for name, columns in tables.items():
            schema, table = name.split(".", 1)
            query = sql.SQL("SELECT * FROM {} LIMIT %s").format(sql.Identifier(schema, table))
            texts = [c["name"] for c in columns[:MAX_COLUMNS] if _is_text(c["type"])]
            wide = sql.SQL("SELECT {} FROM {} LIMIT %s").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in texts), sql.Identifier(schema, table))
            try:  # a table dropped or locked since the listing keeps its columns, without samples
                with db.transaction():
                    db.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                    sample = db.cursor(row_factory=dict_row).execute(query, (SAMPLE_ROWS,)).fetchall()
                    values = db.cursor(row_factory=dict_row).execute(wide, (VALUE_ROWS,)).fetchall() if texts else []
            except Exception:
                sample, values = [], []
            out.append(_table(name, columns, sample, values, keys.get(name)))
    return out


def _clickhouse_tables(conn: Connection, hidden: frozenset) -> list[dict[str, Any]]:
    from services.connectors.clickhouse import native_client, quote, READONLY, unwrap

    client = native_client(conn)
    try:
        rows = client.execute("SELECT database, table, name, type FROM system.columns "
                              "WHERE database NOT IN %(hidden)s AND table NOT LIKE '.inner.%%'",
                              {"hidden": tuple(sorted(hidden))}, settings=READONLY)
        tables: dict[str, list[dict]] = {}
        for database, table, column, type_ in rows:  # system.columns keeps definition order per table
            name = f"{database}.{table}"
            if name in tables or len(tables) < MAX_TABLES:
                tables.setdefault(name, []).append({"name": column, "type": unwrap(type_)[0]})
        keys = {f"{database}.{table}": [k.strip() for k in sorting.split(",")]
                for database, table, sorting in client.execute(
                    "SELECT database, name, sorting_key FROM system.tables WHERE database NOT IN %(hidden)s "
                    "AND engine LIKE 'Replacing%%MergeTree' AND sorting_key != ''",
                    {"hidden": tuple(sorted(hidden))}, settings=READONLY)}
        out = []
        for name in sorted(tables):
            database, table = name.split(".", 1)
            texts = [c["name"] for c in tables[name][:MAX_COLUMNS] if _is_text(c["type"])]
            try:
                data, types = client.execute(f"SELECT * FROM {quote(database)}.{quote(table)} LIMIT {SAMPLE_ROWS}",
                                             settings=READONLY, with_column_types=True)
                sample = [dict(zip([t[0] for t in types], r)) for r in data]
                values = [dict(zip(texts, r)) for r in client.execute(
                    f"SELECT {', '.join(quote(c) for c in texts)} FROM {quote(database)}.{quote(table)} "
                    f"LIMIT {VALUE_ROWS}", settings=READONLY)] if texts else []
            except Exception:  # views over missing tables, engines that cannot be read: no samples
                sample, values = [], []
            key = keys.get(name)  # an expression (toDate(x)) in the sorting key is not a column to upsert on
            key = key if key and all(k in {c["name"] for c in tables[name]} for k in key) else None
            out.append(_table(name, tables[name], sample, values, key))
        return out
    finally:
        client.disconnect()


def _generic_tables(conn: Connection) -> list[dict[str, Any]]:
    from services.connectors.introspect import list_tables, sample_rows, table_schema

    out = []
    for name in list_tables(conn)[:MAX_TABLES]:
        try:
            columns = [{"name": c.name, "type": c.type} for c in table_schema(conn, name)]
        except ConnectionError_:
            continue  # unreadable file: not a dataset the planner can offer
        try:
            values = sample_rows(conn, name, VALUE_ROWS)
        except ConnectionError_:
            values = []
        out.append(_table(name, columns, values[:SAMPLE_ROWS], values))
    return out


def _table(name: str, columns: list[dict], sample: list[dict], values: Optional[list[dict]] = None,
           primary_key: Optional[list[str]] = None) -> dict[str, Any]:
    out = []
    for c in columns[:MAX_COLUMNS]:
        found = _samples(values or [], c["name"], MAX_VALUES + 1) if _is_text(c["type"]) else []
        seen = sum(1 for r in values or [] if r.get(c["name"]) is not None)
        # A category repeats: as many distinct values as rows (names, e-mails of a small table) is not one.
        if 0 < len(found) <= MAX_VALUES and seen >= 2 * len(found) and all(len(v) < MAX_SAMPLE_CHARS for v in found):
            out.append({**c, "samples": found, "values": True})
        else:
            out.append({**c, "samples": _samples(sample, c["name"])})
    return {"name": name, "columns": out, **({"primary_key": list(primary_key)} if primary_key else {}),
            **({"columns_truncated": True} if len(columns) > MAX_COLUMNS else {})}


def _is_text(type_: str) -> bool:
    t = type_.lower()
    return any(w in t for w in ("text", "char", "string", "enum")) or t in ("str", "utf8", "varchar")


def _samples(rows: list[dict], column: str, limit: int = MAX_SAMPLES) -> list[str]:
    seen: list[str] = []
    for row in rows:
        value = row.get(column)
        if value is None or isinstance(value, (bytes, bytearray, dict, list)):
            continue
        text = str(value)[:MAX_SAMPLE_CHARS]
        if text and text not in seen:
            seen.append(text)
        if len(seen) >= limit:
            break
    return seen


def _bounded(catalog: dict[str, Any]) -> dict[str, Any]:
    """Within MAX_BYTES: later tables lose their samples first, then are dropped."""
    if any(t.get("columns_truncated") for c in catalog["connections"] for t in c["tables"]):
        catalog["truncated"] = True
    size = len(json.dumps(catalog, default=str))
    tables = [t for c in catalog["connections"] for t in c["tables"]]
    for table in reversed(tables):
        if size <= MAX_BYTES:
            break
        before = len(json.dumps(table))
        for col in table["columns"]:
            col["samples"] = []
        size -= before - len(json.dumps(table))
        catalog["truncated"] = True
    for conn in reversed(catalog["connections"]):
        while size > MAX_BYTES and conn["tables"]:
            size -= len(json.dumps(conn["tables"].pop())) + 2
            catalog["truncated"] = True
    return catalog


# ---------------------------------------------------------------- cache

class TenantCatalog:
    """``get(tenant)``: the cached catalog, rebuilt when older than ``ttl_s`` or when ``refresh`` is set."""

    def __init__(self, registry: ConnectionRegistry, redis: Any, prefix: str, ttl_s: int = TTL_S,
                 hidden: Iterable[str] = ()):
        self._registry, self._redis, self._prefix = registry, redis, prefix
        self._ttl, self._hidden = ttl_s, tuple(hidden)

    def key(self, tenant: str) -> str:
        return f"{self._prefix}catalog:{tenant}"

    def get(self, tenant: str, refresh: bool = False) -> dict[str, Any]:
        # The cached copy is used only while the tenant's connections are those it was built from: a
        # connection registered after a (warm-up) build must be seen by the very next draft.
        stamp = self._registry.fingerprint(tenant)
        if not refresh:
            cached = self._cached(tenant)
            if cached is not None and cached.get("fingerprint") == stamp:
                return cached["catalog"]
        catalog = build_catalog(self._registry, tenant, self._hidden)
        try:
            self._redis.set(self.key(tenant), json.dumps({"fingerprint": stamp, "catalog": catalog}, default=str),
                            ex=self._ttl)
        except Exception:  # a cache that cannot be written costs a rebuild next time, nothing else
            log.warning("catalog: cannot cache the catalog of tenant %s", tenant, exc_info=True)
        return catalog

    def _cached(self, tenant: str) -> Optional[dict[str, Any]]:
        try:
            raw = self._redis.get(self.key(tenant))
        except Exception:
            log.warning("catalog: cache unreadable; rebuilding", exc_info=True)
            return None
        return json.loads(raw) if raw else None

    def get_or_none(self, tenant: str) -> Optional[dict[str, Any]]:
        """For the planner: without a catalog it plans as before, so a broken registry is not fatal."""
        try:
            return self.get(tenant)
        except Exception:
            log.warning("catalog: unavailable for tenant %s; planning without it", tenant, exc_info=True)
            return None


def catalog_from_settings(settings, registry: Optional[ConnectionRegistry] = None) -> TenantCatalog:
    """The stack's catalog: its registry, its Redis, its topic prefix; its metrics database hidden."""
    import redis

    from services.connectors.registry import build_registry

    return TenantCatalog(registry or build_registry(settings), redis.Redis.from_url(settings.redis_url),
                         settings.topic_prefix, hidden=(settings.clickhouse_database,))


__all__ = ["HIDDEN_SCHEMAS", "RegistryUnavailable", "TenantCatalog", "build_catalog", "catalog_from_settings"]
