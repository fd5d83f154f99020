"""GET /api/v1/audit: the tenant's audit trail, for its admins (services/audit)."""
from __future__ import annotations

import asyncio
from datetime import datetime
from enum import Enum
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request

from gateway_api.auth import require
from gateway_api.problems import PROBLEM_JSON, Problem
from services.audit.store import MAX_LIMIT, AuditStore
from services.identity import Principal

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class Outcome(str, Enum):
    accepted = "accepted"
    rejected = "rejected"
    denied = "denied"


def _store(request: Request) -> AuditStore:
    state = request.app.state
    if getattr(state, "audit_store", None) is None:
        state.audit_store = AuditStore(state.deps.settings)
    return state.audit_store


@router.get("", summary="Who did what in this tenant: commands decided, admin actions, refused requests",
            responses={503: {"description": "The audit store (ClickHouse) is unreachable",
                             "content": {PROBLEM_JSON: {}}}})
async def list_audit(request: Request, principal: Principal = Depends(require("audit.read")),
                     actor: Optional[str] = Query(None, max_length=200),
                     action: Optional[str] = Query(None, max_length=100),
                     outcome: Optional[Outcome] = None,
                     pipeline_id: Optional[str] = Query(None, max_length=100),
                     request_id: Optional[str] = Query(None, max_length=128),
                     since: Optional[datetime] = Query(None, description="from this time (inclusive, UTC)"),
                     until: Optional[datetime] = Query(None, description="before this time (UTC)"),
                     limit: int = Query(100, ge=1, le=MAX_LIMIT)) -> dict:
    """Newest first. Records reach the store a second or so after the action (through ``audit.v1`` and the
    metrics-sink)."""
    try:
        items = await asyncio.to_thread(
            _store(request).query, principal.tenant, actor=actor, action=action,
            outcome=outcome.value if outcome else None, pipeline_id=pipeline_id, request_id=request_id,
            since=_naive_utc(since), until=_naive_utc(until), limit=limit)
    except Exception as exc:  # ClickHouse down or a driver error: nothing the caller did
        raise Problem(503, "Audit store unavailable", f"reading the audit log failed: {type(exc).__name__}",
                      headers={"Retry-After": "5"}) from None
    return {"items": items}


def _naive_utc(value: Optional[datetime]) -> Optional[datetime]:
    if value is None or value.tzinfo is None:
        return value
    from datetime import timezone

    return value.astimezone(timezone.utc).replace(tzinfo=None)
