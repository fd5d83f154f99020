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
import time
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
class BatchReport:
    """One loaded batch, as the executor records it (``BatchLoaded`` and ``BatchMeasured``)."""

    batch_no: int
    rows_in: int
    rows_out: int
    rows_written: int  # rows of this batch in the target (also when an earlier, crashed attempt loaded it)
    bytes: int
    cursor: Optional[str]
    extract_ms: int
    transform_ms: int
    load_ms: int


OnReport = Callable[[BatchReport], None]


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
                 on_batch: Optional[OnBatch] = None, on_report: Optional[OnReport] = None) -> RunTotals:
    """Run one batch pipeline; ``on_report`` sees every batch after it landed and may raise to stop the run
    (the executor's cancellation), leaving the target as after the last landed batch."""
    if hasattr(spec, "model_dump"):  # a PipelineSpec is accepted too
        spec = spec.model_dump()
    source, target = spec["source"], spec["target"]
    artifacts = artifacts or {}
    cursor_column = (spec.get("incremental") or {}).get("cursor_column")
    stats = ReadStats(cursor_column=cursor_column)
    src_conn = registry.resolve(tenant_id, kind=source["kind"], name=source.get("connection"))
    dst_conn = registry.resolve(tenant_id, kind=target["kind"], name=target.get("connection"))
    batches = open_reader(spec, artifacts, src_conn, params or {}, cursor, batch_rows, stats)
    if _needs_whole_input(spec):
        batches = whole_input(batches)
    transform = transformer_for(spec, artifacts)
    written = _load(batches, transform, open_writer(dst_conn, target, run_id=run_id, artifacts=artifacts),
                    run_id, stats, cursor, on_batch, on_report)
    return RunTotals(stats.rows, written, stats.bytes, stats.batches, _high_water_mark(source, stats, cursor))


# A file/topic/API source whose spec aggregates, orders or takes a top-N is transformed once over all of
# its rows: per batch, each batch would be aggregated or ranked alone. Bounded so a huge file fails
# clearly instead of exhausting memory.
WHOLE_INPUT_MAX_ROWS = 5_000_000


def _needs_whole_input(spec: dict) -> bool:
    from services.domain.spec import PipelineSpec
    from services.spec_compiler.shape import needs_whole_input

    try:
        return needs_whole_input(PipelineSpec.model_validate(spec))
    except ValueError:  # not a valid spec: the reader or writer reports what is wrong
        return False


def whole_input(batches: Iterator, max_rows: int = WHOLE_INPUT_MAX_ROWS) -> Iterator:
    """All of ``batches`` as one batch (types unified across batches), or nothing for an empty input."""
    import pyarrow as pa

    parts, rows = [], 0
    try:
        for batch in batches:
            rows += batch.num_rows
            if rows > max_rows:
                raise PlanError(f"the spec aggregates or ranks the whole input, which has more than {max_rows} "
                                "rows; load it into a database first and aggregate there")
            parts.append(pa.Table.from_batches([batch]))
    finally:
        close = getattr(batches, "close", None)
        if close:
            close()
    if not parts:
        return
    table = pa.concat_tables(parts, promote_options="permissive").combine_chunks()
    yield from table.to_batches(max_chunksize=max(1, table.num_rows))


def transformer_for(spec: dict, artifacts: dict) -> Transformer:
    """The deployed transform: the SQL expert's DuckDB SQL and/or the Python coder's ``transform(batch)``."""
    declared = spec.get("transform") or {}
    return Transformer(artifacts.get("transform_sql") or declared.get("sql"),
                       artifacts.get("python_code") or declared.get("python"))


def _load(batches: Iterator, transform: Transformer, writer, run_id: str, stats: ReadStats,
          cursor: Optional[str], on_batch: Optional[OnBatch], on_report: Optional[OnReport] = None) -> int:
    with transform, writer, _closing(batches):
        batch_no = 0
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)  # pulling the next batch is where the extract happens
            if batch is None:
                break
            t1 = time.perf_counter()
            out = to_record_batch(transform(batch))
            t2 = time.perf_counter()
            loaded = writer.write(out, f"{run_id}:{batch_no}")
            if writer.landed_before:  # loaded by an attempt that crashed before reporting it
                loaded = out.num_rows
            t3 = time.perf_counter()
            at = cursor_text(stats.high_water_mark) or cursor
            if on_batch:
                on_batch(batch_no, batch.num_rows, batch_nbytes(batch), at)
            if on_report:
                on_report(BatchReport(batch_no, batch.num_rows, out.num_rows, loaded, batch_nbytes(batch), at,
                                      _ms(t1 - t0), _ms(t2 - t1), _ms(t3 - t2)))
            batch_no += 1
        writer.finish()
        return writer.rows_written


class _closing:
    """Closes a reader generator when the run stops early (cancel, error): its cursor and connection go now."""

    def __init__(self, it):
        self.it = it

    def __enter__(self):
        return self.it

    def __exit__(self, *exc):
        close = getattr(self.it, "close", None)
        if close:
            close()


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


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
    from services.spec_compiler.sqlgen import table_ref

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
