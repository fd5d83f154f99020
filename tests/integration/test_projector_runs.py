"""The projector on the real stack: lifecycle and run events produced straight to the deployment's
pipelines.events.v1 and runs.events.v1 (as the aggregate and the executor would) end up in Redis."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import redis

from services.core.messages import Message, new_envelope
from services.projector.readmodel import Keys, namespace, read_run, read_state, stored_positions
from tests.harness import new_deployment, wait_for
from tests.unit.samples import SAMPLES

pytestmark = pytest.mark.integration

CONTEXTS = {**dict.fromkeys(("RunStarted", "BatchLoaded", "RunSucceeded", "RunFailed", "RunCancelled"), "runs"),
            **dict.fromkeys(("BatchMeasured", "RunLogged", "StreamLagMeasured"), "metrics")}
SPEC = {"spec_version": "1", "trigger": {"kind": "cron"}, "schedule": {"cron": "0 2 * * *", "timezone": "UTC"}}


class Events:
    """Messages about one pipeline (pipelines, runs or metrics context), at times relative to now."""

    def __init__(self, tenant: str):
        self.pid, self.tenant = str(uuid.uuid4()), tenant
        self.t0 = datetime.now(timezone.utc).replace(microsecond=0)
        self.aggregate_version = 0

    def __call__(self, short: str, at: float, **payload) -> Message:
        context = CONTEXTS.get(short, "pipelines")
        name = f"aietl.{context}.v1.{short}"
        if context == "pipelines":  # only the aggregate's own events carry its version
            self.aggregate_version += 1
        env = new_envelope(name, tenant_id=self.tenant, actor="service:test", pipeline_id=self.pid,
                           aggregate_version=self.aggregate_version if context == "pipelines" else None,
                           occurred_at=self.t0 + timedelta(seconds=at))
        return Message(name, env, {**SAMPLES.get(name, {}), **payload})


def artifacts(spec: dict) -> str:
    return json.dumps({"draft_version": 1, "spec_json": json.dumps(spec), "extract_sql": "SELECT 1"})


def produce(dep, logical_topic: str, messages: list[Message], raw: list[bytes] = ()) -> None:
    """Avro-encode and produce, keyed by pipeline id with type/message_id headers, as the services do."""
    from services.core.avro import build_codec
    from services.core.kafka import producer

    codec = build_codec(dep.settings.schema_registry_url)
    p = producer(dep.settings)
    for value in raw:  # keyed like the messages: ahead of them on the same partition
        p.produce(dep.topic(logical_topic), key=messages[0].pipeline_id.encode(), value=value)
    for msg in messages:
        p.produce(dep.topic(logical_topic), key=msg.pipeline_id.encode(),
                  value=codec.encode(msg.name, msg.to_record()),
                  headers=[("type", msg.name.encode()), ("message_id", msg.message_id.encode())])
    assert p.flush(30) == 0


def split_by_topic(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    return ([m for m in messages if not m.name.startswith("aietl.runs.")],
            [m for m in messages if m.name.startswith("aietl.runs.")])


def applied(r, keys: Keys, dep, logical_topic: str) -> int:
    return sum(stored_positions(r, keys, dep.topic(logical_topic)).values())


@pytest.fixture(scope="module")
def dep(stack_settings):
    d = new_deployment(stack_settings, "projruns", ["projector"]).start()
    yield d
    d.stop()


@pytest.fixture
def r(dep):
    client = redis.Redis.from_url(dep.settings.redis_url)
    yield client
    client.close()


def test_lifecycle_and_runs_are_projected_from_both_topics(dep, r):
    keys = Keys(namespace(dep.settings.topic_prefix))
    ev = Events(dep.settings.tenant_id)
    pipeline = [ev("PipelineRequested", 0), ev("PipelineDeployed", 1, version=1, artifacts_json=artifacts(SPEC)),
                ev("RunRequested", 10, run_id="r1", version=1, trigger_kind="manual", params_json='{"n": 1}')]
    runs = [ev("RunStarted", 11, run_id="r1", version=1),
            ev("BatchLoaded", 12, run_id="r1", batch_no=0, rows=10, rows_written=10, bytes=100, cursor="a"),
            ev("BatchLoaded", 13, run_id="r1", batch_no=1, rows=5, rows_written=5, bytes=50, cursor="b"),
            ev("RunSucceeded", 14, run_id="r1", rows_read=15, rows_written=15, bytes=150, batches=2,
               high_water_mark="b", duration_ms=3000)]
    # The executor's events first: the projector must cope with reading runs.events.v1 ahead.
    produce(dep, "runs.events.v1", runs)
    wait_for(lambda: (read_run(r, keys, "r1") or {}).get("status") == "succeeded", timeout=30,
             what="r1 projected from runs.events.v1")
    assert read_run(r, keys, "r1")["trigger_kind"] == "stream"  # no RunRequested seen yet
    produce(dep, "pipelines.events.v1", pipeline)
    wait_for(lambda: (read_state(r, keys, ev.pid) or {}).get("last_run"), timeout=30, what="pipeline projected")
    # last_run appears with PipelineRequested (derived from the run index); RunRequested may come a batch later.
    wait_for(lambda: (read_run(r, keys, "r1") or {}).get("trigger_kind") == "manual", timeout=30,
             what="RunRequested projected onto r1")

    run = read_run(r, keys, "r1")
    assert {k: run[k] for k in ("status", "trigger_kind", "params", "version", "attempt", "rows_read",
                                "rows_written", "bytes", "batches", "high_water_mark", "duration_ms",
                                "cancel_requested", "pipeline_id", "tenant_id")} == {
        "status": "succeeded", "trigger_kind": "manual", "params": {"n": 1}, "version": 1, "attempt": 1,
        "rows_read": 15, "rows_written": 15, "bytes": 150, "batches": 2, "high_water_mark": "b",
        "duration_ms": 3000, "cancel_requested": False, "pipeline_id": ev.pid, "tenant_id": ev.tenant}
    assert run["requested_at"] == (ev.t0 + timedelta(seconds=10)).isoformat()
    assert [json.loads(v)["type"] for v in r.lrange(keys.run_events("r1"), 0, -1)] == \
        ["RunRequested", "RunStarted", "BatchLoaded", "BatchLoaded", "RunSucceeded"]
    assert r.zscore(keys.pipeline_runs(ev.pid), "r1") == (ev.t0 + timedelta(seconds=10)).timestamp()

    state = read_state(r, keys, ev.pid)
    assert (state["lifecycle"], state["deployed_version"], state["last_run"]) == \
        ("deployed", 1, {"run_id": "r1", "status": "succeeded"})
    assert state["deployed"]["trigger"] == {"kind": "cron"} and state["deployed"]["schedule"] == SPEC["schedule"]
    assert [json.loads(v)["type"] for v in r.lrange(keys.events(ev.pid), 0, -1)] == \
        ["PipelineRequested", "PipelineDeployed", "RunRequested"]


def test_pause_cancel_and_live_run_progress(dep, r):
    keys = Keys(namespace(dep.settings.topic_prefix))
    ev = Events(dep.settings.tenant_id)
    produce(dep, "pipelines.events.v1", [
        ev("PipelineRequested", 0), ev("PipelineDeployed", 1, version=1, artifacts_json=artifacts(SPEC)),
        ev("RunRequested", 2, run_id="c1"), ev("PipelinePaused", 3)])
    wait_for(lambda: (read_state(r, keys, ev.pid) or {}).get("lifecycle") == "paused", timeout=30,
             what="paused")
    sub = r.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(keys.run_live("c1"))
    sub.get_message(timeout=1.0)  # reads the subscription confirmation: subscribed from here on
    try:
        produce(dep, "runs.events.v1", [ev("RunStarted", 4, run_id="c1")])
        got = wait_for(lambda: sub.get_message(timeout=1.0), timeout=30, what="live RunStarted")
        assert json.loads(got["data"])["type"] == "RunStarted"
    finally:
        sub.close()
    produce(dep, "pipelines.events.v1", [ev("RunCancelRequested", 5, run_id="c1", reason="stop it")])
    produce(dep, "runs.events.v1", [ev("RunCancelled", 6, run_id="c1", reason="cancelled at batch 0")])
    wait_for(lambda: read_run(r, keys, "c1")["status"] == "cancelled" and read_run(r, keys, "c1")["cancel_requested"],
             timeout=30, what="cancelled")
    assert read_state(r, keys, ev.pid)["last_run"] == {"run_id": "c1", "status": "cancelled"}
    assert read_state(r, keys, ev.pid)["lifecycle"] == "paused"


def test_a_poison_run_event_is_skipped_and_does_not_block_the_topic(dep, r):
    keys = Keys(namespace(dep.settings.topic_prefix))
    ev = Events(dep.settings.tenant_id)
    produce(dep, "runs.events.v1", [ev("RunStarted", 1, run_id="p1")], raw=[b"\x00garbage"])
    wait_for(lambda: read_run(r, keys, "p1"), timeout=30, what="the event after the poison")
    # Skipped and counted (the executor, not the projector, owns runs.events.v1's dead letters).
    assert "skipped" in dep.log("projector") and "runs.events.v1" in dep.log("projector")
