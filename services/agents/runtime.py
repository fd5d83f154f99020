"""What every agent shares: a Faust app that folds pipeline events, asks the router over Kafka and sends
proposal commands back.

An agent is a name plus handlers: ``on_event[EventName](ctx, event, pipeline)`` for pipeline events and
``on_reply(ctx, reply, pipeline, context)`` for the router's answers to its own requests. Agents keep no
state of their own: they fold ``pipelines.events.v1`` (the same fold the aggregate uses), and whatever a
reply needs travels with the request as ``context_json`` and comes back with the reply.

Idempotency: command and request ids are derived from the message that caused them (uuid5), so a
redelivered event produces the same command id (skipped by the aggregate's dedupe) and the same
request (answered from the router's exact cache, not paid twice).

Poison: a record of either log it cannot decode or apply (services.core.dlq, PipelineLog) is skipped and
counted; the planner also dead-letters bad replies (it owns ``llm.replies.v1.dlq``). An agent never stops
on one.

No pipeline waits forever: a handler that raises proposes ``FailDrafting`` with the error, and an agent
with ``on_tick`` (the reflector's watchdog) sees every folded pipeline periodically and proposes
``ExpireStage`` for one waiting in a drafting stage longer than ``agent_stage_timeout_s``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from services.core.avro import AvroCodec
from services.core.dlq import POISON, DeadLetters, record_of
from services.core.eventlog import LogReader
from services.core.faust_app import make_app, topic
from services.core.histories import PipelineHistories
from services.core.messages import Message, new_envelope
from services.core.settings import Settings
from services.domain.events import replay
from services.domain.pipeline import WAITS_FOR, Pipeline

log = logging.getLogger("aietl.agents")
ID_NAMESPACE = uuid.UUID("6f1c63a2-4d0e-4c55-9a57-6f3f1f0d7a11")
LLM_REQUEST = "aietl.llm.v1.CompleteLlmTask"

EventHandler = Callable[["AgentContext", Message, Pipeline], Awaitable[None]]
ReplyHandler = Callable[["AgentContext", Message, Pipeline, dict], Awaitable[None]]
# (ctx, [(pipeline, its last event)]) every tick_s seconds, once the log is folded.
TickHandler = Callable[["AgentContext", list[tuple[Pipeline, Message]]], Awaitable[None]]
MAX_REASON = 1000
# Last events after which no agent owes the pipeline an answer.
_SETTLED = {"DraftCompleted", "DraftingFailed", "ClarificationRequested", "RequestRefused", "PipelineDeployed",
            "PipelineRolledBack", "PipelinePaused", "PipelineResumed", "PipelineDeleted", "RunRequested",
            "RunCancelRequested"}


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(parts)))


@dataclass
class AgentSpec:
    name: str
    on_event: dict[str, EventHandler]
    on_reply: Optional[ReplyHandler] = None
    extra: dict[str, Any] = field(default_factory=dict)  # per-agent collaborators (memory, registry, ...)
    on_tick: Optional[TickHandler] = None  # called every settings.agent_watchdog_s
    # Loads what the first draft would otherwise pay for (models, patterns, lazy imports); the composition
    # root calls warm() before the worker joins its group, so "ready" means warm. A failure only logs.
    warm_up: Optional[Callable[[], None]] = None


class AgentContext:
    """The agent's way out: commands to the aggregate, tasks to the LLM router."""

    def __init__(self, settings: Settings, codec: AvroCodec, agent: AgentSpec, produce):
        self.settings = settings
        self.codec = codec
        self.agent = agent
        self._produce = produce  # async (topic, key, value, headers)

    async def propose(self, cause: Message, command: str, payload: dict) -> Message:
        """Send a proposal command for the pipeline ``cause`` is about."""
        name = f"aietl.pipelines.v1.{command}"
        env = new_envelope(name, tenant_id=cause.envelope["tenant_id"], pipeline_id=cause.pipeline_id,
                           correlation_id=cause.envelope["correlation_id"], causation_id=cause.message_id,
                           actor=f"agent:{self.agent.name}",
                           message_id=derived_id(self.agent.name, command, cause.message_id))
        msg = Message(name, env, payload)
        await self._produce(self.settings.topic("pipelines.commands.v1"), cause.pipeline_id.encode(),
                            self.codec.encode(name, msg.to_record()),
                            [("type", name.encode()), ("message_id", msg.message_id.encode())])
        log.info("%s proposed %s for %s", self.agent.name, command, cause.pipeline_id)
        return msg

    async def ask(self, cause: Message, pipeline: Pipeline, *, task: str, prompt_version: str,
                  messages: list[dict], input: dict, complexity: str = "medium", repair_round: int = 0,
                  context: Optional[dict] = None) -> Message:
        """Send a task to the LLM router; the answer comes back to this agent's ``on_reply``."""
        ctx = {"pipeline_id": cause.pipeline_id, "event_version": pipeline.version,
               "revision": pipeline.revision, "cause_id": cause.message_id, **(context or {})}
        env = new_envelope(LLM_REQUEST, tenant_id=cause.envelope["tenant_id"], pipeline_id=cause.pipeline_id,
                           correlation_id=cause.envelope["correlation_id"], causation_id=cause.message_id,
                           actor=f"agent:{self.agent.name}",
                           message_id=derived_id(self.agent.name, task, cause.message_id))
        payload = {"task": task, "requester": self.agent.name, "prompt_version": prompt_version,
                   "complexity": complexity, "messages": messages,
                   "input_json": json.dumps(input, sort_keys=True, default=str),
                   "context_json": json.dumps(ctx, sort_keys=True), "repair_round": repair_round,
                   "max_tokens": 2048, "preferred_provider": None}
        msg = Message(LLM_REQUEST, env, payload)
        key = env["correlation_id"].encode()
        await self._produce(self.settings.topic("llm.requests.v1"), key,
                            self.codec.encode(LLM_REQUEST, msg.to_record()),
                            [("type", LLM_REQUEST.encode()), ("message_id", msg.message_id.encode())])
        return msg


def is_current(pipeline: Optional[Pipeline], event: Message) -> bool:
    """React only to a pipeline's latest state: replays of old events after a restart are ignored."""
    return pipeline is not None and pipeline.version == event.envelope.get("aggregate_version")


def _redelivered(codec: AvroCodec, rec) -> Optional[Message]:
    """An event the fold had read before the stream delivered it: a previous incarnation received it but
    may have died before handling it (its offset was not committed). It is handled like a new one, since
    only a pipeline's latest event is acted on (is_current) and a proposal made twice is stale for the
    aggregate; skipping it lost the work for good (seen: SIGKILL of the planner mid-draft left 12 of 16
    requests waiting). None for a record that does not decode (poison, dead-lettered by the fold)."""
    try:
        return Message.from_record(*codec.decode(rec.value))
    except Exception:  # noqa: BLE001 - the fold has dead-lettered it already
        return None


class _TrackedHistories(PipelineHistories):
    """The fold, also knowing every pipeline it has seen (for the watchdog's scan)."""

    def __init__(self, *args, **kwargs):
        self._ids: set[str] = set()
        self._ids_lock = threading.Lock()  # the watchdog scans in a thread while events are observed
        super().__init__(*args, **kwargs)

    def _fold(self, partition: int, offset: int, msg: Message) -> None:
        if msg.pipeline_id:
            with self._ids_lock:
                self._ids.add(msg.pipeline_id)
        super()._fold(partition, offset, msg)

    def pipeline_ids(self) -> list[str]:
        with self._ids_lock:
            return sorted(self._ids)


def build_agent_app(settings: Settings, codec: AvroCodec, agent: AgentSpec):
    app = make_app(settings, agent.name)
    events = topic(app, settings, "pipelines.events.v1")
    replies = topic(app, settings, "llm.replies.v1")
    ready = asyncio.Event()
    state: dict = {}

    async def produce(topic_name: str, key: bytes, value: bytes, headers: list) -> None:
        await app.producer.send_and_wait(topic_name, key, value, partition=None, timestamp=None, headers=headers)

    ctx = AgentContext(settings, codec, agent, produce)
    dead = DeadLetters(settings, agent.name)

    @app.task
    async def load_log() -> None:
        reader = await asyncio.to_thread(LogReader, settings, settings.topic("pipelines.events.v1"))
        state["histories"] = _TrackedHistories(reader, codec, dead)
        n = await asyncio.to_thread(state["histories"].catch_up)
        log.info("%s folded %d events", agent.name, n)
        ready.set()

    @app.agent(events)
    async def on_events(stream):
        async for event in stream.events():
            await ready.wait()
            rec = record_of(event)
            msg = state["histories"].observe_record(rec)  # cheap: decode and fold one event
            if msg is None:  # folded already (at start-up), or poison (skipped and counted by the fold)
                msg = _redelivered(codec, rec)
                if msg is None:
                    continue
            handler = agent.on_event.get(msg.short_name)
            if handler is None or not msg.pipeline_id:
                continue
            pipeline = replay(state["histories"].history(msg.pipeline_id))
            if is_current(pipeline, msg):
                await _guarded(ctx, handler, (ctx, msg, pipeline), msg, msg, pipeline)

    if agent.on_reply is not None:
        @app.agent(replies)
        async def on_replies(stream):
            async for event in stream.events():
                await ready.wait()
                # Checked before the requester, so the planner (the DLQ's owner) sees every bad reply.
                try:
                    reply = dead.decode(codec, record_of(event))
                    context = json.loads(reply.payload.get("context_json") or "{}")
                    if not isinstance(context, dict):
                        raise ValueError("context_json is not a JSON object")
                except POISON as exc:
                    await dead.apoison(record_of(event), exc)
                    continue
                if reply.payload.get("requester") != agent.name:
                    continue
                pipeline = replay(state["histories"].history(context.get("pipeline_id", "")))
                if pipeline is None or pipeline.version != context.get("event_version"):
                    log.info("%s dropped a stale reply for %s", agent.name, context.get("pipeline_id"))
                    continue
                cause = Message(reply.name, dict(reply.envelope, message_id=context.get("cause_id") or
                                                 reply.message_id), {})
                await _guarded(ctx, agent.on_reply, (ctx, reply, pipeline, context), reply, cause, pipeline)

    if agent.on_tick is not None:
        @app.timer(interval=settings.agent_watchdog_s)
        async def tick() -> None:
            if not ready.is_set():
                return
            try:
                # Replaying is CPU work: off the event loop, so Kafka heartbeats and handlers go on.
                seen = await asyncio.to_thread(_waiting, state["histories"])
                await agent.on_tick(ctx, seen)
            except Exception:  # the next tick tries again
                log.exception("%s tick failed", agent.name)

    return app


def warm(agent: AgentSpec) -> None:
    if agent.warm_up is None:
        return
    started = time.perf_counter()
    try:
        agent.warm_up()
        log.info("%s warmed up in %.2f s", agent.name, time.perf_counter() - started)
    except Exception:
        log.warning("%s warm-up failed; the first draft pays for it", agent.name, exc_info=True)


def _waiting(histories: _TrackedHistories) -> list[tuple[Pipeline, Message]]:
    """(pipeline, its last event) for every pipeline that may be waiting for an agent."""
    seen = []
    for pid in histories.pipeline_ids():
        history = histories.history(pid)
        if not history or history[-1].short_name in _SETTLED:
            continue  # cheap skip: no replay for pipelines that wait for nobody
        pipeline = replay(history)
        if pipeline is not None and pipeline.status in WAITS_FOR:
            seen.append((pipeline, history[-1]))
    return seen


async def _guarded(ctx: "AgentContext", handler, args: tuple, msg: Message, cause: Message,
                   pipeline: Pipeline) -> None:
    """A handler that raises must not stop the agent, nor leave the pipeline waiting for an answer that
    will never come: the error becomes the pipeline's failure (``FailDrafting``) when it is drafting."""
    agent = ctx.agent
    try:
        await handler(*args)
    except Exception as exc:
        log.exception("%s failed on %s %s: %s", agent.name, msg.short_name, msg.message_id, exc)
        if pipeline.status not in WAITS_FOR:
            return  # e.g. remembering a finished draft: nothing waits for it
        reason = f"{agent.name} failed on {msg.short_name}: {type(exc).__name__}: {exc}"[:MAX_REASON]
        try:
            await ctx.propose(cause, "FailDrafting", {"revision": pipeline.revision, "stage": pipeline.status,
                                                      "reason": reason})
        except Exception:  # Kafka itself is failing; the stage timeout will still end the wait
            log.exception("%s could not propose FailDrafting for %s", agent.name, cause.pipeline_id)
