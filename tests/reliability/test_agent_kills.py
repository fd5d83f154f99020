"""SIGKILL of each drafting worker type in the middle of drafting, with counts (issue 11, item 6).

A deployment of the drafting workers (aggregate, projector, router and the six agents) drafts a stream of
requests while, one after another, each worker type is killed with SIGKILL and started again (as the
supervisor of `aietl start` would). Every accepted request must end in the outcome the same request gets
without faults (a QA-passed draft, the question or the refusal), exactly once: one PipelineRequested, one final outcome
per revision, no draft version twice. Kafka redelivers what a killed consumer had not committed; the
aggregate's decisions and the agents' proposals must make that harmless.
"""
from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter

import pytest

from services.processes import running
from tests.harness import wait_for
from tests.pipelines import AGENTS, DRAFT_DONE, drafting_deployment, events

pytestmark = pytest.mark.integration
KILLED = ["planner", "llm-router", "sql-expert", "schema-analyst", "qa-validator", "pipeline-aggregate",
          "projector", "reflector"]
# Requests of the public cases' shapes (their targets made unique) and the outcome each gets without faults.
REQUESTS = [
    ("Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.{t} every day at 2 AM",
     "draft_ready"),
    ("Load only paid orders with a positive amount from PostgreSQL shop.orders into ClickHouse analytics.{t}, "
     "summing amount per day", "draft_ready"),
    ("Загружать заказы из PostgreSQL (shop.orders) в ClickHouse analytics.{t} ежедневно в 2 часа ночи", "draft_ready"),
    ("Sync shop.orders from PostgreSQL into ClickHouse analytics.{t}, upserting on order_id", "draft_ready"),
    ("Move some data", "needs_clarification"),
    ("Delete all customers older than five years from PostgreSQL", "refused"),
]
FINAL_EVENTS = {"DraftCompleted", "ClarificationRequested", "RequestRefused", "DraftingFailed"}


@pytest.fixture(scope="module")
def dep(stack_settings):
    with drafting_deployment(stack_settings, "kills") as d:
        yield d


def _kill_and_restart(dep, name: str) -> None:
    pid = running(dep.settings).get(name)
    assert pid, f"{name} is not running"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: running(dep.settings).get(name) is None, timeout=10, what=f"{name} gone")
    dep.start_worker(name)


def test_each_drafting_worker_killed_mid_draft_loses_and_duplicates_nothing(dep, figures):
    started = time.monotonic()
    sent: dict[str, str] = {}  # pipeline id -> its outcome without faults
    with dep.client(timeout=30) as http:
        def post(i: int) -> None:
            text, outcome = REQUESTS[i % len(REQUESTS)]
            r = http.post("/api/v1/pipelines", json={"description": text.format(t=f"kill_{uuid.uuid4().hex[:8]}")})
            assert r.status_code == 202, r.text
            sent[r.json()["pipeline_id"]] = outcome

        for i, name in enumerate(KILLED):
            post(2 * i)
            post(2 * i + 1)
            time.sleep(0.3)  # the requests are with the agents now
            _kill_and_restart(dep, name)

        def settled():
            states = {pid: http.get(f"/api/v1/pipelines/{pid}").json() for pid in sent}
            return states if all(s.get("status") in DRAFT_DONE for s in states.values()) else None

        try:
            states = wait_for(settled, timeout=150, interval=1, what="every request drafted")
        except AssertionError:
            stuck = {pid: (http.get(f"/api/v1/pipelines/{pid}").json().get("status"),
                           [e["type"] for e in events(dep, pid)][-3:]) for pid in sent}
            stuck = {p: v for p, v in stuck.items() if v[0] not in DRAFT_DONE}
            raise AssertionError(f"{len(stuck)} of {len(sent)} drafts never ended: {stuck}")
    lost, duplicated, wrong = [], [], []
    for pid, outcome in sent.items():
        kinds = Counter(e["type"] for e in events(dep, pid))
        if kinds["PipelineRequested"] != 1 or sum(kinds[k] for k in FINAL_EVENTS) != 1 or kinds["PlanProposed"] > 1:
            duplicated.append((pid, dict(kinds)))
        if states[pid]["status"] != outcome:
            wrong.append((pid, states[pid]["status"], outcome, states[pid].get("question")))
    dead = [n for n, p in running(dep.settings).items() if p is None and n in AGENTS]
    figures("fault: SIGKILL of each drafting worker", json.dumps({
        "fault": f"SIGKILL of each drafting worker type once ({', '.join(KILLED)}), each started again, "
                 f"while {len(sent)} requests were being drafted",
        "injected": len(KILLED), "requests_sent": len(sent), "drafts_finished": len(states) - len(lost),
        "lost": len(lost), "duplicated": len(duplicated), "wrong_outcome": len(wrong),
        "final_state_correct": not (lost or duplicated or wrong), "seconds": round(time.monotonic() - started),
        "command": "python -m pytest tests/reliability/test_agent_kills.py -q"}))
    assert not duplicated, duplicated[:3]
    assert not wrong, wrong[:3]
    assert not dead, f"workers down after the restarts: {dead}"
