"""The planner's policies with an HTTP model configured as the only planner (the builtin compiles SQL):
refusal rules run before any model; an outage leaves the pipeline retryable (drafting failed, and
``/revise "retry"`` runs the same request again); when every answer is rejected, the question names the
fields. The model is a local server speaking OpenAI's real protocol."""
import json

import pytest

from services.runtime import WORKERS
from services.understanding import compile_request
from tests.harness import new_deployment, wait_for
from tests.support.fake_llm import FakeLlmServer, ok, server_error

pytestmark = pytest.mark.integration
REQUEST = "Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.orders_retry daily"
SETTLED = ("draft_ready", "draft_failed", "needs_clarification", "refused")


@pytest.fixture(scope="module")
def shop(stack_settings):
    from services.demo.load import ensure_demo_data

    return ensure_demo_data(stack_settings)


@pytest.fixture(scope="module")
def model():
    with FakeLlmServer(default=server_error(503)) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(stack_settings, shop, model):
    from services.cli import demo_connections

    providers = [{"name": "model", "kind": "openai", "model": "gpt-test", "base_url": model.openai_base_url,
                  "tasks": ["plan"], "timeout_s": 20},
                 {"name": "builtin", "kind": "builtin", "tasks": ["sql", "reflect"]}]
    dep = new_deployment(stack_settings, "llmpolicy", list(WORKERS))
    dep.settings = dep.settings.model_copy(update={"llm_providers_json": json.dumps(providers),
                                                   "llm_backoff_base_s": 0.05, "llm_backoff_max_s": 0.1})
    dep.start()
    try:
        with dep.client() as c:
            for conn in demo_connections(dep.settings, shop):
                assert c.post("/api/v1/connections", json=conn).status_code in (201, 409)
        yield dep
    finally:
        dep.remove()


def settle(c, pid, after_version=0):
    return wait_for(lambda: (s := c.get(f"/api/v1/pipelines/{pid}").json()).get("status") in SETTLED
                    and s.get("version", 0) > after_version and s, timeout=90, what="the planner's answer")


def test_a_destructive_request_is_refused_before_any_model_is_asked(deployment, model):
    before = model.calls
    with deployment.client() as c:
        pid = c.post("/api/v1/pipelines", json={"description": "Delete all customers older than five years from "
                                                               "PostgreSQL"}).json()["pipeline_id"]
        state = settle(c, pid)
    assert state["status"] == "refused" and "delete" in state["working"]["reason"].lower()
    assert model.calls == before


def test_an_outage_is_retryable_and_retry_runs_the_same_request(deployment, model):
    model.default = server_error(503)
    with deployment.client() as c:
        pid = c.post("/api/v1/pipelines", json={"description": REQUEST}).json()["pipeline_id"]
        failed = settle(c, pid)
        assert failed["status"] == "draft_failed" and failed["working"]["reason"].startswith("retryable:")
        assert "/revise" in failed["working"]["reason"] and "503" in failed["working"]["reason"]
        plan = compile_request(REQUEST, default_connections={"postgres": "warehouse-pg", "clickhouse": "analytics-ch"})
        model.default = ok(plan)
        asked = model.calls
        assert c.post(f"/api/v1/pipelines/{pid}/revise", json={"instructions": "retry"}).status_code == 202
        state = wait_for(lambda: (s := c.get(f"/api/v1/pipelines/{pid}").json()).get("status") in
                         ("draft_ready", "draft_failed") and s.get("revision") == 2 and s, timeout=90,
                         what="the retried draft")
    assert state["status"] == "draft_ready", state
    retried = model.requests[asked].body["messages"][-1]["content"]
    assert retried.endswith(f"Request: {REQUEST}")  # "retry" is a command, not words of the request


def test_when_every_answer_is_rejected_the_question_names_the_fields(deployment, model):
    spec = {"source": {"kind": "postgres", "table": "shop.orders"},
            "target": {"kind": "clickhouse", "table": "analytics.orders_totals"},
            "aggregate": {"period": "day", "time_column": "created_at", "measures": [{"fn": "sum", "alias": "t"}]}}
    model.default = ok({"outcome": "plan", "spec": spec})
    before = model.calls
    with deployment.client() as c:
        pid = c.post("/api/v1/pipelines", json={"description": "Sum orders per day from shop.orders into "
                                                               "analytics.orders_totals"}).json()["pipeline_id"]
        state = settle(c, pid)
    assert state["status"] == "needs_clarification"
    assert "spec.aggregate.measures[0]" in state["working"]["question"]
    assert state["working"]["missing"] == ["spec.aggregate.measures[0]"]
    assert model.calls - before == 3  # the answer and two repair rounds, each told the error's path
    assert "spec.aggregate.measures[0]: sum needs a column" in model.requests[-1].body["messages"][-1]["content"]
