"""pipeline-aggregate: the single writer of ``pipelines.events.v1``.

For each command: catch up on the event log, skip the command if the log already holds its effect
(a redelivery after a crash), decide it through the aggregate, append the events and only then let
Faust commit the command's offset. At-least-once delivery plus this command-id dedupe gives
exactly-once effects; tests/reliability proves it with SIGKILL.
"""
from __future__ import annotations

import asyncio
import logging

from services.core.avro import AvroCodec, AvroCodecError
from services.core.dlq import dlq_headers
from services.core.eventlog import LogReader
from services.core.faults import crash_point
from services.core.faust_app import make_app, topic
from services.core.messages import Message
from services.core.settings import Settings
from services.domain.commands import apply_command
from services.core.histories import PipelineHistories

log = logging.getLogger("aietl.pipeline_aggregate")
PROCESSOR = "pipeline-aggregate"


class CommandProcessor:
    def __init__(self, settings: Settings, codec: AvroCodec, histories: PipelineHistories, send):
        self.settings = settings
        self.codec = codec
        self.histories = histories
        self._send = send  # async (key, value, headers) -> None, resolves once the broker has it

    async def handle(self, value: bytes) -> list[Message]:
        name, record = self.codec.decode(value)
        cmd = Message.from_record(name, record)
        if not cmd.pipeline_id:
            raise AvroCodecError(f"command {cmd.message_id} carries no pipeline id")
        await asyncio.to_thread(self.histories.catch_up)
        if self.histories.already_applied(cmd.message_id):
            log.info("skipped duplicate command %s (%s): already on the log", cmd.message_id, cmd.short_name)
            return []
        events = apply_command(self.histories.history(cmd.pipeline_id), cmd)
        for ev in events:
            await self._send(cmd.pipeline_id.encode(), self.codec.encode(ev.name, ev.to_record()),
                             [("type", ev.name.encode()), ("message_id", ev.message_id.encode())])
        log.info("applied %s %s -> %s", cmd.short_name, cmd.message_id, [e.short_name for e in events])
        crash_point(self.settings, "aggregate.after_append")
        return events


def build(settings: Settings, codec: AvroCodec):
    app = make_app(settings, PROCESSOR)
    commands = topic(app, settings, "pipelines.commands.v1")
    events_topic = settings.topic("pipelines.events.v1")
    dlq_topic = settings.topic("pipelines.commands.v1.dlq")
    state: dict = {}

    async def send(key: bytes, value: bytes, headers: list) -> None:
        await app.producer.send_and_wait(events_topic, key, value, partition=None, timestamp=None,
                                         headers=headers)

    @app.task
    async def load_log() -> None:
        reader = await asyncio.to_thread(LogReader, settings, events_topic)
        histories = PipelineHistories(reader, codec)
        n = await asyncio.to_thread(histories.catch_up)
        log.info("rebuilt %d events from %s", n, events_topic)
        state["processor"] = CommandProcessor(settings, codec, histories, send)

    @app.agent(commands)
    async def process(stream):
        async for event in stream.events():
            while "processor" not in state:  # the log is still being read at start-up
                await asyncio.sleep(0.05)
            msg = event.message
            try:
                await state["processor"].handle(event.value)
            except (ValueError, KeyError, TypeError) as exc:  # undecodable or malformed: poison
                log.warning("poison command at %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
                await app.producer.send_and_wait(dlq_topic, event.key, event.value, partition=None,
                                                 timestamp=None,
                                                 headers=dlq_headers(exc, msg.topic, msg.partition, msg.offset))

    return app
