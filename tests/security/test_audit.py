"""Audit (issue 10, deliverable 6): every command the aggregate decides and every refused request leaves a
record on audit.v1 that reaches ClickHouse audit_log; GET /api/v1/audit shows a tenant's admins their own
tenant's trail only, filterable, and nobody else."""
from __future__ import annotations

import uuid

import httpx
import pytest

from services.identity.keys import KeyStore
from tests.harness import new_deployment, wait_for

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def dep(stack_settings):
    d = new_deployment(stack_settings, "audit", ["pipeline-aggregate", "projector", "metrics-sink"]).start()
    store = KeyStore(stack_settings.postgres_dsn, cache_seconds=0.0)
    made: list[str] = []

    def key(role: str, tenant: str | None = None) -> dict:
        secret, info = store.create(tenant or d.settings.tenant_id, role, name="audit-test", created_by="test")
        made.append(info.prefix)
        return {"Authorization": f"Bearer {secret}"}

    d.audit_key = key  # type: ignore[attr-defined]
    try:
        yield d
    finally:
        store.delete(made)
        d.remove()
        _drop_rows(stack_settings, d.settings.tenant_id)


def _drop_rows(settings, tenant: str) -> None:
    from clickhouse_driver import Client

    ch = Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                password=settings.clickhouse_password)
    ch.execute(f"ALTER TABLE {settings.clickhouse_database}.audit_log DELETE WHERE tenant_id = %(t)s", {"t": tenant})


def test_commands_are_audited_with_who_where_and_outcome(dep):
    admin = dep.audit_key("admin")
    rid = f"req-{uuid.uuid4().hex[:12]}"
    with httpx.Client(base_url=dep.base_url, timeout=30) as c:
        created = c.post("/api/v1/pipelines", json={"description": "copy shop.orders into CH analytics.orders_audit"},
                         headers={**admin, "X-Request-ID": rid})
        assert created.status_code == 202, created.text
        assert created.headers["x-request-id"] == rid
        pid = created.json()["pipeline_id"]
        wait_for(lambda: c.get(f"/api/v1/pipelines/{pid}", headers=admin).status_code == 200, what="read model")
        # Deploying a pipeline with no QA-passed version breaks an aggregate rule: rejected, and audited so.
        deploy = c.post(f"/api/v1/pipelines/{pid}/deploy", json={}, headers=admin)
        assert deploy.status_code == 409, deploy.text

        def trail():
            items = c.get("/api/v1/audit", params={"pipeline_id": pid}, headers=admin).json()["items"]
            return items if {i["action"] for i in items} >= {"CreatePipeline", "DeployPipeline"} else None

        items = {i["action"]: i for i in wait_for(trail, timeout=60, interval=0.5, what="audit records")}
    create, deploy_rec = items["CreatePipeline"], items["DeployPipeline"]
    assert (create["outcome"], create["request_id"], create["source_address"]) == ("accepted", rid, "127.0.0.1")
    assert create["recorder"] == "pipeline-aggregate" and create["pipeline_id"] == pid
    assert create["causation_id"] == created.json()["command_id"]
    assert deploy_rec["outcome"] == "rejected" and deploy_rec["reason"].split(":")[0] in ("not_deployable", "wrong_lifecycle")
    assert deploy_rec["request_id"] == deploy.headers["x-request-id"]


def test_audit_filters(dep):
    admin = dep.audit_key("admin")
    with httpx.Client(base_url=dep.base_url, timeout=30) as c:
        pid = c.post("/api/v1/pipelines", json={"description": "copy shop.customers into CH analytics.c_audit"},
                     headers=admin).json()["pipeline_id"]
        wait_for(lambda: c.get(f"/api/v1/pipelines/{pid}", headers=admin).status_code == 200, what="read model")
        assert c.post(f"/api/v1/pipelines/{pid}/deploy", json={}, headers=admin).status_code == 409
        rejected = wait_for(lambda: c.get("/api/v1/audit", params={"pipeline_id": pid, "outcome": "rejected"},
                                          headers=admin).json()["items"], timeout=60, interval=0.5, what="rejected")
        assert {i["action"] for i in rejected} == {"DeployPipeline"}
        only_create = c.get("/api/v1/audit", params={"pipeline_id": pid, "action": "CreatePipeline"},
                            headers=admin).json()["items"]
        assert [i["action"] for i in only_create] == ["CreatePipeline"]
        assert c.get("/api/v1/audit", params={"pipeline_id": pid, "until": "2000-01-01T00:00:00Z"},
                     headers=admin).json()["items"] == []
        assert len(c.get("/api/v1/audit", params={"limit": 1}, headers=admin).json()["items"]) == 1
        for bad in ({"limit": 0}, {"limit": 10**20}, {"outcome": "maybe"}, {"since": "yesterday"}):
            resp = c.get("/api/v1/audit", params=bad, headers=admin)
            assert resp.status_code == 422 and resp.headers["content-type"].startswith(PROBLEM), (bad, resp.text)


def test_only_the_tenants_admins_read_its_audit(dep):
    with httpx.Client(base_url=dep.base_url, timeout=30) as c:
        anonymous = c.get("/api/v1/audit")
        assert anonymous.status_code == 401 and anonymous.headers["content-type"].startswith(PROBLEM)
        for role in ("viewer", "editor"):
            resp = c.get("/api/v1/audit", headers=dep.audit_key(role))
            assert resp.status_code == 403 and resp.headers["content-type"].startswith(PROBLEM), resp.text
        mine = c.get("/api/v1/audit", headers=dep.audit_key("admin"))
        assert mine.status_code == 200
        # Another tenant's admin, on the same gateway, sees none of this tenant's trail.
        other = c.get("/api/v1/audit", headers=dep.audit_key("admin", tenant=f"other-{uuid.uuid4().hex[:8]}"))
        assert other.status_code == 200 and other.json()["items"] == []


def test_admin_actions_and_refused_requests_are_audited_by_the_gateway(dep):
    admin = dep.audit_key("admin")
    viewer = dep.audit_key("viewer")
    name = f"audited-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=dep.base_url, timeout=30) as c:
        made = c.post("/api/v1/connections", headers=admin, json={
            "name": name, "kind": "file", "params": {"folder": str(dep.settings.state_dir)}, "secrets": {}})
        assert made.status_code == 201, made.text
        assert c.delete(f"/api/v1/connections/{name}", headers=admin).status_code == 204
        key = c.post("/api/v1/keys", headers=admin, json={"role": "viewer", "name": "audited"})
        assert key.status_code == 201, key.text
        prefix = key.json()["prefix"]
        assert c.delete(f"/api/v1/keys/{prefix}", headers=admin).status_code == 200
        denied = c.post("/api/v1/pipelines", headers=viewer, json={"description": "copy shop.orders"})
        assert denied.status_code == 403

        def seen():
            items = c.get("/api/v1/audit", params={"limit": 200}, headers=admin).json()["items"]
            wanted = {("connections.create", name), ("connections.delete", name), ("keys.create", prefix),
                      ("keys.revoke", prefix), ("pipelines.write", "/api/v1/pipelines")}
            got = {(i["action"], i["subject"]): i for i in items if i["recorder"] == "gateway"}
            return got if wanted <= set(got) else None

        got = wait_for(seen, timeout=60, interval=0.5, what="the gateway's audit records")
    refused = got[("pipelines.write", "/api/v1/pipelines")]
    assert refused["outcome"] == "denied" and "viewer" in refused["reason"]
    assert refused["request_id"] == denied.headers["x-request-id"] and refused["source_address"] == "127.0.0.1"
    assert got[("keys.create", prefix)]["outcome"] == "accepted"
    assert got[("keys.create", prefix)]["actor"].startswith("user:")
