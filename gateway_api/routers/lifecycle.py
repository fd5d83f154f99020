"""Lifecycle of a drafted pipeline: deploy, roll back, pause, resume, delete.

Each endpoint checks that the pipeline exists (404 before anything is sent), sends the command and waits
briefly for the aggregate's verdict (see :mod:`gateway_api.outcomes`): 200 when applied, a problem+json
409 with the aggregate's reason when refused, 202 when the verdict is slow.
"""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateway_api import commands, outcomes
from gateway_api.auth import actor, require
from gateway_api.lookups import pipeline_state
from gateway_api.models import DeployRequest, RollbackRequest
from gateway_api.problems import PROBLEM_JSON
from services.identity import Principal

router = APIRouter(prefix="/api/v1/pipelines", tags=["lifecycle"])
WRITE = Depends(require("pipelines.write"))
_PROBLEM = {"content": {PROBLEM_JSON: {}}}
RESPONSES = {
    200: {"description": "Applied: the event the command caused, with its main fields"},
    202: {"description": "Sent, but the verdict did not arrive in time; follow the pipeline's events"},
    404: {"description": "No such pipeline", **_PROBLEM},
    409: {"description": "Refused by the pipeline's rules (reason in detail, error_code)", **_PROBLEM},
    422: {"description": "Invalid request", **_PROBLEM},
}


async def _decide(request: Request, who: Principal, pipeline_id: str, command: str, payload: dict) -> JSONResponse:
    deps = request.app.state.deps
    pid = (await pipeline_state(deps, pipeline_id, who.tenant))["pipeline_id"]
    cmd = commands.pipeline_command(command, pid, payload, tenant_id=who.tenant, actor=actor(who))
    ev = await outcomes.send_and_wait(deps, cmd)
    if ev is None:
        return JSONResponse(outcomes.pending(cmd), status_code=202)
    outcomes.raise_if_rejected(ev)
    return JSONResponse(outcomes.applied(cmd, ev))


@router.post("/{pipeline_id}/deploy", summary="Deploy a QA-passed draft version (the latest by default)",
             responses=RESPONSES)
async def deploy(pipeline_id: str, request: Request, body: Optional[DeployRequest] = None,
                 who: Principal = WRITE):
    version = body.version if body else None
    return await _decide(request, who, pipeline_id, "DeployPipeline", {"version": version})


@router.post("/{pipeline_id}/rollback", summary="Make an earlier deployed version current again",
             responses=RESPONSES)
async def rollback(pipeline_id: str, body: RollbackRequest, request: Request, who: Principal = WRITE):
    return await _decide(request, who, pipeline_id, "RollbackPipeline", {"version": body.version})


@router.post("/{pipeline_id}/pause", summary="Stop scheduling and triggering runs", responses=RESPONSES)
async def pause(pipeline_id: str, request: Request, who: Principal = WRITE):
    return await _decide(request, who, pipeline_id, "PausePipeline", {})


@router.post("/{pipeline_id}/resume", summary="Let a paused pipeline run again", responses=RESPONSES)
async def resume(pipeline_id: str, request: Request, who: Principal = WRITE):
    return await _decide(request, who, pipeline_id, "ResumePipeline", {})


@router.delete("/{pipeline_id}", summary="Retire the pipeline (its history stays on the log)",
               responses=RESPONSES)
async def delete(pipeline_id: str, request: Request, who: Principal = WRITE):
    return await _decide(request, who, pipeline_id, "DeletePipeline", {})
