"""Run commands from triggers (``TriggerScheduledRun``, ``TriggerRunFromMessage``), with ids derived from
what triggered them. Each has one writer: the scheduler sends the first, kafka-trigger the second.

The run id and the command id are uuid5 of the trigger's identity (pipeline + cron slot, or pipeline +
topic/partition/offset). Two instances, a restart or a redelivery therefore send *the same* command: the
aggregate skips a command id it has already answered and rejects a run id it has already requested, so
each slot or message gives exactly one ``RunRequested``.
"""
from __future__ import annotations

import json
import uuid
from typing import Optional

from services.core.avro import AvroCodec
from services.core.messages import Message, new_envelope
from services.domain.deployments import Deployment

# One command type per writer; the aggregate handles all of them like the gateway's TriggerRun.
COMMAND_BY_KIND = {"cron": "aietl.pipelines.v1.TriggerScheduledRun", "kafka": "aietl.pipelines.v1.TriggerRunFromMessage"}
COMMANDS_TOPIC = "pipelines.commands.v1"


def derived_id(kind: str, *parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ":".join([kind, *map(str, parts)])))


def cron_ids(pipeline_id: str, slot: str) -> tuple[str, str]:
    """(run_id, message_id) of the run for one cron slot."""
    return derived_id("aietl-cron", pipeline_id, slot), derived_id("aietl-cron-cmd", pipeline_id, slot)


def kafka_ids(pipeline_id: str, topic: str, partition: int, offset: int) -> tuple[str, str]:
    """(run_id, message_id) of the run for one message of a trigger topic."""
    return (derived_id("aietl-kafka", pipeline_id, topic, partition, offset),
            derived_id("aietl-kafka-cmd", pipeline_id, topic, partition, offset))


def trigger_run(d: Deployment, *, run_id: str, message_id: str, trigger_kind: str, params: dict,
                slot: Optional[str] = None) -> Message:
    name = COMMAND_BY_KIND[trigger_kind]
    env = new_envelope(name, tenant_id=d.tenant_id, actor=f"trigger:{trigger_kind}",
                       pipeline_id=d.pipeline_id, message_id=message_id)
    payload = {"run_id": run_id, "trigger_kind": trigger_kind,
               "params_json": json.dumps(params, sort_keys=True, default=str), "slot": slot}
    return Message(name, env, payload)


def wire(codec: AvroCodec, msg: Message) -> tuple[bytes, bytes, list]:
    """(key, value, headers) as the gateway produces commands: keyed by pipeline id, type and id headers."""
    return (msg.pipeline_id.encode(), codec.encode(msg.name, msg.to_record()),
            [("type", msg.name.encode()), ("message_id", msg.message_id.encode())])
