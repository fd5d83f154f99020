from __future__ import annotations

import asyncio
import json
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gateway_api import commands
from gateway_api.models import Accepted, CreatePipelineRequest
from gateway_api.problems import PROBLEM_JSON, Problem

router = APIRouter(prefix="/api/v1/pipelines", tags=["pipelines"])
NOT_FOUND = {"description": "No such pipeline", "content": {PROBLEM_JSON: {}}}


def _check_id(pipeline_id: str) -> str:
    try:
        return str(uuid.UUID(pipeline_id))
    except ValueError:
        raise Problem(404, "Pipeline not found", f"{pipeline_id!r} is not a pipeline id") from None


def _links(pid: str) -> dict:
    return {"self": f"/api/v1/pipelines/{pid}", "events": f"/api/v1/pipelines/{pid}/events"}


@router.post("", status_code=202, response_model=Accepted,
             summary="Request a new pipeline from a description",
             responses={422: {"description": "Invalid request", "content": {PROBLEM_JSON: {}}}})
async def create_pipeline(body: CreatePipelineRequest, request: Request):
    deps = request.app.state.deps
    cmd = commands.create_pipeline(body, tenant_id=deps.settings.tenant_id, actor="user:anonymous")
    await deps.send_command(cmd)
    pid = cmd.pipeline_id
    return JSONResponse(Accepted(pipeline_id=pid, command_id=cmd.message_id, links=_links(pid)).model_dump(),
                        status_code=202, headers={"Location": f"/api/v1/pipelines/{pid}"})


@router.get("", summary="List the tenant's pipelines, newest first")
async def list_pipelines(request: Request, limit: int = 50) -> dict:
    deps = request.app.state.deps
    ids = await deps.redis.zrevrange(deps.keys.tenant_index(deps.settings.tenant_id), 0, max(0, limit - 1))
    items = []
    for raw in await deps.redis.mget([deps.keys.pipeline(i.decode()) for i in ids]) if ids else []:
        if raw:
            items.append(json.loads(raw))
    return {"items": items}


@router.get("/{pipeline_id}", summary="Current state of a pipeline (from the read model)",
            responses={404: NOT_FOUND})
async def get_pipeline(pipeline_id: str, request: Request) -> dict:
    deps = request.app.state.deps
    pid = _check_id(pipeline_id)
    raw = await deps.redis.get(deps.keys.pipeline(pid))
    if not raw:
        raise Problem(404, "Pipeline not found", f"no pipeline {pid} (yet): it may still be in flight")
    state = json.loads(raw)
    if state.get("tenant_id") != deps.settings.tenant_id:
        raise Problem(404, "Pipeline not found", f"no pipeline {pid}")
    return {**state, "links": _links(pid)}


@router.get("/{pipeline_id}/events", summary="Event history; a live SSE stream with Accept: text/event-stream",
            responses={404: NOT_FOUND, 200: {"content": {"application/json": {}, "text/event-stream": {}}}})
async def pipeline_events(pipeline_id: str, request: Request):
    deps = request.app.state.deps
    pid = _check_id(pipeline_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_sse(deps, pid, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    events = [json.loads(e) for e in await deps.redis.lrange(deps.keys.events(pid), 0, -1)]
    if not events:
        raise Problem(404, "Pipeline not found", f"no events for pipeline {pid}")
    return {"pipeline_id": pid, "events": events}


def _sse_frame(raw: bytes | str) -> str:
    ev = json.loads(raw)
    return f"id: {ev['partition']}-{ev['offset']}\nevent: {ev['type']}\ndata: {json.dumps(ev)}\n\n"


async def _sse(deps, pid: str, request: Request):
    """History first, then live events; subscribing before reading the history means none is missed."""
    pubsub = deps.redis.pubsub()
    await pubsub.subscribe(deps.keys.live(pid))
    seen: set[int] = set()
    try:
        for raw in await deps.redis.lrange(deps.keys.events(pid), 0, -1):
            seen.add(json.loads(raw)["offset"])
            yield _sse_frame(raw)
        idle = 0.0
        while not await request.is_disconnected():
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is None:
                idle += 1.0
                if idle >= 15:  # comment frames keep proxies from closing an idle stream
                    idle = 0.0
                    yield ": keep-alive\n\n"
                continue
            idle = 0.0
            offset = json.loads(msg["data"])["offset"]
            if offset not in seen:
                seen.add(offset)
                yield _sse_frame(msg["data"])
            await asyncio.sleep(0)
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()
