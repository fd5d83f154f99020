"""pipeline-aggregate decides from its fold of the log and folds its own appends; these are the cases
where its own appends are not the whole story (a burst, a foreign writer, a rebalance, a poisoned log),
against a real worker on topics of its own."""
import os
import signal
import uuid

import pytest
from aiokafka.partitioner import murmur2

from services.core.avro import build_codec
from services.core.eventlog import read_all
from services.core.kafka import producer
from services.core.messages import Message, new_envelope
from services.domain.commands import apply_command
from services.processes import group_assignments, running, spawn
from tests.harness import new_deployment, prepare_topics, wait_for

pytestmark = pytest.mark.integration

CREATE = "aietl.pipelines.v1.CreatePipeline"
PARTITIONS = 6  # pipelines.commands.v1 and pipelines.events.v1, co-partitioned
CODEC = build_codec()


def partition_of(pipeline_id: str) -> int:
    """The partition Kafka's default (murmur2) partitioner gives a key, as every producer here uses."""
    return (murmur2(pipeline_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def pipeline_on(partition: int) -> str:
    while True:
        pid = str(uuid.uuid4())
        if partition_of(pid) == partition:
            return pid


def create(dep, pipeline_id: str) -> Message:
    env = new_envelope(CREATE, tenant_id=dep.settings.tenant_id, actor="test", pipeline_id=pipeline_id)
    return Message(CREATE, env, {"description": "copy orders to ClickHouse", "name": None, "labels": {}})


def produce(dep, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    p = producer(dep.settings)
    for key, value in records:
        p.produce(dep.topic(topic), key=key, value=value)
    assert p.flush(30) == 0


def send(dep, *commands: Message) -> None:
    produce(dep, "pipelines.commands.v1",
            [(c.pipeline_id.encode(), CODEC.encode(c.name, c.to_record())) for c in commands])


def events(dep) -> list[tuple[str, str, str, str]]:
    """(type, pipeline id, causation id, error code) of every decodable event on the log, in order."""
    out = []

    def collect(rec):
        try:
            name, record = CODEC.decode(rec.value)
        except ValueError:
            return
        env = record["envelope"]
        out.append((name.rsplit(".", 1)[-1], env["pipeline_id"], env["causation_id"], record.get("error_code")))

    read_all(dep.settings, dep.topic("pipelines.events.v1"), collect)
    return out


def caused_by(dep, *commands: Message) -> list:
    ids = {c.message_id for c in commands}
    return [e for e in events(dep) if e[2] in ids]


def start_aggregate(tag: str, stack_settings):
    """A deployment running only the aggregate, past its start-up (one command decided)."""
    dep = new_deployment(stack_settings, tag, ["pipeline-aggregate"])
    try:
        prepare_topics(dep.settings)
        dep.start_worker("pipeline-aggregate")
        first = create(dep, str(uuid.uuid4()))
        send(dep, first)
        wait_for(lambda: caused_by(dep, first), timeout=90, what="the aggregate's first verdict")
    except BaseException:
        dep.remove()  # the test's own finally is not reached: leave no worker behind
        raise
    return dep


def test_a_burst_of_200_creates_with_redelivered_copies_is_decided_once_each(stack_settings):
    dep = start_aggregate("aggburst", stack_settings)
    try:
        burst = [create(dep, str(uuid.uuid4())) for _ in range(200)]
        send(dep, *burst, *burst[:20])  # the first 20 twice, as a producer retrying after a timeout would
        wait_for(lambda: len(caused_by(dep, *burst)) >= 200, timeout=120, what="200 verdicts")
        later = create(dep, str(uuid.uuid4()))
        send(dep, later)  # decided after every copy: the copies had their chance to be appended
        wait_for(lambda: caused_by(dep, later), timeout=30, what="the verdict after the burst")
        decided = caused_by(dep, *burst)
        assert len(decided) == 200
        assert {e[2] for e in decided} == {c.message_id for c in burst}
        assert {e[0] for e in decided} == {"PipelineRequested"}
        assert all(e[1] == c.pipeline_id for e, c in zip(sorted(decided, key=lambda e: e[2]),
                                                           sorted(burst, key=lambda c: c.message_id)))
    finally:
        dep.remove()


def test_records_another_writer_appended_are_folded_before_the_commands_after_them(stack_settings):
    dep = start_aggregate("aggforeign", stack_settings)
    try:
        partition = 2
        x = pipeline_on(partition)
        original = create(dep, x)
        # Another writer (say a previous incarnation finishing its last batch) appends X's creation.
        [requested] = apply_command([], original)
        produce(dep, "pipelines.events.v1", [(x.encode(), CODEC.encode(requested.name, requested.to_record()))])
        # A command on the same partition: its append lands past the fold's position, a gap.
        y = create(dep, pipeline_on(partition))
        send(dep, y)
        wait_for(lambda: caused_by(dep, y), timeout=30, what="Y's verdict")
        again = create(dep, x)
        send(dep, original, again)  # the original redelivered, and a second create of X
        wait_for(lambda: caused_by(dep, again), timeout=30, what="the second create's verdict")
        assert caused_by(dep, original) == [("PipelineRequested", x, original.message_id, None)]
        assert caused_by(dep, again) == [("CommandRejected", x, again.message_id, "pipeline_exists")]
        wait_for(lambda: f"skipped duplicate command {original.message_id}" in dep.log("pipeline-aggregate"),
                 timeout=10, what="the redelivered original to be skipped")
    finally:
        dep.remove()


def members(dep) -> int:
    try:
        return len(group_assignments(dep.settings, "pipeline-aggregate") or {})
    except Exception:  # the group is rebalancing or not described yet
        return 0


def test_after_a_rebalance_the_member_left_folds_what_the_other_wrote(stack_settings):
    dep = start_aggregate("aggrebal", stack_settings)
    try:
        spawn(dep.settings, "pipeline-aggregate-2", ["worker", "pipeline-aggregate"])
        wait_for(lambda: members(dep) == 2, timeout=90, what="two members in the aggregate's group")
        # One pipeline per partition, created while the work is shared: each member wrote some of them.
        pids = [pipeline_on(p) for p in range(PARTITIONS)]
        first = [create(dep, pid) for pid in pids]
        send(dep, *first)
        wait_for(lambda: len(caused_by(dep, *first)) == PARTITIONS, timeout=60, what="six creations")
        os.killpg(running(dep.settings)["pipeline-aggregate"], signal.SIGTERM)
        wait_for(lambda: running(dep.settings)["pipeline-aggregate"] is None, timeout=30, what="member 1 to stop")
        wait_for(lambda: members(dep) == 1, timeout=60, what="the group to rebalance onto member 2")
        second = [create(dep, pid) for pid in pids]
        send(dep, *second)
        wait_for(lambda: len(caused_by(dep, *second)) == PARTITIONS, timeout=60, what="six verdicts from member 2")
        assert {e[0] for e in caused_by(dep, *first)} == {"PipelineRequested"}
        assert {(e[0], e[3]) for e in caused_by(dep, *second)} == {("CommandRejected", "pipeline_exists")}
        assert sorted(e[1] for e in events(dep) if e[0] == "PipelineRequested" and e[1] in pids) == sorted(pids)
    finally:
        dep.remove()


def dead_letters(dep) -> list[dict]:
    out = []
    read_all(dep.settings, dep.topic("pipelines.events.v1.dlq"),
             lambda rec: out.append({k: v.decode(errors="replace") for k, v in rec.headers}))
    return out


def test_a_foreign_and_a_truncated_record_on_the_log_are_dead_lettered_once_and_deciding_goes_on(stack_settings):
    dep = start_aggregate("aggpoison", stack_settings)
    try:
        partition = 4
        [event] = apply_command([], create(dep, pipeline_on(partition)))
        whole = CODEC.encode(event.name, event.to_record())
        key = pipeline_on(partition).encode()
        produce(dep, "pipelines.events.v1", [(key, b"\x00foreign bytes"), (key, whole[: len(whole) // 2])])
        after = create(dep, pipeline_on(partition))
        send(dep, after)
        wait_for(lambda: caused_by(dep, after), timeout=30, what="a verdict after the poisoned records")
        wait_for(lambda: len(dead_letters(dep)) == 2, timeout=30, what="two dead letters")
        # A restart's start-up catch-up meets both records again: it skips them and sends no second letter.
        dep.stop()
        dep.start_worker("pipeline-aggregate")
        restarted = create(dep, pipeline_on(partition))
        send(dep, restarted)
        wait_for(lambda: caused_by(dep, restarted), timeout=90, what="a verdict after the restart")
        assert "rebuilt" in dep.log("pipeline-aggregate") and "2 records skipped" in dep.log("pipeline-aggregate")
        letters = dead_letters(dep)
        assert len(letters) == 2
        assert {h["source_topic"] for h in letters} == {dep.topic("pipelines.events.v1")}
        assert {h["source_partition"] for h in letters} == {str(partition)}
        assert {h["error_class"] for h in letters} == {"AvroCodecError"}
        assert len({h["source_offset"] for h in letters}) == 2
        assert caused_by(dep, after)[0][0] == "PipelineRequested" == caused_by(dep, restarted)[0][0]
    finally:
        dep.remove()
