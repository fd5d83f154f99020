"""The consumer of the users' trigger topics: one confluent-kafka consumer in a thread of its own.

The Faust side hands it a :class:`Watches` snapshot (which topics to follow, for which pipelines, with
which filters) on every tick; the thread re-subscribes when the topic set changes, so the subscription
follows deploy, pause, resume and delete.

Delivery: at least once. A batch's commands are flushed to ``pipelines.commands.v1`` before its offsets
are committed; a crash in between redelivers the messages and the deterministic command and run ids turn
the repeats into nothing (docs/triggers.md).

Which messages count (all times are the Kafka message timestamp):

* only messages at or after the pipeline's deploy and last resume (``not_before``): the group starts a
  topic it never read from the earliest offset, so a message produced right after a deploy is not lost
  to a late subscription, and nothing older triggers;
* a message newer than what the deployment fold is known to be complete for waits (its partition is
  sought back) until the fold has caught up past it, so a deploy, pause or delete that happened before a
  message is always known when the message is judged.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Optional

from services.core.avro import AvroCodec
from services.core.messages import Message
from services.core.settings import Settings
from services.domain.deployments import Deployment
from services.kafka_trigger.filters import Filter
from services.scheduler.commands import COMMANDS_TOPIC, kafka_ids, trigger_run, wire

log = logging.getLogger("aietl.kafka_trigger")
BATCH = 500
POLL_S = 0.5
# How long after its occurred_at an event may still be on its way to the log (the aggregate's produce).
APPEND_MARGIN = timedelta(seconds=2)
_TIMESTAMP_NOT_AVAILABLE = 0


@dataclass(frozen=True)
class Watch:
    deployment: Deployment
    topic: str
    filter: Filter
    not_before_ms: int


@dataclass(frozen=True)
class Watches:
    by_topic: dict[str, tuple[Watch, ...]] = field(default_factory=dict)
    fresh_ms: int = 0  # messages stamped later than this wait for the fold to catch up

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self.by_topic)


def to_ms(when: Optional[datetime]) -> int:
    return int(when.timestamp() * 1000) if when is not None else 0


def fresh_ms(fresh_as_of: Optional[datetime]) -> int:
    return to_ms(fresh_as_of - APPEND_MARGIN) if fresh_as_of is not None else 0


# -- one message -------------------------------------------------------------------------------------
def decode_value(value: Optional[bytes], avro: Optional[Callable[[bytes], Any]] = None) -> Any:
    """The message value as JSON (or Confluent-framed Avro when a registry is configured); None when it
    is neither (such messages trigger nothing)."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except (UnicodeDecodeError, ValueError):
        pass
    if avro is not None and value[:1] == b"\x00" and len(value) > 5:
        try:
            return avro(value)
        except Exception as exc:  # noqa: BLE001 - a foreign payload must not stop the consumer
            log.warning("cannot decode an Avro trigger message: %s", exc)
    return None


def message_object(value: Any, meta: dict) -> dict:
    """What filters see and the run gets as params: the object (non-objects as ``{"value": ...}``) plus
    ``_kafka`` (topic, partition, offset, key, timestamp)."""
    obj = dict(value) if isinstance(value, dict) else {"value": value}
    obj["_kafka"] = meta
    return obj


def commands_for(watches: tuple[Watch, ...], obj: dict, timestamp_ms: int) -> list[Message]:
    """A ``TriggerRunFromMessage`` for each watching pipeline the message is for and matches."""
    meta = obj["_kafka"]
    out = []
    for w in watches:
        if timestamp_ms < w.not_before_ms:
            continue  # before the deploy, or sent while the pipeline was paused
        if not _matches(w, obj):
            continue
        pid = w.deployment.pipeline_id
        run_id, message_id = kafka_ids(pid, meta["topic"], meta["partition"], meta["offset"])
        out.append(trigger_run(w.deployment, run_id=run_id, message_id=message_id, trigger_kind="kafka",
                               params=obj))
    return out


def _matches(w: Watch, obj: dict) -> bool:
    try:
        return w.filter(obj)
    except Exception as exc:  # noqa: BLE001 - a checked filter should not raise; if it does, no run
        log.warning("filter %r of %s failed on a message: %s", w.filter.text, w.deployment.pipeline_id, exc)
        return False


def _key_text(key: Optional[bytes]) -> Optional[str]:
    return key.decode("utf-8", errors="replace") if key is not None else None


# -- the consumer thread -----------------------------------------------------------------------------------
class TriggerConsumer:
    def __init__(self, settings: Settings, codec: AvroCodec, avro: Optional[Callable[[bytes], Any]] = None):
        self._settings = settings
        self._codec = codec
        self._avro = avro
        self._watches = Watches()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def group_id(self) -> str:
        # Not the Faust app's group (f"{prefix}kafka-trigger"): that one speaks Faust's assignor protocol,
        # and a librdkafka member could not join it.
        return f"{self._settings.topic_prefix}kafka-trigger.topics"

    def update(self, watches: Watches) -> None:
        self._watches = watches  # one reference swap: the thread reads whole snapshots

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kafka-trigger-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception:  # noqa: BLE001 - restart from the committed offsets rather than die
                log.exception("the trigger-topic consumer failed; restarting it in 2 s")
                self._stop.wait(2.0)

    def _consume(self) -> None:
        from services.core.kafka import consumer, producer

        c = consumer(self._settings, group_id=self.group_id, **{
            "auto.offset.reset": "earliest",
            # A trigger topic created after the deploy is picked up within seconds, not librdkafka's 5 min.
            "topic.metadata.refresh.interval.ms": 5000,
            # A SIGKILLed member holds its partitions until its session expires (librdkafka: 45 s).
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 2000})
        p = producer(self._settings)
        subscribed: frozenset[str] = frozenset()
        try:
            while not self._stop.is_set():
                watches = self._watches
                if watches.topics != subscribed:
                    subscribed = self._resubscribe(c, watches.topics)
                if not subscribed:
                    self._stop.wait(POLL_S)
                    continue
                batch = c.consume(BATCH, POLL_S)
                if batch:
                    self._handle(c, p, batch, watches)
        finally:
            p.flush(10)
            c.close()

    @staticmethod
    def _resubscribe(c, topics: frozenset[str]) -> frozenset[str]:
        if topics:
            c.subscribe(sorted(topics))
        else:
            c.unsubscribe()
        log.info("following trigger topics %s", sorted(topics) or "none")
        return topics

    def _handle(self, c, p, batch: list, watches: Watches) -> None:
        from confluent_kafka import TopicPartition

        held: set[tuple[str, int]] = set()
        done: dict[tuple[str, int], int] = {}
        commands: list[Message] = []
        for m in batch:
            if m.error():
                log.info("trigger topic: %s", m.error())  # e.g. a topic not created yet
                continue
            tp = (m.topic(), m.partition())
            if tp in held:
                continue
            ts_type, ts = m.timestamp()
            if ts_type == _TIMESTAMP_NOT_AVAILABLE:
                ts = watches.fresh_ms
            if ts > watches.fresh_ms:
                c.seek(TopicPartition(m.topic(), m.partition(), m.offset()))  # judged once the fold is current
                held.add(tp)
                continue
            commands += self._commands(m, ts, watches)
            done[tp] = m.offset() + 1
        if commands:
            self._send(p, commands)
        if done:
            self._commit(c, [TopicPartition(t, part, off) for (t, part), off in done.items()])
        if held:
            self._stop.wait(0.2)

    def _commands(self, m, ts: int, watches: Watches) -> list[Message]:
        interested = watches.by_topic.get(m.topic(), ())
        if not interested:
            return []
        value = decode_value(m.value(), self._avro)
        if value is None:
            log.warning("skipped an undecodable message at %s[%d]@%d", m.topic(), m.partition(), m.offset())
            return []
        meta = {"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                "key": _key_text(m.key()), "timestamp": ts}
        return commands_for(interested, message_object(value, meta), ts)

    def _send(self, p, commands: list[Message]) -> None:
        topic = self._settings.topic(COMMANDS_TOPIC)
        errors: list = []

        def delivered(err, _msg) -> None:
            if err is not None:
                errors.append(err)

        for cmd in commands:
            key, value, headers = wire(self._codec, cmd)
            p.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
        left = p.flush(30)
        if left or errors:
            # Raising skips the commit: the messages come again and are sent again (same ids).
            raise RuntimeError(f"{left} commands undelivered, errors: {errors[:3]}")
        for cmd in commands:
            log.info("requested run %s of %s for a message", cmd.payload["run_id"], cmd.pipeline_id)

    @staticmethod
    def _commit(c, offsets: list) -> None:
        from confluent_kafka import KafkaException

        try:
            c.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. the partitions moved in a rebalance: the new owner redelivers
            log.warning("offset commit failed (messages will be redelivered): %s", exc)


def registry_avro_decoder(url: str, timeout: float = 10.0) -> Callable[[bytes], Any]:
    """Decodes Confluent-framed Avro values with writer schemas fetched (once each) from the registry."""
    import io
    import struct

    import fastavro
    import httpx

    client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
    schemas: dict[int, Any] = {}

    def decode(value: bytes) -> Any:
        schema_id = struct.unpack(">I", value[1:5])[0]
        if schema_id not in schemas:
            resp = client.get(f"/schemas/ids/{schema_id}")
            resp.raise_for_status()
            schemas[schema_id] = fastavro.parse_schema(json.loads(resp.json()["schema"]))
        return fastavro.schemaless_reader(io.BytesIO(value[5:]), schemas[schema_id], None)

    return decode
