"""The plan prompt: a bounded slice of the tenant's catalog (the tables the request is about, with real
columns and samples), the tenant's connection names, worked examples from the builtin, the contract."""
import json

from services.agents import prompts
from services.llm_router.contract import review_plan

DEFAULTS = {"postgres": "warehouse-pg", "clickhouse": "analytics-ch", "file": "shop-files", "kafka": "events"}


def big_catalog(tables: int = 200, columns: int = 60) -> dict:
    noise = [{"name": f"erp.table_{i:03d}", "columns": [
        {"name": f"col_{j}", "type": "text", "samples": [f"value-{j}-{k}" * 3 for k in range(5)]}
        for j in range(columns)]} for i in range(tables)]
    shop = [{"name": "shop.orders", "columns": [
                {"name": "order_id", "type": "integer", "samples": ["1", "2", "3"]},
                {"name": "amount", "type": "numeric(12,2)", "samples": ["10.50", "99.00"]},
                {"name": "status", "type": "text", "samples": ["paid", "refunded"]}]},
            {"name": "shop.order_lines", "columns": [
                {"name": "line_id", "type": "integer", "samples": ["7"]},
                {"name": "order_id", "type": "integer", "samples": ["1"]},
                {"name": "quantity", "type": "integer", "samples": ["2"]}]}]
    return {"connections": [
        {"name": "warehouse-pg", "kind": "postgres", "default": True, "tables": noise[:100] + shop + noise[100:]},
        {"name": "analytics-ch", "kind": "clickhouse", "default": True, "tables": []},
        {"name": "events", "kind": "kafka", "default": True, "tables": []}]}


def test_the_data_slice_is_bounded_and_details_the_table_the_request_names():
    text = "Load paid orders from shop.orders into ClickHouse analytics.paid"
    data = prompts.data_section(text, big_catalog())
    assert len(data) <= prompts.MAX_DATA_CHARS
    assert "- connection warehouse-pg (postgres, default)" in data and "- connection events (kafka, default)" in data
    assert "table shop.orders: order_id integer e.g. 1, 2, 3; amount numeric(12,2) e.g. 10.50, 99.00" in data
    assert "status text e.g. paid, refunded" in data
    assert "col_59" not in data  # an unrelated table is at most listed by name


def test_a_table_the_request_only_describes_is_found_by_its_words():
    data = prompts.data_section("copy the order lines with their quantity to ClickHouse", big_catalog())
    assert "table shop.order_lines: line_id integer" in data


def test_without_a_catalog_the_tenants_connection_names_are_listed():
    data = prompts.data_section("anything", None, DEFAULTS)
    assert sorted(data.splitlines()) == ["- connection analytics-ch (clickhouse, default)",
                                         "- connection events (kafka, default)",
                                         "- connection shop-files (file, default)",
                                         "- connection warehouse-pg (postgres, default)"]


def test_examples_are_picked_by_similarity():
    assert prompts.pick_examples("Keep analytics.x in sync with shop.y, upserting on id", 1)[0].startswith("Sync")
    assert prompts.pick_examples("Stream the Kafka topic a.b into ClickHouse", 1)[0].startswith("Stream")


def test_every_worked_example_is_the_builtins_valid_plan_without_defaults():
    for request in prompts.EXAMPLE_REQUESTS:
        answer = prompts.worked_example(request, DEFAULTS)
        assert answer is not None, f"the builtin no longer plans the example {request!r}"
        assert review_plan(answer, {"default_connections": DEFAULTS}).ok, request
        assert ": null" not in json.dumps(answer["spec"]) and "spec_version" not in answer["spec"]
        assert answer["spec"]["source"]["connection"] in DEFAULTS.values()


def test_plan_messages_carry_contract_examples_data_and_request():
    text = "Load orders from shop.orders into ClickHouse analytics.orders every day at 2 AM"
    examples = prompts.plan_examples(text, DEFAULTS)
    messages = prompts.plan_messages(text, catalog=big_catalog(), default_connections=DEFAULTS, examples=examples)
    roles = [m["role"] for m in messages]
    assert roles == ["system"] + ["user", "assistant"] * len(examples) + ["user"] and len(examples) == 1
    system = messages[0]["content"]
    assert "Never write null" in system and "source: {" in system and len(system) < 8000
    assert json.loads(messages[2]["content"])["outcome"] == "plan"
    last = messages[-1]["content"]
    assert last.endswith(f"Request: {text}") and "table shop.orders: order_id integer" in last
    assert sum(len(m["content"]) for m in messages) < 16000  # fits llama.cpp's 8k context with room to answer
