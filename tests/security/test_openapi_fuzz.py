"""Schemathesis against the gateway's own OpenAPI document, with an admin key of a deployment of its own:
for bounded generated requests to every operation, never a 5xx, and every error is application/problem+json.

The document is read from the app (no server needed at collection); the requests go to a live gateway with
the pipeline aggregate and the projector behind it. What the requests create (pipelines, connections, keys)
belongs to the deployment's tenant and is removed with it.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gateway_api.app import create_app
from services.core.settings import load_settings
from tests.harness import new_deployment

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
EXAMPLES = 25  # per operation: ~900 requests in all, under a minute

schema = schemathesis.openapi.from_dict(create_app(load_settings()).openapi())


@pytest.fixture(scope="module")
def dep(stack_settings):
    d = new_deployment(stack_settings, "fuzz", ["pipeline-aggregate", "projector"]).start()
    try:
        yield d
    finally:
        d.remove()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_never_get_a_5xx_and_errors_are_problems(case, dep):
    headers = {**(case.headers or {}), **dep.auth_headers}
    if "text/event-stream" in headers.get("accept", "").lower():
        headers.pop("accept")  # a live stream would never end; the JSON history is what is fuzzed
    resp = case.call(base_url=dep.base_url, headers=headers, timeout=30)
    where = f"{case.method} {case.formatted_path}"
    assert resp.status_code < 500, (where, resp.status_code, resp.text[:300])
    if resp.status_code >= 400:
        ctype = {k.lower(): v for k, v in resp.headers.items()}.get("content-type") or [""]
        ctype = ctype[0] if isinstance(ctype, list) else ctype  # schemathesis keeps each header as a list
        assert ctype.startswith(PROBLEM), (where, resp.status_code, ctype, resp.text[:200])
