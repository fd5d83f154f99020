from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The gateway process is alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Kafka and Redis are reachable")
async def readyz(request: Request):
    deps = request.app.state.deps
    checks = {}
    try:
        await asyncio.wait_for(deps.redis.ping(), 2.0)
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is reported
        checks["redis"] = f"error: {exc}"
    try:
        await asyncio.wait_for(asyncio.to_thread(deps.admin.list_topics, timeout=2.0), 3.0)
        checks["kafka"] = "ok"
    except Exception as exc:
        checks["kafka"] = f"error: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)
