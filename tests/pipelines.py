"""Test helpers that take a pipeline through its life on a running deployment.

``request_draft`` goes through the gateway and the agent chain (the builtin offline LLM); the lifecycle
helpers send commands straight to ``pipelines.commands.v1`` (what the gateway would send), so tests of
processors do not depend on the HTTP layer.
"""
from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from typing import Iterator, Optional

from services.core.messages import Message, new_envelope
from tests.harness import Deployment, wait_for

DRAFT_DONE = {"draft_ready", "draft_failed", "needs_clarification", "refused"}


def request_draft(dep: Deployment, description: str, timeout: float = 90) -> dict:
    """POST the request and wait until the agents have finished a draft; returns the pipeline state."""
    with dep.client() as http:
        r = http.post("/api/v1/pipelines", json={"description": description})
        assert r.status_code == 202, r.text
        pid = r.json()["pipeline_id"]

        def done():
            got = http.get(f"/api/v1/pipelines/{pid}")
            return got.json() if got.status_code == 200 and got.json().get("status") in DRAFT_DONE else None

        return wait_for(done, timeout=timeout, what=f"draft of {description!r}")


def send_command(dep: Deployment, short_name: str, pipeline_id: str, payload: dict,
                 message_id: Optional[str] = None) -> str:
    """Produce one command as the gateway would; returns its message id."""
    return send_commands(dep, [(short_name, pipeline_id, payload, message_id)])[0]


def send_commands(dep: Deployment, commands: list[tuple]) -> list[str]:
    """Produce (short name, pipeline id, payload[, message id]) commands in one flush, in order."""
    from services.core.avro import build_codec
    from services.core.kafka import producer

    s = dep.settings
    codec = build_codec(s.schema_registry_url)
    p = producer(s)
    ids = []
    for short_name, pipeline_id, payload, *rest in commands:
        name = f"aietl.pipelines.v1.{short_name}"
        env = new_envelope(name, tenant_id=s.tenant_id, actor="user:test", pipeline_id=pipeline_id,
                           message_id=rest[0] if rest else None)
        msg = Message(name, env, payload)
        p.produce(s.topic("pipelines.commands.v1"), key=pipeline_id.encode(),
                  value=codec.encode(name, msg.to_record()),
                  headers=[("type", name.encode()), ("message_id", msg.message_id.encode())])
        ids.append(msg.message_id)
    p.flush(30)
    return ids


def events(dep: Deployment, pipeline_id: str) -> list[dict]:
    with dep.client() as http:
        r = http.get(f"/api/v1/pipelines/{pipeline_id}/events")
        return r.json()["events"] if r.status_code == 200 else []


def wait_event(dep: Deployment, pipeline_id: str, event_type: str, timeout: float = 30, **payload_match) -> dict:
    def found():
        for ev in events(dep, pipeline_id):
            if ev["type"] == event_type and all(ev["payload"].get(k) == v for k, v in payload_match.items()):
                return ev
        return None

    return wait_for(found, timeout=timeout, what=f"{event_type} {payload_match or ''} on {pipeline_id}")


def deploy(dep: Deployment, pipeline_id: str, version: Optional[int] = None, timeout: float = 30) -> dict:
    """Deploy (the latest draft by default) and wait for PipelineDeployed."""
    cid = send_command(dep, "DeployPipeline", pipeline_id, {"version": version})

    def outcome():
        for ev in events(dep, pipeline_id):
            if ev["envelope"].get("causation_id") == cid:
                return ev
        return None

    ev = wait_for(outcome, timeout=timeout, what=f"deploy of {pipeline_id}")
    assert ev["type"] == "PipelineDeployed", ev
    return ev


def trigger(dep: Deployment, pipeline_id: str, params: Optional[dict] = None, kind: str = "manual") -> str:
    """Request a run; returns its run id (the RunRequested event follows asynchronously)."""
    run_id = str(uuid.uuid4())
    send_command(dep, "TriggerRun", pipeline_id, {"run_id": run_id, "trigger_kind": kind,
                                                  "params_json": json.dumps(params or {}), "slot": None})
    return run_id


def draft_and_deploy(dep: Deployment, description: str) -> tuple[str, dict]:
    """Request, wait for a QA-passed draft, deploy it; returns (pipeline id, deployed spec)."""
    state = request_draft(dep, description)
    assert state["status"] == "draft_ready", state
    ev = deploy(dep, state["pipeline_id"])
    artifacts = json.loads(ev["payload"]["artifacts_json"])
    return state["pipeline_id"], json.loads(artifacts["spec_json"])


# The drafting workers: enough for a request to become a QA-passed draft that can be deployed.
AGENTS = ["pipeline-aggregate", "projector", "llm-router", "planner", "sql-expert", "python-coder",
          "schema-analyst", "qa-validator", "reflector"]


def register_demo_connections(dep: Deployment, shop) -> None:
    """The demo's named connections (local PostgreSQL, ClickHouse, the demo files, Kafka) for dep's tenant."""
    from services.cli import demo_connections

    with dep.client() as c:
        for conn in demo_connections(dep.settings, shop):
            resp = c.post("/api/v1/connections", json=conn)
            assert resp.status_code in (201, 409), resp.text


@contextmanager
def drafting_deployment(stack_settings, tag: str, extra_workers: tuple = ()) -> Iterator[Deployment]:
    """A deployment with the drafting workers (plus ``extra_workers``), demo data and its connections."""
    from services.demo.load import ensure_demo_data
    from tests.harness import new_deployment

    shop = ensure_demo_data(stack_settings)
    dep = new_deployment(stack_settings, tag, AGENTS + list(extra_workers)).start()
    try:
        register_demo_connections(dep, shop)
        dep.shop = shop
        yield dep
    finally:
        dep.remove()
