"""projector: pipeline and run events -> Redis read model, offsets stored atomically with the projection.

It reads two topics: ``pipelines.events.v1`` (requests, drafts, deployments, run requests) and
``runs.events.v1`` (what the executor did). On start it catches up on both from the offsets stored in
Redis (from 0 when they are missing), so a wiped read model rebuilds itself; one Faust agent per topic
then applies live events, skipping any already applied. The reducers tolerate either topic being read
ahead of the other (see readmodel.py), so live projection, catch-up and replay all give the same model.
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
from services.projector.readmodel import Keys, apply_event, namespace, skip_event, stored_positions

log = logging.getLogger("aietl.projector")
PROCESSOR = "projector"
# Catch-up and replay read them in this order; the model does not depend on it.
TOPICS = ("pipelines.events.v1", "runs.events.v1")
# Topics with a dead-letter topic in topology/topology.yaml; poison elsewhere is logged and skipped.
DLQ_TOPICS = ("pipelines.events.v1",)
POISON = (ValueError, KeyError, TypeError)  # undecodable or malformed


def project(redis_client, codec: AvroCodec, keys: Keys, value: bytes, topic_name: str, partition: int,
            offset: int) -> bool:
    name, record = codec.decode(value)
    return apply_event(redis_client, keys, Message.from_record(name, record), topic_name, partition, offset)


def catch_up(settings: Settings, redis_client, codec: AvroCodec, keys: Keys, topic_name: str) -> int:
    reader = LogReader(settings, topic_name)
    try:
        n = 0
        for rec in reader.read(stored_positions(redis_client, keys, topic_name)):
            try:
                n += project(redis_client, codec, keys, rec.value, rec.topic, rec.partition, rec.offset)
            except POISON as exc:
                # The live agent dead-lettered it when it first came by; a rebuild must not stop on it.
                log.warning("skipped poison event at %s[%d]@%d: %s", rec.topic, rec.partition, rec.offset, exc)
                skip_event(redis_client, keys, rec.topic, rec.partition, rec.offset)
        return n
    finally:
        reader.close()


def catch_up_all(settings: Settings, redis_client, codec: AvroCodec, keys: Keys) -> int:
    return sum(catch_up(settings, redis_client, codec, keys, settings.topic(t)) for t in TOPICS)


def build(settings: Settings, codec: AvroCodec, redis_client):
    app = make_app(settings, PROCESSOR)
    keys = Keys(namespace(settings.topic_prefix))
    ready = asyncio.Event()

    @app.task
    async def start_up() -> None:
        n = await asyncio.to_thread(catch_up_all, settings, redis_client, codec, keys)
        log.info("projector caught up %d events", n)
        ready.set()

    for logical in TOPICS:
        _add_agent(app, settings, codec, redis_client, keys, ready, logical)
    return app


def _add_agent(app, settings: Settings, codec: AvroCodec, redis_client, keys: Keys, ready: asyncio.Event,
               logical: str) -> None:
    """One agent per topic: a slow topic never holds the other back, and each has its own poison policy."""
    dlq_topic = settings.topic(f"{logical}.dlq") if logical in DLQ_TOPICS else None

    async def poison(event, exc: Exception) -> None:
        msg = event.message
        log.warning("poison event at %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
        if dlq_topic:
            await app.producer.send_and_wait(dlq_topic, event.key, event.value, partition=None, timestamp=None,
                                             headers=dlq_headers(exc, msg.topic, msg.partition, msg.offset))
        await asyncio.to_thread(skip_event, redis_client, keys, msg.topic, msg.partition, msg.offset)

    async def process(stream):
        async for event in stream.events():
            await ready.wait()
            while await asyncio.to_thread(redis_client.exists, keys.replaying):
                await asyncio.sleep(0.2)  # `aietl replay` is rebuilding; apply after it
            msg = event.message
            try:
                await asyncio.to_thread(project, redis_client, codec, keys, event.value, msg.topic,
                                        msg.partition, msg.offset)
            except POISON as exc:
                await poison(event, exc)

    app.agent(topic(app, settings, logical), name=f"{PROCESSOR}.{logical}")(process)


def replay(settings: Settings, redis_client, codec: AvroCodec) -> int:
    """Wipe the read model and rebuild it from offset 0 of both event logs."""
    from services.projector.readmodel import wipe

    keys = Keys(namespace(settings.topic_prefix))
    redis_client.set(keys.replaying, "1", ex=600)
    try:
        wipe(redis_client, keys)
        return catch_up_all(settings, redis_client, codec, keys)
    finally:
        redis_client.delete(keys.replaying)
