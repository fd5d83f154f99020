"""Arrow batch helpers shared by readers, the transform and writers.

Everything here works on one bounded batch at a time: rows are accumulated into chunks of at most
``batch_rows`` and turned into a ``pyarrow.RecordBatch``; a run never holds more than one chunk.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

DEFAULT_BATCH_ROWS = 10_000


@dataclass
class ReadStats:
    """What a reader has read so far; ``high_water_mark`` is the max of the cursor column seen."""

    cursor_column: Optional[str] = None
    rows: int = 0
    bytes: int = 0
    batches: int = 0
    high_water_mark: Any = None
    next_offsets: dict = field(default_factory=dict)  # Kafka: partition -> next offset to read

    def track(self, batch) -> None:
        self.rows += batch.num_rows
        self.bytes += batch_nbytes(batch)
        self.batches += 1
        if self.cursor_column and self.cursor_column in batch.schema.names:
            top = column_max(batch, self.cursor_column)
            if top is not None and (self.high_water_mark is None or top > self.high_water_mark):
                self.high_water_mark = top


def batch_nbytes(batch) -> int:
    try:
        return int(batch.nbytes)
    except Exception:  # some extension arrays cannot report their size
        return int(batch.get_total_buffer_size())


def column_max(batch, name: str) -> Any:
    import pyarrow.compute as pc

    col = batch.column(batch.schema.get_field_index(name))
    if col.null_count == len(col):
        return None
    return pc.max(col).as_py()


def cursor_text(value: Any) -> Optional[str]:
    """A high-water mark as the text the next run binds to ``%(cursor)s`` (no ``T``: every engine parses it)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def cursor_value(text: Optional[str]) -> Any:
    """The bound value for a stored cursor: numbers as numbers (ClickHouse will not compare Int with String)."""
    if text is None:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return text


def chunked(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def rebatch(batches: Iterable, batch_rows: int) -> Iterator:
    """Slices batches bigger than ``batch_rows`` (zero-copy); small ones pass through."""
    for batch in batches:
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)


def to_record_batch(data) -> Any:
    """A RecordBatch from a RecordBatch or Table (a Table is combined into one batch)."""
    import pyarrow as pa

    if isinstance(data, pa.RecordBatch):
        return data
    table = data.combine_chunks()
    batches = table.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def jsonable(value: Any) -> Any:
    """JSON-friendly value: decimals as strings keep every digit, temporal values as ISO text."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def dumps_row(row: dict) -> str:
    return json.dumps(jsonable(row), ensure_ascii=False, separators=(",", ":"))


def records_to_batch(records: Sequence[dict], schema=None):
    """A RecordBatch from dict records; nested values (dicts, mixed lists) become JSON text."""
    import pyarrow as pa

    if schema is not None:
        return pa.RecordBatch.from_pylist(list(records), schema=schema)
    try:
        return pa.RecordBatch.from_pylist(list(records))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        flat = [{k: _flat(v) for k, v in r.items()} for r in records]
        return pa.RecordBatch.from_pylist(flat)


def _flat(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(jsonable(value), ensure_ascii=False)
    return value


def nested_to_json(batch):
    """Struct / map / list columns as JSON text (for text formats such as CSV and COPY)."""
    import pyarrow as pa
    import pyarrow.types as at

    cols, changed = [], False
    for col, f in zip(batch.columns, batch.schema):
        if at.is_nested(f.type):
            changed = True
            col = pa.array([None if v is None else json.dumps(jsonable(v), ensure_ascii=False)
                            for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names) if changed else batch


def map_rows(batch, fn: Callable[[dict], dict]):
    return records_to_batch([fn(r) for r in batch.to_pylist()])
