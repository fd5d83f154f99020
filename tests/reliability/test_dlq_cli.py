"""`aietl dlq list | show | replay` against a running aggregate on its own topics: a poison command is
dead-lettered, listed and shown with its error; replayed, it reaches the commands topic with its original
key and headers (none of the dead letter's) and is dead-lettered again as a new letter; a letter whose
cause is gone (a valid command) is applied once replayed."""
import json
import uuid

import pytest

from services.core.avro import build_codec
from services.core.dlq import dlq_headers
from services.core.eventlog import read_all
from services.core.kafka import producer
from services.core.messages import Message, new_envelope
from tests.harness import new_deployment, prepare_topics, wait_for

pytestmark = pytest.mark.integration
CODEC = build_codec()
COMMANDS = "pipelines.commands.v1"


def letters(dep):
    out = []
    read_all(dep.settings, dep.topic(COMMANDS + ".dlq"), out.append)
    return out


def requested(dep, pid):
    found = []

    def collect(rec):
        name, record = CODEC.decode(rec.value)
        if name.endswith("PipelineRequested") and record["envelope"]["pipeline_id"] == pid:
            found.append(record)

    read_all(dep.settings, dep.topic("pipelines.events.v1"), collect)
    return found


def cli_json(dep, *args):
    out = dep.cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_dlq_list_show_and_replay_round_trip(stack_settings):
    dep = new_deployment(stack_settings, "dlqcli", ["pipeline-aggregate"])
    prepare_topics(dep.settings)
    try:
        dep.start_worker("pipeline-aggregate")
        p = producer(dep.settings)
        p.produce(dep.topic(COMMANDS), key=b"poison-key", value=b"\x00not a command",
                  headers=[("trace_id", b"abc123")])
        assert p.flush(10) == 0
        wait_for(lambda: len(letters(dep)) == 1, timeout=90, what="the poison command's letter")

        listed = {r["dlq"]: r for r in cli_json(dep, "dlq", "list")}
        row = listed[dep.topic(COMMANDS + ".dlq")]
        assert row["letters"] == 1 and row["written_by"] == ["pipeline-aggregate"]
        assert row["source"] == dep.topic(COMMANDS)

        [shown] = cli_json(dep, "dlq", "show", COMMANDS)
        assert shown["error_class"] == "AvroCodecError" and shown["key"] == "poison-key"
        assert shown["headers"] == {"trace_id": "abc123"} and shown["dead_lettered_by"] == "pipeline-aggregate"
        assert shown["source_topic"] == dep.topic(COMMANDS)
        text = dep.cli("dlq", "show", dep.topic(COMMANDS + ".dlq"), "--offset", str(shown["offset"]))
        assert text.returncode == 0 and "AvroCodecError" in text.stdout, text.stderr
        assert dep.cli("dlq", "show", COMMANDS, "--offset", "999").returncode == 2
        assert dep.cli("dlq", "show", "no.such.topic").returncode == 2
        assert dep.cli("dlq", "replay", COMMANDS).returncode == 2  # neither --offset nor --all

        # Replayed while still bad: back on the commands topic as it was, so dead-lettered again, anew.
        out = dep.cli("dlq", "replay", COMMANDS, "--offset", str(shown["offset"]),
                      "--partition", str(shown["partition"]))
        assert out.returncode == 0 and f"-> {dep.topic(COMMANDS)}" in out.stdout, out.stderr
        wait_for(lambda: len(letters(dep)) == 2, timeout=60, what="the replayed record's new letter")
        [again] = [r for r in letters(dep) if (r.partition, r.offset) != (shown["partition"], shown["offset"])]
        names = [k for k, _ in again.headers]
        assert again.key == b"poison-key" and again.value == b"\x00not a command"
        assert names.count("error_class") == 1 and names.count("source_offset") == 1 and "trace_id" in names
        assert int(dict(again.headers)["source_offset"].decode()) != shown["source_offset"]

        # A letter whose cause is gone: a valid command, dead-lettered (as during an outage), is applied.
        pid = str(uuid.uuid4())
        name = "aietl.pipelines.v1.CreatePipeline"
        cmd = Message(name, new_envelope(name, tenant_id=dep.settings.tenant_id, actor="user:test",
                                         pipeline_id=pid), {"description": "copy orders", "name": None,
                                                            "labels": {}})
        p.produce(dep.topic(COMMANDS + ".dlq"), key=pid.encode(), value=CODEC.encode(name, cmd.to_record()),
                  headers=[("type", name.encode())] + dlq_headers(TimeoutError("broker away"),
                                                                  dep.topic(COMMANDS), 0, 0))
        assert p.flush(10) == 0
        out = dep.cli("dlq", "replay", COMMANDS, "--all")
        assert out.returncode == 0 and "3 letter(s) re-published" in out.stderr, out.stderr
        wait_for(lambda: requested(dep, pid), timeout=60, what="the replayed command's event")
        assert len(requested(dep, pid)) == 1
    finally:
        dep.remove()
