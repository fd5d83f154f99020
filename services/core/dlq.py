"""Dead letters: what a reader of one of the platform's own logs does with a record it cannot decode or
apply. It skips the record, counts it, and -- if topology/topology.yaml makes it the producer of
``<topic>.dlq`` -- sends it there with the error, the original key and headers, and its partition/offset.

Why one producer per dead-letter topic: a log like ``pipelines.events.v1`` has a dozen readers, and each
meets the same foreign record; if every one of them dead-lettered it the DLQ would hold a dozen copies and
``aietl dlq replay`` would re-publish it a dozen times. The owner is named in the topology (it ``produces``
``<topic>.dlq`` and ``reads`` it, to know after a restart what it already sent); the others skip and count.

Counts are kept per processor in ``<run dir>/deadletters.<processor>.prom`` (Prometheus textfile format,
next to the supervisor's ``supervisor.prom``): ``aietl_dead_letters_total{processor,topic,action}`` with
action ``dead_lettered`` (sent to the DLQ) or ``skipped`` (another processor owns the DLQ, or it has none).
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import traceback
from collections import Counter
from typing import Callable, Optional

from services.core.eventlog import Record
from services.core.settings import Settings

log = logging.getLogger("aietl.dlq")
DLQ_SUFFIX = ".dlq"
# Headers a dead letter adds to the original record's own; `aietl dlq replay` strips exactly these.
DLQ_HEADERS = ("error_class", "error_message", "error_trace", "source_topic", "source_partition",
               "source_offset", "dead_lettered_by")
# What decoding or applying a record raises when the record, not the platform, is at fault.
POISON = (ValueError, KeyError, TypeError, AttributeError)

Send = Callable[[str, Optional[bytes], bytes, list], object]  # (topic, key, value, headers)


def dlq_headers(exc: BaseException, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [
        ("error_class", type(exc).__name__.encode()),
        ("error_message", str(exc)[:2000].encode()),
        ("error_trace", "".join(traceback.format_exception(exc))[-4000:].encode()),
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]


class NotOnThisLogError(ValueError):
    """A well-formed record of a type the topology does not declare for the topic it was found on."""


def record_of(event) -> Record:
    """A Faust event as the :class:`Record` the helpers take."""
    msg = event.message
    headers = msg.headers or []
    if isinstance(headers, dict):
        headers = list(headers.items())
    return Record(msg.topic, msg.partition, msg.offset, event.key, event.value, list(headers))


def source_of(headers) -> tuple[Optional[str], int, int]:
    """(source topic, partition, offset) a dead letter's headers name."""
    h = {k: (v.decode(errors="replace") if isinstance(v, bytes) else v) for k, v in headers or [] if v is not None}
    try:
        return h.get("source_topic"), int(h.get("source_partition", -1)), int(h.get("source_offset", -1))
    except ValueError:
        return h.get("source_topic"), -1, -1


class DeadLetters:
    """One processor's dead-letter handling for every platform log it reads; safe from any thread."""

    def __init__(self, settings: Settings, processor: Optional[str] = None, topology=None):
        from topology.model import load_topology

        topo = topology or load_topology()
        self.settings = settings
        self.processor = processor or settings.kafka_principal
        me = topo.processors.get(self.processor)
        produced = set(me.produces) if me else set()
        # physical topic -> logical name, for every declared log
        self._logical = {settings.topic(name): name for name in topo.topics}
        self._values = {name: set(t.values) for name, t in topo.topics.items() if t.format == "avro"}
        self._owned = {name for name, t in topo.topics.items() if t.dlq and name + DLQ_SUFFIX in produced}
        self._lock = threading.RLock()
        self._seen: dict[str, set[tuple[int, int]]] = {}  # owned logical topic -> dead-lettered (p, offset)
        self._producer = None
        self.counts: Counter = Counter()  # (logical topic, action) -> n
        self._metrics_path = None

    # -- what belongs on a log -----------------------------------------------------------------------
    def check_declared(self, topic: str, name: str) -> None:
        """Raise :class:`NotOnThisLogError` when ``name`` is not a value type of (physical) ``topic``."""
        logical = self._logical.get(topic)
        values = self._values.get(logical) if logical else None
        if values and name not in values:
            raise NotOnThisLogError(f"{name} is not a record type of {logical}")

    def decode(self, codec, rec):
        """The record as a Message, once its bytes decode and its type belongs on its topic; raises POISON."""
        from services.core.messages import Message

        name, record = codec.decode(rec.value)
        self.check_declared(rec.topic, name)
        return Message.from_record(name, record)

    # -- a bad record ----------------------------------------------------------------------------------
    def owns(self, topic: str) -> bool:
        return self._logical.get(topic) in self._owned

    def poison(self, rec: Record, exc: BaseException, send: Optional[Send] = None) -> bool:
        """Skip ``rec``: count it and, if this processor owns the topic's DLQ and has not sent it there
        before, dead-letter it (through ``send`` when given, else its own producer; blocking). True if sent."""
        logical = self._logical.get(rec.topic, rec.topic)
        sent = False
        with self._lock:
            if logical in self._owned:
                seen = self._seen_for(logical)
                if (rec.partition, rec.offset) not in seen:
                    headers = [(k, v) for k, v in rec.headers or [] if k not in DLQ_HEADERS]
                    headers += dlq_headers(exc, rec.topic, rec.partition, rec.offset)
                    headers.append(("dead_lettered_by", self.processor.encode()))
                    (send or self._send)(rec.topic + DLQ_SUFFIX, rec.key, rec.value, headers)
                    seen.add((rec.partition, rec.offset))
                    sent = True
            self.counts[(logical, "dead_lettered" if sent else "skipped")] += 1
            self._write_metrics()
        log.warning("%s %s[%d]@%d: %s: %s", "dead-lettered" if sent else "skipped", rec.topic, rec.partition,
                    rec.offset, type(exc).__name__, exc)
        return sent

    async def apoison(self, rec: Record, exc: BaseException) -> bool:
        """:meth:`poison` from the event loop (producing and the first DLQ read block)."""
        return await asyncio.to_thread(self.poison, rec, exc)

    def total(self, logical: Optional[str] = None) -> int:
        with self._lock:
            return sum(n for (t, _), n in self.counts.items() if logical is None or t == logical)

    # -- internals -----------------------------------------------------------------------------------------
    def _seen_for(self, logical: str) -> set[tuple[int, int]]:
        if logical not in self._seen:
            self._seen[logical] = dead_lettered(self.settings, self.settings.topic(logical))
        return self._seen[logical]

    def _send(self, topic: str, key: Optional[bytes], value: bytes, headers: list) -> None:
        from services.core.kafka import producer

        if self._producer is None:
            self._producer = producer(self.settings)
        self._producer.produce(topic, key=key, value=value, headers=headers)
        if self._producer.flush(30):
            raise RuntimeError(f"dead letter for {topic} not delivered within 30 s")

    def _write_metrics(self) -> None:
        from services.processes import run_dir

        try:
            if self._metrics_path is None:
                self._metrics_path = run_dir(self.settings) / f"deadletters.{self.processor}.prom"
            metric = "aietl_dead_letters_total"
            lines = [f"# HELP {metric} Records of a platform log skipped because they could not be decoded "
                     "or applied.", f"# TYPE {metric} counter"]
            lines += [f'{metric}{{processor="{self.processor}",prefix="{self.settings.topic_prefix}",'
                      f'topic="{t}",action="{a}"}} {n}' for (t, a), n in sorted(self.counts.items())]
            tmp = self._metrics_path.with_suffix(".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            os.replace(tmp, self._metrics_path)
        except OSError as exc:  # a metrics file must never stop a reader
            log.warning("could not write dead-letter metrics: %s", exc)


def dead_lettered(settings: Settings, source_topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of ``source_topic`` records already in its DLQ: a restart's catch-up meets the
    same bad record again and must not dead-letter it twice."""
    from services.core.eventlog import LogReader

    reader = LogReader(settings, source_topic + DLQ_SUFFIX)
    try:
        out = set()
        for rec in reader.read({}):
            topic, partition, offset = source_of(rec.headers)
            if topic == source_topic and offset >= 0:
                out.add((partition, offset))
        return out
    finally:
        reader.close()


# -- operating the DLQs (`aietl dlq list | show | replay`) -------------------------------------------------

class DlqError(ValueError):
    """A DLQ name or record the operator asked for that does not exist."""


def dlq_name(settings: Settings, name: str, topology=None) -> str:
    """The prefixed DLQ topic for ``name``: a source log or its DLQ, with or without the prefix."""
    from topology.model import load_topology

    topo = topology or load_topology()
    logical = name[len(settings.topic_prefix):] if name.startswith(settings.topic_prefix) else name
    logical = logical[: -len(DLQ_SUFFIX)] if logical.endswith(DLQ_SUFFIX) else logical
    topic = topo.topics.get(logical)
    if topic is None or not topic.dlq:
        known = ", ".join(sorted(t.name for t in topo.topics.values() if t.dlq))
        raise DlqError(f"{name!r} has no dead-letter topic; these do: {known}")
    return settings.topic(logical + DLQ_SUFFIX)


def list_dlqs(settings: Settings, topology=None) -> list[dict]:
    """Each declared DLQ: its source log, the processor that writes it, and how many letters it holds."""
    from services.core.eventlog import LogReader
    from topology.model import load_topology

    topo = topology or load_topology()
    out = []
    for t in sorted((t for t in topo.topics.values() if t.dlq), key=lambda t: t.name):
        name = settings.topic(t.name + DLQ_SUFFIX)
        row = {"dlq": name, "source": settings.topic(t.name), "written_by": topo.producers_of(t.name + DLQ_SUFFIX),
               "letters": None}
        try:
            reader = LogReader(settings, name)
        except RuntimeError:  # declared but not created: `aietl topology apply` has not run since
            out.append({**row, "missing": True})
            continue
        try:
            ends, starts = reader.end_offsets(), reader.start_offsets()
        finally:
            reader.close()
        out.append({**row, "letters": sum(ends[p] - starts[p] for p in ends)})
    return out


def letter(rec: Record) -> dict:
    """A dead letter as the operator reads it."""
    h = {k: (v.decode(errors="replace") if isinstance(v, bytes) else v) for k, v in rec.headers or []}
    topic, partition, offset = source_of(rec.headers)
    value = rec.value or b""
    return {"partition": rec.partition, "offset": rec.offset, "source_topic": topic,
            "source_partition": partition, "source_offset": offset, "error_class": h.get("error_class"),
            "error_message": h.get("error_message"), "dead_lettered_by": h.get("dead_lettered_by"),
            "key": rec.key.decode(errors="replace") if rec.key is not None else None,
            "headers": {k: v for k, v in h.items() if k not in DLQ_HEADERS}, "bytes": len(value),
            "value_preview": value[:120].decode("utf-8", errors="backslashreplace")}


def read_letters(settings: Settings, dlq_topic: str, offset: Optional[int] = None,
                 partition: Optional[int] = None) -> list[Record]:
    """The DLQ's records (all, or those at ``offset`` [of ``partition``]), in partition/offset order."""
    from services.core.eventlog import LogReader

    reader = LogReader(settings, dlq_topic)
    try:
        starts = {p: offset for p in reader.partitions if partition in (None, p)} if offset is not None else \
            {p: 0 for p in reader.partitions if partition in (None, p)}
        found = []
        for rec in reader.read(starts):
            if partition is not None and rec.partition != partition:
                continue
            if offset is not None and rec.offset != offset:
                continue
            found.append(rec)
        return sorted(found, key=lambda r: (r.partition, r.offset))
    finally:
        reader.close()


def replay_letters(settings: Settings, letters: list[Record]) -> list[tuple[str, int, int]]:
    """Re-publish each letter to the topic it came from, with its original key and headers (the dead
    letter's own headers removed); (topic, partition, offset) where each landed."""
    from services.core.kafka import producer

    p = producer(settings)
    landed: list = []
    errors: list = []

    def delivered(err, msg) -> None:
        if err is not None:
            errors.append(err)
        else:
            landed.append((msg.topic(), msg.partition(), msg.offset()))

    for rec in letters:
        topic, _, _ = source_of(rec.headers)
        if not topic:
            raise DlqError(f"letter {rec.partition}:{rec.offset} of {rec.topic} names no source topic")
        p.produce(topic, key=rec.key, value=rec.value,
                  headers=[(k, v) for k, v in rec.headers or [] if k not in DLQ_HEADERS],
                  on_delivery=delivered)
    if p.flush(30) or errors:
        raise RuntimeError(f"{len(letters) - len(landed)} of {len(letters)} letters not re-published: "
                           f"{errors[:1]}")
    return landed
