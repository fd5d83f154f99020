"""Messages as the code sees them: a type name, an envelope and a payload."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional


@dataclass
class Message:
    name: str  # full Avro name
    envelope: dict
    payload: dict = field(default_factory=dict)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def message_id(self) -> str:
        return self.envelope["message_id"]

    @property
    def pipeline_id(self) -> Optional[str]:
        return self.envelope.get("pipeline_id")

    def to_record(self) -> dict:
        return {"envelope": self.envelope, **self.payload}

    @classmethod
    def from_record(cls, name: str, record: dict) -> "Message":
        record = dict(record)
        envelope = record.pop("envelope")
        return cls(name, envelope, record)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_envelope(message_type: str, *, tenant_id: str, actor: str, pipeline_id: Optional[str] = None,
                 correlation_id: Optional[str] = None, causation_id: Optional[str] = None,
                 aggregate_version: Optional[int] = None, message_id: Optional[str] = None,
                 occurred_at: Optional[datetime] = None) -> dict:
    message_id = message_id or str(uuid.uuid4())
    return {
        "message_id": message_id,
        "message_type": message_type,
        "tenant_id": tenant_id,
        "pipeline_id": pipeline_id,
        "aggregate_version": aggregate_version,
        "correlation_id": correlation_id or message_id,
        "causation_id": causation_id,
        "actor": actor,
        "occurred_at": occurred_at or utcnow(),
    }
