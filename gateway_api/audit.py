"""The gateway's part of the audit trail (services/audit): where a request came from, and a record per admin
action and per refused request.

:class:`RequestContext` (ASGI middleware) gives every request an id (the caller's ``X-Request-ID`` when it
sends a sane one, else a new one; echoed in the response) and remembers the client's address in context
variables. :meth:`Deps.send_command` puts both on each command as Kafka headers, so the aggregate's record
of the command says where it came from; :func:`record` writes the gateway's own records on ``audit.v1``.
"""
from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Optional

from services.audit import REQUEST_HEADER, SOURCE_HEADER, audit_record

log = logging.getLogger("aietl.gateway.audit")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("aietl_request_id", default="")
_source: contextvars.ContextVar[str] = contextvars.ContextVar("aietl_source_address", default="")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContext:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SANE_ID.match(given) else uuid.uuid4().hex
        client = scope.get("client")
        t1, t2 = _request_id.set(rid), _source.set(client[0] if client else "")

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(t1)
            _source.reset(t2)


def command_headers() -> list[tuple[str, bytes]]:
    """Kafka headers naming the current request, for a command it sends."""
    return [(SOURCE_HEADER, _source.get().encode()), (REQUEST_HEADER, _request_id.get().encode())]


def current_request_id() -> str:
    return _request_id.get()


async def record(deps, principal, action: str, outcome: str = "accepted", *, subject: str = "",
                 reason: str = "", pipeline_id: Optional[str] = None) -> None:
    """Write the gateway's record of an action. The action already happened (or was refused): a failure to
    record it is logged, never turned into a failed request."""
    from gateway_api.auth import actor

    msg = audit_record(tenant_id=principal.tenant, actor=actor(principal), action=action, outcome=outcome,
                       recorder="gateway", subject=subject, reason=reason, pipeline_id=pipeline_id,
                       source_address=_source.get(), request_id=_request_id.get())
    try:
        await deps.producer.send(deps.settings.topic("audit.v1"), principal.tenant.encode(),
                                 deps.codec.encode(msg.name, msg.to_record()),
                                 [("type", msg.name.encode()), ("message_id", msg.message_id.encode())])
    except Exception as exc:  # Kafka down: the action stands; say loudly that its record is missing
        log.error("audit record %s %s for %s not written: %s", action, outcome, principal.tenant, exc)
