"""The read model's lifecycle and run reducers, applied to the real Redis (a namespace of their own per test).

Events are built like the ones on the wire (services.core.messages, payloads from tests/unit/samples.py)
and applied to two topics' worth of offsets, in log order and in other interleavings of the two topics.
"""
import json
import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import redis

from services.core.messages import Message, new_envelope
from services.core.settings import Settings
from services.projector.readmodel import Keys, apply_event, model_hash, read_run, read_state, wipe
from tests.unit.samples import SAMPLES

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
PIPELINES, RUNS = "t.pipelines.events.v1", "t.runs.events.v1"
RUN_TYPES = {"RunStarted", "BatchLoaded", "RunSucceeded", "RunFailed", "RunCancelled"}
SPEC = {"spec_version": "1", "trigger": {"kind": "cron"}, "schedule": {"cron": "0 2 * * *", "timezone": "UTC"},
        "streaming": {"enabled": False}}


@pytest.fixture
def r():
    client = redis.Redis.from_url(Settings().redis_url)
    yield client
    client.close()


@pytest.fixture
def namespaces(r):
    """Fresh read-model namespaces, wiped after the test."""
    made = []

    def make() -> Keys:
        made.append(Keys(f"t{uuid.uuid4().hex[:8]}-unit.rm:"))
        return made[-1]

    yield make
    for keys in made:
        wipe(r, keys)


@pytest.fixture
def keys(namespaces):
    return namespaces()


class Log:
    """Events of one pipeline, numbered per topic as Kafka would (one partition: keyed by pipeline id)."""

    def __init__(self, tenant: str = "acme"):
        self.pid, self.tenant = str(uuid.uuid4()), tenant
        self.next_offset = {PIPELINES: 0, RUNS: 0}
        self.aggregate_version = 0

    def event(self, short: str, at: float, **payload) -> tuple:
        runs = short in RUN_TYPES
        name = f"aietl.{'runs' if runs else 'pipelines'}.v1.{short}"
        topic = RUNS if runs else PIPELINES
        if not runs:
            self.aggregate_version += 1
        env = new_envelope(name, tenant_id=self.tenant, actor="test", pipeline_id=self.pid,
                           aggregate_version=None if runs else self.aggregate_version,
                           occurred_at=T0 + timedelta(seconds=at))
        offset = self.next_offset[topic]
        self.next_offset[topic] += 1
        return topic, Message(name, env, {**SAMPLES.get(name, {}), **payload}), offset


def artifacts(spec: dict) -> str:
    return json.dumps({"draft_version": 1, "spec_json": json.dumps(spec), "extract_sql": "SELECT 1"})


def apply(r, keys, events) -> list[bool]:
    return [apply_event(r, keys, msg, topic, 0, offset) for topic, msg, offset in events]


def run_event_types(r, keys, run_id) -> list[str]:
    return [json.loads(v)["type"] for v in r.lrange(keys.run_events(run_id), 0, -1)]


def test_lifecycle_follows_deploys_pauses_resumes_rollbacks_and_delete(r, keys):
    log = Log()
    apply(r, keys, [log.event("PipelineRequested", 0)])
    state = read_state(r, keys, log.pid)
    assert (state["lifecycle"], state["deployed_version"], state["deployed"], state["last_run"]) == \
        ("draft", None, None, None)

    apply(r, keys, [log.event("PipelineDeployed", 10, version=1, previous_version=None,
                              artifacts_json=artifacts(SPEC))])
    state = read_state(r, keys, log.pid)
    assert state["lifecycle"] == "deployed" and state["deployed_version"] == 1
    assert state["deployed"] == {"version": 1, "at": (T0 + timedelta(seconds=10)).isoformat(),
                                 "trigger": {"kind": "cron"}, "schedule": SPEC["schedule"], "streaming": False}

    apply(r, keys, [log.event("PipelinePaused", 20)])
    assert read_state(r, keys, log.pid)["lifecycle"] == "paused"
    # Deploying a paused pipeline changes its version but not its lifecycle (services/domain/pipeline.py).
    apply(r, keys, [log.event("PipelineDeployed", 30, version=2, previous_version=1,
                              artifacts_json=artifacts({"streaming": {"enabled": True}}))])
    state = read_state(r, keys, log.pid)
    assert (state["lifecycle"], state["deployed_version"]) == ("paused", 2)
    assert state["deployed"]["trigger"] == {"kind": "manual"} and state["deployed"]["schedule"] == {}
    assert state["deployed"]["streaming"] is True

    apply(r, keys, [log.event("PipelineResumed", 40)])
    assert read_state(r, keys, log.pid)["lifecycle"] == "deployed"
    apply(r, keys, [log.event("PipelineRolledBack", 50, version=1, from_version=2,
                              artifacts_json=artifacts(SPEC))])
    state = read_state(r, keys, log.pid)
    assert (state["lifecycle"], state["deployed_version"], state["deployed"]["version"]) == ("deployed", 1, 1)
    assert state["deployed"]["at"] == (T0 + timedelta(seconds=50)).isoformat()
    assert state["deployed"]["trigger"] == {"kind": "cron"} and state["deployed"]["streaming"] is False

    apply(r, keys, [log.event("PipelineDeleted", 60)])
    state = read_state(r, keys, log.pid)
    assert state["lifecycle"] == "deleted" and state["last_event"] == "PipelineDeleted"
    assert len(r.lrange(keys.events(log.pid), 0, -1)) == 7


def test_a_run_goes_from_queued_through_a_retry_to_succeeded(r, keys):
    log = Log()
    apply(r, keys, [log.event("PipelineRequested", 0),
                    log.event("PipelineDeployed", 1, version=1, artifacts_json=artifacts(SPEC)),
                    log.event("RunRequested", 10, run_id="r1", version=1, trigger_kind="manual",
                              params_json='{"file": "a.csv"}', slot=None)])
    run = read_run(r, keys, "r1")
    assert run["status"] == "queued" and run["params"] == {"file": "a.csv"} and run["trigger_kind"] == "manual"
    assert run["requested_at"] == (T0 + timedelta(seconds=10)).isoformat()
    assert r.zrange(keys.pipeline_runs(log.pid), 0, -1, withscores=True) == \
        [(b"r1", (T0 + timedelta(seconds=10)).timestamp())]
    assert read_state(r, keys, log.pid)["last_run"] == {"run_id": "r1", "status": "queued"}

    apply(r, keys, [log.event("RunStarted", 11, run_id="r1", version=1, attempt=1, cursor_from=None),
                    log.event("BatchLoaded", 12, run_id="r1", batch_no=0, rows=100, rows_written=100, bytes=1000,
                              cursor="c0"),
                    log.event("RunFailed", 13, run_id="r1", error_class="OperationalError",
                              message="connection refused", retryable=True, attempt=1, final=False)])
    run = read_run(r, keys, "r1")
    assert (run["status"], run["attempt"], run["batches"], run["rows_read"], run["cursor"]) == \
        ("retrying", 1, 1, 100, "c0")
    assert run["error"] == {"error_class": "OperationalError", "message": "connection refused", "retryable": True}
    assert read_state(r, keys, log.pid)["last_run"] == {"run_id": "r1", "status": "retrying"}

    # Attempt 2 re-reads batch 0 (already landed: rows_written 0) and loads batch 1.
    apply(r, keys, [log.event("RunStarted", 20, run_id="r1", version=1, attempt=2, cursor_from="c0"),
                    log.event("BatchLoaded", 21, run_id="r1", batch_no=0, rows=100, rows_written=0, bytes=1000,
                              cursor="c0"),
                    log.event("BatchLoaded", 22, run_id="r1", batch_no=1, rows=50, rows_written=50, bytes=500,
                              cursor="c1")])
    run = read_run(r, keys, "r1")
    assert (run["status"], run["attempt"], run["cursor_from"], run["started_at"]) == \
        ("running", 2, "c0", (T0 + timedelta(seconds=11)).isoformat())
    assert (run["batches"], run["rows_read"], run["rows_written"], run["bytes"], run["cursor"]) == \
        (2, 250, 150, 2500, "c1")

    apply(r, keys, [log.event("RunSucceeded", 23, run_id="r1", rows_read=150, rows_written=150, bytes=1500,
                              batches=2, high_water_mark="c1", duration_ms=13000)])
    run = read_run(r, keys, "r1")
    assert {k: run[k] for k in ("status", "rows_read", "rows_written", "bytes", "batches", "high_water_mark",
                                "duration_ms", "finished_at", "cancel_requested", "version", "pipeline_id",
                                "tenant_id")} == {
        "status": "succeeded", "rows_read": 150, "rows_written": 150, "bytes": 1500, "batches": 2,
        "high_water_mark": "c1", "duration_ms": 13000, "finished_at": (T0 + timedelta(seconds=23)).isoformat(),
        "cancel_requested": False, "version": 1, "pipeline_id": log.pid, "tenant_id": "acme"}
    # Succeeded after a retry: no current error, the attempt that failed stays visible.
    assert run["error"] is None and run["last_error"]["error_class"] == "OperationalError"
    assert run_event_types(r, keys, "r1") == ["RunRequested", "RunStarted", "BatchLoaded", "RunFailed",
                                              "RunStarted", "BatchLoaded", "BatchLoaded", "RunSucceeded"]
    # The pipeline's history keeps its own events only (RunRequested included), not the executor's.
    assert [json.loads(v)["type"] for v in r.lrange(keys.events(log.pid), 0, -1)] == \
        ["PipelineRequested", "PipelineDeployed", "RunRequested"]
    state = read_state(r, keys, log.pid)
    assert state["last_run"] == {"run_id": "r1", "status": "succeeded"}
    assert state["last_event"] == "RunRequested"  # run progress does not count as a pipeline event


def test_a_final_failure_fails_the_run(r, keys):
    log = Log()
    apply(r, keys, [log.event("RunRequested", 1, run_id="r1"), log.event("RunStarted", 2, run_id="r1"),
                    log.event("RunFailed", 3, run_id="r1", retryable=False, attempt=1, final=True,
                              error_class="ProgrammingError", message="no such table")])
    run = read_run(r, keys, "r1")
    assert run["status"] == "failed" and run["finished_at"] == (T0 + timedelta(seconds=3)).isoformat()
    assert run["error"] == {"error_class": "ProgrammingError", "message": "no such table", "retryable": False}


def test_a_run_requested_read_after_its_start_does_not_requeue_it(r, keys):
    log = Log()
    rr = log.event("RunRequested", 5, run_id="r1", trigger_kind="cron", params_json='{"day": "2026-11-23"}',
                   slot="2026-11-24T02:00:00+00:00")
    started = log.event("RunStarted", 6, run_id="r1", version=3)
    apply(r, keys, [started])
    run = read_run(r, keys, "r1")
    assert (run["status"], run["trigger_kind"], run["requested_at"]) == ("running", "stream", None)
    assert r.zscore(keys.pipeline_runs(log.pid), "r1") == (T0 + timedelta(seconds=6)).timestamp()

    apply(r, keys, [rr])
    run = read_run(r, keys, "r1")
    assert (run["status"], run["trigger_kind"], run["version"], run["slot"]) == \
        ("running", "cron", 3, "2026-11-24T02:00:00+00:00")
    assert run["params"] == {"day": "2026-11-23"}
    assert r.zscore(keys.pipeline_runs(log.pid), "r1") == (T0 + timedelta(seconds=5)).timestamp()
    # The run's events are ordered by time, not by arrival.
    assert run_event_types(r, keys, "r1") == ["RunRequested", "RunStarted"]


def test_a_streaming_run_is_started_without_a_request(r, keys):
    log = Log()
    apply(r, keys, [log.event("PipelineRequested", 0),
                    log.event("RunStarted", 3, run_id="s1", version=1, attempt=1, cursor_from=None),
                    log.event("BatchLoaded", 4, run_id="s1", batch_no=0, rows=10, rows_written=10, bytes=80,
                              cursor="t.p0@10")])
    run = read_run(r, keys, "s1")
    assert (run["trigger_kind"], run["status"], run["batches"], run["params"], run["slot"]) == \
        ("stream", "running", 1, {}, None)
    assert r.zrange(keys.pipeline_runs(log.pid), 0, -1) == [b"s1"]
    assert read_state(r, keys, log.pid)["last_run"] == {"run_id": "s1", "status": "running"}


@pytest.mark.parametrize("cancel_first", [False, True])
def test_cancellation_is_requested_then_confirmed_in_either_order(r, keys, cancel_first):
    log = Log()
    requested = [log.event("RunRequested", 1, run_id="r1")]
    ask = log.event("RunCancelRequested", 3, run_id="r1", reason="asked by user:ann")
    executor = [log.event("RunStarted", 2, run_id="r1"),
                log.event("RunCancelled", 4, run_id="r1", reason="cancelled by user:ann at batch 3")]
    apply(r, keys, requested + (executor + [ask] if cancel_first else [ask] + executor))
    run = read_run(r, keys, "r1")
    assert (run["status"], run["cancel_requested"], run["cancel_reason"]) == \
        ("cancelled", True, "cancelled by user:ann at batch 3")
    assert run["finished_at"] == (T0 + timedelta(seconds=4)).isoformat()
    assert run_event_types(r, keys, "r1") == ["RunRequested", "RunStarted", "RunCancelRequested", "RunCancelled"]


def test_last_run_is_the_newest_run_whatever_order_its_events_come_in(r, keys):
    log = Log()
    apply(r, keys, [log.event("PipelineRequested", 0), log.event("RunRequested", 10, run_id="old"),
                    log.event("RunRequested", 20, run_id="new")])
    assert read_state(r, keys, log.pid)["last_run"] == {"run_id": "new", "status": "queued"}
    apply(r, keys, [log.event("RunStarted", 11, run_id="old"),
                    log.event("RunSucceeded", 12, run_id="old", rows_read=1, rows_written=1, bytes=1, batches=1,
                              high_water_mark=None, duration_ms=5)])
    assert read_state(r, keys, log.pid)["last_run"] == {"run_id": "new", "status": "queued"}
    apply(r, keys, [log.event("RunStarted", 21, run_id="new")])
    assert read_state(r, keys, log.pid)["last_run"] == {"run_id": "new", "status": "running"}
    assert r.zrange(keys.pipeline_runs(log.pid), 0, -1) == [b"old", b"new"]


def test_run_events_are_published_live_and_applied_once(r, keys):
    log = Log()
    requested, started = log.event("RunRequested", 1, run_id="r1"), log.event("RunStarted", 2, run_id="r1")
    apply(r, keys, [requested])
    sub = r.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(keys.run_live("r1"))
    sub.get_message(timeout=1.0)  # consume the subscribe confirmation
    try:
        assert apply(r, keys, [started]) == [True]
        got = sub.get_message(timeout=5.0)
        assert got is not None and json.loads(got["data"])["type"] == "RunStarted"
        assert got["data"] == r.lindex(keys.run_events("r1"), -1)
        assert r.hget(keys.offsets, f"{RUNS}:0") == b"1"
        # A redelivered event is skipped by the stored offset: nothing changes, nothing is published.
        before = model_hash(r, keys)
        assert apply(r, keys, [started, requested]) == [False, False]
        assert model_hash(r, keys) == before and sub.get_message(timeout=0.5) is None
    finally:
        sub.close()


def _history():
    """Both topics' logs for one pipeline: two requested runs (one retried, one cancelled) and a stream run."""
    log = Log()
    pipelines = [log.event("PipelineRequested", 0),
                 log.event("PipelineDeployed", 1, version=1, artifacts_json=artifacts(SPEC)),
                 log.event("RunRequested", 10, run_id="r1", trigger_kind="manual"),
                 log.event("RunRequested", 20, run_id="r2", trigger_kind="cron"),
                 log.event("RunCancelRequested", 22, run_id="r2"),
                 log.event("PipelinePaused", 30)]
    runs = [log.event("RunStarted", 11, run_id="r1"),
            log.event("BatchLoaded", 12, run_id="r1", batch_no=0),
            log.event("RunFailed", 13, run_id="r1", final=False),
            log.event("RunStarted", 14, run_id="r1", attempt=2),
            log.event("BatchLoaded", 15, run_id="r1", batch_no=0, rows_written=0),
            log.event("RunSucceeded", 16, run_id="r1"),
            log.event("RunStarted", 21, run_id="r2"),
            log.event("RunCancelled", 23, run_id="r2"),
            log.event("RunStarted", 25, run_id="s1")]
    return pipelines, runs


def _interleave(a: list, b: list, rng: random.Random) -> list:
    """A random merge that keeps each topic's own order, as a consumer of both topics may see them."""
    out, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if j == len(b) or (i < len(a) and rng.random() < 0.5):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out


def test_any_interleaving_of_the_two_topics_gives_the_same_model(r, namespaces):
    pipelines, runs = _history()
    replayed = namespaces()  # what `aietl replay` does: one topic after the other
    apply(r, replayed, pipelines + runs)
    expected = model_hash(r, replayed)
    orders = [runs + pipelines] + [_interleave(pipelines, runs, random.Random(seed)) for seed in range(12)]
    for order in orders:
        keys = namespaces()
        apply(r, keys, order)
        assert model_hash(r, keys) == expected, [m.short_name for _, m, _ in order]

    pid = pipelines[0][1].pipeline_id
    state = read_state(r, replayed, pid)
    assert (state["lifecycle"], state["last_run"]) == ("paused", {"run_id": "s1", "status": "running"})
    assert [read_run(r, replayed, x)["status"] for x in ("r1", "r2", "s1")] == ["succeeded", "cancelled", "running"]
    assert r.zrange(replayed.pipeline_runs(pid), 0, -1) == [b"r1", b"r2", b"s1"]
