"""pipeline-aggregate: the single writer of ``pipelines.events.v1``.

Commands come in batches. For each batch: decide every command through the aggregate against the fold of
the log, skipping one whose effect the log already holds (a redelivery after a crash: its command id is
an event's causation id); append the batch's events; wait until every append is confirmed; fold them;
only then let Faust commit the batch's offsets. At-least-once delivery plus this command-id dedupe gives
exactly-once effects; tests/reliability proves it with SIGKILL.

Why fold our own appends instead of reading the log before each command (what this did first: a
watermark lookup and a fetch per command, ~0.5 s each, 2.5 commands/s): the aggregate is the only writer
of the events topic, co-partitioned with the commands, so once it has read the log its delivery reports
tell it everything that is appended after. It reads the log again (from where its fold stands) when that
may not hold: at start-up, when it is assigned partitions (their previous owner wrote them), when its
appends land past the fold's position on a partition (someone else wrote in between), and when idle, a
cheap end-offset probe once a second. A record it cannot decode is skipped, dead-lettered with its offset
to ``pipelines.events.v1.dlq`` and counted; deciding goes on.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Optional

from services.core.avro import AvroCodec, AvroCodecError
from services.core.dlq import dlq_headers
from services.core.eventlog import UNDECODABLE, LogReader, Record
from services.core.faults import crash_point
from services.core.faust_app import make_app, topic
from services.core.histories import PipelineHistories
from services.core.kafka import producer
from services.core.messages import Message
from services.core.settings import Settings
from services.domain.commands import apply_command

log = logging.getLogger("aietl.pipeline_aggregate")
PROCESSOR = "pipeline-aggregate"
# Commands per batch, and how long a batch waits to fill: a burst is decided 500 at a time, a lone
# command waits at most 10 ms for company (the wait is also how often an idle worker wakes up).
# Measured (bench/aggregate.py, 2 shared cores): ~2,300-2,900 commands/s, a burst of 10,000 decided in
# 4-5 s, where a raw confluent-kafka loop doing the same decide + append + commit does ~10,000/s. Of the
# ~400 us a command costs here (the worker is CPU-bound in a burst), deciding (apply_command + Avro) is
# ~85 us; the rest is, by elimination (no profiler here), Faust's per-event consumer path, kept because
# it is how every worker joins its group, commits and rebalances. A confluent-kafka consumer loop would
# close most of that gap if this ever needs much more than the goal of 1,000/s.
BATCH_MAX = 500
BATCH_WITHIN_S = 0.01
IDLE_PROBE_S = 1.0
RETRY_MAX_S = 10.0


@dataclass
class Command:
    """One consumed command record, as it came off the commands topic."""

    key: Optional[bytes]
    value: bytes
    topic: str
    partition: int
    offset: int


class AppendError(RuntimeError):
    """Some append of a batch was not confirmed; none of its commands may be committed."""


class Appender:
    """Appends with confluent-kafka and reports where each record landed (its delivery reports carry the
    offsets; librdkafka batches the sends). Used by one batch at a time."""

    def __init__(self, kafka_producer):
        self._producer = kafka_producer
        self._results: list = []

    def append(self, topic_name: str, key: Optional[bytes], value: bytes, headers: list) -> int:
        results = self._results
        i = len(results)
        results.append(None)

        def delivered(err, msg) -> None:
            results[i] = err if err is not None else (msg.partition(), msg.offset())

        self._send(topic_name, key, value, headers, delivered)
        return i

    def dead_letter(self, topic_name: str, key: Optional[bytes], value: bytes, headers: list) -> None:
        """Fire and forget: a dead letter for a skipped log record; a failure is only logged."""
        def delivered(err, _msg) -> None:
            if err is not None:
                log.error("dead letter to %s not delivered: %s", topic_name, err)

        self._send(topic_name, key, value, headers, delivered)

    def _send(self, topic_name, key, value, headers, on_delivery) -> None:
        while True:
            try:
                self._producer.produce(topic_name, key=key, value=value, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # librdkafka's queue is full: let it drain
                self._producer.poll(0.05)

    async def confirm(self) -> list[tuple[int, int]]:
        """Wait for a report on every append since the last call; (partition, offset) per append."""
        # Until the queue is empty, not for a fixed time: librdkafka reports every record (delivered or
        # failed) within message.timeout.ms, and a retry must not race a record still in flight.
        while len(self._producer):
            await asyncio.to_thread(self._producer.flush, 1.0)
        results, self._results = self._results, []
        failed = [r for r in results if not isinstance(r, tuple)]
        if failed:
            raise AppendError(f"{len(failed)} of {len(results)} appends failed: {failed[0]}")
        return results


class CommandProcessor:
    def __init__(self, settings: Settings, codec: AvroCodec, histories: PipelineHistories, appender: Appender):
        self.settings = settings
        self.codec = codec
        self.histories = histories
        self.appender = appender
        self.events_topic = settings.topic("pipelines.events.v1")
        self.dlq_topic = settings.topic("pipelines.commands.v1.dlq")

    async def decide(self, batch: list[Command]) -> list[Message]:
        """Decide a batch and append its events; returns them once every append is confirmed.

        Raises :class:`AppendError` if an append failed: the caller catches up and decides the batch
        again (what did land is then recognised by command id)."""
        pending: dict[str, list[Message]] = {}  # this batch's events, per pipeline, not yet folded
        answered: set[str] = set()
        own: list[tuple[int, Message]] = []  # (append index, event as the log holds it)
        applied: list[str] = []
        for cmd in batch:
            try:
                self._decide_one(cmd, pending, answered, own, applied)
            except UNDECODABLE as exc:  # undecodable or malformed: poison
                log.warning("poison command at %s[%d]@%d: %s", cmd.topic, cmd.partition, cmd.offset, exc)
                self.appender.append(self.dlq_topic, cmd.key, cmd.value,
                                     dlq_headers(exc, cmd.topic, cmd.partition, cmd.offset))
        results = await self.appender.confirm()
        if not self.histories.fold_appended((*results[i], msg) for i, msg in own):
            log.info("another writer appended to %s; catching up", self.events_topic)
            await asyncio.to_thread(self.histories.catch_up)
        for _ in applied:
            crash_point(self.settings, "aggregate.after_append")
        if applied:
            log.info("decided %d commands -> %d events", len(applied), len(own))
        return [msg for _, msg in own]

    def _decide_one(self, command: Command, pending: dict, answered: set, own: list, applied: list) -> None:
        name, record = self.codec.decode(command.value)
        cmd = Message.from_record(name, record)
        if not cmd.pipeline_id:
            raise AvroCodecError(f"command {cmd.message_id} carries no pipeline id")
        if self.histories.already_applied(cmd.message_id) or cmd.message_id in answered:
            log.info("skipped duplicate command %s (%s): already on the log", cmd.message_id, cmd.short_name)
            return
        history = self.histories.history(cmd.pipeline_id) + pending.get(cmd.pipeline_id, [])
        events = apply_command(history, cmd)
        # Encode all first, so a command that cannot be encoded appends nothing (it is dead-lettered).
        values = [self.codec.encode(ev.name, ev.to_record()) for ev in events]
        key = cmd.pipeline_id.encode()
        for ev, value in zip(events, values):
            # Folded as the log holds it (Avro rounds timestamps), so a restart folds the same history.
            logged = Message.from_record(*self.codec.decode(value))
            i = self.appender.append(self.events_topic, key, value,
                                     [("type", ev.name.encode()), ("message_id", ev.message_id.encode())])
            own.append((i, logged))
            pending.setdefault(cmd.pipeline_id, []).append(logged)
        answered.add(cmd.message_id)
        applied.append(cmd.message_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("applied %s %s -> %s", cmd.short_name, cmd.message_id, [e.short_name for e in events])


def dead_lettered(settings: Settings, dlq_topic: str, source_topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of ``source_topic`` records already in ``dlq_topic``: a restart's catch-up
    meets the same foreign record again and must not dead-letter it twice."""
    reader = LogReader(settings, dlq_topic)
    try:
        out = set()
        for rec in reader.read({}):
            h = {k: v.decode(errors="replace") for k, v in rec.headers if v is not None}
            if h.get("source_topic") == source_topic and h.get("source_offset", "").isdigit():
                out.add((int(h.get("source_partition", -1)), int(h["source_offset"])))
        return out
    finally:
        reader.close()


def build(settings: Settings, codec: AvroCodec):
    app = make_app(settings, PROCESSOR)
    commands = topic(app, settings, "pipelines.commands.v1")
    events_topic = settings.topic("pipelines.events.v1")
    events_dlq = settings.topic("pipelines.events.v1.dlq")
    appender = Appender(producer(settings))
    ready = asyncio.Event()
    lock = asyncio.Lock()  # one batch, catch-up or probe at a time: they share the fold and its reader
    state: dict = {"stale": False, "last_batch": 0.0, "assigned": set()}

    @app.task
    async def load_log() -> None:
        seen = await asyncio.to_thread(dead_lettered, settings, events_dlq, events_topic)

        def on_undecodable(rec: Record, exc: Exception) -> None:
            if (rec.partition, rec.offset) not in seen:
                seen.add((rec.partition, rec.offset))
                appender.dead_letter(events_dlq, rec.key, rec.value,
                                     rec.headers + dlq_headers(exc, rec.topic, rec.partition, rec.offset))

        reader = await asyncio.to_thread(LogReader, settings, events_topic)
        histories = PipelineHistories(reader, codec, on_undecodable)
        async with lock:
            n = await asyncio.to_thread(histories.catch_up)
        log.info("rebuilt %d events from %s (%d undecodable skipped)", n, events_topic, histories.undecodable)
        state["processor"] = CommandProcessor(settings, codec, histories, appender)
        ready.set()

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **_) -> None:
        # Partitions gained may have been written by their previous owner up to its last batch.
        mine = {tp.partition for tp in assigned if tp.topic == commands.get_topic_name()}
        if mine - state["assigned"]:
            state["stale"] = True
        state["assigned"] = mine

    async def catch_up(processor: CommandProcessor, why: str) -> None:
        n = await asyncio.to_thread(processor.histories.catch_up)
        if n:
            log.info("caught up %d events from %s (%s)", n, events_topic, why)

    async def decide(processor: CommandProcessor, batch: list[Command]) -> None:
        backoff = 0.1
        while True:
            try:
                await processor.decide(batch)
                return
            except AppendError as exc:
                log.error("appending a batch of %d commands failed, will read the log and retry: %s",
                          len(batch), exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                await catch_up(processor, "after a failed append")

    @app.agent(commands)
    async def process(stream):
        # take_events acks (lets Faust commit) a batch only after this body is done with it, i.e. after
        # every append of the batch is confirmed.
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            await ready.wait()  # the log is still being read at start-up
            batch = [Command(e.key, e.value, e.message.topic, e.message.partition, e.message.offset)
                     for e in events]
            async with lock:
                processor = state["processor"]
                if state["stale"]:
                    state["stale"] = False
                    await catch_up(processor, "partitions assigned")
                await decide(processor, batch)
                state["last_batch"] = time.monotonic()

    @app.timer(IDLE_PROBE_S)
    async def probe() -> None:
        """When idle, look for records someone else appended, so they are folded before the next command."""
        processor = state.get("processor")
        if processor is None or lock.locked() or time.monotonic() - state["last_batch"] < IDLE_PROBE_S:
            return
        async with lock:
            if await asyncio.to_thread(processor.histories.behind):
                await catch_up(processor, "found by the idle probe")

    return app
