"""Server-sent events from the read model: a Redis list of past events, then its live pub/sub channel."""
from __future__ import annotations

import asyncio
import json
import uuid
from typing import AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

from gateway_api import limits
from gateway_api.problems import RETRY_AFTER_S, problem_response

KEEP_ALIVE_S = 15
# A stream holds a slot in a per-principal sorted set scored by its lease's end; the lease is renewed
# while the stream lives, so the slots of a gateway that died free themselves.
SLOT_LEASE_S = 60
_SLOT = """
local t = redis.call('TIME')
local now, lease = tonumber(t[1]), tonumber(ARGV[2])
if ARGV[4] == 'renew' then
  redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[3])
else
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
end
redis.call('EXPIRE', KEYS[1], lease + 1)
return 1
"""


def wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def frame(ev: dict) -> str:
    return f"id: {ev['partition']}-{ev['offset']}\nevent: {ev['type']}\ndata: {json.dumps(ev)}\n\n"


def _ident(ev: dict) -> tuple:
    # A run's events come from two topics, so (partition, offset) alone may repeat; the message id does not.
    message_id = (ev.get("envelope") or {}).get("message_id")
    return ("id", message_id) if message_id else ("at", ev.get("topic"), ev.get("partition"), ev.get("offset"))


async def events(deps, request: Request, history_key: str, channel: str,
                 is_last: Callable[[dict], bool] = lambda ev: False) -> AsyncIterator[str]:
    """History first, then live events; subscribing before reading the history means none is missed.

    Each event is sent once (live copies of events already in the history are dropped); the stream ends
    after an event for which ``is_last`` is true, or when the client goes away.
    """
    pubsub = deps.redis.pubsub()
    await pubsub.subscribe(channel)
    seen: set[tuple] = set()
    try:
        for raw in await deps.redis.lrange(history_key, 0, -1):
            ev = json.loads(raw)
            seen.add(_ident(ev))
            yield frame(ev)
            if is_last(ev):
                return
        idle = 0.0
        while not await request.is_disconnected():
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is None:
                idle += 1.0
                if idle >= KEEP_ALIVE_S:  # comment frames keep proxies from closing an idle stream
                    idle = 0.0
                    yield ": keep-alive\n\n"
                continue
            idle = 0.0
            ev = json.loads(msg["data"])
            if _ident(ev) not in seen:
                seen.add(_ident(ev))
                yield frame(ev)
                if is_last(ev):
                    return
            await asyncio.sleep(0)
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()


class EventStream(StreamingResponse):
    """A stream that first takes one of its principal's ``sse_max_streams`` slots (429 when none is free)
    and gives it back when it ends."""

    async def __call__(self, scope, receive, send):
        deps = scope["app"].state.deps
        who = limits.principal_id(Request(scope), scope.get("state", {}).get("principal"))
        key, slot = f"{deps.keys.ns}limit:sse:{who}", uuid.uuid4().hex
        cap = deps.settings.sse_max_streams
        take = deps.redis.register_script(_SLOT)
        if not await take(keys=[key], args=[cap, SLOT_LEASE_S, slot, "take"]):
            await self.body_iterator.aclose()
            refused = problem_response(429, "Too many event streams",
                                       f"at most {cap} live event streams per principal; close one first",
                                       scope["path"], headers={"Retry-After": str(RETRY_AFTER_S)})
            return await refused(scope, receive, send)

        async def renew():
            while True:
                await asyncio.sleep(SLOT_LEASE_S / 3)
                await take(keys=[key], args=[cap, SLOT_LEASE_S, slot, "renew"])

        renewer = asyncio.create_task(renew())
        try:
            await super().__call__(scope, receive, send)
        finally:
            renewer.cancel()
            await deps.redis.zrem(key, slot)


def response(stream: AsyncIterator[str]) -> StreamingResponse:
    return EventStream(stream, media_type="text/event-stream",
                       headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
