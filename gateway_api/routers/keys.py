"""API keys of the caller's tenant, for its admins: create (the key is in this one answer only), list, revoke.

The same store as `aietl keys` (services/identity/keys.py); a key made here acts for the admin's tenant and
no other. A key of another tenant is not found, exactly like a missing one.
"""
from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway_api import audit
from gateway_api.auth import actor, identity, require
from gateway_api.problems import PROBLEM_JSON, Problem
from services.identity import IdentityError, Principal

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
MANAGE = Depends(require("keys.manage"))
_PROBLEM = {"content": {PROBLEM_JSON: {}}}


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["viewer", "editor", "admin"]
    name: str = Field("", max_length=200, description="A label to recognise the key in listings")
    expires_in: Optional[str] = Field(None, max_length=16, examples=["30d"],
                                      description="Lifetime such as 30d, 12h, 90m, 2w, 45s; default: no expiry")


async def _call(fn, *args, **kwargs):
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except IdentityError as exc:
        raise Problem(exc.status, exc.title, str(exc)) from None


@router.post("", status_code=201, summary="Create an API key of your tenant (shown in this answer only)",
             responses={422: {"description": "Invalid role or expiry", **_PROBLEM}})
async def create_key(body: CreateKeyRequest, request: Request, who: Principal = MANAGE):
    store, _ = identity(request)
    key, info = await _call(store.create, who.tenant, body.role, name=body.name, expires_in=body.expires_in,
                            created_by=actor(who))
    await audit.record(request.app.state.deps, who, "keys.create", subject=info.prefix,
                       reason=f"role {body.role}")
    return JSONResponse({**info.public(), "key": key}, status_code=201,
                        headers={"Cache-Control": "no-store"})


@router.get("", summary="Your tenant's API keys (prefixes and metadata; never the keys)")
async def list_keys(request: Request, who: Principal = MANAGE) -> dict:
    store, _ = identity(request)
    return {"items": [k.public() for k in await _call(store.list, who.tenant)]}


@router.delete("/{prefix}", summary="Revoke a key of your tenant (refused within the gateway's 5 s cache)",
               responses={404: {"description": "No such key", **_PROBLEM}})
async def revoke_key(prefix: str, request: Request, who: Principal = MANAGE) -> dict:
    store, _ = identity(request)
    revoked = await _call(store.revoke, prefix[:64], tenant=who.tenant)
    await audit.record(request.app.state.deps, who, "keys.revoke", subject=revoked.prefix)
    return revoked.public()
