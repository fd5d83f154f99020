"""Who is calling: a FastAPI dependency resolving the principal from ``Authorization: Bearer <key-or-jwt>``
(or ``X-API-Key``), checking the route's permission against the one table in :mod:`services.identity`.

401 problem+json with ``WWW-Authenticate`` for a missing, malformed, unknown, expired or revoked credential;
403 when the role lacks the permission. Sets ``request.state.principal`` and then takes one request from the
principal's rate limit (:func:`gateway_api.limits.admit`). The security schemes below are what OpenAPI
declares, so each operation's requirement shows in /openapi.json.

Mounted on every route but ``/healthz``, ``/readyz`` and the webhook delivery (its HMAC signature is its
credential); ``tests/security/test_authz.py`` enumerates the app's routes to keep it so. Routers take the
tenant (:attr:`Principal.tenant`) and the actor (:func:`actor`) from the returned principal, never from
settings.
"""
from __future__ import annotations

from typing import Optional

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway_api import limits
from gateway_api.problems import Problem
from services.identity import IdentityError, InvalidCredentials, Principal
from services.identity.keys import parse

bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="An API key (aietl_<prefix>_<secret>, from `aietl keys create`) or, when "
                                "configured, a JWT whose claims name the tenant and role.")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                              description="The same API key in a header of its own.")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="aietl"'}


def identity(request: Request):
    """The key store and JWT verifier, built on first use (no connection at import or app creation)."""
    state = request.app.state
    if getattr(state, "identity", None) is None:
        from services.identity.keys import build_store
        from services.identity.tokens import build_verifier

        settings = state.deps.settings
        state.identity = (build_store(settings), build_verifier(settings))
    return state.identity


def unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers=dict(_CHALLENGE))


async def authenticate(request: Request, credential: Optional[str]) -> Principal:
    if not credential:
        raise unauthorized("send an API key as 'Authorization: Bearer <key>' (create one with "
                           "'aietl keys create') or a JWT")
    check_source = getattr(limits, "check_source", None)
    if check_source is not None:
        await check_source(request)
    store, verifier = identity(request)
    try:
        if parse(credential) is not None:
            return await run_in_threadpool(store.verify, credential)
        return await run_in_threadpool(verifier.verify, credential)
    except InvalidCredentials as exc:
        failed = getattr(limits, "auth_failed", None)
        if failed is not None:
            await failed(request)
        raise unauthorized(str(exc)) from None
    except IdentityError as exc:  # the key store is down: 503, never a silent pass
        raise Problem(exc.status, exc.title, str(exc)) from None


def actor(principal: Principal) -> str:
    """Who a command names as its sender: ``user:<key prefix>`` for an API key, ``jwt:<sub>`` for a token."""
    return f"user:{principal.key_id}" if principal.key_id else principal.subject


def require(permission: str):
    """A dependency: the request's principal, which must hold ``permission``."""

    async def dependency(request: Request,
                         creds: Optional[HTTPAuthorizationCredentials] = Depends(bearer),
                         header_key: Optional[str] = Depends(api_key_header)) -> Principal:
        principal = await authenticate(request, (creds.credentials if creds else None) or header_key)
        request.state.principal = principal
        admit = getattr(limits, "admit", None)
        if admit is not None:
            await admit(request, principal)
        if not principal.can(permission):
            from gateway_api import audit

            reason = f"role {principal.role!r} may not {permission}"
            await audit.record(request.app.state.deps, principal, permission, "denied",
                               subject=request.url.path[:200], reason=reason)
            raise Problem(403, "Forbidden", reason)
        return principal

    dependency.__name__ = f"require_{permission.replace('.', '_')}"
    return dependency


__all__ = ["actor", "api_key_header", "authenticate", "identity", "bearer", "require", "unauthorized"]
