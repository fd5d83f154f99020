"""The agent chain with an HTTP LLM provider configured: the OpenAI wire protocol through Kafka, a 429
with Retry-After on the way, and the usage of each call visible on the proposals.

The provider is a local server speaking OpenAI's real HTTP protocol (a paid API cannot run here); its
answers are scripted with what a model would answer for this request."""
import json

import pytest

from services.spec_compiler import generate_sql
from services.understanding import compile_request
from tests.support.fake_llm import FakeLlmServer, ok, rate_limited
from services.agents.sources import SourceAccess
from services.connectors.registry import build_registry
from services.runtime import WORKERS
from tests.harness import new_deployment, wait_for

pytestmark = pytest.mark.integration
REQUEST = "Load orders from the PostgreSQL table shop.orders into the ClickHouse table analytics.orders_llm every day at 2 AM"
REQUEST_2 = REQUEST.replace("orders_llm", "orders_llm2")
DEFAULT_CONNECTIONS = {"postgres": "warehouse-pg", "clickhouse": "analytics-ch", "file": "shop-files", "kafka": "events"}


def _recalled_after(c, text: str, first_pid: str):
    """The PlanProposed of a new draft of ``text`` once it recalls ``first_pid``'s draft, else None. The
    planner remembers a draft as it sees DraftCompleted, so the first tries may come too early."""
    pid = c.post("/api/v1/pipelines", json={"description": text}).json()["pipeline_id"]
    plan = wait_for(lambda: next((e for e in c.get(f"/api/v1/pipelines/{pid}/events").json().get("events", [])
                                  if e["type"] == "PlanProposed"), None), timeout=60, what="the second plan")
    return plan if f"{first_pid}/v1" in plan["payload"]["recalled_ids"] else None


def test_a_draft_made_by_an_openai_compatible_provider(stack_settings, shop):
    from services.cli import demo_connections

    plan = compile_request(REQUEST, default_connections=DEFAULT_CONNECTIONS)
    with FakeLlmServer(api_key="sk-test") as server:
        server.script(rate_limited("1"), ok(plan))
        providers = [{"name": "fake-openai", "kind": "openai", "model": "gpt-test", "base_url": server.openai_base_url,
                      "api_key": "sk-test", "strengths": ["plan", "sql", "reflect"]},
                     {"name": "builtin", "kind": "builtin"}]
        dep = new_deployment(stack_settings, "llmhttp", list(WORKERS))
        dep.settings = dep.settings.model_copy(update={"llm_providers_json": json.dumps(providers)})
        dep.start()
        try:
            with dep.client() as c:
                for conn in demo_connections(dep.settings, shop):
                    assert c.post("/api/v1/connections", json=conn).status_code == 201
                # The SQL a model would write for this plan: complete (with the target DDL), so QA passes it.
                columns = SourceAccess(build_registry(dep.settings)).columns_or_none(dep.settings.tenant_id,
                                                                                      plan["spec"])
                server.script(ok(generate_sql(plan["spec"], [tuple(c) for c in columns])))
                pid = c.post("/api/v1/pipelines", json={"description": REQUEST}).json()["pipeline_id"]
                state = wait_for(lambda: (s := c.get(f"/api/v1/pipelines/{pid}").json()).get("status") in
                                 ("draft_ready", "draft_failed", "needs_clarification") and s, timeout=60,
                                 what="the draft")
                events = c.get(f"/api/v1/pipelines/{pid}/events").json()["events"]
                stats = c.get("/api/v1/llm/stats").json()
                chat = [r for r in server.requests if r.path.endswith("/chat/completions")]
                # A similar request later: the planner recalls the finished draft and the model's prompt has it.
                # (With the builtin alone nothing reads a prompt, so the planner skips recall there.)
                again = compile_request(REQUEST_2, default_connections=DEFAULT_CONNECTIONS)
                server.script(ok(again), ok(generate_sql(again["spec"], [tuple(c) for c in columns])))
                second = wait_for(lambda: _recalled_after(c, REQUEST_2, pid), timeout=60, what="a recalled draft")
        finally:
            dep.remove()
        assert state["status"] == "draft_ready", state
        by_type = {e["type"]: e for e in events}
        for kind in ("PlanProposed", "SqlProposed"):
            usage = by_type[kind]["payload"]["llm"]
            assert usage["provider"] == "fake-openai" and usage["model"] == "gpt-test" and usage["cache"] == "miss"
            assert usage["tokens_in"] > 0 and usage["tokens_out"] > 0
        # The wire: bearer auth, JSON mode, the versioned prompt with the request in it; 429 retried once.
        assert len(chat) == 3
        assert chat[0].headers["authorization"] == "Bearer sk-test"
        assert chat[1].body["response_format"]["type"] == "json_schema"  # structured output, OpenAI's way
        assert REQUEST in json.dumps(chat[1].body["messages"])
        assert stats["providers"]["fake-openai"]["errors"] == 1 and stats["providers"]["fake-openai"]["successes"] == 2
        assert second["payload"]["recalled_ids"]
        recalled_prompt = [r for r in server.requests if r.path.endswith("/chat/completions")
                           and REQUEST_2 in json.dumps(r.body["messages"])][-1]
        assert "Similar past pipelines" in json.dumps(recalled_prompt.body["messages"])


@pytest.fixture(scope="module")
def shop(stack_settings):
    from services.demo.load import ensure_demo_data

    return ensure_demo_data(stack_settings)
