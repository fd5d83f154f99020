"""Reads of the Redis read model shared by the routers: one pipeline's or one run's state, tenant-checked.

Something of another tenant answers exactly like something that does not exist (404), so ids cannot be
probed across tenants.
"""
from __future__ import annotations

import json
import uuid

from gateway_api.problems import Problem


def check_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, f"{what.capitalize()} not found", f"{value!r} is not a {what} id") from None


async def _owned(deps, key: str) -> dict | None:
    raw = await deps.redis.get(key)
    state = json.loads(raw) if raw else None
    return state if state and state.get("tenant_id") == deps.settings.tenant_id else None


async def pipeline_state(deps, pipeline_id: str) -> dict:
    pid = check_uuid(pipeline_id, "pipeline")
    state = await _owned(deps, deps.keys.pipeline(pid))
    if state is None:
        raise Problem(404, "Pipeline not found", f"no pipeline {pid}")
    return state


async def run_state(deps, run_id: str) -> dict:
    rid = check_uuid(run_id, "run")
    state = await _owned(deps, deps.keys.run(rid))
    if state is None:
        raise Problem(404, "Run not found", f"no run {rid}")
    return state
