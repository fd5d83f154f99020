"""The agent chain beyond the happy path: revisions, versions and artifacts, and the router's cache answering a
redelivered request (memory: tests/e2e/test_llm_provider_chain.py). (Repairs that do not converge: tests/e2e/test_verification.py; the bound of
three rounds: tests/unit/test_pipeline_aggregate.py.)"""
import json
import time
import uuid

import pytest

from services.core.avro import build_codec
from services.core.eventlog import read_all
from services.core.kafka import producer
from services.core.messages import Message, new_envelope
from tests.e2e.test_public_cases import draft, ready, tenant_connections, shop  # noqa: F401 (fixtures)
from tests.harness import wait_for

pytestmark = pytest.mark.integration
P01 = "Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.orders every day at 2 AM"


def events(system, pid):
    with system.client() as c:
        return c.get(f"/api/v1/pipelines/{pid}/events").json()["events"]


def test_revise_makes_a_new_draft_version_with_its_own_artifacts(system, tenant_connections):
    first = draft(system, P01)
    ready(first)
    pid = first["pipeline_id"]
    with system.client() as c:
        resp = c.post(f"/api/v1/pipelines/{pid}/revise", json={"instructions": "only paid orders"})
        assert resp.status_code == 202, resp.text
        state = wait_for(lambda: (s := c.get(f"/api/v1/pipelines/{pid}").json())["versions"][1:] and s,
                         timeout=60, what="draft version 2")
        versions = c.get(f"/api/v1/pipelines/{pid}/versions").json()["versions"]
        assert [v["draft_version"] for v in versions] == [1, 2] and versions[1]["revision"] == 2
        assert "extract.sql" in versions[1]["artifacts"] and "flow.mmd" in versions[1]["artifacts"]
        v1 = c.get(f"/api/v1/pipelines/{pid}/artifacts/extract.sql", params={"version": 1}).text
        v2 = c.get(f"/api/v1/pipelines/{pid}/artifacts/extract.sql").text
        assert "status = 'paid'" in v2 and "paid" not in v1
        spec = c.get(f"/api/v1/pipelines/{pid}/artifacts/spec.json").json()
        assert spec["schedule"]["cron"] == "0 2 * * *"
        assert c.get(f"/api/v1/pipelines/{pid}/artifacts/flow.mmd").text.startswith(("flowchart", "graph"))
        missing = c.get(f"/api/v1/pipelines/{pid}/artifacts/nope.txt")
        assert missing.status_code == 404 and "available" in missing.json()["detail"]
        assert c.get(f"/api/v1/pipelines/{pid}/artifacts/spec.json", params={"version": 9}).status_code == 404
    assert state["status"] == "draft_ready"
    types = [e["type"] for e in events(system, pid)]
    assert types.count("DraftCompleted") == 2 and "RevisionRequested" in types


def test_revising_while_the_agents_work_is_a_409_and_changes_nothing(system, tenant_connections):
    with system.client() as c:
        pid = c.post("/api/v1/pipelines", json={"description": P01}).json()["pipeline_id"]
        wait_for(lambda: c.get(f"/api/v1/pipelines/{pid}").status_code == 200, what="projection")
        state = c.get(f"/api/v1/pipelines/{pid}").json()
        if state["status"] not in ("draft_ready",):
            resp = c.post(f"/api/v1/pipelines/{pid}/revise", json={"instructions": "x"})
            assert resp.status_code == 409 and resp.headers["content-type"].startswith("application/problem+json")
        bad = c.post(f"/api/v1/pipelines/{pid}/revise", json={"instructions": ""})
        assert bad.status_code == 422


def test_a_redelivered_llm_request_is_answered_from_the_cache_not_paid_twice(system):
    codec = build_codec()
    name = "aietl.llm.v1.CompleteLlmTask"
    correlation = str(uuid.uuid4())
    payload = {"task": "plan", "requester": "nobody", "prompt_version": "plan-v1", "complexity": "medium",
               "messages": [{"role": "user", "content": P01}], "input_json": json.dumps({"text": P01}),
               "context_json": "{}", "repair_round": 0, "max_tokens": 512, "preferred_provider": None}
    p = producer(system.settings)
    for _ in range(2):  # the same request twice, as a crashed agent would send it again
        env = new_envelope(name, tenant_id=system.settings.tenant_id, actor="test", correlation_id=correlation)
        p.produce(system.topic("llm.requests.v1"), key=correlation.encode(),
                  value=codec.encode(name, Message(name, env, payload).to_record()))
    assert p.flush(10) == 0

    def replies():
        out = []
        read_all(system.settings, system.topic("llm.replies.v1"),
                 lambda r: out.append(codec.decode(r.value)[1]))
        return [r for r in out if r["envelope"]["correlation_id"] == correlation]

    got = wait_for(lambda: len(replies()) == 2 and replies(), timeout=30, what="two replies")
    assert [r["usage"]["cache"] for r in got] == ["miss", "exact"]
    assert json.loads(got[0]["output_json"]) == json.loads(got[1]["output_json"])
    with system.client() as c:
        stats = c.get("/api/v1/llm/stats").json()
    assert stats["providers"]["builtin"]["cache_exact"] >= 1 and stats["totals"]["calls"] >= 1
