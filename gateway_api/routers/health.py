from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway_api.problems import RETRY_AFTER_S, problem_response

router = APIRouter(tags=["health"])

# /readyz is polled (load balancers, `aietl start`): the consumer-group lookups are shared for this long.
GROUPS_TTL_S = 2.0


@router.get("/healthz", summary="The gateway process is alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis and Kafka are reachable and every processor has live consumers",
            responses={503: {"description": "Not ready: what is missing, as application/problem+json"}})
async def readyz(request: Request):
    deps = request.app.state.deps
    checks = {}
    try:
        await asyncio.wait_for(deps.redis.ping(), 2.0)
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is reported
        checks["redis"] = f"error: {exc or type(exc).__name__}"
    processors, missing = {}, []
    try:
        groups = await _groups(request.app.state)
        checks["kafka"] = "ok"
        processors = {g.processor: {"group": g.group, "state": g.state, "members": g.members, "lag": g.lag}
                      for g in groups}
        missing = [g.processor for g in groups if not g.live]
        checks["processors"] = "ok" if not missing else f"missing: {', '.join(missing)}"
    except Exception as exc:
        checks["kafka"] = f"error: {exc or type(exc).__name__}"
    body = {"checks": checks, "processors": processors, "missing": missing}
    if all(v == "ok" for v in checks.values()) and "processors" in checks:
        return JSONResponse({"status": "ready", **body})
    down = [name for name, v in checks.items() if v != "ok" and name != "processors"]
    detail = "; ".join(f"{name}: {v}" for name, v in checks.items() if v != "ok")
    return problem_response(503, "Not ready", detail, str(request.url.path),
                            headers={"Retry-After": str(RETRY_AFTER_S)}, unavailable=down, **body)


async def _groups(state):
    """The processors' consumer groups, looked up at most once per GROUPS_TTL_S whoever asks, and never more
    than one lookup in flight (a slow or down broker must not pile up threads)."""
    from services.readiness import expected_processors, processor_health

    cache = getattr(state, "readiness_cache", None)
    if cache is None:
        cache = state.readiness_cache = {"at": 0.0, "value": None, "task": None, "lock": asyncio.Lock()}
    async with cache["lock"]:
        if cache["value"] is not None and time.monotonic() - cache["at"] <= GROUPS_TTL_S:
            return cache["value"]
        if cache["task"] is None or cache["task"].done():
            deps = state.deps

            def lookup():
                deps.admin.list_topics(timeout=2.0)  # the broker answers, whichever processors are expected
                return processor_health(deps.settings, deps.admin, expected_processors(deps.settings))

            cache["task"] = asyncio.ensure_future(asyncio.to_thread(lookup))
        task = cache["task"]
    value = await asyncio.wait_for(asyncio.shield(task), 8.0)
    cache["value"], cache["at"] = value, time.monotonic()
    return value
