"""Riding out a Redis restart in a stream processor: the record in hand is applied once Redis answers again.

A processor that lets a Redis ``ConnectionError`` escape its Faust agent loses that agent for good (Faust
does not restart a crashed agent; the process lives on consuming nothing): seen restarting Redis under a
running deployment, the projector stopped projecting and the LLM router stopped answering, so every draft
in flight waited forever (tests/reliability/test_server_restarts.py). Instead the step is tried again with
backoff until Redis is back; the stream waits, order is kept, nothing is skipped.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")
BACKOFF_S = (0.2, 0.5, 1.0, 2.0)


def redis_away(exc: BaseException) -> bool:
    """Redis unreachable or its connection dropped (a restart), not a wrong command."""
    import redis

    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))


async def until_redis_answers(step: Callable[[], Awaitable[T]], log: logging.Logger, what: str) -> T:
    """``await step()``; while it fails because Redis is away, wait and try again (logged once per outage)."""
    tries = 0
    while True:
        try:
            result = await step()
        except Exception as exc:  # noqa: BLE001 - only Redis away is waited out
            if not redis_away(exc):
                raise
            if tries == 0:
                log.warning("Redis away while %s (%s: %s): trying again until it answers", what,
                            type(exc).__name__, exc)
            await asyncio.sleep(BACKOFF_S[min(tries, len(BACKOFF_S) - 1)])
            tries += 1
            continue
        if tries:
            log.info("Redis back after %d tries: %s done", tries, what)
        return result
