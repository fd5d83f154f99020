from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from gateway_api import commands, outcomes, sse
from gateway_api.auth import actor, require
from gateway_api.models import Accepted, AnswerRequest, CreatePipelineRequest, ReviseRequest
from gateway_api.artifacts import artifact_names
from gateway_api.lookups import pipeline_state
from gateway_api.outcomes import pipeline_links
from gateway_api.problems import PROBLEM_JSON, Problem
from services.identity import Principal

router = APIRouter(prefix="/api/v1/pipelines", tags=["pipelines"])
REVISABLE = {"draft_ready", "draft_failed", "needs_clarification"}
NOT_FOUND = {"description": "No such pipeline", "content": {PROBLEM_JSON: {}}}
READ, WRITE = Depends(require("pipelines.read")), Depends(require("pipelines.write"))
SSE_WAIT_S = 5.0


@router.post("", status_code=202, response_model=Accepted,
             summary="Request a new pipeline from a description",
             responses={422: {"description": "Invalid request", "content": {PROBLEM_JSON: {}}}})
async def create_pipeline(body: CreatePipelineRequest, request: Request, who: Principal = WRITE):
    deps = request.app.state.deps
    cmd = commands.create_pipeline(body, tenant_id=who.tenant, actor=actor(who))
    await deps.send_command(cmd)
    pid = cmd.pipeline_id
    accepted = Accepted(pipeline_id=pid, command_id=cmd.message_id, links=pipeline_links(pid))
    return JSONResponse(accepted.model_dump(), status_code=202, headers={"Location": f"/api/v1/pipelines/{pid}"})


@router.get("", summary="List the tenant's pipelines, newest first")
async def list_pipelines(request: Request, limit: int = Query(50, ge=1, le=500), who: Principal = READ) -> dict:
    deps = request.app.state.deps
    ids = await deps.redis.zrevrange(deps.keys.tenant_index(who.tenant), 0, limit - 1)
    items = []
    for raw in await deps.redis.mget([deps.keys.pipeline(i.decode()) for i in ids]) if ids else []:
        if raw:
            items.append(json.loads(raw))
    return {"items": items}


@router.get("/{pipeline_id}", summary="Current state of a pipeline (from the read model)",
            responses={404: NOT_FOUND})
async def get_pipeline(pipeline_id: str, request: Request, who: Principal = READ) -> dict:
    state = await _state(request, pipeline_id, who)
    return {**state, "links": pipeline_links(state["pipeline_id"])}


async def _state(request: Request, pipeline_id: str, who: Principal) -> dict:
    return await pipeline_state(request.app.state.deps, pipeline_id, who.tenant)


@router.post("/{pipeline_id}/revise", status_code=202, response_model=Accepted,
             summary="Start a new draft revision following your instructions",
             responses={404: NOT_FOUND, 409: {"description": "Not revisable now", "content": {PROBLEM_JSON: {}}}})
async def revise_pipeline(pipeline_id: str, body: ReviseRequest, request: Request, who: Principal = WRITE):
    deps = request.app.state.deps
    state = await _state(request, pipeline_id, who)
    if state["status"] not in REVISABLE:
        raise Problem(409, "Pipeline cannot be revised now",
                      f"the pipeline is {state['status']}; revise it once its draft is ready, failed or "
                      "waiting for clarification")
    cmd = commands.revise_pipeline(state["pipeline_id"], body, tenant_id=who.tenant, actor=actor(who))
    await deps.send_command(cmd)
    return JSONResponse(Accepted(pipeline_id=cmd.pipeline_id, command_id=cmd.message_id,
                                 links=pipeline_links(cmd.pipeline_id)).model_dump(), status_code=202)


@router.post("/{pipeline_id}/answer", summary="Answer the pipeline's open question: fills the slot it named",
             responses={200: {"description": "Accepted: a new revision reads the request with the answer"},
                        202: {"description": "Sent; the verdict did not arrive in time"}, 404: NOT_FOUND,
                        409: {"description": "No open question, or not one of its slots",
                              "content": {PROBLEM_JSON: {}}}})
async def answer_pipeline(pipeline_id: str, body: AnswerRequest, request: Request, who: Principal = WRITE):
    deps = request.app.state.deps
    state = await _state(request, pipeline_id, who)
    if state["status"] != "needs_clarification":
        raise Problem(409, "No open question", f"the pipeline is {state['status']}; only a pipeline waiting for "
                      "clarification can be answered (use /revise to change a draft)", error_code="not_asked")
    # Without a slot the answer fills the first one the question named; "question" when it named none.
    slot = body.slot or next(iter((state.get("working") or {}).get("missing") or []), "question")
    cmd = commands.answer_pipeline(state["pipeline_id"], body, slot, tenant_id=who.tenant, actor=actor(who))
    ev = await outcomes.send_and_wait(deps, cmd)
    if ev is None:
        return JSONResponse(outcomes.pending(cmd), status_code=202)
    outcomes.raise_if_rejected(ev)
    return JSONResponse({**outcomes.applied(cmd, ev), "slot": slot})


@router.get("/{pipeline_id}/versions", summary="The numbered draft versions of a pipeline",
            responses={404: NOT_FOUND})
async def list_versions(pipeline_id: str, request: Request, who: Principal = READ) -> dict:
    state = await _state(request, pipeline_id, who)
    return {"pipeline_id": state["pipeline_id"], "versions": [
        {k: v for k, v in ver.items() if k != "artifacts"} | {"artifacts": sorted(artifact_names(ver["artifacts"]))}
        for ver in state.get("versions") or []]}


@router.get("/{pipeline_id}/artifacts/{name}", summary="One generated artifact (spec, SQL, DDL, code, diagram)",
            responses={404: NOT_FOUND, 200: {"content": {"text/plain": {}, "application/json": {}}}})
async def get_artifact(pipeline_id: str, name: str, request: Request, version: int | None = None,
                       who: Principal = READ):
    state = await _state(request, pipeline_id, who)
    versions = state.get("versions") or []
    if version is None:
        artifacts = versions[-1]["artifacts"] if versions else state.get("working") or {}
    else:
        match = [v for v in versions if v["draft_version"] == version]
        if not match:
            raise Problem(404, "Version not found", f"pipeline {state['pipeline_id']} has no draft version {version}")
        artifacts = match[0]["artifacts"]
    available = artifact_names(artifacts)
    if name not in available:
        raise Problem(404, "Artifact not found",
                      f"no artifact {name!r}; available: {', '.join(sorted(available)) or 'none yet'}")
    body, media = available[name]
    return PlainTextResponse(body, media_type=media)


@router.get("/{pipeline_id}/events", summary="Event history; a live SSE stream with Accept: text/event-stream",
            responses={404: NOT_FOUND, 200: {"content": {"application/json": {}, "text/event-stream": {}}}})
async def pipeline_events(pipeline_id: str, request: Request, who: Principal = READ):
    deps = request.app.state.deps
    # Events are shown only for a pipeline of the caller's tenant (its state names the tenant); a stream
    # opened right after the create waits briefly for the pipeline to be projected.
    stream = sse.wants_stream(request)
    pid = (await pipeline_state(deps, pipeline_id, who.tenant, wait_s=SSE_WAIT_S if stream else 0.0))["pipeline_id"]
    if stream:
        return sse.response(sse.events(deps, request, deps.keys.events(pid), deps.keys.live(pid)))
    events = [json.loads(e) for e in await deps.redis.lrange(deps.keys.events(pid), 0, -1)]
    if not events:
        raise Problem(404, "Pipeline not found", f"no events for pipeline {pid}")
    return {"pipeline_id": pid, "events": events}
