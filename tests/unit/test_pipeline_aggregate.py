"""The Pipeline aggregate and its command handlers, without Kafka."""
import uuid

from services.core.messages import Message, new_envelope
from services.domain.commands import apply_command
from services.domain.events import replay


def create_cmd(pid=None, description="copy orders to ClickHouse", **extra):
    pid = pid or str(uuid.uuid4())
    name = "aietl.pipelines.v1.CreatePipeline"
    env = new_envelope(name, tenant_id="acme", actor="user:test", pipeline_id=pid)
    return Message(name, env, {"description": description, "name": None, "labels": {}, **extra})


def test_create_pipeline_appends_pipeline_requested_at_version_1():
    cmd = create_cmd()
    [event] = apply_command([], cmd)
    assert event.short_name == "PipelineRequested"
    assert event.envelope["aggregate_version"] == 1
    assert event.envelope["causation_id"] == cmd.message_id
    assert event.envelope["correlation_id"] == cmd.envelope["correlation_id"]
    assert event.pipeline_id == cmd.pipeline_id and event.envelope["tenant_id"] == "acme"
    assert event.payload == {"description": "copy orders to ClickHouse", "name": None, "labels": {}}


def test_replaying_the_log_rebuilds_the_aggregate_through_its_mutators():
    cmd = create_cmd()
    events = apply_command([], cmd)
    pipeline = replay(events)
    assert str(pipeline.id) == cmd.pipeline_id
    assert (pipeline.version, pipeline.status, pipeline.tenant_id) == (1, "requested", "acme")
    assert pipeline.command_ids == {cmd.message_id}


def test_creating_an_existing_pipeline_is_rejected_and_changes_nothing():
    first = create_cmd()
    history = apply_command([], first)
    [rejected] = apply_command(history, create_cmd(pid=first.pipeline_id))
    assert rejected.short_name == "CommandRejected"
    assert rejected.payload["error_code"] == "pipeline_exists"
    assert rejected.envelope["aggregate_version"] is None
    assert replay(history + [rejected]).version == 1


def test_blank_description_is_rejected_by_the_aggregate_rule():
    [rejected] = apply_command([], create_cmd(description="   "))
    assert rejected.payload["error_code"] == "invalid_description"
    assert "must not be empty" in rejected.payload["reason"]


def test_unknown_command_type_is_rejected():
    cmd = create_cmd()
    cmd.name = "aietl.pipelines.v1.LaunchRocket"
    [rejected] = apply_command([], cmd)
    assert rejected.payload["error_code"] == "unknown_command"
