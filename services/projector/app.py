"""projector: pipeline events -> Redis read model, offsets stored atomically with the projection.

On start it catches up from the offsets stored in Redis (from 0 when they are missing), so a wiped
read model rebuilds itself; the Faust agent then applies live events, skipping any already applied.
"""
from __future__ import annotations

import asyncio
import logging

from services.core.avro import AvroCodec
from services.core.dlq import dlq_headers
from services.core.eventlog import LogReader
from services.core.faust_app import make_app, topic
from services.core.messages import Message
from services.core.settings import Settings
from services.projector.readmodel import Keys, apply_event, namespace, stored_positions

log = logging.getLogger("aietl.projector")
PROCESSOR = "projector"


def catch_up(settings: Settings, redis_client, codec: AvroCodec, keys: Keys, topic_name: str) -> int:
    reader = LogReader(settings, topic_name)
    try:
        n = 0
        for rec in reader.read(stored_positions(redis_client, keys, topic_name)):
            name, record = codec.decode(rec.value)
            n += apply_event(redis_client, keys, Message.from_record(name, record), rec.topic,
                             rec.partition, rec.offset)
        return n
    finally:
        reader.close()


def build(settings: Settings, codec: AvroCodec, redis_client):
    app = make_app(settings, PROCESSOR)
    events = topic(app, settings, "pipelines.events.v1")
    dlq_topic = settings.topic("pipelines.events.v1.dlq")
    keys = Keys(namespace(settings.topic_prefix))
    ready = asyncio.Event()

    @app.task
    async def start_up() -> None:
        n = await asyncio.to_thread(catch_up, settings, redis_client, codec, keys, events.get_topic_name())
        log.info("projector caught up %d events", n)
        ready.set()

    def project(value: bytes, topic_name: str, partition: int, offset: int) -> bool:
        name, record = codec.decode(value)
        return apply_event(redis_client, keys, Message.from_record(name, record), topic_name, partition,
                           offset)

    @app.agent(events)
    async def process(stream):
        async for event in stream.events():
            await ready.wait()
            while await asyncio.to_thread(redis_client.exists, keys.replaying):
                await asyncio.sleep(0.2)  # `aietl replay` is rebuilding; apply after it
            msg = event.message
            try:
                await asyncio.to_thread(project, event.value, msg.topic, msg.partition, msg.offset)
            except (ValueError, KeyError, TypeError) as exc:  # undecodable or malformed: poison
                log.warning("poison event at %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
                await app.producer.send_and_wait(dlq_topic, event.key, event.value, partition=None,
                                                 timestamp=None,
                                                 headers=dlq_headers(exc, msg.topic, msg.partition, msg.offset))

    return app


def replay(settings: Settings, redis_client, codec: AvroCodec) -> int:
    """Wipe the read model and rebuild it from offset 0 of the event log."""
    from services.projector.readmodel import wipe

    keys = Keys(namespace(settings.topic_prefix))
    redis_client.set(keys.replaying, "1", ex=600)
    try:
        wipe(redis_client, keys)
        return catch_up(settings, redis_client, codec, keys, settings.topic("pipelines.events.v1"))
    finally:
        redis_client.delete(keys.replaying)
