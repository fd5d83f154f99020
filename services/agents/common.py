"""Helpers the agents share: reading LLM replies and the current draft."""
from __future__ import annotations

import json
from typing import Optional

from services.core.messages import Message
from services.domain.pipeline import Pipeline

COMPLETED = "LlmTaskCompleted"
# The reflector's instruction to the SQL expert when repairs stop converging: use the spec's compiled SQL.
ESCALATE_TO_COMPILED = "escalate: the repair did not converge; use the SQL compiled from the spec"


class AgentReplyError(ValueError):
    """The router could not answer, or answered something unusable."""


def reply_output(reply: Message) -> dict:
    if reply.short_name != COMPLETED:
        raise AgentReplyError(f"{reply.payload.get('error_code')}: {reply.payload.get('message')}")
    try:
        out = json.loads(reply.payload["output_json"])
    except json.JSONDecodeError as exc:
        raise AgentReplyError(f"the answer is not JSON: {exc}") from exc
    if not isinstance(out, dict):
        raise AgentReplyError("the answer is not a JSON object")
    return out


def usage(reply: Message) -> Optional[dict]:
    return reply.payload.get("usage") if reply.short_name == COMPLETED else None


def current_spec(pipeline: Pipeline) -> dict:
    return json.loads(pipeline.current.get("spec_json") or "{}")


def needs_python(spec: dict) -> bool:
    transform = spec.get("transform") or {}
    return bool(transform.get("python"))


def join_columns(lookup, tenant_id: str, spec: dict) -> dict:
    """Each joined table's columns, looked up like the source's (the joins live in its connection)."""
    if lookup is None:
        return {}
    return {j["table"]: lookup(tenant_id, {**spec, "source": {**spec["source"], "table": j["table"], "query": None}})
            for j in spec.get("joins") or []}


def cause_of(reply: Message, context: dict) -> Message:
    """A proposal made on a reply counts as caused by the event that triggered the request, so its
    command id derives from that event and a redelivered reply cannot apply twice."""
    return Message(reply.name, dict(reply.envelope, message_id=context["cause_id"]), {})
