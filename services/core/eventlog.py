"""Reading a topic from known offsets up to its current end, outside any consumer group.

Used to rebuild state from the log: the aggregate catches up on the events topic at start-up and when
it gains partitions; agents, the executor and the scheduler fold it; the projector replays it into Redis.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

from services.core.kafka import consumer
from services.core.settings import Settings


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    value: bytes
    headers: list


class LogReader:
    """Reads every partition of one topic from given positions to the high-water mark."""

    def __init__(self, settings: Settings, topic: str, timeout: float = 10.0):
        from confluent_kafka import TopicPartition

        self._tp = TopicPartition
        self.topic = topic
        self.timeout = timeout
        # A group id is required by librdkafka, but nothing is ever committed under it.
        # fetch.wait.max.ms: librdkafka keeps one fetch in flight per broker and a read's first fetch
        # queues behind the previous one, which the broker holds for this long when nothing is new on
        # the other partitions: with the default (500 ms) every catch-up of one new record took 0.5 s.
        self._consumer = consumer(settings, group_id=f"{topic}.reader",
                                  **{"enable.partition.eof": True, "fetch.wait.max.ms": 10})
        meta = self._consumer.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise RuntimeError(f"topic {topic} is not available: {meta.error}")
        self.partitions = sorted(meta.partitions)

    def end_offsets(self) -> dict[int, int]:
        from confluent_kafka import KafkaError, KafkaException

        # A topic created a moment ago may have no leader yet; a leader may be moving. Retried for a while.
        transient = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                     KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT, KafkaError._TRANSPORT}
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return {p: self._consumer.get_watermark_offsets(self._tp(self.topic, p), timeout=self.timeout,
                                                                cached=False)[1] for p in self.partitions}
            except KafkaException as exc:
                if exc.args[0].code() not in transient or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def start_offsets(self) -> dict[int, int]:
        """The oldest offset still held, per partition (retention may have removed earlier ones)."""
        return {p: self._consumer.get_watermark_offsets(self._tp(self.topic, p), timeout=self.timeout,
                                                        cached=False)[0] for p in self.partitions}

    def read(self, positions: dict[int, int]) -> Iterator[Record]:
        """Yield records from ``positions`` (next offset per partition; missing = 0) to the end."""
        ends = self.end_offsets()
        todo = {p: ends[p] for p in self.partitions if positions.get(p, 0) < ends[p]}
        if not todo:
            return
        self._consumer.assign([self._tp(self.topic, p, positions.get(p, 0)) for p in todo])
        try:
            while todo:
                msg = self._consumer.poll(self.timeout)
                if msg is None:
                    raise TimeoutError(f"no progress reading {self.topic} partitions {sorted(todo)}")
                if msg.error():
                    if msg.error().code() == -191:  # _PARTITION_EOF
                        if msg.offset() >= todo.get(msg.partition(), 0):
                            todo.pop(msg.partition(), None)
                        continue
                    raise RuntimeError(f"reading {self.topic}: {msg.error()}")
                p, off = msg.partition(), msg.offset()
                if p not in todo:
                    continue
                yield Record(self.topic, p, off, msg.key(), msg.value(), msg.headers() or [])
                if off + 1 >= todo[p]:
                    todo.pop(p)
        finally:
            self._consumer.unassign()

    def close(self) -> None:
        self._consumer.close()


# What a fold cannot decode: undecodable bytes, truncated Avro, a record without an envelope.
UNDECODABLE = (ValueError, KeyError, TypeError)


def decoded(records: Iterable[Record], codec, on_undecodable: Callable[[Record, Exception], None]):
    """(record, Message) for each record; one that cannot be decoded goes to ``on_undecodable`` instead,
    so a single foreign record on a log cannot stop the readers of that log."""
    from services.core.messages import Message

    for rec in records:
        try:
            name, record = codec.decode(rec.value)
            msg = Message.from_record(name, record)
        except UNDECODABLE as exc:
            on_undecodable(rec, exc)
            continue
        yield rec, msg


def broker_away(exc: BaseException) -> bool:
    """A read of a log that failed because the broker is away for a moment: restarting (transport down, all
    brokers down, timed out) or just back (metadata or partition leaders not loaded yet). A periodic reader
    tries again at its next tick; anything else (a fatal error, a bug) is not this."""
    from confluent_kafka import KafkaError, KafkaException

    if isinstance(exc, TimeoutError):
        return True
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError) \
        else None
    if err is None or err.fatal():
        return False
    return err.retriable() or err.code() in (
        KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE)


def read_all(settings: Settings, topic: str, fn: Callable[[Record], None]) -> int:
    reader = LogReader(settings, topic)
    try:
        n = 0
        for rec in reader.read({}):
            fn(rec)
            n += 1
        return n
    finally:
        reader.close()
