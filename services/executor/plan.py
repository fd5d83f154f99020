"""One run of a batch pipeline: reader -> transform -> writer, batch by batch.

``run_pipeline`` resolves the source and target connections, picks the extract (``extract_sql`` with the
stored cursor bound to ``%(cursor)s``, or ``extract_sql_initial`` on the first run), streams batches of at
most ``batch_rows`` rows through the transform into the writer with the key ``<run_id>:<batch_no>``, and
reports each loaded batch through ``on_batch(batch_no, rows, bytes, cursor)``. The returned high-water mark
is the max of the cursor column read (the stored cursor when nothing new arrived); for Kafka sources it
is the JSON of the next offsets per partition, and ``cursor`` takes the same JSON.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from services.executor.batches import DEFAULT_BATCH_ROWS, ReadStats, batch_nbytes, cursor_text, cursor_value, \
    to_record_batch
from services.executor.readers import (ReaderError, read_clickhouse, read_file, read_http, read_kafka,
                                       read_postgres, read_sqlite)
from services.executor.transform import Transformer
from services.executor.writers import open_writer

OnBatch = Callable[[int, int, int, Optional[str]], None]


@dataclass(frozen=True)
class RunTotals:
    rows_read: int
    rows_written: int
    bytes: int
    batches: int
    high_water_mark: Optional[str]


class PlanError(ValueError):
    """The spec and artifacts do not describe a runnable batch pipeline (e.g. a missing run parameter)."""


def run_pipeline(spec: dict, artifacts: dict, registry, tenant_id: str, *, run_id: str, params: Optional[dict] = None,
                 cursor: Optional[str] = None, batch_rows: int = DEFAULT_BATCH_ROWS,
                 on_batch: Optional[OnBatch] = None) -> RunTotals:
    if hasattr(spec, "model_dump"):  # a PipelineSpec is accepted too
        spec = spec.model_dump()
    source, target = spec["source"], spec["target"]
    artifacts = artifacts or {}
    cursor_column = (spec.get("incremental") or {}).get("cursor_column")
    stats = ReadStats(cursor_column=cursor_column)
    src_conn = registry.resolve(tenant_id, kind=source["kind"], name=source.get("connection"))
    dst_conn = registry.resolve(tenant_id, kind=target["kind"], name=target.get("connection"))
    batches = open_reader(spec, artifacts, src_conn, params or {}, cursor, batch_rows, stats)
    transform = Transformer(artifacts.get("transform_sql") or (spec.get("transform") or {}).get("sql"),
                            (spec.get("transform") or {}).get("python"))
    written = _load(batches, transform, open_writer(dst_conn, target, run_id=run_id, artifacts=artifacts),
                    run_id, stats, cursor, on_batch)
    return RunTotals(stats.rows, written, stats.bytes, stats.batches, _high_water_mark(source, stats, cursor))


def _load(batches: Iterator, transform: Transformer, writer, run_id: str, stats: ReadStats,
          cursor: Optional[str], on_batch: Optional[OnBatch]) -> int:
    with transform, writer:
        for batch_no, batch in enumerate(batches):
            out = to_record_batch(transform(batch))
            writer.write(out, f"{run_id}:{batch_no}")
            if on_batch:
                on_batch(batch_no, batch.num_rows, batch_nbytes(batch), cursor_text(stats.high_water_mark) or cursor)
        writer.finish()
        return writer.rows_written


def _high_water_mark(source: dict, stats: ReadStats, cursor: Optional[str]) -> Optional[str]:
    if source["kind"] == "kafka":
        return json.dumps(stats.next_offsets, sort_keys=True)
    return cursor_text(stats.high_water_mark) or cursor


# ---------------------------------------------------------------- choosing the reader

def open_reader(spec: dict, artifacts: dict, conn, params: dict, cursor: Optional[str], batch_rows: int,
                stats: ReadStats) -> Iterator:
    source = spec["source"]
    kind = source["kind"]
    if kind in ("postgres", "clickhouse", "sqlite"):
        sql, args = extract_statement(spec, artifacts, cursor)
        reader = {"postgres": read_postgres, "clickhouse": read_clickhouse, "sqlite": read_sqlite}[kind]
        return reader(conn, sql, args, batch_rows=batch_rows, stats=stats)
    if kind == "file":
        return read_file(conn, source_file(source, params), source.get("format"), batch_rows=batch_rows,
                         stats=stats)
    if kind == "kafka":
        return read_kafka(conn, source["topic"], json.loads(cursor) if cursor else {}, batch_rows=batch_rows,
                          stats=stats)
    if kind == "http":
        return _http_reader(spec, conn, cursor, batch_rows, stats)
    raise PlanError(f"unknown source kind {kind!r}")


def extract_statement(spec: dict, artifacts: dict, cursor: Optional[str]) -> tuple[str, dict]:
    """(SQL, parameters): the incremental extract with the cursor bound, else the initial / full extract."""
    source = spec["source"]
    incremental = spec.get("incremental")
    if cursor is None and incremental and incremental.get("initial_value") is not None:
        cursor = str(incremental["initial_value"])
    if incremental and cursor is not None and artifacts.get("extract_sql"):
        return artifacts["extract_sql"], {"cursor": _bind(source["kind"], cursor)}
    sql = artifacts.get("extract_sql_initial") if incremental else artifacts.get("extract_sql")
    if sql:
        return sql, {}
    return _default_extract(source), {}


def _bind(kind: str, cursor: str) -> Any:
    # PostgreSQL casts an untyped text parameter to the column's type; ClickHouse will not compare a number
    # with a string, so numeric cursors are bound as numbers there.
    return cursor_value(cursor) if kind == "clickhouse" else cursor


def _default_extract(source: dict) -> str:
    from services.llm_router.builtin.sqlgen import table_ref

    if source.get("query"):
        return source["query"]
    return f"SELECT * FROM {table_ref(source['table'], source['kind'])}"


def source_file(source: dict, params: dict) -> str:
    """The file to read: ``path``, or the run parameter ``path_param`` (a webhook's file) under ``folder``."""
    if not source.get("path_param"):
        return source["path"]
    name = params.get(source["path_param"])
    if not name or not isinstance(name, str):
        raise PlanError(f"run parameter {source['path_param']!r} (the file to load) is missing")
    if name.startswith("/") or ".." in name.replace("\\", "/").split("/"):
        raise ReaderError(f"file name {name!r} must be relative and stay inside the folder")
    folder = (source.get("folder") or "").strip("/")
    return f"{folder}/{name}" if folder else name


def _http_reader(spec: dict, conn, cursor: Optional[str], batch_rows: int, stats: ReadStats) -> Iterator:
    """An incremental HTTP source sends the cursor as a query parameter (``cursor_param``, default
    ``since``) and also keeps only newer rows itself, since many APIs ignore unknown parameters."""
    source = spec["source"]
    column = (spec.get("incremental") or {}).get("cursor_column")
    query = {conn.param("cursor_param", "since"): cursor} if column and cursor is not None else {}
    batches = read_http(conn, source["url"], batch_rows=batch_rows, stats=ReadStats(), query=query)
    if not column or cursor is None:
        return _tracked_again(batches, stats)
    return _tracked_again((_newer(b, column, cursor) for b in batches), stats)


def _newer(batch, column: str, cursor: str):
    import pyarrow.compute as pc

    if column not in batch.schema.names:
        return batch
    values = batch.column(batch.schema.get_field_index(column))
    bound = cursor_value(cursor) if not (values.type.equals(_string())) else cursor
    try:
        return batch.filter(pc.greater(values, bound))
    except Exception:  # incomparable types: compare as text
        return batch.filter(pc.greater(pc.cast(values, _string()), cursor))


def _string():
    import pyarrow as pa

    return pa.string()


def _tracked_again(batches: Iterator, stats: ReadStats) -> Iterator:
    for batch in batches:
        if batch.num_rows:
            stats.track(batch)
            yield batch
