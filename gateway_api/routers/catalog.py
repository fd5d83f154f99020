"""The tenant catalog: every registered connection's tables, columns, types and a few sample values.

The same catalog the planner sends with each request (services/connectors/catalog.py documents its
shape and bounds). Cached for a minute per tenant; ``?refresh=true`` reads the connections again, e.g.
right after a table was created.
"""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from gateway_api.auth import require
from gateway_api.problems import PROBLEM_JSON, Problem
from gateway_api.routers.connections import registry
from services.connectors.registry import ConnectionError_
from services.identity import Principal

router = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])


def _catalog(request: Request):
    """The app's TenantCatalog, built on first use (a Redis client of its own: the catalog is blocking)."""
    state = request.app.state
    cat = getattr(state, "tenant_catalog", None)
    if cat is None:
        from services.connectors.catalog import catalog_from_settings

        cat = state.tenant_catalog = catalog_from_settings(state.deps.settings, registry(request))
    return cat


@router.get("", summary="Tables, columns, types and sample values of every registered connection",
            responses={503: {"description": "The connection registry cannot be reached",
                             "content": {PROBLEM_JSON: {}}}})
async def get_catalog(request: Request, refresh: bool = False,
                      who: Principal = Depends(require("catalog.read"))) -> dict:
    cat = _catalog(request)
    try:
        return await asyncio.to_thread(cat.get, who.tenant, refresh)
    except ConnectionError_ as exc:
        raise Problem(exc.status, exc.title, str(exc)) from None
