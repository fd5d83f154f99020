"""A log of record that cannot be poisoned (issue 11, item 4).

Onto each of the platform's own logs of a running deployment (every worker) the test writes three bad
records: foreign bytes, a truncated Avro record, and a valid Avro record that cannot be applied (a second
``PipelineRequested`` v1 for a drafted pipeline, a command topic holding an event, an LLM request and a
reply whose JSON fields are not JSON, a pipelines event on the runs log, a run event on the metrics log).
Then the deployment must keep deciding and drafting (a revision and a new request reach ``draft_ready``)
and running (a run succeeds), live and again after every worker restarted and caught up from offset 0;
each bad record must be in its topic's DLQ exactly once, and no worker may have died.
"""
import json
import time
import uuid

import pytest

from services.core.avro import build_codec
from services.core.eventlog import read_all
from services.core.kafka import producer
from services.processes import run_dir, running
from tests.harness import wait_for
from tests.pipelines import deploy, drafting_deployment, request_draft

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # ~4 min on a quiet machine
CODEC = build_codec()
EXTRA = ("executor", "scheduler", "kafka-trigger", "metrics-sink")
# The log a record is taken from (None: the log itself) for the valid-but-unappliable record of each log.
LOGS = ("pipelines.events.v1", "pipelines.commands.v1", "runs.events.v1", "metrics.v1", "llm.requests.v1",
        "llm.replies.v1")


def records(dep, logical):
    out = []
    read_all(dep.settings, dep.topic(logical), out.append)
    return out


def decoded(rec):
    name, record = CODEC.decode(rec.value)
    return name, record


def first_of(dep, logical, short, pipeline_id=None):
    for rec in records(dep, logical):
        name, record = decoded(rec)
        if name.endswith("." + short) and pipeline_id in (None, record["envelope"]["pipeline_id"]):
            return rec, name, record
    raise AssertionError(f"no {short} on {logical}")


def fresh_id(record):
    return {**record, "envelope": {**record["envelope"], "message_id": str(uuid.uuid4())}}


def bad_records(dep, drafted, deployed):
    """{logical topic: [(key, value), ...]}: foreign, truncated, valid but unappliable."""
    req_rec, req_name, requested = first_of(dep, "pipelines.events.v1", "PipelineRequested", drafted)
    dep_rec, dep_name, deployed_ev = first_of(dep, "pipelines.events.v1", "PipelineDeployed", deployed)
    run_rec, run_name, succeeded = first_of(dep, "runs.events.v1", "RunSucceeded", deployed)
    llm_rec, llm_name, request = first_of(dep, "llm.requests.v1", "CompleteLlmTask")
    rep_rec, rep_name, reply = first_of(dep, "llm.replies.v1", "LlmTaskCompleted")
    met_rec = records(dep, "metrics.v1")[0]
    key = drafted.encode()
    foreign = b"\x00foreign bytes: not one of our records"

    def halved(rec):
        return rec.value[: len(rec.value) // 2]

    return {
        # A second version 1 of a drafted pipeline: before, every later command of it failed to replay.
        "pipelines.events.v1": [(key, foreign), (key, halved(req_rec)),
                                (key, CODEC.encode(req_name, fresh_id(requested)))],
        "pipelines.commands.v1": [(key, foreign), (key, halved(req_rec)), (key, req_rec.value)],
        "runs.events.v1": [(deployed.encode(), foreign), (deployed.encode(), halved(run_rec)),
                           (deployed.encode(), CODEC.encode(dep_name, fresh_id(deployed_ev)))],
        "metrics.v1": [(deployed.encode(), foreign), (deployed.encode(), halved(met_rec)),
                       (deployed.encode(), CODEC.encode(run_name, fresh_id(succeeded)))],
        "llm.requests.v1": [(llm_rec.key, foreign), (llm_rec.key, halved(llm_rec)),
                            (llm_rec.key, CODEC.encode(llm_name, {**fresh_id(request), "input_json": "{not json"}))],
        "llm.replies.v1": [(rep_rec.key, foreign), (rep_rec.key, halved(rep_rec)),
                           (rep_rec.key, CODEC.encode(rep_name, {**fresh_id(reply), "requester": "planner",
                                                                 "context_json": "[not json"}))],
    }


def inject(dep, bad) -> dict[str, set[tuple[int, int]]]:
    """Produce the bad records; (partition, offset) of each, per logical topic."""
    p = producer(dep.settings)
    landed: dict[str, set] = {t: set() for t in bad}

    def on_delivery(logical):
        def cb(err, msg):
            assert err is None, err
            landed[logical].add((msg.partition(), msg.offset()))
        return cb

    for logical, rows in bad.items():
        for key, value in rows:
            p.produce(dep.topic(logical), key=key, value=value, headers=[("injected_by", b"test")],
                      on_delivery=on_delivery(logical))
    assert p.flush(30) == 0
    assert all(len(v) == 3 for v in landed.values()), landed
    return landed


def dead_letters(dep, logical) -> list[tuple[int, int]]:
    out = []

    def collect(rec):
        h = {k: v.decode(errors="replace") for k, v in rec.headers}
        if h.get("source_topic") == dep.topic(logical):
            assert h["injected_by"] == "test" and h["error_class"] and h["dead_lettered_by"]
            out.append((int(h["source_partition"]), int(h["source_offset"])))

    read_all(dep.settings, dep.topic(logical + ".dlq"), collect)
    return out


def run_succeeds(http, pid) -> dict:
    r = http.post(f"/api/v1/pipelines/{pid}/runs", json={"params": {}})
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]

    def finished():
        got = http.get(f"/api/v1/runs/{run_id}")
        return got.json() if got.status_code == 200 and got.json()["status"] in ("succeeded", "failed",
                                                                                  "cancelled") else None

    state = wait_for(finished, timeout=120, what=f"run {run_id}")
    assert state["status"] == "succeeded", state
    return state


def revised(dep, http, pid, revision) -> dict:
    r = http.post(f"/api/v1/pipelines/{pid}/revise", json={"instructions": "only paid orders"})
    assert r.status_code in (200, 202), r.text

    def done():
        s = http.get(f"/api/v1/pipelines/{pid}").json()
        return s if s.get("revision") == revision and s["status"] in ("draft_ready", "draft_failed") else None

    state = wait_for(done, timeout=120, what=f"revision {revision} of {pid}")
    assert state["status"] == "draft_ready", state
    return state


def alive(dep) -> dict:
    return {n: pid for n, pid in running(dep.settings).items() if pid is None}


def description():
    return (f"Load orders from the PostgreSQL table shop.orders into the ClickHouse table "
            f"analytics.poison_{uuid.uuid4().hex[:8]}")


def test_bad_records_on_every_log_are_dead_lettered_once_and_the_deployment_keeps_deciding_drafting_running(
        stack_settings, figures):
    started = time.monotonic()
    with drafting_deployment(stack_settings, "poisonlog", extra_workers=EXTRA) as dep, \
            dep.client(timeout=30) as http:
        drafted = request_draft(dep, description())
        assert drafted["status"] == "draft_ready", drafted
        ran = request_draft(dep, description())
        assert ran["status"] == "draft_ready", ran
        deploy(dep, ran["pipeline_id"])
        run_succeeds(http, ran["pipeline_id"])
        wait_for(lambda: records(dep, "metrics.v1"), timeout=30, what="a metrics record")

        landed = inject(dep, bad_records(dep, drafted["pipeline_id"], ran["pipeline_id"]))

        # Live: every reader meets the records as they arrive.
        for logical in LOGS:
            wait_for(lambda: len(dead_letters(dep, logical)) >= 3, timeout=60, what=f"dead letters of {logical}")
        state = http.get(f"/api/v1/pipelines/{drafted['pipeline_id']}").json()
        assert state["status"] == "draft_ready" and state["revision"] == 1, state  # the forged v1 not projected
        revised(dep, http, drafted["pipeline_id"], 2)
        assert request_draft(dep, description())["status"] == "draft_ready"
        run_succeeds(http, ran["pipeline_id"])
        assert alive(dep) == {}, f"workers died: {alive(dep)}"

        # Restarted: every catch-up from offset 0 meets the records again.
        dep.stop()
        dep.start()
        revised(dep, http, drafted["pipeline_id"], 3)
        assert request_draft(dep, description())["status"] == "draft_ready"
        run_succeeds(http, ran["pipeline_id"])
        assert alive(dep) == {}, f"workers died: {alive(dep)}"

        counts = {}
        for logical in LOGS:
            letters = dead_letters(dep, logical)
            counts[logical] = len(letters)
            assert sorted(letters) == sorted(landed[logical]), (logical, letters, landed[logical])
        # Counted by each restarted reader's catch-up from offset 0 (the owners had sent them already).
        for worker, logical in (("pipeline-aggregate", "pipelines.events.v1"), ("executor", "pipelines.events.v1"),
                                ("executor", "runs.events.v1"), ("planner", "pipelines.events.v1"),
                                ("scheduler", "pipelines.events.v1")):
            prom = (run_dir(dep.settings) / f"deadletters.{worker}.prom").read_text()
            assert f'topic="{logical}",action="skipped"}} 3' in prom, (worker, prom)

        injected = sum(len(v) for v in landed.values())
        figures("fault: poisoned logs", json.dumps({
            "fault": "bad records on every platform log (foreign bytes, truncated Avro, valid but unappliable)",
            "logs": len(LOGS), "injected": injected, "dead_lettered": sum(counts.values()),
            "lost": injected - len({(t, o) for t in LOGS for o in dead_letters(dep, t)}),
            "duplicated": sum(counts.values()) - injected, "restarts": 1,
            "drafts_after": 4, "runs_after": 2, "seconds": round(time.monotonic() - started),
            "command": "python -m pytest tests/reliability/test_poisoned_logs.py -q"}))
