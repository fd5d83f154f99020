"""What a reader of the platform's logs refuses to fold: PipelineLog (every reader of pipelines.events.v1
makes the same check) and DeadLetters' record-type check, without Kafka."""
import uuid

import pytest

from services.core.avro import build_codec
from services.core.dlq import DeadLetters, NotOnThisLogError
from services.core.eventlog import Record
from services.core.histories import PipelineHistories
from services.core.messages import Message, new_envelope
from services.domain.commands import apply_command
from services.domain.events import EventNotApplicableError, PipelineLog, replay

CODEC = build_codec()


def command(short, pid, payload, tenant="acme"):
    name = f"aietl.pipelines.v1.{short}"
    return Message(name, new_envelope(name, tenant_id=tenant, actor="user:test", pipeline_id=pid), payload)


def created(pid=None):
    pid = pid or str(uuid.uuid4())
    [event] = apply_command([], command("CreatePipeline", pid, {"description": "copy orders", "name": None,
                                                                "labels": {}}))
    return event


def forged(short, pid, version, tenant="acme", **payload):
    name = f"aietl.pipelines.v1.{short}"
    env = new_envelope(name, tenant_id=tenant, actor="user:mallory", pipeline_id=pid, aggregate_version=version,
                       causation_id=str(uuid.uuid4()))
    return Message(name, env, payload)


PLAN = dict(revision=1, spec_json="{}", understood=[], confidence=1.0, recalled_ids=[], llm=None)


def test_the_next_event_of_a_pipeline_applies_and_a_replayed_copy_of_it_does_not():
    log, first = PipelineLog(), created()
    log.accept(first)
    assert log.version(first.pipeline_id) == 1
    with pytest.raises(EventNotApplicableError, match="does not apply"):
        log.accept(first)  # the same version again
    assert log.version(first.pipeline_id) == 1


@pytest.mark.parametrize("bad", [
    lambda pid: forged("PlanProposed", pid, 5, **PLAN),                       # a version gap
    lambda pid: forged("PipelineRequested", pid, 1, description="again", name=None, labels={}),  # twice v1
    lambda pid: forged("PlanProposed", pid, 2, tenant="other", **PLAN),       # another tenant's
    lambda pid: forged("PlanProposed", pid, None, **PLAN),                    # a state change without version
    lambda pid: forged("PlanProposed", "not-a-uuid", 2, **PLAN),
    lambda pid: forged("PlanProposed", str(uuid.uuid4()), 2, **PLAN),         # no history at all
])
def test_records_that_do_not_follow_their_pipelines_history_are_refused_and_change_nothing(bad):
    log, first = PipelineLog(), created()
    log.accept(first)
    with pytest.raises(EventNotApplicableError):
        log.accept(bad(first.pipeline_id))
    # The real next event still applies where it would have.
    log.accept(forged("PlanProposed", first.pipeline_id, 2, **PLAN))
    assert log.version(first.pipeline_id) == 2


def test_a_rejection_changes_no_state_and_needs_no_history():
    log = PipelineLog()
    [rejected] = apply_command([], command("DeployPipeline", str(uuid.uuid4()), {"version": None}))
    assert rejected.short_name == "CommandRejected"
    log.accept(rejected)
    assert log.version(rejected.pipeline_id) == 0


def test_the_aggregates_fold_skips_a_forged_event_so_later_commands_of_its_pipeline_are_decided():
    skipped = []

    class Dead(DeadLetters):
        def poison(self, rec, exc, send=None):
            skipped.append((rec.offset, type(exc).__name__))
            return False

    first = created()
    records = [first, forged("PipelineRequested", first.pipeline_id, 1, description="x", name=None, labels={})]

    class Reader:
        def read(self, positions):
            for i, msg in enumerate(records):
                yield Record("pipelines.events.v1", 0, i, None, CODEC.encode(msg.name, msg.to_record()), [])

    h = PipelineHistories(Reader(), CODEC, Dead(_settings(), "pipeline-aggregate"))
    assert h.catch_up() == 1
    assert skipped == [(1, "EventNotApplicableError")] and h.skipped == 1
    assert [m.short_name for m in h.history(first.pipeline_id)] == ["PipelineRequested"]
    # What failed every later command before: replaying a history with two version-1 events.
    assert replay(h.history(first.pipeline_id)).version == 1
    [deleted] = apply_command(h.history(first.pipeline_id), command("DeletePipeline", first.pipeline_id, {}))
    assert deleted.short_name == "PipelineDeleted"


def test_a_valid_record_of_another_logs_type_is_not_on_this_log():
    dead = DeadLetters(_settings(), "executor")
    run_event = "aietl.runs.v1.RunSucceeded"
    dead.check_declared(_settings().topic("runs.events.v1"), run_event)
    with pytest.raises(NotOnThisLogError, match="not a record type of pipelines.events.v1"):
        dead.check_declared(_settings().topic("pipelines.events.v1"), run_event)


def test_each_dlq_has_exactly_one_producer_which_also_reads_it():
    from topology.model import load_topology

    topo = load_topology()
    for t in topo.topics.values():
        if not t.dlq:
            continue
        producers = topo.producers_of(t.name + ".dlq")
        assert len(producers) == 1, (t.name, producers)
        owner = topo.processors[producers[0]]
        assert t.name + ".dlq" in owner.reads and (t.name in owner.consumes or t.name in owner.reads), t.name


def _settings():
    from services.core.settings import Settings

    return Settings(topic_prefix="unit.")
