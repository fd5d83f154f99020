"""/readyz tells the truth: a processor without live members in its consumer group is named (503
problem+json), and readiness returns when the worker does."""
from __future__ import annotations

import os
import signal

from services.processes import running
from tests.harness import new_deployment, wait_for


def test_readyz_names_a_stopped_worker_and_recovers_when_it_restarts(stack_settings):
    dep = new_deployment(stack_settings, "ready", ["scheduler", "metrics-sink"]).start()
    try:
        with dep.client() as c:
            ready = c.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["processors"]) == {"scheduler", "metrics-sink"}
            assert all(p["members"] == 1 and p["lag"] is not None for p in ready.json()["processors"].values())

            victim = running(dep.settings)["scheduler"]
            os.killpg(victim, signal.SIGTERM)  # a clean stop leaves the group at once
            wait_for(lambda: running(dep.settings).get("scheduler") is None, timeout=30, what="scheduler gone")
            resp = wait_for(lambda: (r := c.get("/readyz")).status_code == 503 and r, timeout=30,
                            what="/readyz to notice")
            assert resp.headers["content-type"].startswith("application/problem+json")
            assert resp.headers["retry-after"]
            body = resp.json()
            assert body["missing"] == ["scheduler"] and "scheduler" in body["detail"], body
            assert body["processors"]["scheduler"]["members"] == 0
            assert body["processors"]["metrics-sink"]["members"] == 1

            dep.start_worker("scheduler")
            wait_for(lambda: c.get("/readyz").status_code == 200, timeout=60, what="ready again")
    finally:
        dep.remove()
