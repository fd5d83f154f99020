"""Redis or Kafka down: every route answers 503 problem+json with Retry-After (never a 500), and the
gateway heals by itself when the server returns (no broken client kept)."""
from __future__ import annotations

import subprocess
import uuid

import httpx
import pytest

from services.processes import spawn
from tests.harness import free_port, new_deployment, wait_for

READS = ["/api/v1/pipelines", f"/api/v1/pipelines/{uuid.uuid4()}", f"/api/v1/runs/{uuid.uuid4()}",
         f"/api/v1/pipelines/{uuid.uuid4()}/events", f"/api/v1/pipelines/{uuid.uuid4()}/runs"]


@pytest.fixture
def gateway_with(stack_settings):
    """Start a gateway of its own deployment with some settings changed; remove it all at the end."""
    deps = []

    def start(**overrides):
        dep = new_deployment(stack_settings, "outage", [])
        deps.append(dep)
        spawn(dep.settings.model_copy(update={"processors": "", **overrides}), "gateway", ["gateway"])
        wait_for(lambda: _up(dep.base_url), timeout=60, what="the gateway to listen")
        return dep

    yield start
    for dep in deps:
        dep.remove()


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _assert_unavailable(resp: httpx.Response, what: str) -> None:
    assert resp.status_code == 503, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    assert int(resp.headers["retry-after"]) > 0
    body = resp.json()
    assert body["status"] == 503 and what in body["unavailable"], body


def _redis_server(port: int, tmp_path) -> subprocess.Popen:
    from services.core.settings import load_settings
    from services.core.stack_secrets import redis_acl

    # The stack's role users, as `aietl up` gives its own Redis: the gateway logs in as its role.
    users = [arg for name, rules in redis_acl(load_settings().state_dir) for arg in ("--user", name, *rules.split())]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path), *users],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    wait_for(lambda: _pings(redis.Redis(port=port)), timeout=20, what="redis-server to answer")
    return proc


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


def test_a_closed_redis_port_is_503_problem_json_on_every_route(gateway_with):
    dep = gateway_with(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with dep.client() as c:
        for path in READS:
            _assert_unavailable(c.get(path), "redis")
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.headers["content-type"].startswith("application/problem+json")
        assert ready.json()["unavailable"] == ["redis"] and ready.json()["checks"]["kafka"] == "ok"


def test_a_closed_kafka_port_is_503_problem_json_for_commands_and_readiness(gateway_with):
    dep = gateway_with(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    with dep.client() as c:
        resp = c.post("/api/v1/pipelines", json={"description": "Load orders from PostgreSQL shop.orders into "
                                                                "ClickHouse analytics.orders daily"}, timeout=30)
        _assert_unavailable(resp, "kafka")
        ready = c.get("/readyz", timeout=30)
        assert ready.status_code == 503 and "kafka" in ready.json()["unavailable"], ready.text


def test_the_gateway_heals_when_redis_returns(gateway_with, tmp_path):
    port = free_port()
    server = _redis_server(port, tmp_path)
    try:
        dep = gateway_with(redis_url=f"redis://127.0.0.1:{port}/0")
        with dep.client() as c:
            assert c.get("/api/v1/pipelines").status_code == 200  # the pool now holds live connections
            server.terminate()
            server.wait(10)
            _assert_unavailable(c.get("/api/v1/pipelines"), "redis")
            server = _redis_server(port, tmp_path)
            # The first request after the restart meets the pool's broken connections: it must not fail.
            statuses = [c.get(path).status_code for _ in range(5) for path in READS]
            assert statuses.count(500) == 0 and set(statuses) <= {200, 404}, statuses
    finally:
        server.terminate()
        server.wait(10)
