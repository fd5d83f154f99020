"""How agents see a pipeline's source: its columns and a typed sample of what the extract returns.

Connections are resolved by name, or to the tenant's default of the engine kind; secrets stay inside the
connection object and never reach an event or a prompt.
"""
from __future__ import annotations

from typing import Any, Optional

SAMPLE_CAP = 1000


def _source_name(conn, source: dict) -> str:
    """The table, file or topic to look at; a webhook-driven file source is sampled by its first file."""
    if source.get("table"):
        return source["table"]
    if source.get("topic"):
        return source["topic"]
    if source.get("path"):
        return source["path"]
    if source.get("path_param"):
        folder = source.get("folder") or ""
        files = _files_in(conn, folder, source.get("format"))
        if not files:
            raise LookupError(f"no {source.get('format') or 'data'} file in folder {folder!r} to sample")
        return files[0]
    raise LookupError("the source names no table, file or topic")


def _files_in(conn, folder: str, fmt: Optional[str]) -> list[str]:
    from pathlib import Path

    root = Path(conn.param("folder")).expanduser().resolve() / folder
    if not root.is_dir():
        return []
    suffix = {"jsonl": ".jsonl", "csv": ".csv", "xml": ".xml", "parquet": ".parquet"}.get(fmt or "", "")
    return sorted(f"{folder}/{p.name}" if folder else p.name for p in root.iterdir()
                  if p.is_file() and (not suffix or p.suffix == suffix))


def _limited(sql: str, limit: int) -> str:
    return f"SELECT * FROM ({sql.strip().rstrip(';')}) AS aietl_sample LIMIT {int(limit)}"


class SourceAccess:
    def __init__(self, registry):
        self._registry = registry

    def connection(self, tenant_id: str, side: dict):
        return self._registry.resolve(tenant_id, kind=side.get("kind"), name=side.get("connection"))

    def default_connections(self, tenant_id: str) -> dict[str, str]:
        """kind -> name of the tenant's default connection of that kind (for the planner)."""
        out = {}
        for item in self._registry.list(tenant_id):
            if item.get("is_default") or item["kind"] not in out:
                out[item["kind"]] = item["name"]
        return out

    def columns(self, tenant_id: str, spec: dict) -> list[list[str]]:
        from services.connectors.introspect import table_schema

        source = spec.get("source") or {}
        conn = self.connection(tenant_id, source)
        return [[c.name, c.type] for c in table_schema(conn, _source_name(conn, source))]

    def columns_or_none(self, tenant_id: str, spec: dict) -> Optional[list[list[str]]]:
        """For SQL generation: unknown columns are a legitimate input (the DDL is then left to the executor)."""
        try:
            return self.columns(tenant_id, spec)
        except Exception:  # missing table, unreachable server: the SQL expert works without columns
            return None

    def value_ranges(self, tenant_id: str, spec: dict) -> dict[str, list]:
        """Real [min, max] (ISO text) of each date/timestamp column of a PostgreSQL source table loaded into
        ClickHouse, whose Date/DateTime hold 1970-01-01..2105 only; {} for other sources or on any error."""
        source, target = spec.get("source") or {}, spec.get("target") or {}
        if source.get("kind") != "postgres" or target.get("kind") != "clickhouse" or not source.get("table"):
            return {}
        try:
            return _postgres_ranges(self.connection(tenant_id, source), source["table"],
                                    self.columns(tenant_id, spec))
        except Exception:  # unknown ranges leave the default types; the writer still refuses a clamped value
            return {}

    def sample(self, tenant_id: str, spec: dict, current: dict, limit: int = 100) -> list[dict[str, Any]]:
        """Rows as the extract returns them (typed), capped at ``limit``; never more than SAMPLE_CAP."""
        from services.connectors.introspect import sample_rows

        limit = min(limit, SAMPLE_CAP)
        source = spec.get("source") or {}
        conn = self.connection(tenant_id, source)
        extract = current.get("extract_sql_initial") or current.get("extract_sql")
        if source.get("kind") == "postgres" and extract:
            from services.connectors.postgres import run_query

            return run_query(conn, _limited(extract, limit), dict_rows=True)
        if source.get("kind") == "clickhouse" and extract:
            from services.connectors.clickhouse import ch_execute

            rows, types = ch_execute(conn, _limited(extract, limit), with_types=True)
            names = [t[0] for t in types]
            return [dict(zip(names, r)) for r in rows]
        return sample_rows(conn, _source_name(conn, source), limit)


def _postgres_ranges(conn, table: str, columns: list) -> dict[str, list]:
    from psycopg import sql

    from services.connectors.postgres import run_query
    from services.connectors.typemap import parse

    dated = [str(c[0]) for c in columns if parse(str(c[1]), "postgres").kind in ("date", "timestamp", "timestamptz")]
    if not dated:
        return {}
    items = [sql.SQL("min({c})::text, max({c})::text").format(c=sql.Identifier(c)) for c in dated]
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(items),
                                                sql.Identifier(*table.split(".", 1)))
    row = run_query(conn, query)[0]
    return {c: [row[2 * i], row[2 * i + 1]] for i, c in enumerate(dated)}
