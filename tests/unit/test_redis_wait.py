"""A stream step that meets Redis away waits for it instead of crashing its Faust agent (services.core.redis_wait).

Seen restarting Redis under a running deployment: the projector's and the LLM router's agents crashed on a
redis ConnectionError and never consumed again (tests/reliability/test_server_restarts.py)."""
import asyncio
import logging

import pytest
import redis

from services.core import redis_wait
from services.core.redis_wait import redis_away, until_redis_answers


def test_the_step_is_tried_again_until_redis_answers(monkeypatch):
    monkeypatch.setattr(redis_wait, "BACKOFF_S", (0.0,))
    calls = []

    async def step():
        calls.append(1)
        if len(calls) < 4:
            raise (redis.exceptions.ConnectionError if len(calls) % 2 else redis.exceptions.TimeoutError)("away")
        return "applied"

    assert asyncio.run(until_redis_answers(step, logging.getLogger("t"), "a step")) == "applied"
    assert len(calls) == 4


def test_anything_else_is_raised_at_once():
    calls = []

    async def step():
        calls.append(1)
        raise redis.exceptions.ResponseError("WRONGTYPE")

    with pytest.raises(redis.exceptions.ResponseError):
        asyncio.run(until_redis_answers(step, logging.getLogger("t"), "a step"))
    assert len(calls) == 1 and not redis_away(ValueError()) and redis_away(redis.exceptions.ConnectionError())
