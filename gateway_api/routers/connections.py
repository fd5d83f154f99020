"""Named connections: register, list, test and introspect the sources and targets of a tenant.

Secrets are write-only: they are accepted on create and answered only as ``"***set***"`` markers. The
registry (PostgreSQL, blocking) is built from ``app.state.deps.settings`` on first use and kept on
``app.state``; every blocking call runs in a worker thread.
"""
from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal, Union

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway_api import audit
from gateway_api.auth import require
from gateway_api.problems import PROBLEM_JSON, Problem
from services.connectors import introspect
from services.connectors.registry import ConnectionError_, build_registry
from services.connectors.secrets import SecretsError
from services.connectors.typemap import convert
from services.identity import Principal

router = APIRouter(prefix="/api/v1/connections", tags=["connections"])
ENGINES = ("clickhouse", "postgres", "duckdb")
_PROBLEM = {"content": {PROBLEM_JSON: {}}}
NOT_FOUND = {404: {"description": "No such connection or table", **_PROBLEM}}
# Reading names and params is for every role; creating, deleting, testing and introspecting (which reach
# the source with the stored secrets) is for admins.
READ, MANAGE = Depends(require("connections.read")), Depends(require("connections.write"))


class CreateConnectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z][A-Za-z0-9_.\-]*$",
                      examples=["warehouse"])
    kind: Literal["postgres", "clickhouse", "file", "kafka", "http", "sqlite"]
    params: dict[str, Any] = Field(default_factory=dict,
                                   examples=[{"host": "db.internal", "port": 5432, "database": "shop",
                                              "user": "etl"}])
    secrets: dict[str, Union[str, dict[str, str]]] = Field(
        default_factory=dict, description="password, api_key, headers, sasl_password: stored encrypted, "
                                          "never returned", examples=[{"password": "s3cret"}])
    is_default: bool = False


# ---------------------------------------------------------------- plumbing

def registry(request: Request):
    """The app's connection registry, built on first use (no work at start-up or import)."""
    state = request.app.state
    reg = getattr(state.deps, "connections", None) or getattr(state, "connection_registry", None)
    if reg is None:
        reg = state.connection_registry = build_registry(state.deps.settings)
    return reg


async def _call(fn, *args):
    """Run a blocking registry/introspection call in a thread; domain errors become problem+json."""
    try:
        return await asyncio.to_thread(fn, *args)
    except (ConnectionError_, SecretsError) as exc:
        raise Problem(exc.status, exc.title, str(exc)) from None


async def _connection(request: Request, who: Principal, name: str):
    return await _call(registry(request).get, who.tenant, name)


def _jsonable(value: Any) -> Any:
    """Sample values as JSON: decimals as strings (no float rounding), bytes as base64."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _column(col, dialect: str) -> dict:
    mapped = {engine: convert(col.type, dialect, engine, col.nullable) for engine in ENGINES}
    return {**col.to_dict(), "mapped": mapped}


# ---------------------------------------------------------------- routes

@router.post("", status_code=201, summary="Register a named connection (secrets are stored encrypted)",
             responses={409: {"description": "Name already taken", **_PROBLEM},
                        422: {"description": "Invalid connection", **_PROBLEM}})
async def create_connection(body: CreateConnectionRequest, request: Request, who: Principal = MANAGE):
    conn = await _call(registry(request).create, who.tenant, body.name, body.kind, body.params,
                       body.secrets, body.is_default)
    await audit.record(request.app.state.deps, who, "connections.create", subject=conn.name)
    return JSONResponse(conn.public(), status_code=201,
                        headers={"Location": f"/api/v1/connections/{conn.name}"})


@router.get("", summary="List the tenant's connections (secrets masked)")
async def list_connections(request: Request, who: Principal = READ) -> dict:
    return {"items": await _call(registry(request).list, who.tenant)}


@router.get("/{name}", summary="One connection (secrets masked)", responses=NOT_FOUND)
async def get_connection(name: str, request: Request, who: Principal = READ) -> dict:
    return (await _connection(request, who, name)).public()


@router.delete("/{name}", status_code=204, summary="Delete a connection", responses=NOT_FOUND)
async def delete_connection(name: str, request: Request, who: Principal = MANAGE):
    await _call(registry(request).delete, who.tenant, name)
    await audit.record(request.app.state.deps, who, "connections.delete", subject=name)
    return Response(status_code=204)


@router.post("/{name}/test", summary="Reachable or not (with a reason class: reachable, unreachable, blocked, "
             "error...) with these params and secrets; never which ports are open",
             responses=NOT_FOUND)
async def test_connection(name: str, request: Request, who: Principal = MANAGE) -> dict:
    conn = await _connection(request, who, name)
    ok, detail, reason, latency_ms = await asyncio.to_thread(introspect.check, conn)
    await audit.record(request.app.state.deps, who, "connections.test", subject=name)
    # A failure's latency would tell a refused port (instant) from a filtered one (the timeout): not shown.
    return {"name": name, "ok": ok, "reachable": ok, "reason": reason, "detail": detail,
            "latency_ms": latency_ms if ok else None}


@router.get("/{name}/tables", summary="Tables (files, topics) of a connection",
            responses={**NOT_FOUND, 502: {"description": "Source unreachable", **_PROBLEM}})
async def list_tables(name: str, request: Request, who: Principal = MANAGE) -> dict:
    conn = await _connection(request, who, name)
    return {"name": name, "kind": conn.kind, "tables": await _call(introspect.list_tables, conn)}


@router.get("/{name}/tables/{table:path}/schema", summary="Columns of a table, with their mapped types",
            responses={**NOT_FOUND, 502: {"description": "Source unreachable", **_PROBLEM}})
async def table_schema(name: str, table: str, request: Request, who: Principal = MANAGE) -> dict:
    conn = await _connection(request, who, name)
    columns = await _call(introspect.table_schema, conn, table)
    dialect = introspect.type_dialect(conn.kind)
    return {"name": name, "table": table, "dialect": dialect, "columns": [_column(c, dialect) for c in columns]}


@router.get("/{name}/tables/{table:path}/sample", summary="A few rows of a table (read-only)",
            responses={**NOT_FOUND, 502: {"description": "Source unreachable", **_PROBLEM}})
async def sample_rows(name: str, table: str, request: Request,
                      limit: int = Query(20, ge=1, le=1000), who: Principal = MANAGE) -> dict:
    conn = await _connection(request, who, name)
    rows = await _call(introspect.sample_rows, conn, table, limit)
    return {"name": name, "table": table, "rows": _jsonable(rows)}
