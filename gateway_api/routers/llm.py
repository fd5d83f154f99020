from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request

from gateway_api.auth import require
from gateway_api.problems import Problem
from services.identity import Principal

router = APIRouter(prefix="/api/v1/llm", tags=["llm"])


def _stats_reader(request: Request):
    """A Router without caches or clients of its own: it only reads the counters all routers share."""
    state = request.app.state
    if getattr(state, "llm_stats_router", None) is None:
        from services.llm_router.budget import BudgetPolicy
        from services.llm_router.router import Router, RouterSettings, provider_configs_from_json

        settings = state.deps.settings.llm_scoped()
        state.llm_stats_router = Router(provider_configs_from_json(settings.llm_providers_json), state.deps.redis,
                                        None, RouterSettings.from_settings(settings),
                                        BudgetPolicy.from_settings(settings))
    return state.llm_stats_router


@router.get("/stats", summary="LLM calls per provider: calls, errors, tokens, cost, latency, cache hits, breakers")
async def llm_stats(request: Request, scope: Literal["tenant", "all"] = "tenant",
                    who: Principal = Depends(require("llm.read"))) -> dict:
    """`scope=tenant` (default) counts the caller's tenant; `scope=all` every tenant (admins only)."""
    if scope == "all" and not who.can("llm.read_global"):
        raise Problem(403, "Forbidden", f"role {who.role!r} may not read other tenants' LLM stats (scope=all)")
    tenant = who.tenant if scope == "tenant" else None
    return await _stats_reader(request).stats(tenant)
