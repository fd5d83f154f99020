"""The streaming data plane: one deployed streaming pipeline consuming its Kafka topic in micro-batches.

:class:`StreamRunner` joins the consumer group ``<topic_prefix>stream.<pipeline_id>`` on the source topic
(used as written: a user topic, not prefixed), collects messages into a micro-batch until it holds
``streaming.max_batch_rows`` messages or ``streaming.max_batch_seconds`` have passed since the batch's first
message, turns it into an Arrow batch (the batch readers' conversion), runs the Transformer and writes it
through the writer, then reports ``events.batch_loaded`` and only then commits the batch's offsets
synchronously. The executor's Faust app runs one runner per active streaming deployment in a thread and
turns the callbacks into run events.

Delivery: **at least once, never lost.** Offsets are committed only after the durable write and the event,
so a crash anywhere before the commit makes the group re-read the batch from the last committed offsets.

* Each write carries the key ``<run_id>:p<partition>:<first>-<last>[,...]`` (the batch's offset ranges).
  An identical range delivered again under the same run id is skipped by the writer (PostgreSQL / SQLite:
  no window; ClickHouse: the writer's check-then-record window).
* A range cut differently after a restart (another run id, other batch bounds) is written again. Merge
  targets collapse those rows by key (PostgreSQL ``ON CONFLICT``, ClickHouse ``ReplacingMergeTree`` read
  with ``FINAL``): every event exactly once. **Append targets are at least once**: the rows of a batch
  written but not committed before a crash can appear twice.
* Replace makes no sense for an endless stream and is refused at construction.
* A file target is written batch by batch (one writer per micro-batch, committed with a rename, its key
  recorded in the file's sidecar): fine for small streams, each batch rewrites the file.

Errors: a retryable one (Kafka transient, the target or the connection registry unreachable, PostgreSQL
connection / serialization errors) is logged as a WARNING and the same step is retried with back-off
(1 s, 2 s, 4 s, ... capped at 30 s). A message that cannot be decoded (not Avro on an Avro source, an
unknown schema) is a poison message: it goes to ``<topic>.dlq`` on the source's cluster (original key,
value and headers plus services.core.dlq's error and partition/offset headers), its offset is loaded like a
tombstone's and the stream goes on; if it cannot be dead-lettered the stream stops rather than lose it.
Anything else (a transform error on the data, a missing connection) is raised from :meth:`StreamRunner.run` and the executor records RunFailed. Setting
``stop`` makes ``run`` return within about ``poll_timeout_s`` (a write in progress is finished and
committed first; buffered, unwritten messages are simply left for the next start).

Lag (``events.lag``, about every 2 s and after each batch): the sum over the assigned partitions of the
high watermark minus the first offset not loaded yet (the first buffered offset, else the consumer's
position, else the committed offset, else the low watermark). ``loaded_total`` counts the messages this
runner loaded.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from services.executor.batches import batch_nbytes, records_to_batch, to_record_batch

LAG_EVERY_S = 2.0
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
LAG_QUERY_TIMEOUT_S = 1.0  # short: a lag report must not hold up ``stop`` when the broker is away
WRITER_RECYCLE_BATCHES = 1000  # a writer remembers every key it wrote; a stream never ends
# Checked again this often, so a topic created after the deploy (its producer creates it) or new partitions
# are picked up in seconds rather than librdkafka's default five minutes.
METADATA_REFRESH_MS = 5000
WARN_EVERY_S = 30.0  # the same consumer error is logged at most this often


class StreamEvents(Protocol):
    # cursor = JSON {"<partition>": next_offset}; timings extract_ms/transform_ms/load_ms
    def batch_loaded(self, batch_no: int, rows_in: int, rows_written: int, nbytes: int, cursor: str,
                     timings: dict) -> None: ...

    def lag(self, lag: int, loaded_total: int) -> None: ...

    def log(self, level: str, message: str) -> None: ...


class StreamError(ValueError):
    """The deployment does not describe a runnable stream (not a Kafka source, replace mode, ...)."""


class _Stopped(Exception):
    """``stop`` was set while waiting to retry: leave without committing."""


# ---------------------------------------------------------------- the micro-batch being collected

@dataclass
class _Pending:
    """Messages of the current micro-batch: (partition, offset, record or None for a tombstone)."""

    messages: list = field(default_factory=list)
    started: float = 0.0  # monotonic time of the first message: the time bound runs from there

    def __len__(self) -> int:
        return len(self.messages)

    def add(self, partition: int, offset: int, record: Optional[dict]) -> None:
        if not self.messages:
            self.started = time.monotonic()
        self.messages.append((partition, offset, record))

    def drop(self, partitions: set) -> int:
        """Forgets the messages of revoked partitions (their new owner re-reads them from the commit)."""
        before = len(self.messages)
        self.messages = [m for m in self.messages if m[0] not in partitions]
        if not self.messages:
            self.started = 0.0
        return before - len(self.messages)

    def ranges(self) -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        for p, off, _ in self.messages:
            first, last = out.get(p, (off, off))
            out[p] = (min(first, off), max(last, off))
        return dict(sorted(out.items()))

    def records(self) -> list[dict]:
        return [r for _, _, r in self.messages if r is not None]

    def key(self, run_id: str) -> str:
        return f"{run_id}:" + ",".join(f"p{p}:{a}-{b}" for p, (a, b) in self.ranges().items())

    def first_offsets(self) -> dict[int, int]:
        return {p: a for p, (a, _) in self.ranges().items()}


# ---------------------------------------------------------------- the runner

class StreamRunner:
    """Runs one streaming deployment until ``stop`` is set; see the module doc for the guarantees."""

    def __init__(self, settings, deployment, registry, *, run_id: str, events: StreamEvents,
                 stop: threading.Event, first_batch_no: int = 0, poll_timeout_s: float = 0.5):
        self.settings, self.deployment, self.registry = settings, deployment, registry
        self.run_id, self.events, self.stop = run_id, events, stop
        self.poll_timeout_s = poll_timeout_s
        self.spec = deployment.spec
        self.artifacts = deployment.artifacts or {}
        self.source, self.target = _check_spec(self.spec)
        bounds = self.spec.get("streaming") or {}
        self.max_rows = int(bounds.get("max_batch_rows") or 1000)
        self.max_seconds = float(bounds.get("max_batch_seconds") or 5.0)
        self.topic = self.source["topic"]
        self.group_id = f"{settings.topic_prefix}stream.{deployment.pipeline_id}"
        self.batch_no = first_batch_no
        self.loaded_total = 0
        self._consumer = None
        self._src = None
        self._dead_producer = None
        self._dst = None
        self._writer = None
        self._pending = _Pending()
        self._cursor: dict[str, int] = {}  # next offset per partition loaded by this runner
        self._known: dict[str, Any] = {}   # column -> Arrow type seen in earlier batches
        self._last_lag = 0.0
        self._writes = 0
        self._warned: dict[str, float] = {}

    # -- lifecycle

    def run(self) -> None:
        """Blocks until ``stop`` is set (returns promptly) or raises on a non-retryable error."""
        from services.executor.transform import Transformer

        transform = Transformer(self.artifacts.get("transform_sql") or (self.spec.get("transform") or {}).get("sql"),
                                self.artifacts.get("python_code") or (self.spec.get("transform") or {}).get("python"))
        try:
            self._start()
            while not self.stop.is_set():
                if self._collect():
                    self._load(transform)
                self._report_lag()
        except _Stopped:
            pass
        finally:
            transform.close()
            self._close()

    def _start(self) -> None:
        src = self._retry("resolving the source connection", lambda: self._resolve(self.source))
        self._dst = self._retry("resolving the target connection", lambda: self._resolve(self.target))
        self._src = src
        self._consumer = _consumer(src, self.group_id)
        self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)
        self.events.log("INFO", f"streaming {self.topic} in batches of at most {self.max_rows} messages or "
                                f"{self.max_seconds:g} s (group {self.group_id})")

    def _resolve(self, endpoint: dict):
        return self.registry.resolve(self.deployment.tenant_id, kind=endpoint["kind"],
                                     name=endpoint.get("connection"))

    def _close(self) -> None:
        self._drop_writer()
        if self._consumer is not None:
            try:
                self._consumer.close()  # leaves the group: a restarted runner is assigned at once
            except Exception:  # already closed / broker gone: nothing more to release
                pass
            self._consumer = None

    # -- consuming

    def _on_assign(self, consumer, partitions) -> None:
        self.events.log("INFO", f"assigned partitions {sorted(tp.partition for tp in partitions)} of {self.topic}")

    def _on_revoke(self, consumer, partitions) -> None:
        dropped = self._pending.drop({tp.partition for tp in partitions})
        if dropped:
            self.events.log("INFO", f"partitions revoked: {dropped} buffered messages left to their new owner")

    def _collect(self) -> bool:
        """Fills the pending batch until a bound is hit (True) or ``stop`` is set (False); reports the lag
        meanwhile."""
        while not self.stop.is_set():
            pending = self._pending
            timeout = self.poll_timeout_s
            if pending:
                timeout = max(0.0, min(timeout, pending.started + self.max_seconds - time.monotonic()))
            msgs = self._consumer.consume(num_messages=self.max_rows - len(pending), timeout=timeout)
            errors = [m for m in msgs if m.error() is not None]
            for msg in msgs:
                if msg.error() is None:
                    self._pending.add(msg.partition(), msg.offset(), self._decode_or_dead_letter(msg))
            if errors:
                self._consumer_errors(errors)
                # librdkafka reconnects by itself; only avoid spinning if it keeps returning errors at once
                if len(errors) == len(msgs) and self.stop.wait(self.poll_timeout_s):
                    return False
            pending = self._pending
            if len(pending) >= self.max_rows or (pending and time.monotonic() >= pending.started + self.max_seconds):
                return True
            self._report_lag()
        return False

    def _decode_or_dead_letter(self, msg) -> Optional[dict]:
        """The message's record; a poison message goes to the DLQ and counts as a tombstone (None)."""
        from services.connectors.introspect import IntrospectionError

        try:
            return self._decode(msg.value())
        except (StreamError, IntrospectionError) as exc:
            self._dead_letter(msg, exc)
            return None

    def _dead_letter(self, msg, exc: BaseException) -> None:
        from confluent_kafka import Producer

        from services.connectors.kafka_topics import client_config
        from services.core.dlq import DLQ_SUFFIX, dlq_headers

        if self._dead_producer is None:
            self._dead_producer = Producer({**client_config(self._src), "client.id": "aietl-stream-dlq",
                                            "enable.idempotence": True, "acks": "all"})
        dlq = self.topic + DLQ_SUFFIX
        failed: list = []
        headers = list(msg.headers() or []) + dlq_headers(exc, self.topic, msg.partition(), msg.offset())
        self._dead_producer.produce(dlq, key=msg.key(), value=msg.value(), headers=headers,
                                    on_delivery=lambda err, _m: failed.append(err) if err else None)
        if self._dead_producer.flush(30) or failed:
            raise StreamError(f"a poison message of {self.topic} ({msg.partition()}:{msg.offset()}: {exc}) could "
                              f"not be sent to {dlq}: {failed[:1] or 'not delivered within 30 s'}")
        self.events.log("WARNING", f"poison message {self.topic} {msg.partition()}:{msg.offset()} sent to {dlq}: "
                                   f"{exc}")

    def _decode(self, value: Optional[bytes]) -> Optional[dict]:
        from services.connectors.kafka_topics import AVRO_MARKER, decode_value

        if value is None:
            return None  # a tombstone: its offset is loaded (committed), it carries no row
        if self.source.get("message_format") == "avro" and value[:2] != AVRO_MARKER:
            raise StreamError(f"a message of {self.topic} is not an Avro single-object message "
                              "(the source's message_format is avro)")
        return decode_value(value)

    def _consumer_errors(self, errors: list) -> None:
        """Fatal or authorization errors end the stream; the others are transient (librdkafka recovers)."""
        from confluent_kafka import KafkaError, KafkaException

        for msg in errors:
            err = msg.error()
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            if err.fatal() or err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                             KafkaError.GROUP_AUTHORIZATION_FAILED,
                                             KafkaError.SASL_AUTHENTICATION_FAILED):
                raise KafkaException(err)
            self._warn(f"kafka:{err.code()}", f"consuming {self.topic}: {err.str()}")

    def _warn(self, what: str, message: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(what, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned[what] = now
            self.events.log("WARNING", message)

    # -- loading one micro-batch

    def _load(self, transform) -> None:
        pending, self._pending = self._pending, _Pending()
        records = pending.records()
        key = pending.key(self.run_id)
        if records:
            self._load_records(transform, pending, records, key)
        self._commit(pending)
        self._report_lag(force=True)

    def _load_records(self, transform, pending: _Pending, records: list, key: str) -> None:
        """Arrow, transform, write (retried), event (retried). extract_ms is the batch's fill time: from its
        first message until its Arrow batch is built."""
        batch = self._conform(records_to_batch(records))
        t1 = time.monotonic()
        out = to_record_batch(transform(batch))  # a TransformError on data is not retried: it would fail again
        t2 = time.monotonic()
        written = self._retry(f"writing batch {self.batch_no}", lambda: self._write(out, key),
                              on_error=self._drop_writer)
        t3 = time.monotonic()
        for p, (_, last) in pending.ranges().items():
            self._cursor[str(p)] = last + 1
        cursor = json.dumps(dict(sorted(self._cursor.items(), key=lambda kv: int(kv[0]))))
        timings = {"extract_ms": _ms(t1 - pending.started), "transform_ms": _ms(t2 - t1), "load_ms": _ms(t3 - t2)}
        nbytes = batch_nbytes(batch)
        self._retry(f"reporting batch {self.batch_no}", lambda: self.events.batch_loaded(
            self.batch_no, batch.num_rows, written, nbytes, cursor, timings))
        self.batch_no += 1
        self.loaded_total += batch.num_rows

    def _conform(self, batch):
        """Adds columns earlier batches had and this one lacks (as nulls of their type), so a transform
        naming a sparse JSON field does not fail on a batch where no message carried it."""
        import pyarrow as pa

        names = batch.schema.names
        arrays, fields = list(batch.columns), list(batch.schema)
        for i, f in enumerate(fields):
            known = self._known.get(f.name)
            if pa.types.is_null(f.type) and known is not None:
                arrays[i], fields[i] = pa.nulls(batch.num_rows, known), pa.field(f.name, known)
        for name, typ in self._known.items():
            if name not in names:
                arrays.append(pa.nulls(batch.num_rows, typ))
                fields.append(pa.field(name, typ))
        for f in fields:
            if not pa.types.is_null(f.type) or f.name not in self._known:
                self._known[f.name] = f.type
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))

    def _write(self, out, key: str) -> int:
        from services.executor.writers import open_writer

        if self.target["kind"] == "file":
            # A file is committed by a rename at finish(): one writer per micro-batch, keyed by its ranges.
            with open_writer(self._dst, self.target, run_id=key, artifacts=self.artifacts) as w:
                written = w.write(out, key)
                w.finish()
                return written
        if self._writer is None:
            self._writer = open_writer(self._dst, self.target, run_id=self.run_id, artifacts=self.artifacts)
        written = self._writer.write(out, key)
        self._writes += 1
        if self._writes % WRITER_RECYCLE_BATCHES == 0:
            self._drop_writer()  # a fresh writer starts with an empty key memory (the target keeps the keys)
        return written

    def _drop_writer(self) -> None:
        """Closes the writer (after an error its session may be broken; a new one is opened lazily)."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # a broken connection cannot be closed cleanly: it is dropped anyway
                pass
            self._writer = None

    def _commit(self, pending: _Pending) -> None:
        """Synchronous commit of the batch's next offsets. A failed commit is only logged: the data is
        written, and the next batch's commit (or a re-read after a restart, idempotent) covers it."""
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(self.topic, p, last + 1) for p, (_, last) in pending.ranges().items()]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.events.log("WARNING", f"offsets of batch {self.batch_no - 1} not committed ({exc}); "
                                       "the range may be read again")

    # -- retries

    def _retry(self, what: str, fn: Callable[[], Any], on_error: Optional[Callable[[], None]] = None) -> Any:
        delay = BACKOFF_FIRST_S
        while True:
            try:
                return fn()
            except Exception as exc:
                if not retryable(exc):
                    raise
                self.events.log("WARNING", f"{what} failed ({type(exc).__name__}: {str(exc).strip()}); "
                                           f"retrying in {delay:g} s")
                if on_error:
                    on_error()
                if self.stop.wait(delay):
                    raise _Stopped() from None
                delay = min(delay * 2, BACKOFF_MAX_S)

    # -- lag

    def _report_lag(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_lag < LAG_EVERY_S:
            return
        self._last_lag = now
        lag = self.lag()
        if lag is None:
            return
        try:
            self.events.lag(lag, self.loaded_total)
        except Exception as exc:  # a metric that cannot be sent must not stop the loading
            self._warn("lag", f"lag not reported: {type(exc).__name__}: {exc}")

    def lag(self) -> Optional[int]:
        """Messages of the assigned partitions not loaded yet; None when nothing is assigned or Kafka
        does not answer in time (the next report tries again)."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            assigned = [tp.partition for tp in self._consumer.assignment()]
            if not assigned:
                return None
            start = self._unloaded_from(assigned)
            total = 0
            for p in assigned:
                low, high = self._watermarks(TopicPartition(self.topic, p), need_low=p not in start)
                total += max(0, high - max(start.get(p, low), low))
            return total
        except KafkaException:
            return None

    def _watermarks(self, tp, need_low: bool) -> tuple[int, int]:
        """The fetcher's cached watermarks (free, refreshed by every fetch response), else a broker query."""
        low, high = self._consumer.get_watermark_offsets(tp, cached=True)
        if high < 0 or (need_low and low < 0):
            low, high = self._consumer.get_watermark_offsets(tp, timeout=LAG_QUERY_TIMEOUT_S, cached=False)
        return low, high

    def _unloaded_from(self, partitions: list[int]) -> dict[int, int]:
        """First offset not loaded per partition: buffered first, else position, else committed."""
        from confluent_kafka import TopicPartition

        start = self._pending.first_offsets()
        missing = [p for p in partitions if p not in start]
        tps = [TopicPartition(self.topic, p) for p in missing]
        unknown = []
        for tp in self._consumer.position(tps) if tps else []:
            if tp.offset >= 0:
                start[tp.partition] = tp.offset
            else:
                unknown.append(TopicPartition(self.topic, tp.partition))
        if unknown:
            for tp in self._consumer.committed(unknown, timeout=LAG_QUERY_TIMEOUT_S):
                if tp.offset >= 0:
                    start[tp.partition] = tp.offset
        return start


# ---------------------------------------------------------------- helpers

def _check_spec(spec: dict) -> tuple[dict, dict]:
    source, target = spec.get("source") or {}, spec.get("target") or {}
    if source.get("kind") != "kafka" or not source.get("topic"):
        raise StreamError("a streaming pipeline needs a kafka source with a topic")
    if not target.get("kind"):
        raise StreamError("the pipeline has no target")
    if target.get("load_mode", "append") == "replace":
        raise StreamError("load_mode replace cannot stream (each micro-batch would replace the table); "
                          "use append, or merge with keys")
    return source, target


def _consumer(conn, group_id: str):
    from confluent_kafka import Consumer

    from services.connectors.kafka_topics import client_config

    return Consumer({**client_config(conn), "client.id": "aietl-stream", "group.id": group_id,
                     "enable.auto.commit": False,
                     # earliest: what was produced between the deploy and the first start is not skipped
                     "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                     "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS})


def _ms(seconds: float) -> int:
    return max(0, int(round(seconds * 1000)))


_CH_RETRYABLE_CODES = {159, 202, 209, 210, 252, 425}  # timeout, too many queries/parts, socket/network
_PG_RETRYABLE_CLASSES = ("08", "40", "53", "57")       # connection, rollback, resources, operator


def retryable(exc: BaseException) -> bool:
    """A transient failure worth retrying the same step for (the exception or what it wraps)."""
    from services.executor.transform import TransformError

    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, (TransformError, StreamError)):
            return False
        if _transient(exc):
            return True
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        seen += 1
    return False


def _transient(exc: BaseException) -> bool:
    from services.connectors.registry import RegistryUnavailable

    if isinstance(exc, (ConnectionError, TimeoutError, BufferError, RegistryUnavailable)):
        return True
    module = type(exc).__module__ or ""
    if module.startswith("cimpl") or module.startswith("confluent_kafka"):
        return _kafka_transient(exc)
    if module.startswith("clickhouse_driver"):
        return _clickhouse_transient(exc)
    if module.startswith("psycopg"):
        return _postgres_transient(exc)
    return False


def _kafka_transient(exc: BaseException) -> bool:
    from confluent_kafka import KafkaError

    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if err is None or err.fatal():
        return False
    return err.retriable() or err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                                             KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT,
                                             KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_COORDINATOR,
                                             KafkaError.COORDINATOR_NOT_AVAILABLE)


def _clickhouse_transient(exc: BaseException) -> bool:
    from clickhouse_driver import errors

    if isinstance(exc, (errors.NetworkError, errors.SocketTimeoutError)):
        return True
    return isinstance(exc, errors.ServerException) and getattr(exc, "code", None) in _CH_RETRYABLE_CODES


def _postgres_transient(exc: BaseException) -> bool:
    import psycopg

    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state[:2] in _PG_RETRYABLE_CLASSES  # None: the connection itself failed


__all__ = ["StreamError", "StreamEvents", "StreamRunner", "retryable"]
