"""kafka-trigger: a run for each message of a user's topic that matches the pipeline's trigger filter.

Deployments are folded from ``pipelines.events.v1`` exactly as the scheduler does (services.scheduler.feed):
caught up at start, kept current by a Faust agent and a catch-up on each tick. Each tick turns the active
deployments with ``trigger.kind == "kafka"`` into a :class:`Watches` snapshot for the consumer thread
(services.kafka_trigger.consumer), which follows those topics -- named as the user wrote them, never
prefixed -- in a consumer group of its own.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Optional

from services.core.avro import AvroCodec
from services.core.dlq import record_of
from services.core.eventlog import broker_away
from services.core.faust_app import make_app, topic
from services.core.settings import Settings
from services.domain.deployments import Deployment
from services.kafka_trigger.consumer import TriggerConsumer, Watch, Watches, fresh_ms, registry_avro_decoder, to_ms
from services.kafka_trigger.filters import Filter, FilterError, compile_filter
from services.scheduler.feed import DeploymentFeed

log = logging.getLogger("aietl.kafka_trigger")
PROCESSOR = "kafka-trigger"
TICK_S = 1.0


class FilterCache:
    """Compiled filters per (pipeline, version); a broken filter is reported once and matches nothing."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[str, int], Optional[Filter]] = {}

    def get(self, d: Deployment) -> Optional[Filter]:
        key = (d.pipeline_id, d.version)
        if key not in self._compiled:
            text = d.trigger.get("filter")
            try:
                self._compiled[key] = compile_filter(text)
            except FilterError as exc:
                log.error("pipeline %s v%d: trigger filter %r refused, no message will trigger it: %s",
                          d.pipeline_id, d.version, text, exc)
                self._compiled[key] = None
        return self._compiled[key]


def watches_from(feed: DeploymentFeed, filters: FilterCache) -> Watches:
    by_topic: dict[str, list[Watch]] = defaultdict(list)
    for d in feed.active():
        trigger = d.trigger
        if trigger.get("kind") != "kafka" or not trigger.get("topic"):
            continue
        if (d.spec.get("streaming") or {}).get("enabled"):
            continue  # a streaming pipeline consumes its topic itself (executor); a run per message would double it
        compiled = filters.get(d)
        if compiled is None:
            continue
        by_topic[trigger["topic"]].append(Watch(d, trigger["topic"], compiled, to_ms(feed.not_before(d))))
    return Watches({t: tuple(ws) for t, ws in by_topic.items()}, fresh_ms(feed.fresh_as_of))


def build(settings: Settings, codec: AvroCodec):
    app = make_app(settings, PROCESSOR)
    events = topic(app, settings, "pipelines.events.v1")
    avro = registry_avro_decoder(settings.schema_registry_url) if settings.schema_registry_url else None
    runner = TriggerConsumer(settings, codec, avro)
    filters = FilterCache()
    state: dict = {}
    ready = asyncio.Event()

    @app.task
    async def load_log() -> None:
        feed = await asyncio.to_thread(DeploymentFeed.open, settings, codec)
        n = await asyncio.to_thread(feed.catch_up)
        state["feed"] = feed
        watches = watches_from(feed, filters)
        runner.update(watches)
        runner.start()
        log.info("kafka-trigger caught up %d events; following %s", n, sorted(watches.topics))
        ready.set()

    @app.agent(events)
    async def on_events(stream):
        async for event in stream.events():
            await ready.wait()
            state["feed"].observe(record_of(event))

    @app.timer(interval=TICK_S)
    async def tick() -> None:
        if not ready.is_set():
            return
        feed: DeploymentFeed = state["feed"]
        try:
            await asyncio.to_thread(feed.catch_up)
        except Exception as exc:  # noqa: BLE001 - only the broker away is tolerated
            if not (isinstance(exc, RuntimeError) or broker_away(exc)):
                raise
            # Kafka hiccup (a broker restart): keep the last snapshot, retry next tick
            log.warning("catch-up on the event log failed: %s", exc)
        runner.update(watches_from(feed, filters))

    @app.on_before_shutdown.connect
    async def stop_consumer(_app, **_kwargs) -> None:
        await asyncio.to_thread(runner.stop)

    return app

