"""Commands with a synchronous answer: send, then wait briefly for the aggregate's verdict in the read model.

The rules stay in the aggregate; the gateway only listens for the event the command caused (its
``envelope.causation_id`` is the command's ``message_id``). A ``CommandRejected`` becomes a problem+json
409 (404 for an unknown pipeline or run) carrying the aggregate's reason; any other event means the command
was applied. If nothing arrives within ``settings.command_wait_s`` the caller gets a 202 and can follow the
pipeline's events.
"""
from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable, Optional

from gateway_api.problems import Problem
from services.core.messages import Message

REJECTED = "CommandRejected"
NOT_FOUND_CODES = {"pipeline_not_found": "Pipeline not found", "run_not_found": "Run not found"}
TITLES = {
    "not_deployable": "Version cannot be deployed",
    "wrong_lifecycle": "Not allowed in the pipeline's current state",
    "pipeline_deleted": "Pipeline deleted",
}
# Payload fields too large or too internal for an HTTP answer (the events endpoint has them all).
HIDDEN = {"artifacts_json", "command_id"}

Outcome = Callable[[str, float], Awaitable[Optional[dict]]]


def _caused_by(ev: dict, command_id: str) -> bool:
    return (ev.get("envelope") or {}).get("causation_id") == command_id


@asynccontextmanager
async def watch(deps, pipeline_id: str) -> AsyncIterator[Outcome]:
    """Subscribe to the pipeline's live channel *before* the command is sent, so its outcome cannot slip by.

    The event list stays the source of truth: it is re-read from where it ended at subscription time
    whenever the channel is quiet, which also covers a dropped pub/sub message.
    """
    events_key = deps.keys.events(pipeline_id)
    pubsub = deps.redis.pubsub()
    await pubsub.subscribe(deps.keys.live(pipeline_id))
    start = await deps.redis.llen(events_key)  # older events cannot be caused by a command not yet sent

    async def outcome(command_id: str, timeout: float) -> Optional[dict]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = start
        while True:
            for raw in await deps.redis.lrange(events_key, index, -1):
                index += 1
                ev = json.loads(raw)
                if _caused_by(ev, command_id):
                    return ev
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(remaining, 0.5))
            if msg is not None and _caused_by(ev := json.loads(msg["data"]), command_id):
                return ev

    try:
        yield outcome
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()


async def send_and_wait(deps, cmd: Message, timeout: Optional[float] = None) -> Optional[dict]:
    """Send ``cmd`` and return the first event it caused, or None if none arrived in time."""
    async with watch(deps, cmd.pipeline_id) as outcome:
        await deps.send_command(cmd)
        return await outcome(cmd.message_id, deps.settings.command_wait_s if timeout is None else timeout)


def raise_if_rejected(ev: dict) -> None:
    if ev["type"] != REJECTED:
        return
    code, reason = ev["payload"]["error_code"], ev["payload"]["reason"]
    status = 404 if code in NOT_FOUND_CODES else 409
    title = NOT_FOUND_CODES.get(code) or TITLES.get(code) or "Command rejected"
    raise Problem(status, title, reason, error_code=code, command_id=ev["payload"]["command_id"])


def summary(ev: dict) -> dict:
    """The useful payload fields of an event, with ``params_json`` decoded into ``params``."""
    out = {k: v for k, v in (ev.get("payload") or {}).items() if k not in HIDDEN}
    if isinstance(out.get("params_json"), str):
        try:
            out["params"] = json.loads(out.pop("params_json"))
        except ValueError:
            pass  # not JSON after all: keep it as sent
    return out


def pipeline_links(pid: str) -> dict:
    return {"self": f"/api/v1/pipelines/{pid}", "events": f"/api/v1/pipelines/{pid}/events"}


def applied(cmd: Message, ev: dict) -> dict:
    """The 200 body of an applied command."""
    return {"pipeline_id": cmd.pipeline_id, "command_id": cmd.message_id, "status": "applied",
            "event": ev["type"], **summary(ev), "links": pipeline_links(cmd.pipeline_id)}


def pending(cmd: Message) -> dict:
    """The 202 body when the verdict did not arrive in time: the command is on the log and will be decided."""
    return {"pipeline_id": cmd.pipeline_id, "command_id": cmd.message_id, "status": "accepted",
            "detail": "the command is queued; its outcome will appear in the pipeline's events",
            "links": pipeline_links(cmd.pipeline_id)}
