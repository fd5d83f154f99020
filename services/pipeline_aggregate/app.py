"""pipeline-aggregate: the single writer of ``pipelines.events.v1``.

Commands come in batches. For each batch: decide every command through the aggregate against the fold of
the log, skipping one whose effect the log already holds (a redelivery after a crash: its command id is
an event's causation id); append the batch's events; wait until every append is confirmed; fold them;
only then commit the batch's offsets. At-least-once delivery plus this command-id dedupe gives
exactly-once effects; tests/reliability proves it with SIGKILL.

Why fold our own appends instead of reading the log before each command (what this did first: a
watermark lookup and a fetch per command, ~0.5 s each, 2.5 commands/s): the aggregate is the only writer
of the events topic, co-partitioned with the commands, so once it has read the log its delivery reports
tell it everything that is appended after. It reads the log again (from where its fold stands) when that
may not hold: at start-up, when it is assigned partitions (their previous owner wrote them), when its
appends land past the fold's position on a partition (someone else wrote in between), and when idle, a
cheap end-offset probe once a second. A record of the log it cannot decode or apply (services.core.dlq,
services.domain.events.PipelineLog) is skipped, dead-lettered with its offset to ``pipelines.events.v1.dlq``
(the aggregate owns that DLQ) and counted; deciding goes on. So is a command that is not one.

Why a confluent-kafka consumer loop (in a thread of a mode service) rather than a Faust agent: measured
with bench/aggregate.py on 2 shared cores, a Faust agent over ``stream.take_events`` decided 2,300-2,900
commands/s on a quiet machine and 530-710/s under load 7-12, against 6,000-10,000/s for a raw loop doing
the same decide + append + commit: deciding costs ~85 us a command, Faust's per-event consumer path most
of the rest, and take_events does not fill the next batch while one is being decided.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Optional

from services.audit import command_audit
from services.core.avro import AvroCodec, AvroCodecError
from services.core.dlq import POISON, DeadLetters
from services.core.eventlog import LogReader, Record
from services.core.faults import crash_point
from services.core.histories import PipelineHistories
from services.core.kafka import consumer, producer
from services.core.messages import Message
from services.core.settings import Settings
from services.domain.commands import apply_command

log = logging.getLogger("aietl.pipeline_aggregate")
PROCESSOR = "pipeline-aggregate"
# Commands per consume() call, and how long it waits (also the loop's idle tick). consume(n, t) returns
# after n messages or t, whichever first, never on the first message: t is added to every lone command
# (0.1 s cost a draft ~0.3 s over its six commands); 10 ms costs ~1% CPU idle.
BATCH_MAX = 500
POLL_S = 0.01
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
    headers: list = None


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

    def confirm(self) -> list[tuple[int, int]]:
        """Wait for a report on every append since the last call; (partition, offset) per append."""
        # Until the queue is empty, not for a fixed time: librdkafka reports every record (delivered or
        # failed) within message.timeout.ms, and a retry must not race a record still in flight.
        while len(self._producer):
            self._producer.flush(1.0)
        results, self._results = self._results, []
        failed = [r for r in results if not isinstance(r, tuple)]
        if failed:
            raise AppendError(f"{len(failed)} of {len(results)} appends failed: {failed[0]}")
        return results


class RunEnds:
    """Which runs have ended, folded from runs.events.v1 (the executor's log): a cancellation of an
    ended run is refused. Read to its end only when a batch holds a CancelRun, so deciding anything else
    costs nothing; a record it cannot read is skipped and counted (the executor owns that DLQ)."""

    TERMINAL = {"RunSucceeded": "succeeded", "RunCancelled": "cancelled"}

    def __init__(self, settings: Settings, codec: AvroCodec, dead: DeadLetters):
        self._settings, self._codec, self._dead = settings, codec, dead
        self._reader: Optional[LogReader] = None
        self._positions: dict[int, int] = {}
        self.ended: dict[str, str] = {}

    def catch_up(self) -> None:
        if self._reader is None:
            self._reader = LogReader(self._settings, self._settings.topic("runs.events.v1"))
        for rec in self._reader.read(self._positions):
            self._positions[rec.partition] = rec.offset + 1
            try:
                msg = self._dead.decode(self._codec, rec)
                status = self.TERMINAL.get(msg.short_name)
                if msg.short_name == "RunFailed" and msg.payload.get("final", True):
                    status = "failed"
                if status:
                    self.ended[msg.payload["run_id"]] = status
            except POISON as exc:
                self._dead.poison(rec, exc)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


class CommandProcessor:
    def __init__(self, settings: Settings, codec: AvroCodec, histories: PipelineHistories, appender: Appender,
                 dead: DeadLetters):
        self.settings = settings
        self.codec = codec
        self.histories = histories
        self.appender = appender
        self.dead = dead
        self.events_topic = settings.topic("pipelines.events.v1")
        self.audit_topic = settings.topic("audit.v1")
        self.run_ends = RunEnds(settings, codec, dead)

    def decide(self, batch: list[Command]) -> list[Message]:
        """Decide a batch and append its events; returns them once every append is confirmed.

        Raises :class:`AppendError` if an append failed: the caller catches up and decides the batch
        again (what did land is then recognised by command id)."""
        pending: dict[str, list[Message]] = {}  # this batch's events, per pipeline, not yet folded
        answered: set[str] = set()
        own: list[tuple[int, Message]] = []  # (append index, event as the log holds it)
        applied: list[str] = []
        self._runs_read = False
        for cmd in batch:
            try:
                self._decide_one(cmd, pending, answered, own, applied)
            except POISON as exc:  # undecodable, not a command, or malformed
                # Through the appender: confirmed with the batch's events, before its offsets are committed.
                self.dead.poison(Record(cmd.topic, cmd.partition, cmd.offset, cmd.key, cmd.value, cmd.headers),
                                 exc, self.appender.append)
        results = self.appender.confirm()
        if not self.histories.fold_appended((*results[i], msg) for i, msg in own):
            log.info("another writer appended to %s; catching up", self.events_topic)
            self.histories.catch_up()
        for _ in applied:
            crash_point(self.settings, "aggregate.after_append")
        if applied:
            log.info("decided %d commands -> %d events", len(applied), len(own))
        return [msg for _, msg in own]

    def _decide_one(self, command: Command, pending: dict, answered: set, own: list, applied: list) -> None:
        cmd = self.dead.decode(self.codec, command)
        if not cmd.pipeline_id:
            raise AvroCodecError(f"command {cmd.message_id} carries no pipeline id")
        if self.histories.already_applied(cmd.message_id) or cmd.message_id in answered:
            log.info("skipped duplicate command %s (%s): already on the log", cmd.message_id, cmd.short_name)
            return
        history = self.histories.history(cmd.pipeline_id) + pending.get(cmd.pipeline_id, [])
        if cmd.short_name == "CancelRun" and not self._runs_read:
            self.run_ends.catch_up()  # what the executor logged up to now, once per batch
            self._runs_read = True
        events = apply_command(history, cmd, self.run_ends.ended.get)
        # Encode all first, so a command that cannot be encoded appends nothing (it is dead-lettered).
        values = [self.codec.encode(ev.name, ev.to_record()) for ev in events]
        audit = command_audit(cmd, events, headers=_text_headers(command.headers))
        audit_value = self.codec.encode(audit.name, audit.to_record())
        key = cmd.pipeline_id.encode()
        for ev, value in zip(events, values):
            # Folded as the log holds it (Avro rounds timestamps), so a restart folds the same history.
            logged = Message.from_record(*self.codec.decode(value))
            i = self.appender.append(self.events_topic, key, value,
                                     [("type", ev.name.encode()), ("message_id", ev.message_id.encode())])
            own.append((i, logged))
            pending.setdefault(cmd.pipeline_id, []).append(logged)
        # In the same batch as the events, so it is confirmed before the command's offset is committed; a
        # redelivered command is skipped above and records nothing twice.
        self.appender.append(self.audit_topic, audit.envelope["tenant_id"].encode(), audit_value,
                             [("type", audit.name.encode()), ("message_id", audit.message_id.encode())])
        answered.add(cmd.message_id)
        applied.append(cmd.message_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("applied %s %s -> %s", cmd.short_name, cmd.message_id, [e.short_name for e in events])


def _text_headers(headers) -> dict:
    return {k: v.decode(errors="replace") for k, v in (headers or ()) if v is not None}


class CommandLoop:
    """The consumer loop: batches of commands decided, appended, confirmed, then committed; blocking."""

    def __init__(self, settings: Settings, codec: AvroCodec, appender: Appender):
        self.settings = settings
        self.codec = codec
        self.appender = appender
        self.commands_topic = settings.topic("pipelines.commands.v1")
        self.events_topic = settings.topic("pipelines.events.v1")
        self.dead = DeadLetters(settings, PROCESSOR)
        self.stopping = threading.Event()
        self._stale = False
        self._assigned: set[int] = set()

    def run(self) -> None:
        processor = self._load_log()
        # The processor's consumer group, as for every worker (readiness and lag look at it); offsets are
        # committed by hand, after the appends they caused.
        c = consumer(self.settings, group_id=f"{self.settings.topic_prefix}{PROCESSOR}",
                     **{"session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000,
                        "fetch.wait.max.ms": 50, "max.poll.interval.ms": 300_000})
        c.subscribe([self.commands_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        last_batch = time.monotonic()
        try:
            while not self.stopping.is_set():
                msgs = c.consume(BATCH_MAX, POLL_S)  # rebalance callbacks run in here, never mid-batch
                batch = [Command(m.key(), m.value(), m.topic(), m.partition(), m.offset(), m.headers() or [])
                         for m in msgs if not self._failed(m)]
                if not batch:
                    if time.monotonic() - last_batch >= IDLE_PROBE_S:
                        last_batch = time.monotonic()
                        self._probe(processor)
                    continue
                if self._stale:
                    self._stale = False
                    self._catch_up(processor, "partitions assigned")
                self._decide(processor, batch)
                self._commit(c, batch)
                last_batch = time.monotonic()
        finally:
            c.close()  # leaves the group at once: a stopped member's partitions move without a timeout
            processor.histories.close()
            processor.run_ends.close()

    def _load_log(self) -> CommandProcessor:
        # Dead letters of the log go out fire-and-forget: a skipped record holds no batch back.
        histories = PipelineHistories(LogReader(self.settings, self.events_topic), self.codec, self.dead,
                                      self.appender.dead_letter)
        n = histories.catch_up()
        log.info("rebuilt %d events from %s (%d records skipped: undecodable or not applicable)", n,
                 self.events_topic, histories.skipped)
        return CommandProcessor(self.settings, self.codec, histories, self.appender, self.dead)

    def _on_assign(self, _consumer, partitions) -> None:
        # Partitions gained may have been written by their previous owner up to its last batch.
        mine = {tp.partition for tp in partitions}
        if mine - self._assigned:
            self._stale = True
        self._assigned |= mine

    def _on_revoke(self, _consumer, partitions) -> None:
        self._assigned -= {tp.partition for tp in partitions}

    @staticmethod
    def _failed(msg) -> bool:
        if msg.error() is None:
            return False
        log.warning("consuming commands: %s", msg.error())
        return True

    def _probe(self, processor: CommandProcessor) -> None:
        """When idle, fold what someone else appended, so it is folded before the next command."""
        from confluent_kafka import KafkaException

        try:
            behind = processor.histories.behind()
        except KafkaException as exc:  # a probe is an optimisation: the next gap or assignment catches up
            log.warning("idle probe of %s failed: %s", self.events_topic, exc)
            return
        if behind:
            self._catch_up(processor, "found by the idle probe")

    def _catch_up(self, processor: CommandProcessor, why: str) -> None:
        n = processor.histories.catch_up()
        if n:
            log.info("caught up %d events from %s (%s)", n, self.events_topic, why)

    def _decide(self, processor: CommandProcessor, batch: list[Command]) -> None:
        backoff = 0.1
        while True:
            try:
                processor.decide(batch)
                return
            except AppendError as exc:
                log.error("appending a batch of %d commands failed, will read the log and retry: %s",
                          len(batch), exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                self._catch_up(processor, "after a failed append")

    def _commit(self, c, batch: list[Command]) -> None:
        from confluent_kafka import KafkaException

        try:
            c.commit(offsets=self._next_offsets(batch), asynchronous=False)
        except KafkaException as exc:
            # E.g. the group rebalanced meanwhile: the new owner gets these commands again and, finding
            # their events on the log, skips them. Nothing is lost by going on.
            log.warning("committing %d commands failed: %s", len(batch), exc)

    @staticmethod
    def _next_offsets(batch: list[Command]) -> list:
        from confluent_kafka import TopicPartition

        last: dict[tuple[str, int], int] = {}
        for cmd in batch:
            last[(cmd.topic, cmd.partition)] = max(cmd.offset, last.get((cmd.topic, cmd.partition), -1))
        return [TopicPartition(t, p, off + 1) for (t, p), off in last.items()]


def build(settings: Settings, codec: AvroCodec):
    """A mode service running the loop in a thread; ``aietl worker`` runs it as it runs the Faust apps."""
    from mode import Service

    loop = CommandLoop(settings, codec, Appender(producer(settings)))

    class PipelineAggregate(Service):
        async def on_start(self) -> None:
            self._thread = threading.Thread(target=self._run, name="command-loop", daemon=True)
            self._thread.start()

        def _run(self) -> None:
            try:
                loop.run()
            except Exception as exc:  # the worker must not stay up without its loop
                log.exception("the command loop died: %s", exc)
                asyncio.run_coroutine_threadsafe(self.crash(exc), self.loop)

        async def on_stop(self) -> None:
            loop.stopping.set()
            await asyncio.to_thread(self._thread.join, 30)

    return PipelineAggregate()
