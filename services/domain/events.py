"""Bridge between the aggregate's domain events and the Avro records on ``pipelines.events.v1``.

Envelope fields carry identity (pipeline id, version, time, causing command); every other attribute
of a domain event is a payload field of the Avro record with the same short name.
"""
from __future__ import annotations

from typing import Optional
from uuid import UUID

from eventsourcing.domain import Aggregate

from services.core.messages import Message, new_envelope
from services.domain.pipeline import Pipeline

AGGREGATES = {"pipelines": Pipeline}
_IDENTITY = {"originator_id", "originator_version", "timestamp", "originator_topic", "pipeline_id",
             "tenant_id", "command_id"}


def _event_class(aggregate: type[Aggregate], short_name: str):
    cls = getattr(aggregate, short_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Aggregate.Event)):
        return None
    return cls


def to_message(domain_event: Aggregate.Event, *, context: str, cause: Message) -> Message:
    short = type(domain_event).__name__
    name = f"aietl.{context}.v1.{short}"
    payload = {k: v for k, v in domain_event.__dict__.items() if k not in _IDENTITY}
    envelope = new_envelope(
        name, tenant_id=cause.envelope["tenant_id"], pipeline_id=str(domain_event.originator_id),
        aggregate_version=domain_event.originator_version, correlation_id=cause.envelope["correlation_id"],
        causation_id=cause.envelope["message_id"], actor=cause.envelope["actor"],
        occurred_at=domain_event.timestamp)
    return Message(name, envelope, payload)


def is_aggregate_event(message: Message, context: str = "pipelines") -> bool:
    return message.envelope.get("aggregate_version") is not None and _event_class(
        AGGREGATES[context], message.short_name) is not None


def replay(messages: list[Message], context: str = "pipelines") -> Optional[Aggregate]:
    """Rebuild an aggregate from its logged events through the library's mutators."""
    aggregate_cls = AGGREGATES[context]
    aggregate = None
    for message in messages:
        if not is_aggregate_event(message, context):
            continue  # e.g. CommandRejected: on the log, but not a state change
        cls = _event_class(aggregate_cls, message.short_name)
        env = message.envelope
        kwargs = dict(message.payload)
        if aggregate is None:
            kwargs["pipeline_id"] = UUID(env["pipeline_id"])
            kwargs["tenant_id"] = env["tenant_id"]
            kwargs["originator_topic"] = f"{aggregate_cls.__module__}:{aggregate_cls.__qualname__}"
        kwargs["command_id"] = env["causation_id"]
        domain_event = cls(originator_id=UUID(env["pipeline_id"]),
                           originator_version=env["aggregate_version"],
                           timestamp=env["occurred_at"], **kwargs)
        aggregate = domain_event.mutate(aggregate)
    return aggregate
