"""A command is applied exactly once, even when the worker is SIGKILLed after appending its events
but before Kafka has the command's offset committed."""
import signal
import uuid

import pytest

from services.core.avro import build_codec
from services.core.eventlog import read_all
from services.processes import running
from tests.e2e.test_pipelines_api import send_command
from tests.harness import new_deployment, prepare_topics, wait_for

pytestmark = pytest.mark.integration


def events_for(dep, pipeline_id):
    codec = build_codec()
    out = []

    def collect(rec):
        name, record = codec.decode(rec.value)
        if record["envelope"]["pipeline_id"] == pipeline_id:
            out.append((name.rsplit(".", 1)[-1], record["envelope"]["causation_id"]))

    read_all(dep.settings, dep.topic("pipelines.events.v1"), collect)
    return out


def test_sigkill_between_append_and_commit_does_not_duplicate_events(stack_settings):
    dep = new_deployment(stack_settings, "eos", ["pipeline-aggregate"])
    prepare_topics(dep.settings)
    try:
        # 1st incarnation: kills itself right after appending, before any offset commit.
        dep.start_worker("pipeline-aggregate", fault_point="aggregate.after_append")
        wait_for(lambda: "pipeline-aggregate" in running(dep.settings), what="worker pid")
        pid = str(uuid.uuid4())
        cmd = send_command(dep, "aietl.pipelines.v1.CreatePipeline", pid,
                           {"description": "copy orders to ClickHouse", "name": None, "labels": {}})
        wait_for(lambda: running(dep.settings)["pipeline-aggregate"] is None, timeout=60,
                 what="the worker to SIGKILL itself")
        assert "fault point aggregate.after_append reached: SIGKILL" in dep.log("pipeline-aggregate")
        assert events_for(dep, pid) == [("PipelineRequested", cmd.message_id)]

        # 2nd incarnation: the command is redelivered (never committed) and must be recognised.
        dep.start_worker("pipeline-aggregate")
        wait_for(lambda: f"skipped duplicate command {cmd.message_id}" in dep.log("pipeline-aggregate"),
                 timeout=60, what="the redelivered command to be skipped")
        # A later command still goes through, proving the worker is past the redelivery.
        pid2 = str(uuid.uuid4())
        cmd2 = send_command(dep, "aietl.pipelines.v1.CreatePipeline", pid2,
                            {"description": "second", "name": None, "labels": {}})
        wait_for(lambda: events_for(dep, pid2), timeout=30, what="the next command's event")
        assert events_for(dep, pid) == [("PipelineRequested", cmd.message_id)]
        assert events_for(dep, pid2) == [("PipelineRequested", cmd2.message_id)]
    finally:
        dep.stop()


def test_poison_command_goes_to_the_dlq_with_the_error_and_the_next_one_is_applied(stack_settings):
    from services.core.kafka import producer

    dep = new_deployment(stack_settings, "poison", ["pipeline-aggregate"])
    prepare_topics(dep.settings)
    try:
        dep.start_worker("pipeline-aggregate")
        p = producer(dep.settings)
        p.produce(dep.topic("pipelines.commands.v1"), key=b"poison", value=b"\x00garbage")
        assert p.flush(10) == 0
        pid = str(uuid.uuid4())
        send_command(dep, "aietl.pipelines.v1.CreatePipeline", pid,
                     {"description": "after poison", "name": None, "labels": {}})
        wait_for(lambda: events_for(dep, pid), timeout=60, what="the valid command's event")
        dead = []
        read_all(dep.settings, dep.topic("pipelines.commands.v1.dlq"), dead.append)
        assert len(dead) == 1 and dead[0].value == b"\x00garbage"
        headers = {k: v.decode() for k, v in dead[0].headers}
        assert headers["error_class"] == "AvroCodecError"
        assert headers["source_topic"] == dep.topic("pipelines.commands.v1")
    finally:
        dep.stop()
