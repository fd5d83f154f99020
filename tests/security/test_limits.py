"""Limits (issue 10, deliverable 5): the request shapes that used to answer 500 are 4xx problems now, and
event streams per principal are capped. Against a live gateway of its own deployment."""
from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from tests.harness import new_deployment

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def dep(stack_settings):
    d = new_deployment(stack_settings, "limits", ["pipeline-aggregate", "projector"]).start()
    try:
        yield d
    finally:
        d.remove()


def _problem(resp: httpx.Response, *statuses: int) -> dict:
    assert resp.status_code in statuses, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith(PROBLEM)
    return resp.json()


@pytest.mark.parametrize("shape", ["timestamp", "limit", "label", "create-2mb", "webhook-2mb", "deep"])
def test_former_500s_are_problems(dep, shape):
    pid = str(uuid.uuid4())
    hook_headers = {"X-Aietl-Timestamp": "1", "X-Aietl-Signature": "sha256=" + "0" * 64}
    with dep.client(timeout=60) as c:
        if shape == "timestamp":
            resp = c.post(f"/api/v1/hooks/{pid}", content=b"{}",
                          headers={**hook_headers, "X-Aietl-Timestamp": "9" * 5000})
            assert _problem(resp, 401)["title"] == "Invalid webhook signature"
        elif shape == "limit":
            for value in ("1e20", "100000000000000000000", "0", "-5"):
                _problem(c.get(f"/api/v1/pipelines?limit={value}"), 422)
        elif shape == "label":
            resp = c.post("/api/v1/pipelines", json={"description": "copy orders", "labels": {"a": "x" * 1_000_000}})
            assert _problem(resp, 422)["errors"][0]["loc"] == ["body", "labels", "a"]
        elif shape == "create-2mb":
            body = json.dumps({"description": "copy orders", "labels": {f"k{i}": "v" * 100 for i in range(20_000)}})
            _problem(c.post("/api/v1/pipelines", content=body, headers={"content-type": "application/json"}), 413)
        elif shape == "webhook-2mb":
            body = b'{"a": "' + b"x" * 2_000_000 + b'"}'
            _problem(c.post(f"/api/v1/hooks/{pid}", content=body, headers=hook_headers), 413)
        else:
            deep = "[" * 50_000 + "]" * 50_000
            for path in ("/api/v1/pipelines", f"/api/v1/pipelines/{pid}/runs", f"/api/v1/hooks/{pid}"):
                _problem(c.post(path, content=deep, headers={"content-type": "application/json", **hook_headers}),
                         422)
    # Nothing of it reached the bus: no pipeline was created.
    with dep.client() as c:
        assert c.get("/api/v1/pipelines").json()["items"] == []


def test_event_streams_per_principal_are_capped(dep):
    cap = dep.settings.sse_max_streams

    async def scenario():
        async with httpx.AsyncClient(base_url=dep.base_url, timeout=30, headers=dep.auth_headers) as c:
            pid = (await c.post("/api/v1/pipelines", json={"description": "copy orders"})).json()["pipeline_id"]
            accept = {"accept": "text/event-stream"}
            opened, statuses = [], []
            try:
                for _ in range(cap + 2):
                    cm = c.stream("GET", f"/api/v1/pipelines/{pid}/events", headers=accept)
                    resp = await cm.__aenter__()
                    opened.append(cm)
                    statuses.append((resp.status_code, resp.headers.get("retry-after")))
                    if resp.status_code == 429:
                        assert resp.headers["content-type"].startswith(PROBLEM)
            finally:
                for cm in opened:
                    await cm.__aexit__(None, None, None)
            assert [s for s, _ in statuses] == [200] * cap + [429, 429]
            assert all(retry for s, retry in statuses if s == 429)

            async def reopens():
                cm = c.stream("GET", f"/api/v1/pipelines/{pid}/events", headers=accept)
                resp = await cm.__aenter__()
                await cm.__aexit__(None, None, None)
                return resp.status_code == 200

            # Closed streams give their slots back.
            for _ in range(50):
                if await reopens():
                    return
                await asyncio.sleep(0.2)
            raise AssertionError("no stream slot came back after the streams closed")

    asyncio.run(scenario())
