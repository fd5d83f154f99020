"""Schema-aware drafting and an answerable dialogue, HTTP in, on the real stack with the builtin provider.

A table of its own (schema named to sort first, so the catalog's per-connection cap keeps it) is created
in the stack's PostgreSQL and dropped afterwards; the deployment registers the demo connections, so the
tenant catalog (GET /api/v1/catalog) holds the table, its columns and samples.
"""
import json
import uuid

import psycopg
import pytest

from tests.harness import wait_for
from tests.pipelines import DRAFT_DONE, drafting_deployment, events

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def dep(stack_settings):
    with drafting_deployment(stack_settings, "catalog") as d:
        yield d


@pytest.fixture(scope="module")
def scans(dep):
    """`a0cat_<hex>.parcel_scans` with a prose-named timestamp and weight, 40 rows, readable by the demo
    connections' role (as an operator grants a connection's user its data)."""
    schema = f"a0cat_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dep.settings.postgres_dsn, autocommit=True) as db:
        db.execute(f"""CREATE SCHEMA {schema};
            CREATE TABLE {schema}.parcel_scans (scan_id bigint PRIMARY KEY, depot text, weight_kg numeric(8,2),
                                                scanned_at timestamp);
            INSERT INTO {schema}.parcel_scans
            SELECT i, 'depot-' || (i % 4), 0.5 * i, timestamp '2024-05-01' + i * interval '3 hours'
              FROM generate_series(1, 40) i;
            GRANT USAGE ON SCHEMA {schema} TO {dep.settings.postgres_demo_user};
            GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {dep.settings.postgres_demo_user};""")
    with dep.client(timeout=60) as c:  # the planner's cache may predate the table
        resp = c.get("/api/v1/catalog", params={"refresh": "true"})
        assert resp.status_code == 200, resp.text
    yield f"{schema}.parcel_scans", resp.json()
    with psycopg.connect(dep.settings.postgres_dsn, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def http(dep):
    with dep.client(timeout=30) as c:
        yield c


def request(http, description: str) -> str:
    resp = http.post("/api/v1/pipelines", json={"description": description})
    assert resp.status_code == 202, resp.text
    return resp.json()["pipeline_id"]


def settled(http, pid: str, revision: int = 1) -> dict:
    def done():
        state = http.get(f"/api/v1/pipelines/{pid}").json()
        return state if state.get("status") in DRAFT_DONE and state.get("revision", 1) >= revision else None
    return wait_for(done, timeout=120, what=f"draft of {pid} (revision {revision})")


def spec_of(dep, pid: str) -> dict:
    [plan] = [e for e in events(dep, pid) if e["type"] == "PlanProposed"][-1:]
    return json.loads(plan["payload"]["spec_json"]), plan["payload"]["understood"]


def test_the_catalog_endpoint_shows_the_tables_columns_and_samples(scans):
    name, catalog = scans
    pg = next(c for c in catalog["connections"] if c["kind"] == "postgres")
    assert pg["default"] is True and pg["name"] == "warehouse-pg"
    [table] = [t for t in pg["tables"] if t["name"] == name]
    cols = {c["name"]: c for c in table["columns"]}
    assert cols["weight_kg"]["type"] == "numeric(8,2)" and cols["depot"]["samples"][:2] == ["depot-1", "depot-2"]
    assert not [t for c in catalog["connections"] for t in c["tables"] if t["name"].startswith("aietl_meta.")]


def test_a_request_naming_no_engine_and_no_schema_is_drafted_from_the_catalog(dep, scans, http):
    name, _ = scans
    target = f"analytics.scans_{uuid.uuid4().hex[:8]}"
    pid = request(http, f"Load the parcel scans into ClickHouse {target}, summing weight kg per depot")
    state = settled(http, pid)
    assert state["status"] == "draft_ready", state
    spec, understood = spec_of(dep, pid)
    assert (spec["source"]["kind"], spec["source"]["table"], spec["source"]["connection"]) == (
        "postgres", name, "warehouse-pg")
    assert spec["aggregate"]["dimensions"] == ["depot"]
    assert spec["aggregate"]["measures"][0]["column"] == "weight_kg"
    assert any(f"source table {name} (normalised, connection warehouse-pg)" in u for u in understood), understood
    assert '"weight kg" -> column weight_kg (normalised)' in understood


def test_a_clarification_answered_through_answer_completes_the_draft_and_never_returns(dep, scans, http):
    name, _ = scans
    target = f"analytics.scans_{uuid.uuid4().hex[:8]}"
    pid = request(http, f"Load {name} into ClickHouse {target} pronto")
    state = settled(http, pid)
    assert state["status"] == "needs_clarification", state
    assert state["working"]["missing"] == ["unrecognized:pronto"] and '"pronto"' in state["working"]["question"]

    wrong = http.post(f"/api/v1/pipelines/{pid}/answer", json={"answer": "daily", "slot": "schedule"})
    assert wrong.status_code == 409 and wrong.headers["content-type"].startswith(PROBLEM), wrong.text
    assert wrong.json()["error_code"] == "not_asked" and "unrecognized:pronto" in wrong.json()["detail"]

    resp = http.post(f"/api/v1/pipelines/{pid}/answer", json={"answer": "ignore it"})  # the first open slot
    assert resp.status_code in (200, 202), resp.text
    if resp.status_code == 200:
        assert resp.json()["event"] == "RevisionRequested" and resp.json()["slot"] == "unrecognized:pronto"
    state = settled(http, pid, revision=2)
    assert state["status"] == "draft_ready", state
    revision = [e for e in events(dep, pid) if e["type"] == "RevisionRequested"]
    assert [e["payload"]["slot"] for e in revision] == ["unrecognized:pronto"]
    asked = [e["payload"]["missing"] for e in events(dep, pid) if e["type"] == "ClarificationRequested"]
    assert asked == [["unrecognized:pronto"]]  # asked once, answered, not asked again
    spec, understood = spec_of(dep, pid)
    assert spec["source"]["table"] == name and '"pronto" -> ignored (your answer)' in understood

    again = http.post(f"/api/v1/pipelines/{pid}/answer", json={"answer": "ignore it"})
    assert again.status_code == 409 and again.json()["error_code"] == "not_asked", again.text


def test_revise_keeps_working_as_before(dep, scans, http):
    name, _ = scans
    pid = request(http, f"Load {name} into ClickHouse")
    state = settled(http, pid)
    assert state["status"] == "draft_ready", state
    resp = http.post(f"/api/v1/pipelines/{pid}/revise", json={"instructions": "only where depot = 'depot-1'"})
    assert resp.status_code == 202, resp.text
    assert settled(http, pid, revision=2)["status"] == "draft_ready"
    spec, _ = spec_of(dep, pid)
    assert spec["filters"] == [{"column": "depot", "op": "=", "value": "depot-1"}]
