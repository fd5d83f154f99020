"""Deploy, roll back, pause, resume, delete, run and cancel over HTTP, on the real stack.

Every endpoint waits for the aggregate's verdict: applied commands answer with the event they caused,
refused ones with a problem+json carrying the aggregate's own reason. Each test checks the event log too,
never only the status code.
"""
import json
import threading
import time
import uuid

import httpx
import pytest

from tests.harness import wait_for
from tests.pipelines import drafting_deployment, events, request_draft

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def dep(stack_settings):
    with drafting_deployment(stack_settings, "life") as d:  # demo data and connections included
        yield d


@pytest.fixture
def drafted(dep):
    """A fresh pipeline with a QA-passed draft version 1."""
    table = f"analytics.orders_{uuid.uuid4().hex[:8]}"
    state = request_draft(dep, f"Load orders from the PostgreSQL table shop.orders into the ClickHouse table "
                               f"{table} every day at 2 AM")
    assert state["status"] == "draft_ready", state
    return state["pipeline_id"]


@pytest.fixture
def http(dep):
    # Verdicts can take a moment under load: wait longer than the gateway does.
    with dep.client(timeout=30) as c:
        yield c


def caused_by(dep, pid, command_id) -> list[dict]:
    return [e for e in events(dep, pid) if e["envelope"].get("causation_id") == command_id]


def types(dep, pid) -> list[str]:
    return [e["type"] for e in events(dep, pid)]


def problem(resp, status: int, error_code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == status and body["detail"]
    if error_code:
        assert body["error_code"] == error_code, body
    return body


def deploy_ok(http, dep, pid, **body) -> dict:
    resp = http.post(f"/api/v1/pipelines/{pid}/deploy", json=body or None)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["event"] == "PipelineDeployed" and out["pipeline_id"] == pid
    return out


# ---------------------------------------------------------------- deploy

def test_deploy_answers_200_with_the_deployed_version_and_logs_pipeline_deployed(dep, drafted, http):
    resp = http.post(f"/api/v1/pipelines/{drafted}/deploy")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["event"] == "PipelineDeployed" and body["version"] == 1 and body["previous_version"] is None
    assert "artifacts_json" not in body and body["links"]["events"] == f"/api/v1/pipelines/{drafted}/events"
    [ev] = caused_by(dep, drafted, body["command_id"])
    assert ev["type"] == "PipelineDeployed" and ev["payload"]["version"] == 1
    assert json.loads(json.loads(ev["payload"]["artifacts_json"])["spec_json"])["trigger"]["kind"] == "cron"


def test_deploying_a_version_that_does_not_exist_is_409_with_the_aggregates_reason(dep, drafted, http):
    resp = http.post(f"/api/v1/pipelines/{drafted}/deploy", json={"version": 7})
    body = problem(resp, 409, "not_deployable")
    assert "there is no draft version 7" in body["detail"] and "[1]" in body["detail"]
    [ev] = caused_by(dep, drafted, body["command_id"])
    assert ev["type"] == "CommandRejected" and ev["payload"]["reason"] == body["detail"]
    assert "PipelineDeployed" not in types(dep, drafted)


# ---------------------------------------------------------------- pause, resume, runs

def test_paused_pipelines_refuse_runs_until_resumed(dep, drafted, http):
    base = f"/api/v1/pipelines/{drafted}"
    deploy_ok(http, dep, drafted)

    paused = http.post(f"{base}/pause")
    assert paused.status_code == 200 and paused.json()["event"] == "PipelinePaused", paused.text
    again = problem(http.post(f"{base}/pause"), 409, "wrong_lifecycle")
    assert "only a deployed pipeline can be paused; it is paused" in again["detail"]

    refused = problem(http.post(f"{base}/runs", json={"params": {"day": "2024-05-01"}}), 409, "wrong_lifecycle")
    assert "paused" in refused["detail"]
    assert "RunRequested" not in types(dep, drafted)

    resumed = http.post(f"{base}/resume")
    assert resumed.status_code == 200 and resumed.json()["event"] == "PipelineResumed", resumed.text
    problem(http.post(f"{base}/resume"), 409, "wrong_lifecycle")

    run = http.post(f"{base}/runs", json={"params": {"day": "2024-05-01"}})
    assert run.status_code == 202, run.text
    body = run.json()
    assert body["status"] == "queued" and body["pipeline_id"] == drafted and body["version"] == 1
    assert run.headers["location"] == body["links"]["run"] == f"/api/v1/runs/{body['run_id']}"
    [ev] = [e for e in events(dep, drafted) if e["type"] == "RunRequested"]
    assert ev["payload"]["run_id"] == body["run_id"] and ev["payload"]["trigger_kind"] == "manual"
    assert json.loads(ev["payload"]["params_json"]) == {"day": "2024-05-01"}
    assert ev["envelope"]["causation_id"] == body["command_id"]


def test_a_run_without_a_body_has_empty_params_and_a_draft_only_pipeline_refuses_runs(dep, drafted, http):
    base = f"/api/v1/pipelines/{drafted}"
    refused = problem(http.post(f"{base}/runs"), 409, "wrong_lifecycle")
    assert "it is draft" in refused["detail"]
    deploy_ok(http, dep, drafted)
    run = http.post(f"{base}/runs")
    assert run.status_code == 202, run.text
    [ev] = [e for e in events(dep, drafted) if e["type"] == "RunRequested"]
    assert ev["payload"]["run_id"] == run.json()["run_id"] and json.loads(ev["payload"]["params_json"]) == {}


def test_a_verdict_slower_than_the_wait_is_answered_202_and_still_applied(dep, drafted):
    from fastapi.testclient import TestClient

    from gateway_api.app import create_app

    impatient = dep.settings.model_copy(update={"command_wait_s": 0.0})
    with TestClient(create_app(impatient), headers=dep.auth_headers) as c:
        resp = c.post(f"/api/v1/pipelines/{drafted}/deploy")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "accepted" and body["links"]["events"] == f"/api/v1/pipelines/{drafted}/events"
    ev = wait_for(lambda: caused_by(dep, drafted, body["command_id"]), what="the deploy's outcome")[0]
    assert ev["type"] == "PipelineDeployed"


# ---------------------------------------------------------------- rollback

def test_rollback_returns_to_an_earlier_deployed_version_and_refuses_others(dep, drafted, http):
    base = f"/api/v1/pipelines/{drafted}"
    nothing = problem(http.post(f"{base}/rollback", json={"version": 1}), 409, "wrong_lifecycle")
    assert "nothing is deployed" in nothing["detail"]
    deploy_ok(http, dep, drafted)
    assert http.post(f"{base}/revise", json={"instructions": "only paid orders"}).status_code == 202
    wait_for(lambda: http.get(base).json().get("latest_version") == 2, timeout=90, what="draft version 2")
    assert http.get(base).json()["status"] == "draft_ready"

    second = deploy_ok(http, dep, drafted)  # the latest by default
    assert second["version"] == 2 and second["previous_version"] == 1

    back = http.post(f"{base}/rollback", json={"version": 1})
    assert back.status_code == 200, back.text
    body = back.json()
    assert body["event"] == "PipelineRolledBack" and body["version"] == 1 and body["from_version"] == 2
    [ev] = caused_by(dep, drafted, body["command_id"])
    assert ev["type"] == "PipelineRolledBack" and ev["payload"]["version"] == 1

    current = problem(http.post(f"{base}/rollback", json={"version": 1}), 409, "not_deployable")
    assert "not an earlier deployed version" in current["detail"]
    problem(http.post(f"{base}/rollback", json={"version": 5}), 409, "not_deployable")
    assert types(dep, drafted).count("PipelineRolledBack") == 1


# ---------------------------------------------------------------- delete

def test_a_deleted_pipeline_refuses_runs_and_deploys_but_keeps_its_history(dep, drafted, http):
    base = f"/api/v1/pipelines/{drafted}"
    deploy_ok(http, dep, drafted)
    deleted = http.delete(base)
    assert deleted.status_code == 200 and deleted.json()["event"] == "PipelineDeleted", deleted.text
    assert caused_by(dep, drafted, deleted.json()["command_id"])[0]["type"] == "PipelineDeleted"

    for resp in (http.post(f"{base}/runs"), http.post(f"{base}/deploy"), http.post(f"{base}/resume"),
                 http.delete(base)):
        assert "the pipeline was deleted" in problem(resp, 409, "pipeline_deleted")["detail"]
    assert "RunRequested" not in types(dep, drafted)
    assert http.get(base).status_code == 200  # the history stays readable


# ---------------------------------------------------------------- 404 and 422

@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/v1/pipelines/{id}/deploy", None),
    ("POST", "/api/v1/pipelines/{id}/rollback", {"version": 1}),
    ("POST", "/api/v1/pipelines/{id}/pause", None),
    ("POST", "/api/v1/pipelines/{id}/resume", None),
    ("DELETE", "/api/v1/pipelines/{id}", None),
    ("POST", "/api/v1/pipelines/{id}/runs", None),
    ("GET", "/api/v1/pipelines/{id}/runs", None),
    ("GET", "/api/v1/pipelines/{id}/webhook", None),
    ("GET", "/api/v1/runs/{id}", None),
    ("POST", "/api/v1/runs/{id}/cancel", None),
])
def test_unknown_ids_are_404_problems_and_nothing_is_sent(dep, http, method, path, body):
    unknown = str(uuid.uuid4())
    for ident in (unknown, "not-a-uuid"):
        resp = http.request(method, path.format(id=ident), json=body)
        assert problem(resp, 404)["title"] in ("Pipeline not found", "Run not found")
    time.sleep(0.3)
    assert http.get(f"/api/v1/pipelines/{unknown}/events").status_code == 404  # no event was caused


@pytest.mark.parametrize("path, body, fragment", [
    ("deploy", {"version": "latest"}, "version"),
    ("deploy", {"version": 0}, "version"),
    ("deploy", {"colour": "red"}, "colour"),
    ("rollback", {}, "version"),
    ("rollback", None, "body"),
    ("runs", {"params": [1, 2]}, "params"),
    ("runs", {"parameters": {}}, "parameters"),
    ("runs", b"{not json", "json"),
])
def test_invalid_bodies_are_422_problems_and_send_nothing(dep, drafted, http, path, body, fragment):
    before = events(dep, drafted)
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) \
        else {"json": body}
    resp = http.post(f"/api/v1/pipelines/{drafted}/{path}", **kwargs)
    assert fragment in problem(resp, 422)["detail"].lower()
    time.sleep(0.3)
    assert events(dep, drafted) == before


# ---------------------------------------------------------------- runs: read, follow, cancel

def seed_run(dep, state: dict) -> None:
    """Write a run state as the projector would; NX keeps one the projector already wrote."""
    import redis

    from services.projector.readmodel import Keys, namespace

    keys = Keys(namespace(dep.settings.topic_prefix))
    r = redis.Redis.from_url(dep.settings.redis_url)
    r.set(keys.run(state["run_id"]), json.dumps(state), nx=True)
    r.zadd(keys.pipeline_runs(state["pipeline_id"]), {state["run_id"]: state.pop("_score", time.time())},
           nx=True)


def run_state(dep, pid, run_id, **extra) -> dict:
    return {"run_id": run_id, "pipeline_id": pid, "tenant_id": dep.settings.tenant_id, "version": 1,
            "trigger_kind": "manual", "params": {}, "slot": None, "status": "queued", "attempt": 0,
            "requested_at": None, "started_at": None, "finished_at": None, "rows_read": 0, "rows_written": 0,
            "bytes": 0, "batches": 0, "cursor": None, "high_water_mark": None, "duration_ms": None,
            "error": None, "cancel_requested": False, **extra}


def test_cancel_asks_the_aggregate_and_a_second_cancel_is_refused(dep, drafted, http):
    deploy_ok(http, dep, drafted)
    run_id = http.post(f"/api/v1/pipelines/{drafted}/runs").json()["run_id"]
    seed_run(dep, run_state(dep, drafted, run_id))
    resp = http.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "wrong day"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["event"] == "RunCancelRequested" and body["run_id"] == run_id and body["reason"] == "wrong day"
    [ev] = caused_by(dep, drafted, body["command_id"])
    assert ev["type"] == "RunCancelRequested" and ev["payload"] == {"run_id": run_id, "reason": "wrong day"}

    again = problem(http.post(f"/api/v1/runs/{run_id}/cancel"), 409, "wrong_lifecycle")
    assert "already asked to stop" in again["detail"]
    problem(http.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": ""}), 422)


def test_a_requested_run_is_readable_and_listed_from_the_projected_read_model(dep, drafted, http):
    deploy_ok(http, dep, drafted)
    first = http.post(f"/api/v1/pipelines/{drafted}/runs", json={"params": {"n": 1}}).json()["run_id"]
    second = http.post(f"/api/v1/pipelines/{drafted}/runs").json()["run_id"]
    run = wait_for(lambda: (r := http.get(f"/api/v1/runs/{first}")).status_code == 200 and r.json(),
                   timeout=10, what="the projected run state")
    assert run["status"] == "queued" and run["pipeline_id"] == drafted and run["params"] == {"n": 1}
    assert run["trigger_kind"] == "manual" and run["version"] == 1
    listed = wait_for(lambda: len(items := http.get(f"/api/v1/pipelines/{drafted}/runs").json()["items"]) == 2
                      and items, timeout=10, what="both runs listed")
    assert [r["run_id"] for r in listed] == [second, first]


def test_cancelling_a_run_the_pipeline_never_had_is_the_aggregates_404(dep, drafted, http):
    ghost = str(uuid.uuid4())
    seed_run(dep, run_state(dep, drafted, ghost))  # a read model that claims a run the log does not have
    body = problem(http.post(f"/api/v1/runs/{ghost}/cancel"), 404, "run_not_found")
    assert ghost in body["detail"]
    assert caused_by(dep, drafted, body["command_id"])[0]["type"] == "CommandRejected"


def test_runs_are_listed_newest_first_and_read_one_by_one_within_the_tenant(dep, drafted, http):
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, rid in enumerate(ids):
        seed_run(dep, run_state(dep, drafted, rid, status="succeeded", rows_written=n, _score=1000 + n))
    listed = http.get(f"/api/v1/pipelines/{drafted}/runs").json()["items"]
    assert [r["run_id"] for r in listed] == ids[::-1]
    assert [r["run_id"] for r in http.get(f"/api/v1/pipelines/{drafted}/runs?limit=2").json()["items"]] == \
        ids[:0:-1]
    problem(http.get(f"/api/v1/pipelines/{drafted}/runs?limit=0"), 422)

    one = http.get(f"/api/v1/runs/{ids[1]}").json()
    assert one["status"] == "succeeded" and one["rows_written"] == 1
    assert one["links"]["pipeline"] == f"/api/v1/pipelines/{drafted}"

    foreign = str(uuid.uuid4())
    seed_run(dep, run_state(dep, drafted, foreign, tenant_id="someone-else"))
    problem(http.get(f"/api/v1/runs/{foreign}"), 404)
    problem(http.post(f"/api/v1/runs/{foreign}/cancel"), 404)


def test_a_runs_event_stream_sends_history_then_live_events_and_ends_after_the_terminal_one(dep, drafted):
    import redis

    from services.projector.readmodel import Keys, namespace

    keys = Keys(namespace(dep.settings.topic_prefix))
    r = redis.Redis.from_url(dep.settings.redis_url)
    rid = str(uuid.uuid4())
    seed_run(dep, run_state(dep, drafted, rid, status="running"))

    def ev(kind, offset, topic="runs", **payload):
        # A run's events come from two topics: the same (partition, offset) can name two different events.
        return json.dumps({"type": kind, "partition": 0, "offset": offset, "payload": payload,
                           "envelope": {"message_id": f"{topic}-{offset}"}})

    r.rpush(keys.run_events(rid), ev("RunRequested", 1, topic="pipelines"), ev("RunStarted", 1))
    frames: list[dict] = []
    connected, finished = threading.Event(), threading.Event()

    def listen():
        with httpx.stream("GET", f"{dep.base_url}/api/v1/runs/{rid}", timeout=20,
                          headers={"Accept": "text/event-stream", **dep.auth_headers}) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    frames.append(json.loads(line[6:]))
                    connected.set()
        finished.set()  # the server closed the stream

    threading.Thread(target=listen, daemon=True).start()
    assert connected.wait(10), "no history frame"
    time.sleep(0.3)
    r.publish(keys.run_live(rid), ev("RunStarted", 1))  # already in the history: not sent again
    r.publish(keys.run_live(rid), ev("BatchLoaded", 2, rows=10))
    r.publish(keys.run_live(rid), ev("RunFailed", 3, final=False))  # a retry follows: keep streaming
    r.publish(keys.run_live(rid), ev("RunCancelRequested", 3, topic="pipelines"))
    r.publish(keys.run_live(rid), ev("RunSucceeded", 4))
    r.publish(keys.run_live(rid), ev("BatchLoaded", 5, rows=1))  # after the end: never sent
    assert finished.wait(10), "the stream did not end after RunSucceeded"
    assert [f["type"] for f in frames] == ["RunRequested", "RunStarted", "BatchLoaded", "RunFailed",
                                           "RunCancelRequested", "RunSucceeded"]


def test_a_finished_runs_stream_ends_after_its_history(dep, drafted):
    import redis

    from services.projector.readmodel import Keys, namespace

    keys = Keys(namespace(dep.settings.topic_prefix))
    rid = str(uuid.uuid4())
    seed_run(dep, run_state(dep, drafted, rid, status="failed"))
    redis.Redis.from_url(dep.settings.redis_url).rpush(
        keys.run_events(rid), json.dumps({"type": "RunFailed", "partition": 0, "offset": 9,
                                          "payload": {"final": True, "error": "boom"}}))
    with httpx.stream("GET", f"{dep.base_url}/api/v1/runs/{rid}", timeout=10,
                      headers={"Accept": "text/event-stream", **dep.auth_headers}) as resp:
        body = resp.read().decode()
    assert "event: RunFailed" in body and "boom" in body
