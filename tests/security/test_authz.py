"""Identity and tenants on every route (issue 10), against a live gateway with the drafting workers and an
executor: the app's routes are ENUMERATED, so a route added without ``require(...)`` fails here.

- anonymous: every route but /healthz, /readyz, the API docs and the signed webhook is 401 problem+json;
- each role gets 403 on exactly the routes whose permission it lacks (viewer: create, deploy, run, ...);
- tenant B (an admin key of another tenant) gets 404 for tenant A's pipeline, events, event stream,
  versions, artifacts, runs, run stream, connections, webhook and keys, exactly like for missing ones, and
  sees none of A's pipelines, connections, catalog or LLM calls;
- a revoked and an expired key are 401.
"""
from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from services.identity import ROLES, allowed
from tests.harness import wait_for
from tests.pipelines import drafting_deployment, request_draft

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
# Open without a key: liveness and readiness probes, the API's own description, and the webhook delivery
# (authenticated by its HMAC signature instead: tests/e2e/test_webhooks_api.py).
PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
          "/api/v1/hooks/{hook_id}"}


@pytest.fixture(scope="module")
def dep(stack_settings):
    with drafting_deployment(stack_settings, "authz", extra_workers=("executor",)) as d:
        yield d


@pytest.fixture(scope="module")
def app(dep):
    from gateway_api.app import create_app

    return create_app(dep.settings)  # only its route table is read; it is never started


@pytest.fixture(scope="module")
def tenant_a(dep):
    """A drafted, deployed pipeline of tenant A (the deployment's tenant) with one run."""
    table = f"analytics.authz_{uuid.uuid4().hex[:8]}"
    state = request_draft(dep, f"Load orders from PostgreSQL shop.orders into ClickHouse {table}")
    assert state["status"] == "draft_ready", state
    pid = state["pipeline_id"]
    with dep.client(timeout=30) as c:
        assert c.post(f"/api/v1/pipelines/{pid}/deploy").status_code == 200
        run = c.post(f"/api/v1/pipelines/{pid}/runs", json={"params": {}})
        assert run.status_code == 202, run.text
        rid = run.json()["run_id"]
        wait_for(lambda: c.get(f"/api/v1/runs/{rid}").status_code == 200, timeout=30, what="the run's state")
    yield {"pipeline": pid, "run": rid, "connection": "warehouse-pg"}
    _drop_clickhouse_table(dep.settings, table)


def _drop_clickhouse_table(settings, table: str) -> None:
    from clickhouse_driver import Client

    Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
           password=settings.clickhouse_password).execute(f"DROP TABLE IF EXISTS {table}")


def _served(routes):
    """The routes as served: an included router (FastAPI >= 0.16x) yields its routes with what the include
    added (prefix, router-level dependencies)."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from contexts()
        else:
            yield route


def routes(app) -> list[tuple[str, str, object]]:
    """(method, path, route) of every route of the app, the documentation routes included."""
    out = []
    for route in _served(app.routes):
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                out.append((method, route.path, route))
    return out


def permission_of(route) -> str | None:
    """The permission a route's ``require(...)`` dependency checks (its name is require_<permission>)."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    names = [d.call.__name__ for d in dependant.dependencies if d.call.__name__.startswith("require_")]
    assert len(names) <= 1, (route.path, names)
    if not names:
        return None
    perm = names[0][len("require_"):]
    return perm.replace("_", ".", 1)


def concrete(path: str, **ids: str) -> str:
    """A request path for a route template: ids given by name, otherwise a fresh one."""
    fill = {"pipeline_id": str(uuid.uuid4()), "run_id": str(uuid.uuid4()), "hook_id": str(uuid.uuid4()),
            "name": "nothere", "table": "public.nothere", "prefix": "deadbeef", **ids}
    return re.sub(r"{(\w+)(:\w+)?}", lambda m: fill[m.group(1)], path)


def assert_problem(resp: httpx.Response, status: int, what: str) -> dict:
    assert resp.status_code == status, (what, resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith(PROBLEM), (what, resp.headers["content-type"])
    body = resp.json()
    assert body["status"] == status, (what, body)
    return body


# ---------------------------------------------------------------- every route needs a principal

def test_every_route_but_the_public_ones_declares_a_permission(app):
    found = {(m, p): permission_of(r) for m, p, r in routes(app)}
    assert len(found) >= 30  # the enumeration really saw the API
    unguarded = sorted(f"{m} {p}" for (m, p), perm in found.items() if perm is None and p not in PUBLIC)
    assert unguarded == [], f"routes without require(...): {unguarded}"
    assert all(perm is None for (m, p), perm in found.items() if p in PUBLIC)
    spec = app.openapi()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert bool(op.get("security")) == (path not in PUBLIC), (method, path)


def test_anonymous_callers_get_401_problem_on_every_guarded_route(app, dep):
    checked = 0
    with dep.client(key="") as anonymous:
        for method, path, route in routes(app):
            if path in PUBLIC:
                continue
            resp = anonymous.request(method, concrete(path))
            body = assert_problem(resp, 401, f"{method} {path}")
            assert resp.headers["www-authenticate"].startswith("Bearer"), (method, path)
            assert "API key" in body["detail"]
            checked += 1
        assert anonymous.get("/healthz").status_code == 200
    assert checked >= 30


def test_each_role_is_refused_exactly_the_routes_it_lacks_the_permission_for(app, dep):
    """A viewer cannot create, deploy or run; an editor cannot manage connections, keys or webhooks. 403
    comes before anything else is looked at, so fresh ids are enough."""
    for role in ROLES:
        key = dep.new_key(role)
        refused = []
        with dep.client(key=key) as c:
            for method, path, route in routes(app):
                perm = permission_of(route)
                if perm is None or allowed(role, perm):
                    continue
                assert_problem(c.request(method, concrete(path)), 403, f"{role}: {method} {path}")
                refused.append(f"{method} {path}")
        if role == "viewer":
            for must in ("POST /api/v1/pipelines", "POST /api/v1/pipelines/{pipeline_id}/deploy",
                         "POST /api/v1/pipelines/{pipeline_id}/runs", "GET /api/v1/pipelines/{pipeline_id}/webhook"):
                assert must in refused, (must, refused)
        elif role == "editor":
            assert "GET /api/v1/pipelines/{pipeline_id}/webhook" in refused  # the secret starts runs
            assert "POST /api/v1/connections" in refused and "GET /api/v1/keys" in refused
        else:
            assert refused == []


def test_a_viewer_reads_but_cannot_act_on_its_tenants_pipeline(dep, tenant_a):
    pid = tenant_a["pipeline"]
    with dep.client(key=dep.new_key("viewer")) as viewer:
        assert viewer.get(f"/api/v1/pipelines/{pid}").status_code == 200
        assert viewer.get(f"/api/v1/runs/{tenant_a['run']}").status_code == 200
        for path in (f"/api/v1/pipelines/{pid}/deploy", f"/api/v1/pipelines/{pid}/runs",
                     f"/api/v1/pipelines/{pid}/pause", f"/api/v1/runs/{tenant_a['run']}/cancel"):
            assert_problem(viewer.post(path), 403, path)
        assert_problem(viewer.post("/api/v1/pipelines", json={"description": "copy orders"}), 403, "create")
        assert_problem(viewer.get("/api/v1/llm/stats", params={"scope": "all"}), 403, "stats of all tenants")


# ---------------------------------------------------------------- tenants

def _same_as_missing(theirs: httpx.Response, missing: httpx.Response, their_id: str, missing_id: str, what: str):
    a, b = assert_problem(theirs, 404, what), assert_problem(missing, 404, f"{what} (missing)")
    assert a["title"] == b["title"], (what, a, b)
    assert a["detail"].replace(their_id, "<id>") == b["detail"].replace(missing_id, "<id>"), (what, a, b)


def test_another_tenant_gets_404_for_each_object_exactly_like_a_missing_one(dep, tenant_a):
    pid, rid, conn = tenant_a["pipeline"], tenant_a["run"], tenant_a["connection"]
    gone_pid, gone_rid = str(uuid.uuid4()), str(uuid.uuid4())
    b_key = dep.new_key("admin", tenant=f"{dep.tenant}-b")
    reads = [
        ("pipeline", "GET", "/api/v1/pipelines/{p}", {}),
        ("events", "GET", "/api/v1/pipelines/{p}/events", {}),
        ("event stream", "GET", "/api/v1/pipelines/{p}/events", {"accept": "text/event-stream"}),
        ("versions", "GET", "/api/v1/pipelines/{p}/versions", {}),
        ("artifact", "GET", "/api/v1/pipelines/{p}/artifacts/extract.sql", {}),
        ("runs", "GET", "/api/v1/pipelines/{p}/runs", {}),
        ("webhook", "GET", "/api/v1/pipelines/{p}/webhook", {}),
        ("deploy", "POST", "/api/v1/pipelines/{p}/deploy", {}),
        ("run now", "POST", "/api/v1/pipelines/{p}/runs", {}),
        ("pause", "POST", "/api/v1/pipelines/{p}/pause", {}),
        ("delete", "DELETE", "/api/v1/pipelines/{p}", {}),
        ("run", "GET", "/api/v1/runs/{r}", {}),
        ("run stream", "GET", "/api/v1/runs/{r}", {"accept": "text/event-stream"}),
        ("cancel", "POST", "/api/v1/runs/{r}/cancel", {}),
    ]
    with dep.client(key=b_key, timeout=30) as b, dep.client(timeout=30) as a:
        for what, method, path, headers in reads:
            theirs = b.request(method, path.format(p=pid, r=rid), headers=headers)
            missing = b.request(method, path.format(p=gone_pid, r=gone_rid), headers=headers)
            _same_as_missing(theirs, missing, pid if "{p}" in path else rid,
                             gone_pid if "{p}" in path else gone_rid, what)
        for what, path in (("connection", f"/api/v1/connections/{conn}"),
                           ("tables", f"/api/v1/connections/{conn}/tables")):
            _same_as_missing(b.get(path), b.get(path.replace(conn, "nothere")), conn, "nothere", what)
        a_key_prefix = dep.api_key.split("_")[1]
        _same_as_missing(b.delete(f"/api/v1/keys/{a_key_prefix}"), b.delete("/api/v1/keys/deadbeef"),
                         a_key_prefix, "deadbeef", "revoking A's key")

        # Lists and aggregates show B nothing of A's.
        assert b.get("/api/v1/pipelines").json()["items"] == []
        assert b.get("/api/v1/connections").json()["items"] == []
        assert b.get("/api/v1/catalog").json()["connections"] == []
        assert a.get("/api/v1/catalog").json()["connections"]
        assert all(k["tenant"] == f"{dep.tenant}-b" for k in b.get("/api/v1/keys").json()["items"])
        assert b.get("/api/v1/llm/stats").json()["totals"]["calls"] == 0
        assert a.get("/api/v1/llm/stats").json()["totals"]["calls"] > 0

        # And A still sees all of it: nothing above was refused for want of the objects.
        assert a.get(f"/api/v1/pipelines/{pid}").json()["lifecycle"] == "deployed"
        assert a.get(f"/api/v1/runs/{rid}").status_code == 200
        assert a.get(f"/api/v1/connections/{conn}").status_code == 200
        assert a.get("/api/v1/keys").status_code == 200


def test_commands_carry_the_principals_tenant_and_key_as_actor(dep, tenant_a):
    from tests.pipelines import events

    editor = dep.new_key("editor")
    prefix = editor.split("_")[1]
    with dep.client(key=editor, timeout=30) as c:
        assert c.post(f"/api/v1/pipelines/{tenant_a['pipeline']}/pause").status_code == 200
        assert c.post(f"/api/v1/pipelines/{tenant_a['pipeline']}/resume").status_code == 200
    paused = [e for e in events(dep, tenant_a["pipeline"]) if e["type"] == "PipelinePaused"]
    assert paused and paused[-1]["envelope"]["actor"] == f"user:{prefix}"
    assert paused[-1]["envelope"]["tenant_id"] == dep.tenant
    first = events(dep, tenant_a["pipeline"])[0]
    assert first["envelope"]["actor"] == f"user:{dep.api_key.split('_')[1]}"


# ---------------------------------------------------------------- keys

def test_admins_manage_their_tenants_keys_shown_once(dep):
    with dep.client() as admin:
        made = admin.post("/api/v1/keys", json={"role": "viewer", "name": "dashboard"})
        assert made.status_code == 201, made.text
        body = made.json()
        key, prefix = body["key"], body["prefix"]
        dep.key_prefixes.append(prefix)
        assert body["tenant"] == dep.tenant and body["role"] == "viewer" and key.startswith(f"aietl_{prefix}_")
        listed = {k["prefix"]: k for k in admin.get("/api/v1/keys").json()["items"]}
        assert prefix in listed and "key" not in listed[prefix] and key not in str(listed)
        assert_problem(admin.post("/api/v1/keys", json={"role": "root"}), 422, "unknown role")
        assert_problem(admin.post("/api/v1/keys", json={"role": "viewer", "expires_in": "soon"}), 422, "expiry")
    with dep.client(key=key) as viewer:
        assert viewer.get("/api/v1/pipelines").status_code == 200
        assert_problem(viewer.get("/api/v1/keys"), 403, "a viewer listing keys")


def test_a_revoked_and_an_expired_key_are_401(dep):
    from services.identity.keys import CACHE_SECONDS

    with dep.client() as admin:
        made = admin.post("/api/v1/keys", json={"role": "viewer"}).json()
        dep.key_prefixes.append(made["prefix"])
        with dep.client(key=made["key"]) as c:
            assert c.get("/api/v1/pipelines").status_code == 200
            revoked = admin.delete(f"/api/v1/keys/{made['prefix']}")
            assert revoked.status_code == 200 and revoked.json()["revoked_at"]
            # the gateway caches a key's row for CACHE_SECONDS
            wait_for(lambda: c.get("/api/v1/pipelines").status_code == 401, timeout=CACHE_SECONDS + 5,
                     interval=0.5, what="the revoked key to be refused")
            assert "revoked" in assert_problem(c.get("/api/v1/pipelines"), 401, "revoked")["detail"]

    short = dep.new_key("viewer", expires_in="2s")
    with dep.client(key=short) as c:
        time.sleep(2.5)
        assert "expired" in assert_problem(c.get("/api/v1/pipelines"), 401, "expired")["detail"]


# ---------------------------------------------------------------- rate limit per principal

def test_a_burst_above_the_principals_limit_is_429_and_other_principals_are_not_slowed(stack_settings):
    from tests.harness import new_deployment

    small = new_deployment(stack_settings, "burst", [], rate_limit_per_s=1.0, rate_limit_burst=20).start()
    try:
        other = small.new_key("viewer")
        with small.client() as c:
            statuses = [c.get("/api/v1/pipelines").status_code for _ in range(30)]
            assert statuses[:20] == [200] * 20 and statuses[-1] == 429, statuses
            refused = c.get("/api/v1/pipelines")
            assert_problem(refused, 429, "burst")
            assert int(refused.headers["retry-after"]) >= 1
        with small.client(key=other) as c:  # a bucket per principal
            assert c.get("/api/v1/pipelines").status_code == 200
    finally:
        small.remove()
