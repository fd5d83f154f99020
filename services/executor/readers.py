"""Readers: a source as an iterator of ``pyarrow.RecordBatch`` of at most ``batch_rows`` rows.

No reader holds a whole source: databases stream through server-side cursors / blocks, files through
Arrow's streaming readers or line/element iteration, Kafka and HTTP page by page. Each reader fills a
:class:`ReadStats` (rows, bytes, the high-water mark of the cursor column, Kafka's next offsets).
"""
from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from services.executor.batches import (DEFAULT_BATCH_ROWS, ReadStats, chunked, records_to_batch, rebatch)


class ReaderError(Exception):
    """A source that cannot be read as asked (missing file, unknown format, bad page)."""


class ReadLimitExceeded(ReaderError):
    """A read went past the platform's caps (rows, bytes or time): generated SQL must not run unbounded."""


@dataclass(frozen=True)
class ReadLimits:
    """Caps on one read the executor makes; the server enforces the time (statement_timeout,
    max_execution_time), rows and bytes are counted here too, whatever the source."""

    timeout_s: int = 3600
    max_rows: int = 200_000_000
    max_bytes: int = 64 << 30


RUN_LIMITS = ReadLimits()


def _tracked(batches: Iterator, stats: ReadStats, limits: ReadLimits = RUN_LIMITS) -> Iterator:
    for batch in batches:
        if batch.num_rows:
            stats.track(batch)
            if stats.rows > limits.max_rows or stats.bytes > limits.max_bytes:
                raise ReadLimitExceeded(f"the read passed the cap of {limits.max_rows:,} rows / "
                                        f"{limits.max_bytes:,} bytes per run")
            yield batch


# ---------------------------------------------------------------- PostgreSQL

# OID -> Arrow type factory; numeric is handled apart (precision/scale from the type modifier).
_PG_OIDS = {16: "bool", 20: "int64", 21: "int16", 23: "int32", 26: "int64", 700: "float32", 701: "float64",
            1082: "date", 1114: "timestamp", 1184: "timestamptz", 17: "binary"}
_JSON_OIDS = (114, 3802)
_NUMERIC_OID = 1700


def read_postgres(conn, sql: str, params: Optional[dict] = None, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                  stats: Optional[ReadStats] = None, limits: ReadLimits = RUN_LIMITS) -> Iterator:
    """A named (server-side) cursor fetched ``batch_rows`` at a time: the server keeps the result set.

    psycopg's typing gives exact values (Decimal, datetime); the Arrow schema comes from the column OIDs so
    numeric stays decimal128 and timestamps stay timestamps even in a batch of nulls.
    """
    from services.connectors.postgres import pg_connect

    stats = stats if stats is not None else ReadStats()
    db = pg_connect(conn)
    try:
        with db.transaction():
            # Each statement of the read (DECLARE, every FETCH) is bounded; READ ONLY comes from pg_connect.
            db.execute(f"SET LOCAL statement_timeout = {int(limits.timeout_s * 1000)}")
            cur = db.cursor(name=f"aietl_{uuid.uuid4().hex[:12]}")
            cur.itersize = batch_rows
            cur.execute(sql, params or None)
            yield from _tracked(_pg_batches(cur, batch_rows), stats, limits)
    finally:
        db.close()


def _pg_batches(cur, batch_rows: int) -> Iterator:
    import pyarrow as pa

    while True:
        rows = cur.fetchmany(batch_rows)
        if not rows:
            return
        desc = cur.description
        columns = list(zip(*rows))
        arrays = [_pg_array(d, list(values)) for d, values in zip(desc, columns)]
        yield pa.RecordBatch.from_arrays(arrays, names=[d.name for d in desc])


def _pg_array(desc, values: list):
    import pyarrow as pa

    oid = desc.type_code
    if oid == _NUMERIC_OID:
        return decimal_array(values, desc.precision, desc.scale)
    if oid in _JSON_OIDS:
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    kind = _PG_OIDS.get(oid)
    if kind:
        return pa.array(values, _arrow_simple(kind))
    try:
        return pa.array(values)  # arrays, uuid-as-text, ... : let Arrow infer
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _arrow_simple(kind: str):
    import pyarrow as pa

    return {"bool": pa.bool_(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
            "float32": pa.float32(), "float64": pa.float64(), "date": pa.date32(),
            "timestamp": pa.timestamp("us"), "timestamptz": pa.timestamp("us", tz="UTC"),
            "binary": pa.binary()}[kind]


def decimal_array(values: list, precision: Optional[int] = None, scale: Optional[int] = None):
    """decimal128 with the declared precision/scale, or (unconstrained numeric such as sum()) the scale of
    this batch's values: exact for every value, so a later batch may carry a wider scale (writers cope)."""
    import pyarrow as pa

    if precision and precision <= 38:
        return pa.array(values, pa.decimal128(precision, scale or 0))
    scales = [max(0, -v.as_tuple().exponent) for v in values if v is not None and v.is_finite()]
    s = min(max(scales, default=0), 18)
    try:
        return pa.array(values, pa.decimal128(38, s))
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # too many digits for decimal128: keep every digit as text
        return pa.array([None if v is None else str(v) for v in values], pa.string())


# ---------------------------------------------------------------- ClickHouse

def read_clickhouse(conn, sql: str, params: Optional[dict] = None, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                    stats: Optional[ReadStats] = None, limits: ReadLimits = RUN_LIMITS) -> Iterator:
    """``execute_iter`` streams rows block by block (``max_block_size`` = batch_rows); read-only settings and
    the caps as server settings (the source SQL may not carry a SETTINGS clause to lift them)."""
    from services.connectors.clickhouse import native_client

    stats = stats if stats is not None else ReadStats()
    client = native_client(conn)
    try:
        rows = client.execute_iter(sql, params or None, with_column_types=True,
                                   settings={"max_block_size": batch_rows, "readonly": 2,
                                             **clickhouse_read_settings(limits)})
        types = next(rows, None)
        if types is None:
            return
        yield from _tracked(_ch_batches(rows, types, batch_rows), stats, limits)
    finally:
        client.disconnect()


def clickhouse_read_settings(limits: ReadLimits) -> dict:
    return {"max_execution_time": int(limits.timeout_s), "max_result_rows": int(limits.max_rows),
            "max_result_bytes": int(limits.max_bytes), "result_overflow_mode": "throw"}


def _ch_batches(rows: Iterator, types: list, batch_rows: int) -> Iterator:
    import pyarrow as pa

    names = [n for n, _ in types]
    arrow_types = [ch_arrow_type(t) for _, t in types]
    for chunk in chunked(rows, batch_rows):
        columns = list(zip(*chunk))
        arrays = [pa.array(list(values), t) for values, t in zip(columns, arrow_types)]
        yield pa.RecordBatch.from_arrays(arrays, names=names)


def ch_arrow_type(ch_type: str):
    from services.connectors.clickhouse import unwrap
    from services.connectors.typemap import arrow_type, parse

    base, _ = unwrap(ch_type)
    if base.startswith("DateTime"):  # DateTime('tz') holds a moment; the driver returns naive wall time
        import pyarrow as pa

        return pa.timestamp("s")
    return arrow_type(parse(base, "clickhouse"))


# ---------------------------------------------------------------- SQLite

def read_sqlite(conn, sql: str, params: Optional[dict] = None, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                stats: Optional[ReadStats] = None, limits: ReadLimits = RUN_LIMITS) -> Iterator:
    """sqlite3 cursor in chunks; the database is opened read-only; a progress handler ends it at the cap."""
    from services.connectors.files import sqlite_path

    stats = stats if stats is not None else ReadStats()
    db = sqlite_path(conn)
    deadline = time.monotonic() + limits.timeout_s
    db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)  # non-zero aborts the statement
    try:
        cur = db.execute(sql, params or {})
        names = [d[0] for d in cur.description]
        yield from _tracked(_sqlite_batches(cur, names, batch_rows), stats, limits)
    finally:
        db.close()


def _sqlite_batches(cur, names: list[str], batch_rows: int) -> Iterator:
    while True:
        rows = cur.fetchmany(batch_rows)
        if not rows:
            return
        yield records_to_batch([dict(zip(names, r)) for r in rows])


# ---------------------------------------------------------------- files

def folder_path(conn, relative: str) -> Path:
    """``relative`` under the connection's folder; refuses anything that escapes it, and a folder outside
    the admin's file roots (checked again here: the registry's check was at registration)."""
    from services.connectors.files import FolderNotAllowed, allowed_folder

    try:
        folder = allowed_folder(conn.param("folder"), conn.name)
    except FolderNotAllowed as exc:
        raise ReaderError(str(exc)) from None
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder) or path == folder:
        raise ReaderError(f"{relative!r} is outside the folder of connection {conn.name!r}")
    return path


def file_format(path: Path, declared: Optional[str] = None) -> str:
    from services.domain.spec import FILE_EXTENSIONS

    fmt = declared or FILE_EXTENSIONS.get(path.suffix.lower().lstrip("."))
    if fmt not in ("csv", "jsonl", "xml", "parquet"):
        raise ReaderError(f"unknown file format for {path.name}")
    return fmt


def read_file(conn, relative: str, fmt: Optional[str] = None, *, batch_rows: int = DEFAULT_BATCH_ROWS,
              stats: Optional[ReadStats] = None) -> Iterator:
    stats = stats if stats is not None else ReadStats()
    path = folder_path(conn, relative)
    if not path.is_file():
        raise ReaderError(f"no file {relative!r} in the folder of connection {conn.name!r}")
    fmt = file_format(path, fmt)
    source = {"csv": _csv_batches, "jsonl": _jsonl_batches, "xml": _xml_batches,
              "parquet": _parquet_batches}[fmt](path, batch_rows)
    return _tracked(rebatch(source, batch_rows), stats)


def _block_size(batch_rows: int) -> int:
    # Arrow infers CSV/JSON types from the first block: a generous block makes that inference robust,
    # while the batches handed on are still sliced to batch_rows.
    return max(1 << 20, min(batch_rows * 256, 16 << 20))


def _csv_batches(path: Path, batch_rows: int) -> Iterator:
    import pyarrow.csv as pcsv

    from services.connectors.files import sniff_dialect

    with path.open(newline="", encoding="utf-8-sig") as fh:
        delimiter = sniff_dialect(fh.read(64 * 1024)).delimiter
    reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=_block_size(batch_rows)),
                           parse_options=pcsv.ParseOptions(delimiter=delimiter),
                           convert_options=pcsv.ConvertOptions(strings_can_be_null=True,
                                                               column_types=_csv_text_columns(path)))
    yield from reader


def _csv_text_columns(path: Path, sample: int = 2000) -> dict:
    """Columns the schema analyst typed as text stay text here too: Arrow would otherwise read a phone
    number such as +79991234567 as a float and the target would get 7.99e+10."""
    import pyarrow as pa

    from services.connectors.files import csv_rows, infer_columns, text_type

    columns = infer_columns(list(csv_rows(path, sample)), text_type, empty_is_null=True)
    return {c.name: pa.string() for c in columns if c.type == "text"}


def _jsonl_batches(path: Path, batch_rows: int) -> Iterator:
    import pyarrow.json as pj

    yield from pj.open_json(path, read_options=pj.ReadOptions(block_size=_block_size(batch_rows)))


def _parquet_batches(path: Path, batch_rows: int) -> Iterator:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        yield from pf.iter_batches(batch_size=batch_rows)


def _xml_batches(path: Path, batch_rows: int) -> Iterator:
    for chunk in chunked(xml_records(path), batch_rows):
        yield records_to_batch(chunk)


def xml_records(path: Path) -> Iterator[dict]:
    """The root's children with the first child's tag, streamed with iterparse (elements are cleared)."""
    import xml.etree.ElementTree as ET

    from services.connectors.files import local_path, xml_record

    depth, tag = 0, None
    for event, elem in ET.iterparse(path, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if event == "end" and depth == 1:
            tag = tag or local_path(elem.tag)
            if local_path(elem.tag) == tag:
                yield xml_record(elem)
            elem.clear()


# ---------------------------------------------------------------- Kafka (bounded)

def read_kafka(conn, topic: str, offsets: Optional[dict] = None, *, batch_rows: int = DEFAULT_BATCH_ROWS,
               stats: Optional[ReadStats] = None, timeout_s: float = 30.0) -> Iterator:
    """From ``offsets`` ({partition: next offset}; missing partitions from the beginning) to the end each
    partition had when the read started; ``stats.next_offsets`` is where the next run starts."""
    from confluent_kafka import Consumer

    from services.connectors.kafka_topics import client_config, topic_partitions

    stats = stats if stats is not None else ReadStats()
    consumer = Consumer({**client_config(conn), "group.id": f"aietl-exec-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        ends = _kafka_plan(consumer, topic, topic_partitions(conn, topic), offsets or {}, stats)
        yield from _tracked(_kafka_batches(consumer, ends, batch_rows, stats, timeout_s), stats)
    finally:
        consumer.close()


def _kafka_plan(consumer, topic: str, partitions: list[int], offsets: dict, stats: ReadStats) -> dict:
    """Assigns each partition that has unread messages; returns {partition: end offset}."""
    from confluent_kafka import TopicPartition

    ends, assign = {}, []
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        start = max(int(offsets.get(str(p), offsets.get(p, low))), low)
        stats.next_offsets[str(p)] = max(start, 0)
        if start < high:
            ends[p] = high
            assign.append(TopicPartition(topic, p, start))
    if assign:
        consumer.assign(assign)
    return ends


def _kafka_batches(consumer, ends: dict, batch_rows: int, stats: ReadStats, timeout_s: float) -> Iterator:
    from confluent_kafka import KafkaException

    from services.connectors.kafka_topics import decode_value

    pending, records = dict(ends), []
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=batch_rows - len(records), timeout=0.5):
            if msg.error() is not None:
                raise KafkaException(msg.error())
            p, off = msg.partition(), msg.offset()
            if p not in pending or off >= pending[p]:
                continue  # written after the read started: left for the next run
            if msg.value() is not None:
                records.append(decode_value(msg.value()))
            stats.next_offsets[str(p)] = off + 1
            if off + 1 >= pending[p]:
                pending.pop(p)
        if len(records) >= batch_rows or (records and not pending):
            yield records_to_batch(records)
            records = []
    if pending:
        raise ReaderError(f"timed out reading Kafka partitions {sorted(pending)} to their end")


# ---------------------------------------------------------------- HTTP JSON APIs

def read_http(conn, url: str, *, batch_rows: int = DEFAULT_BATCH_ROWS, stats: Optional[ReadStats] = None,
              query: Optional[dict] = None, max_pages: int = 10_000) -> Iterator:
    """Follows ``next`` links (body ``next``/``links.next`` or the Link header); or, with the connection's
    ``page_param``, pages 1, 2, ... until an empty page. Auth headers come from the connection's secrets."""
    stats = stats if stats is not None else ReadStats()
    return _tracked(_http_batches(conn, url, batch_rows, query or {}, max_pages), stats)


def _http_batches(conn, url: str, batch_rows: int, query: dict, max_pages: int) -> Iterator:
    buffered: list[dict] = []
    for records in _http_pages(conn, url, query, max_pages):
        buffered.extend(records)
        while len(buffered) >= batch_rows:
            yield records_to_batch(buffered[:batch_rows])
            buffered = buffered[batch_rows:]
    if buffered:
        yield records_to_batch(buffered)


def _http_pages(conn, url: str, query: dict, max_pages: int) -> Iterator[list[dict]]:
    from services.connectors import egress
    from services.connectors.introspect import http_headers

    base = conn.param("base_url").rstrip("/")
    target = url if re.match(r"^https?://", url) else base + "/" + url.lstrip("/")
    _same_host(base, target)  # the connection's credentials go to its own host only, never to one a spec names
    page_param = conn.param("page_param")
    policy = egress.default_policy()  # every hop's resolved addresses checked (docs/SECURITY.md, item 4)
    with egress.client(policy, float(conn.param("timeout_s", 10))) as client:
        params = dict(query)
        for page in itertools.count(1):
            if page > max_pages:
                raise ReaderError(f"more than {max_pages} pages at {url}")
            if page_param:
                params[page_param] = page
            # an empty params is sent as none: {} would drop the query of a next link
            resp = egress.fetch(client, target, base_url=base, credentials=http_headers(conn), params=params,
                                policy=policy)
            resp.raise_for_status()
            doc = resp.json()
            records = _page_records(conn, doc)
            if records:
                yield records
            nxt = _next_link(doc, resp)
            if page_param and not records:
                return
            if not page_param:
                if not nxt:
                    return
                target, params = str(resp.url.join(nxt)), {}
                _same_host(base, target)


def _page_records(conn, doc: Any) -> list[dict]:
    from services.connectors.files import records_in

    for key in filter(None, (conn.param("records_path") or "").split(".")):
        doc = doc.get(key) if isinstance(doc, dict) else None
    return records_in(doc)


def _next_link(doc: Any, resp) -> Optional[str]:
    if isinstance(doc, dict):
        links = doc.get("links")
        nxt = doc.get("next") or (links.get("next") if isinstance(links, dict) else None)
        if isinstance(nxt, str) and nxt:
            return nxt
    link = resp.links.get("next")
    return link.get("url") if link else None


def _same_host(base: str, url: str) -> None:
    # The auth header must never be sent to another host a page links to.
    import httpx

    b, u = httpx.URL(base), httpx.URL(url)
    if (b.host, b.port) != (u.host, u.port):
        raise ReaderError(f"{url} leaves the connection's host {b.host}")
