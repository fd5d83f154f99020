"""Cancelling a run that has already ended is a 409 problem (issue 11, item 8): the aggregate reads the
executor's runs log before deciding a cancellation, and nothing is appended for it."""
import uuid

import pytest

from tests.harness import wait_for
from tests.pipelines import deploy, drafting_deployment, events, request_draft

pytestmark = pytest.mark.integration


def test_cancel_of_a_finished_run_is_a_409_problem_and_logs_no_cancel_request(stack_settings):
    with drafting_deployment(stack_settings, "cancelend", extra_workers=("executor",)) as dep, \
            dep.client(timeout=30) as http:
        state = request_draft(dep, f"Load orders from the PostgreSQL table shop.orders into the ClickHouse table "
                                   f"analytics.cancel_{uuid.uuid4().hex[:8]}")
        assert state["status"] == "draft_ready", state
        pid = state["pipeline_id"]
        deploy(dep, pid)
        r = http.post(f"/api/v1/pipelines/{pid}/runs", json={"params": {}})
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        wait_for(lambda: http.get(f"/api/v1/runs/{run_id}").json()["status"] == "succeeded", timeout=120,
                 what="the run to succeed")
        resp = http.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "too late"})
        assert resp.status_code == 409, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        body = resp.json()
        assert body["error_code"] == "run_finished" and "already succeeded" in body["detail"], body
        assert "RunCancelRequested" not in [e["type"] for e in events(dep, pid)]
        assert http.get(f"/api/v1/runs/{run_id}").json()["cancel_requested"] is False
