"""HTTP in, events and read model out: the walking skeleton through the real Kafka and Redis."""
import json
import threading
import time
import uuid

import httpx
import pytest

from services.runtime import WORKERS
from tests.harness import wait_for

pytestmark = pytest.mark.integration


def create(client, description="copy orders to ClickHouse", **extra):
    resp = client.post("/api/v1/pipelines", json={"description": description, **extra})
    assert resp.status_code == 202, resp.text
    return resp.json()


def test_post_then_get_shows_requested_with_its_event_within_a_second(system):
    with system.client() as c:
        body = create(c, labels={"team": "bi"})
        pid = body["pipeline_id"]
        assert body["links"]["self"] == f"/api/v1/pipelines/{pid}"
        t0 = time.monotonic()
        state = wait_for(lambda: (r := c.get(f"/api/v1/pipelines/{pid}")).status_code == 200 and r.json(),
                         timeout=10, what="pipeline in read model")
        elapsed = time.monotonic() - t0
        # The agents move the status on within moments; what must hold is the request and its event.
        assert state["version"] >= 1 and state["status"] in ("requested", "needs_clarification", "planned")
        assert state["labels"] == {"team": "bi"} and state["description"] == "copy orders to ClickHouse"
        events = c.get(f"/api/v1/pipelines/{pid}/events").json()["events"]
        assert events[0]["type"] == "PipelineRequested" and events[0]["envelope"]["aggregate_version"] == 1
        assert events[0]["envelope"]["causation_id"] == body["command_id"]
        print(f"visible in the read model {elapsed * 1000:.0f} ms after the 202")
        assert elapsed < 1.0


@pytest.mark.parametrize("payload, fragment", [
    ({"description": ""}, "description"),
    ({"description": "   "}, "blank"),
    ({"description": "x" * 4001}, "4000"),
    ({"description": "ok", "colour": "red"}, "colour"),
    ({}, "description"),
])
def test_invalid_requests_get_problem_json_and_change_nothing(system, payload, fragment):
    with system.client() as c:
        ids = lambda: {p["pipeline_id"] for p in c.get("/api/v1/pipelines").json()["items"]}  # noqa: E731
        before = ids()
        resp = c.post("/api/v1/pipelines", json=payload)
        assert resp.status_code == 422
        assert resp.headers["content-type"].startswith("application/problem+json")
        problem = resp.json()
        assert problem["status"] == 422 and problem["title"] == "Invalid request"
        assert fragment in problem["detail"]
        time.sleep(0.3)
        assert ids() == before


def test_a_json_body_sent_as_curl_sends_it_without_content_type_is_accepted(system):
    with system.client() as c:
        resp = c.post("/api/v1/pipelines", content=b'{"description":"copy orders to ClickHouse"}',
                      headers={"content-type": "application/x-www-form-urlencoded"})
        assert resp.status_code == 202, resp.text
        pid = resp.json()["pipeline_id"]
        assert wait_for(lambda: c.get(f"/api/v1/pipelines/{pid}").status_code == 200, what="projection")


def test_malformed_json_is_a_problem_too(system):
    with system.client() as c:
        resp = c.post("/api/v1/pipelines", content=b"{not json", headers={"content-type": "application/json"})
        assert resp.status_code == 422
        assert resp.headers["content-type"].startswith("application/problem+json")


def test_unknown_pipeline_is_404_problem_json(system):
    with system.client() as c:
        for pid in (str(uuid.uuid4()), "not-a-uuid"):
            resp = c.get(f"/api/v1/pipelines/{pid}")
            assert resp.status_code == 404
            assert resp.headers["content-type"].startswith("application/problem+json")
            assert resp.json()["title"] == "Pipeline not found"
        assert c.get(f"/api/v1/pipelines/{uuid.uuid4()}/events").status_code == 404


def send_command(system, name, pipeline_id, payload):
    from services.core.avro import build_codec
    from services.core.kafka import producer
    from services.core.messages import Message, new_envelope

    msg = Message(name, new_envelope(name, tenant_id=system.settings.tenant_id, actor="test",
                                     pipeline_id=pipeline_id), payload)
    p = producer(system.settings)
    p.produce(system.topic("pipelines.commands.v1"), key=pipeline_id.encode(),
              value=build_codec().encode(name, msg.to_record()))
    assert p.flush(10) == 0
    return msg


def test_event_stream_sends_history_then_live_events(system):
    with system.client() as c:
        pid = create(c, description="load customers.csv into PostgreSQL")["pipeline_id"]
        wait_for(lambda: c.get(f"/api/v1/pipelines/{pid}").status_code == 200, what="projection")
    frames: list[dict] = []
    connected = threading.Event()

    def listen():
        with httpx.stream("GET", f"{system.base_url}/api/v1/pipelines/{pid}/events",
                          headers={"Accept": "text/event-stream", **system.auth_headers}, timeout=20) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    frames.append({"event": event, **json.loads(line[6:])})
                    connected.set()
                    if event == "CommandRejected":
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert connected.wait(10), "no history frame"
    # A second CreatePipeline for the same id is rejected: that rejection must arrive live.
    dup = send_command(system, "aietl.pipelines.v1.CreatePipeline", pid,
                       {"description": "again", "name": None, "labels": {}})
    t.join(20)
    # The agents' own events may interleave; the history comes first and the rejection arrives live.
    assert frames[0]["event"] == "PipelineRequested"
    assert frames[-1]["event"] == "CommandRejected", [f["event"] for f in frames]
    assert frames[-1]["payload"]["command_id"] == dup.message_id
    assert frames[-1]["payload"]["error_code"] == "pipeline_exists"
    offsets = [f["offset"] for f in frames]
    assert offsets == sorted(set(offsets)), "each event once, in log order"


def test_health_and_readiness(system):
    with system.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"redis": "ok", "kafka": "ok", "processors": "ok"}
        assert set(ready.json()["processors"]) == set(WORKERS) and not ready.json()["missing"]


def test_openapi_documents_the_command_with_examples(system):
    with system.client() as c:
        spec = c.get("/openapi.json").json()
    op = spec["paths"]["/api/v1/pipelines"]["post"]
    assert "202" in op["responses"]
    schema = spec["components"]["schemas"]["CreatePipelineRequest"]
    assert schema["examples"] and schema["additionalProperties"] is False
