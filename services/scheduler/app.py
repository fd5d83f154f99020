"""scheduler: sends ``TriggerScheduledRun`` for every due cron slot of every active deployment.

State is a fold of ``pipelines.events.v1`` (services.scheduler.feed): caught up from the log at start,
then kept current by a Faust agent and by a catch-up on each tick. Once a second the timer asks, for each
active cron pipeline, which slot is due (services.scheduler.slots, misfire policy in docs/triggers.md)
and sends its command once.

Any number of instances may run: each sends the same deterministic command for a slot and the aggregate
turns them into one ``RunRequested``. A restarted instance learns from the log which slots already have a
run and does not send them again.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Awaitable, Callable, Optional

from services.core.avro import AvroCodec
from services.core.dlq import record_of
from services.core.eventlog import broker_away
from services.core.faust_app import make_app, topic
from services.core.messages import Message, utcnow
from services.core.settings import Settings
from services.domain.deployments import Deployment
from services.scheduler.commands import COMMANDS_TOPIC, cron_ids, trigger_run, wire
from services.scheduler.feed import DeploymentFeed
from services.scheduler.slots import due_slot, next_slot, slot_iso

log = logging.getLogger("aietl.scheduler")
PROCESSOR = "scheduler"
TICK_S = 1.0

Send = Callable[[Message], Awaitable[None]]


def cron_of(d: Deployment) -> Optional[tuple[str, str]]:
    """(cron, timezone) when the deployment runs on a schedule (the spec check ties schedule.cron to a
    cron trigger, so either one is enough)."""
    cron = d.schedule.get("cron")
    if not cron:
        return None
    return cron, d.schedule.get("timezone") or "UTC"


class CronScheduler:
    """Decides which slots to fire; remembers what it sent so a slot goes out once per instance."""

    def __init__(self, feed: DeploymentFeed, send: Send):
        self.feed = feed
        self._send = send
        self._sent: dict[str, datetime] = {}     # latest slot this instance sent, per pipeline
        self._wake_at: dict[str, datetime] = {}  # nothing can be due before this, per pipeline

    def due(self, now: datetime) -> list[tuple[Deployment, datetime]]:
        for d in self.feed.drain_changed():
            self._wake_at.pop(d.pipeline_id, None)  # new version, pause or resume: recompute
        out = []
        for d in self.feed.active():
            slot = self._due_for(d, now)
            if slot is not None:
                out.append((d, slot))
        return out

    def _due_for(self, d: Deployment, now: datetime) -> Optional[datetime]:
        pid = d.pipeline_id
        if now < self._wake_at.get(pid, now):
            return None
        cron = cron_of(d)
        if cron is None:
            self._wake_at[pid] = datetime.max.replace(tzinfo=now.tzinfo)  # until the deployment changes
            return None
        try:
            slot = due_slot(cron[0], cron[1], now, self.feed.not_before(d))
            if slot is None or self._fired(pid, slot):
                # Nothing to send until the next slot: skip the cron arithmetic until then.
                self._wake_at[pid] = next_slot(cron[0], cron[1], now) or datetime.max.replace(tzinfo=now.tzinfo)
                return None
        except (ValueError, KeyError) as exc:  # a cron or timezone the spec check should have refused
            log.error("cannot schedule %s (%s %s): %s", pid, cron[0], cron[1], exc)
            self._wake_at[pid] = datetime.max.replace(tzinfo=now.tzinfo)
            return None
        return slot

    def _fired(self, pid: str, slot: datetime) -> bool:
        """Sent by this instance, or already requested on the log (by anyone, before a restart too)."""
        seen = [t for t in (self._sent.get(pid), self.feed.cron_slots.get(pid)) if t is not None]
        return bool(seen) and slot <= max(seen)

    async def fire_due(self, now: datetime) -> int:
        n = 0
        for d, slot in self.due(now):
            try:
                await self._send(slot_command(d, slot))
            except Exception as exc:  # noqa: BLE001 - any producer error: the slot stays due, retried next tick
                log.warning("could not request the %s run of %s: %s", slot_iso(slot), d.pipeline_id, exc)
                continue
            self._sent[d.pipeline_id] = slot
            log.info("requested the %s run of %s", slot_iso(slot), d.pipeline_id)
            n += 1
        return n


def slot_command(d: Deployment, slot: datetime) -> Message:
    from zoneinfo import ZoneInfo

    iso = slot_iso(slot)
    run_id, message_id = cron_ids(d.pipeline_id, iso)
    tz = d.schedule.get("timezone") or "UTC"
    # logical_date: the slot as wall time of the pipeline's timezone, for templates and humans.
    params = {"slot": iso, "logical_date": slot.astimezone(ZoneInfo(tz)).isoformat()}
    return trigger_run(d, run_id=run_id, message_id=message_id, trigger_kind="cron", params=params, slot=iso)


def build(settings: Settings, codec: AvroCodec):
    app = make_app(settings, PROCESSOR)
    events = topic(app, settings, "pipelines.events.v1")
    commands_topic = settings.topic(COMMANDS_TOPIC)
    state: dict = {}
    ready = asyncio.Event()

    async def send(msg: Message) -> None:
        key, value, headers = wire(codec, msg)
        await app.producer.send_and_wait(commands_topic, key, value, partition=None, timestamp=None,
                                         headers=headers)

    @app.task
    async def load_log() -> None:
        feed = await asyncio.to_thread(DeploymentFeed.open, settings, codec)
        n = await asyncio.to_thread(feed.catch_up)
        state["scheduler"] = CronScheduler(feed, send)
        log.info("scheduler caught up %d events; %d active deployments", n, len(feed.active()))
        ready.set()

    @app.agent(events)
    async def on_events(stream):
        async for event in stream.events():
            await ready.wait()
            state["scheduler"].feed.observe(record_of(event))

    @app.timer(interval=TICK_S)
    async def tick() -> None:
        if not ready.is_set():
            return
        scheduler: CronScheduler = state["scheduler"]
        try:
            await asyncio.to_thread(scheduler.feed.catch_up)
        except Exception as exc:  # noqa: BLE001 - only the broker away is tolerated
            if not (isinstance(exc, RuntimeError) or broker_away(exc)):
                raise
            # Kafka hiccup (a broker restart): decide on what we know, retry next tick
            log.warning("catch-up on the event log failed: %s", exc)
        await scheduler.fire_due(utcnow())

    return app
