"""Verification that cannot be fooled, through a running deployment (issue 8): the holes seen, each replayed.

The plan is proposed by the test (the planner is not running), so these tests check verification alone,
whatever understanding makes of a sentence. SQL and reflections come from a local server speaking OpenAI's
real protocol, scripted with the answers a small model gave (a paid API cannot run here); the builtin
provider is the fallback. The watchdog runs with a short stage timeout."""
import json
import time
import uuid

import pytest

from services.agents.common import ESCALATE_TO_COMPILED
from services.core.avro import build_codec
from services.core.kafka import producer
from services.core.messages import Message, new_envelope
from services.runtime import WORKERS
from services.spec_compiler import generate_sql
from tests.harness import new_deployment, wait_for
from tests.support.fake_llm import FakeLlmServer, ok

pytestmark = pytest.mark.integration
STAGE_TIMEOUT_S = 20.0
TERMINAL = {"draft_ready", "draft_failed"}
PG = {"kind": "postgres", "connection": "warehouse-pg", "table": "shop.orders"}


@pytest.fixture(scope="module")
def shop(stack_settings):
    from services.demo.load import ensure_demo_data

    return ensure_demo_data(stack_settings)


@pytest.fixture(scope="module")
def model():
    with FakeLlmServer(api_key="sk-test") as server:
        yield server


@pytest.fixture(scope="module")
def verify(stack_settings, shop, model):
    from services.cli import demo_connections

    providers = [{"name": "small-model", "kind": "openai", "model": "qwen-test", "base_url": model.openai_base_url,
                  "api_key": "sk-test", "strengths": ["sql", "reflect"]}, {"name": "builtin", "kind": "builtin"}]
    dep = new_deployment(stack_settings, "verify", [w for w in WORKERS if w != "planner"])
    dep.settings = dep.settings.model_copy(update={"llm_providers_json": json.dumps(providers),
                                                   "agent_stage_timeout_s": STAGE_TIMEOUT_S,
                                                   "agent_watchdog_s": 1.0})
    dep.start()
    try:
        with dep.client() as c:
            for conn in demo_connections(dep.settings, shop):
                assert c.post("/api/v1/connections", json=conn).status_code == 201
        yield dep
    finally:
        dep.remove()


def create(dep, description="verification test") -> str:
    with dep.client() as c:
        pid = c.post("/api/v1/pipelines", json={"description": description}).json()["pipeline_id"]
        wait_for(lambda: c.get(f"/api/v1/pipelines/{pid}").status_code == 200, what="the projection")
    return pid


def propose_plan(dep, pid, spec_json: str) -> None:
    """What the planner would send: RecordPlan for revision 1."""
    name = "aietl.pipelines.v1.RecordPlan"
    env = new_envelope(name, tenant_id=dep.settings.tenant_id, pipeline_id=pid, actor="agent:planner")
    payload = {"revision": 1, "spec_json": spec_json, "understood": ["(proposed by the test)"], "confidence": 1.0,
               "recalled_ids": [], "llm": None}
    p = producer(dep.settings)
    p.produce(dep.topic("pipelines.commands.v1"), key=pid.encode(),
              value=build_codec().encode(name, Message(name, env, payload).to_record()),
              headers=[("type", name.encode()), ("message_id", env["message_id"].encode())])
    assert p.flush(10) == 0


def finished(dep, pid, timeout=90) -> tuple[dict, list[dict]]:
    with dep.client() as c:
        state = wait_for(lambda: (s := c.get(f"/api/v1/pipelines/{pid}").json()).get("status") in TERMINAL and s,
                         timeout=timeout, what="the end of drafting")
        time.sleep(0.5)  # a proposal after the end would show up as an event here
        return state, c.get(f"/api/v1/pipelines/{pid}/events").json()["events"]


def of(events, kind):
    return [e["payload"] for e in events if e["type"] == kind]


def source_columns(dep):
    from services.connectors.introspect import table_schema
    from services.connectors.registry import Connection

    s = dep.settings
    conn = Connection(s.tenant_id, "warehouse-pg", "postgres", {"host": s.postgres_host, "port": s.postgres_port,
                      "database": s.postgres_db, "user": s.postgres_user}, {"password": s.postgres_password})
    return [(c.name, c.type) for c in table_schema(conn, "shop.orders")]


def test_wrong_dialect_ddl_mergetree_for_a_merge_and_a_repeating_model_end_in_the_compiled_sql(verify, model):
    table = f"analytics.qa_merge_{uuid.uuid4().hex[:6]}"
    spec = {"source": PG, "target": {"kind": "clickhouse", "connection": "analytics-ch", "table": table,
                                     "load_mode": "merge", "keys": ["order_id"]}}
    compiled = generate_sql(spec, source_columns(verify))
    assert "ReplacingMergeTree" in compiled["target_ddl"] and "Nullable(DateTime)" in compiled["target_ddl"]
    # What the model answered: PostgreSQL types in ClickHouse DDL, a plain MergeTree for a merge load,
    # capitalised dialect names; and after the repair instructions, byte for byte the same again.
    wrong = dict(compiled, dialects={"extract": "PostgreSQL", "target": "ClickHouse"},
                 target_ddl=compiled["target_ddl"].replace("ReplacingMergeTree", "MergeTree")
                 .replace("Nullable(DateTime)", "TIMESTAMP WITHOUT TIME ZONE"))
    calls = model.calls
    model.script(ok(wrong), ok({"instructions": ["use ReplacingMergeTree ORDER BY (order_id)"]}), ok(wrong))
    pid = create(verify)
    propose_plan(verify, pid, json.dumps(spec))
    state, events = finished(verify, pid)

    first = of(events, "QaFailed")[0]["findings"]
    assert any("needs ENGINE = ReplacingMergeTree" in f for f in first), first
    assert any("'TIMESTAMP WITHOUT TIME ZONE' is not a ClickHouse type" in f for f in first), first
    sql = of(events, "SqlProposed")
    assert [(s["source_dialect"], s["target_dialect"]) for s in sql] == [("postgres", "clickhouse")] * 3
    assert sql[0]["target_ddl"] == sql[1]["target_ddl"] == wrong["target_ddl"]  # the repair did not converge
    reflections = of(events, "ReflectionIssued")
    assert [r["round"] for r in reflections] == [1, 2] and reflections[1]["instructions"][0] == ESCALATE_TO_COMPILED
    assert sql[2]["target_ddl"] == compiled["target_ddl"] and sql[2]["llm"] is None  # compiled, no model
    assert state["status"] == "draft_ready" and state["versions"][-1]["passed_qa"]
    assert model.calls - calls == 3 and model.pending == 0


def test_an_aggregate_over_a_missing_column_and_a_draft_without_sql_fail_and_stop(verify, model):
    spec = {"source": PG, "target": {"kind": "clickhouse", "connection": "analytics-ch",
                                     "table": f"analytics.qa_avg_{uuid.uuid4().hex[:6]}"},
            "aggregate": {"period": "month", "time_column": "event_time",
                          "measures": [{"fn": "avg", "column": "amount", "alias": "avg_amount"}]}}
    empty = {"extract_sql": None, "transform_sql": None, "target_ddl": None, "dialects": {}}
    model.script(ok(empty), ok({"instructions": ["write the SQL"]}), ok(empty))
    pid = create(verify)
    propose_plan(verify, pid, json.dumps(spec))
    state, events = finished(verify, pid)

    assert state["status"] == "draft_failed" and state["versions"][-1]["passed_qa"] is False
    failed = of(events, "QaFailed")
    assert any("has no extract SQL" in f for f in failed[0]["findings"]), failed[0]
    assert any("'event_time'" in f and "not among the source columns" in f for f in failed[0]["findings"])
    # Round 1 reproduced round 0, and the spec compiles to no SQL either: no further round can help.
    assert len(failed) == 2 and [r["round"] for r in of(events, "ReflectionIssued")] == [1]
    assert of(events, "DraftCompleted")[0]["passed_qa"] is False
    with verify.client() as c:
        assert c.post(f"/api/v1/pipelines/{pid}/deploy", json={}).status_code == 409


def test_an_agent_that_hits_an_error_fails_the_draft_with_the_reason(verify):
    pid = create(verify)
    propose_plan(verify, pid, "{not json")  # the SQL expert cannot read this spec
    state, events = finished(verify, pid, timeout=STAGE_TIMEOUT_S - 5)  # before any timeout could fire
    [failure] = of(events, "DraftingFailed")
    assert failure["stage"] == "planned" and failure["reason"].startswith("sql-expert failed on PlanProposed")
    assert "JSONDecodeError" in failure["reason"] and state["working"]["reason"] == failure["reason"]


def test_a_stage_nobody_answers_times_out_and_the_pipeline_can_be_revised(verify):
    pid = create(verify)  # no planner runs in this deployment
    state, events = finished(verify, pid, timeout=STAGE_TIMEOUT_S + 60)
    [failure] = of(events, "DraftingFailed")
    assert failure["stage"] == "requested"
    assert f"no answer from the planner within {STAGE_TIMEOUT_S:g} s" in failure["reason"]
    with verify.client() as c:
        assert c.post(f"/api/v1/pipelines/{pid}/revise", json={"instructions": "again"}).status_code == 202
