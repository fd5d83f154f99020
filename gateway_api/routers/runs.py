"""Runs: request one now, list a pipeline's runs, read or follow one run, cancel it.

Run states and run events are written by the projector (``{ns}run:{id}``, ``{ns}run:{id}:events``); a run
request and a cancellation are commands on the pipeline, decided by its aggregate like the lifecycle ones.
"""
from __future__ import annotations

import json
import uuid
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from gateway_api import commands, outcomes, sse
from gateway_api.auth import actor, require
from gateway_api.lookups import pipeline_state, run_state
from gateway_api.models import CancelRunRequest, RunRequest
from gateway_api.problems import PROBLEM_JSON
from services.identity import Principal

router = APIRouter(prefix="/api/v1", tags=["runs"])
READ, WRITE = Depends(require("pipelines.read")), Depends(require("pipelines.write"))
_PROBLEM = {"content": {PROBLEM_JSON: {}}}
NOT_FOUND = {404: {"description": "No such pipeline or run", **_PROBLEM}}
DECIDED = {**NOT_FOUND, 409: {"description": "Refused by the pipeline's rules (e.g. not deployed, paused)",
                              **_PROBLEM},
           422: {"description": "Invalid request", **_PROBLEM}}
TERMINAL = {"RunSucceeded", "RunCancelled"}


def run_links(run_id: str, pipeline_id: str) -> dict:
    return {"run": f"/api/v1/runs/{run_id}", "pipeline": f"/api/v1/pipelines/{pipeline_id}",
            "events": f"/api/v1/pipelines/{pipeline_id}/events"}


def is_terminal(ev: dict) -> bool:
    """The last event of a run: success, cancellation, or a failure that will not be retried."""
    kind = ev.get("type")
    # "final" defaults to true in the RunFailed schema: only an explicit false announces a retry.
    return kind in TERMINAL or (kind == "RunFailed" and (ev.get("payload") or {}).get("final", True) is not False)


async def request_run(deps, pipeline_id: str, run_id: str, trigger_kind: str, params: dict, *, tenant: str,
                      sender: str) -> JSONResponse:
    """Send TriggerRun and answer 202 with the run (or a problem if the aggregate refuses it).

    Shared with the webhook endpoint; ``pipeline_id`` must already be checked to belong to ``tenant``.
    """
    cmd = commands.trigger_run(pipeline_id, run_id=run_id, trigger_kind=trigger_kind, params=params,
                               tenant_id=tenant, actor=sender)
    ev = await outcomes.send_and_wait(deps, cmd)
    body = {"run_id": run_id, "pipeline_id": pipeline_id, "command_id": cmd.message_id,
            "links": run_links(run_id, pipeline_id)}
    if ev is None:
        body |= {"status": "accepted", "detail": "the request is queued; its outcome will appear in the "
                                                 "pipeline's events"}
    else:
        outcomes.raise_if_rejected(ev)
        body |= {"status": "queued", "version": ev["payload"].get("version"), "trigger_kind": trigger_kind}
    return JSONResponse(body, status_code=202, headers={"Location": body["links"]["run"]})


@router.post("/pipelines/{pipeline_id}/runs", status_code=202, responses=DECIDED,
             summary="Run the deployed version now (202 with the run id once the pipeline accepted it)")
async def trigger_run(pipeline_id: str, request: Request, body: Optional[RunRequest] = None,
                      who: Principal = WRITE):
    deps = request.app.state.deps
    pid = (await pipeline_state(deps, pipeline_id, who.tenant))["pipeline_id"]
    return await request_run(deps, pid, str(uuid.uuid4()), "manual", body.params if body else {},
                             tenant=who.tenant, sender=actor(who))


@router.get("/pipelines/{pipeline_id}/runs", summary="A pipeline's runs, newest first", responses=NOT_FOUND)
async def list_runs(pipeline_id: str, request: Request, limit: int = Query(50, ge=1, le=500),
                    who: Principal = READ) -> dict:
    deps = request.app.state.deps
    pid = (await pipeline_state(deps, pipeline_id, who.tenant))["pipeline_id"]
    ids = [i.decode() for i in await deps.redis.zrevrange(deps.keys.pipeline_runs(pid), 0, limit - 1)]
    states = await deps.redis.mget([deps.keys.run(i) for i in ids]) if ids else []
    # A run listed before its state was written is simply not shown yet.
    return {"pipeline_id": pid, "items": [json.loads(raw) for raw in states if raw]}


@router.get("/runs/{run_id}", summary="One run's state; its event stream with Accept: text/event-stream",
            responses={**NOT_FOUND, 200: {"content": {"application/json": {}, "text/event-stream": {}}}})
async def get_run(run_id: str, request: Request, who: Principal = READ):
    deps = request.app.state.deps
    state = await run_state(deps, run_id, who.tenant)
    rid = state["run_id"]
    if sse.wants_stream(request):
        return sse.response(sse.events(deps, request, deps.keys.run_events(rid), deps.keys.run_live(rid),
                                       is_last=is_terminal))
    return {**state, "links": run_links(rid, state["pipeline_id"])}


@router.post("/runs/{run_id}/cancel", summary="Ask a run to stop at its next batch boundary", responses=DECIDED)
async def cancel_run(run_id: str, request: Request, body: Optional[CancelRunRequest] = None,
                     who: Principal = WRITE):
    deps = request.app.state.deps
    state = await run_state(deps, run_id, who.tenant)
    payload = {"run_id": state["run_id"], "reason": (body.reason if body and body.reason
                                                     else "cancelled by the user")}
    cmd = commands.pipeline_command("CancelRun", state["pipeline_id"], payload,
                                    tenant_id=who.tenant, actor=actor(who))
    ev = await outcomes.send_and_wait(deps, cmd)
    if ev is None:
        return JSONResponse(outcomes.pending(cmd) | {"run_id": state["run_id"]}, status_code=202)
    outcomes.raise_if_rejected(ev)
    return JSONResponse(outcomes.applied(cmd, ev) | {"links": run_links(state["run_id"], state["pipeline_id"])})
