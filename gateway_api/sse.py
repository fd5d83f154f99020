"""Server-sent events from the read model: a Redis list of past events, then its live pub/sub channel."""
from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

KEEP_ALIVE_S = 15


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


def response(stream: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
