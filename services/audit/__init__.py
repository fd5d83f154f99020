"""The audit trail: who did what, for which tenant, from where, and how it ended.

Two writers put :data:`AUDIT_RECORDED` records on ``audit.v1`` (topology/): ``pipeline-aggregate`` one per
command it decides (accepted, or rejected with the aggregate's reason) and the gateway one per admin
action and per request it refuses for lack of permission. The metrics-sink stores them in ClickHouse
``audit_log``; ``GET /api/v1/audit`` reads them back for a tenant's admins (:mod:`services.audit.store`).

This module only builds records (pure): the writers own their producers.
"""
from __future__ import annotations

import uuid
from typing import Optional

from services.core.messages import Message, new_envelope

AUDIT_RECORDED = "aietl.audit.v1.AuditRecorded"
OUTCOMES = ("accepted", "rejected", "denied")
# Kafka headers the gateway puts on every command, so the aggregate can say where a command came from.
SOURCE_HEADER = "source_address"
REQUEST_HEADER = "request_id"
_NAMESPACE = uuid.UUID("6f0c2b1e-3c41-4b7a-9f7e-a1d1e0c0a0d1")


def audit_record(*, tenant_id: str, actor: str, action: str, outcome: str, recorder: str,
                 subject: str = "", reason: str = "", pipeline_id: Optional[str] = None,
                 correlation_id: Optional[str] = None, causation_id: Optional[str] = None,
                 source_address: str = "", request_id: str = "") -> Message:
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {outcome!r}")
    # A record about a command has a stable id (the command id and who recorded it), so a record written
    # again after a crash is recognisably the same one (the store reads LIMIT 1 BY event_id).
    message_id = str(uuid.uuid5(_NAMESPACE, f"{recorder}:{causation_id}")) if causation_id else None
    env = new_envelope(AUDIT_RECORDED, tenant_id=tenant_id, actor=actor, pipeline_id=pipeline_id,
                       correlation_id=correlation_id, causation_id=causation_id, message_id=message_id)
    return Message(AUDIT_RECORDED, env, {
        "action": action, "outcome": outcome, "subject": subject or (pipeline_id or ""),
        "reason": reason[:2000], "source_address": source_address[:200], "request_id": request_id[:200],
        "recorder": recorder})


def command_audit(command: Message, events: list[Message], *, headers: Optional[dict] = None) -> Message:
    """The aggregate's record of a decided command: rejected when it caused a ``CommandRejected``."""
    headers = headers or {}
    rejected = next((e for e in events if e.short_name == "CommandRejected"), None)
    env = command.envelope
    return audit_record(
        tenant_id=env["tenant_id"], actor=env.get("actor") or "", action=command.short_name,
        outcome="rejected" if rejected else "accepted", recorder="pipeline-aggregate",
        reason=(f"{rejected.payload.get('error_code')}: {rejected.payload.get('reason')}" if rejected else ""),
        pipeline_id=command.pipeline_id, correlation_id=env.get("correlation_id"),
        causation_id=command.message_id, source_address=headers.get(SOURCE_HEADER, ""),
        request_id=headers.get(REQUEST_HEADER, ""))


__all__ = ["AUDIT_RECORDED", "OUTCOMES", "REQUEST_HEADER", "SOURCE_HEADER", "audit_record", "command_audit"]
