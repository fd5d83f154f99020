"""Reads of the Redis read model shared by the routers: one pipeline's or one run's state, tenant-checked.

The tenant is always the caller's (the principal's, :func:`gateway_api.auth.require`), never a setting.
Something of another tenant answers exactly like something that does not exist (404), so ids cannot be
probed across tenants.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid

from gateway_api.problems import Problem


def check_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, f"{what.capitalize()} not found", f"{value!r} is not a {what} id") from None


async def _read(deps, key: str) -> dict | None:
    raw = await deps.redis.get(key)
    return json.loads(raw) if raw else None


async def _owned(deps, key: str, tenant: str) -> dict | None:
    state = await _read(deps, key)
    return state if state and state.get("tenant_id") == tenant else None


def _no_pipeline(pid: str) -> Problem:
    return Problem(404, "Pipeline not found", f"no pipeline {pid}")


async def pipeline_state(deps, pipeline_id: str, tenant: str, wait_s: float = 0.0) -> dict:
    """The pipeline's state if it belongs to ``tenant``. With ``wait_s``, a pipeline just requested gets that
    long to be projected; another tenant's waits just as long, so timing does not tell it from a missing one."""
    pid = check_uuid(pipeline_id, "pipeline")
    deadline = time.monotonic() + wait_s
    while (state := await _owned(deps, deps.keys.pipeline(pid), tenant)) is None:
        if time.monotonic() >= deadline:
            raise _no_pipeline(pid)
        await asyncio.sleep(0.1)
    return state


async def hook_pipeline_state(deps, pipeline_id: str) -> dict:
    """A pipeline's state whatever its tenant: for a webhook delivery, whose signature (already verified) is
    its credential; the run is then requested for the tenant this returns."""
    pid = check_uuid(pipeline_id, "pipeline")
    state = await _read(deps, deps.keys.pipeline(pid))
    if state is None or not state.get("tenant_id"):
        raise _no_pipeline(pid)
    return state


async def run_state(deps, run_id: str, tenant: str) -> dict:
    rid = check_uuid(run_id, "run")
    state = await _owned(deps, deps.keys.run(rid), tenant)
    if state is None:
        raise Problem(404, "Run not found", f"no run {rid}")
    return state
