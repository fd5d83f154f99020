"""projector: pipeline and run events -> Redis read model, offsets stored atomically with the projection.

It reads two topics: ``pipelines.events.v1`` (requests, drafts, deployments, run requests) and
``runs.events.v1`` (what the executor did). On start it catches up on both from the offsets stored in
Redis (from 0 when they are missing), so a wiped read model rebuilds itself; one Faust agent per topic
then applies live events, skipping any already applied. A record it cannot decode or apply is skipped
(its offset stored, so a rebuild passes it too) and counted (services.core.dlq); the aggregate and the
executor, which own those logs' DLQs, dead-letter it. The reducers tolerate either topic being read
ahead of the other (see readmodel.py), so live projection, catch-up and replay all give the same model.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Optional

from services.core.avro import AvroCodec
from services.core.dlq import POISON, DeadLetters, record_of
from services.core.eventlog import LogReader, Record
from services.core.faust_app import make_app, topic
from services.core.redis_wait import until_redis_answers
from services.core.settings import Settings
from services.domain.events import PipelineLog
from services.projector.readmodel import Keys, apply_event, namespace, skip_event, stored_positions

log = logging.getLogger("aietl.projector")
PROCESSOR = "projector"
# Catch-up and replay read them in this order; the model does not depend on it.
TOPICS = ("pipelines.events.v1", "runs.events.v1")
GATED = "pipelines.events.v1"  # folded through PipelineLog, as every reader of it does


class Gate:
    """The projector's PipelineLog, fed each record of the pipelines log once, in log order: it is
    rebuilt from offset 0 at start (the read model's own offsets only say what was projected)."""

    def __init__(self) -> None:
        self.log = PipelineLog()
        self._positions: dict[int, int] = {}
        self._lock = threading.Lock()  # catch-up runs in a thread, the live agent on the loop

    def reset(self) -> None:
        """Forget what was folded: a rebuild of the read model feeds the whole log again."""
        with self._lock:
            self.log = PipelineLog()
            self._positions.clear()

    def fresh(self, rec: Record) -> bool:
        with self._lock:
            return rec.offset >= self._positions.get(rec.partition, 0)

    def accept(self, rec: Record, msg) -> None:
        """Raises POISON when ``msg`` does not apply; the position moves on either way."""
        with self._lock:
            self._positions[rec.partition] = rec.offset + 1
            self.log.accept(msg)


def project_record(redis_client, codec: AvroCodec, keys: Keys, dead: DeadLetters, gate: Optional[Gate],
                   rec: Record, stored: Optional[dict] = None) -> bool:
    """Decode, check and project one record; poison is skipped (its offset stored) and counted. With
    ``stored`` (catch-up), records below the stored offsets only feed the gate."""
    projected = stored is None or rec.offset >= stored.get(rec.partition, 0)
    if gate is not None and not gate.fresh(rec):
        return False  # a redelivery of what catch-up already read
    try:
        msg = dead.decode(codec, rec)
        if gate is not None:
            gate.accept(rec, msg)
        if not projected:
            return False
        return apply_event(redis_client, keys, msg, rec.topic, rec.partition, rec.offset)
    except POISON as exc:
        if projected:
            dead.poison(rec, exc)
            skip_event(redis_client, keys, rec.topic, rec.partition, rec.offset)
        return False


def catch_up(settings: Settings, redis_client, codec: AvroCodec, keys: Keys, topic_name: str,
             dead: DeadLetters, gate: Optional[Gate]) -> int:
    reader = LogReader(settings, topic_name)
    try:
        stored = stored_positions(redis_client, keys, topic_name)
        n = 0
        for rec in reader.read({} if gate is not None else stored):
            n += project_record(redis_client, codec, keys, dead, gate, rec, stored)
        return n
    finally:
        reader.close()


def catch_up_all(settings: Settings, redis_client, codec: AvroCodec, keys: Keys, dead: DeadLetters,
                 gate: Gate) -> int:
    return sum(catch_up(settings, redis_client, codec, keys, settings.topic(t), dead,
                        gate if t == GATED else None) for t in TOPICS)


class Model:
    """Notices that the read model was lost under a running projector (Redis flushed, or restarted without
    its data) and rebuilds it from offset 0 of both logs, as a start on an empty model would.

    Before, the projector went on applying live events onto nothing: pipelines requested before the loss
    were 404 until someone restarted it, and those in flight were served from half their history. Lost
    means: a partition this process has projected has no stored offset any more (checked before each live
    record and every ``CHECK_S``). Live records and a rebuild never interleave (one lock)."""

    CHECK_S = 5.0

    def __init__(self, settings: Settings, codec: AvroCodec, redis_client, keys: Keys, dead: DeadLetters,
                 gate: Gate) -> None:
        self.settings, self.codec, self.redis, self.keys, self.dead, self.gate = \
            settings, codec, redis_client, keys, dead, gate
        self.lock = asyncio.Lock()
        self.projected: set[str] = set()  # "topic:partition" fields this process has seen stored
        self.rebuilds = 0
        self.resync: Optional[str] = None  # "catch_up" | "rebuild": redo from the logs before the next step

    def _stored_fields(self) -> set[str]:
        return {f.decode() for f in self.redis.hkeys(self.keys.offsets)}

    def catch_up(self) -> int:
        """Blocking (run in a thread): fold the pipelines log from 0 into a fresh gate and project what is
        past the stored offsets (the start-up catch-up; a rebuild after a loss; a resync after Redis failed
        in the middle of a step, when the gate may have taken a record that was never applied)."""
        self.gate.reset()
        n = catch_up_all(self.settings, self.redis, self.codec, self.keys, self.dead, self.gate)
        self.projected |= self._stored_fields()
        return n

    def _lost(self, field: Optional[str]) -> bool:
        if not self.projected or self.redis.exists(self.keys.replaying):
            return False  # nothing projected yet, or `aietl replay` is rebuilding it
        if field is not None:
            return field in self.projected and self.redis.hget(self.keys.offsets, field) is None
        return not self.redis.exists(self.keys.offsets)

    def _rebuild(self) -> int:
        from services.projector.readmodel import wipe

        wipe(self.redis, self.keys)  # what live records wrote onto the empty model since the loss
        return self.catch_up()

    async def rebuild_if_lost(self, field: Optional[str] = None) -> None:
        """Under the lock: if the model was lost, rebuild it before anything else is applied."""
        if await self._step(self._lost, field, resync=None):
            n = await self._step(self._rebuild, resync="rebuild")
            self.rebuilds += 1
            log.warning("the read model was lost (no stored offset for %s): rebuilt it from the logs, %d events",
                        field or "any partition", n)

    async def _step(self, fn, *args, resync: Optional[str] = "catch_up"):
        """Run a blocking step. If Redis fails in the middle of a writing one (``resync`` says how to redo
        it), what was half done is redone from the logs before the next step: a retried step cannot know how
        far it got (the gate may have taken a record that was never applied)."""
        if self.resync:
            await asyncio.to_thread(self._rebuild if self.resync == "rebuild" else self.catch_up)
            self.resync = None
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception as exc:  # noqa: BLE001 - re-raised; noted when Redis went away mid-step
            from services.core.redis_wait import redis_away

            if resync and redis_away(exc):
                self.resync = "rebuild" if "rebuild" in (resync, self.resync) else "catch_up"
            raise

    async def apply(self, rec: Record, gated: bool) -> None:
        field = f"{rec.topic}:{rec.partition}"
        async with self.lock:
            while await self._step(self.redis.exists, self.keys.replaying, resync=None):
                await asyncio.sleep(0.2)  # `aietl replay` is rebuilding; apply after it
            await self.rebuild_if_lost(field)
            await self._step(project_record, self.redis, self.codec, self.keys, self.dead,
                             self.gate if gated else None, rec)
            self.projected.add(field)


def build(settings: Settings, codec: AvroCodec, redis_client):
    app = make_app(settings, PROCESSOR)
    keys = Keys(namespace(settings.topic_prefix))
    ready = asyncio.Event()
    dead = DeadLetters(settings, PROCESSOR)
    model = Model(settings, codec, redis_client, keys, dead, Gate())

    @app.task
    async def start_up() -> None:
        n = await until_redis_answers(lambda: model._step(model.catch_up), log, "catching up")
        log.info("projector caught up %d events", n)
        ready.set()

    @app.timer(Model.CHECK_S)
    async def check_model() -> None:
        if not ready.is_set():
            return
        async with model.lock:
            try:
                await model.rebuild_if_lost()
            except Exception as exc:  # noqa: BLE001 - Redis away: the next check (or record) tries again
                from services.core.redis_wait import redis_away

                if not redis_away(exc):
                    raise

    for logical in TOPICS:
        _add_agent(app, settings, model, ready, logical)
    return app


def _add_agent(app, settings: Settings, model: Model, ready: asyncio.Event, logical: str) -> None:
    """One agent per topic: a slow topic never holds the other back."""

    def apply(rec):
        return model.apply(rec, gated=logical == GATED)

    async def process(stream):
        async for event in stream.events():
            await ready.wait()
            rec = record_of(event)
            # Redis restarting: this record waits (and the stream behind it) instead of crashing the agent.
            await until_redis_answers(lambda: apply(rec), log,
                                      f"projecting {rec.topic}:{rec.partition}@{rec.offset}")

    app.agent(topic(app, settings, logical), name=f"{PROCESSOR}.{logical}")(process)


def replay(settings: Settings, redis_client, codec: AvroCodec) -> int:
    """Wipe the read model and rebuild it from offset 0 of both event logs."""
    from services.projector.readmodel import wipe

    keys = Keys(namespace(settings.topic_prefix))
    redis_client.set(keys.replaying, "1", ex=600)
    try:
        wipe(redis_client, keys)
        return catch_up_all(settings, redis_client, codec, keys, DeadLetters(settings, "replay"), Gate())
    finally:
        redis_client.delete(keys.replaying)
