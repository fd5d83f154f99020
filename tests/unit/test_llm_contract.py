"""The plan/sql contract a model's answer must meet: the LLM-facing schema, the normaliser (harmless
deviations only) and the review that names every violation by its path."""
import json

from services.llm_router.contract import (
    ANSWER_REJECTED,
    normalise_plan,
    plan_schema,
    rejected_fields,
    rejection_text,
    review_plan,
    review_sql,
    schema_outline,
    spec_schema,
)

DEFAULTS = {"postgres": "warehouse-pg", "clickhouse": "analytics-ch", "file": "shop-files", "kafka": "events"}
CATALOG = {"connections": [
    {"name": "warehouse-pg", "kind": "postgres", "default": True, "tables": [
        {"name": "shop.orders", "columns": [{"name": n, "type": t, "samples": []} for n, t in (
            ("order_id", "integer"), ("status", "text"), ("amount", "numeric(12,2)"), ("created_at", "timestamp"))]}]},
    {"name": "analytics-ch", "kind": "clickhouse", "default": True, "tables": []}]}
CONTEXT = {"catalog": CATALOG, "default_connections": DEFAULTS}


def plan(**spec):
    base = {"source": {"kind": "postgres", "table": "shop.orders"},
            "target": {"kind": "clickhouse", "table": "analytics.orders"}}
    return {"outcome": "plan", "spec": {**base, **spec}}


def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_the_llm_facing_schema_has_no_null_noise_defaults_or_refs():
    schema = spec_schema()
    nodes = list(_walk(schema))
    assert not [n for n in nodes if "default" in n or "title" in n or "$ref" in n or "$defs" in n]
    assert not [n for n in nodes if {"type": "null"} in (n.get("anyOf") or [])]
    assert '"null"' not in json.dumps(schema)  # (the op names is_null/not_null stay)
    assert set(schema["required"]) == {"source", "target"}
    assert "spec_version" not in schema["properties"] and "steps" not in schema["properties"]
    # Every spec field a model may write is there (derived from PipelineSpec, so it follows the spec).
    assert {"filters", "aggregate", "schedule", "trigger", "incremental", "pii", "joins"} <= set(schema["properties"])


def test_the_plan_answer_schema_has_one_branch_per_outcome():
    branches = plan_schema()["anyOf"]
    assert [b["properties"]["outcome"]["const"] for b in branches] == ["plan", "clarify", "refuse"]
    assert branches[0]["required"] == ["outcome", "spec"]


def test_the_prompt_outline_is_compact_and_marks_optional_fields():
    outline = schema_outline(spec_schema())
    assert len(outline) < 0.6 * len(json.dumps(spec_schema()))
    assert "source: {" in outline and "schedule?: {" in outline and '"postgres"|"clickhouse"' in outline


def test_normaliser_undoes_harmless_deviations():
    out = normalise_plan({"outcome": "Plan", "spec": {
        "source": {"kind": "PostgreSQL", "table": "shop.orders", "query": None},
        "target": {"kind": "ClickHouse", "table": "analytics.orders", "keys": None, "load_mode": "Append"},
        "aggregate": None, "incremental": {}, "schedule": {"cron": "0 2 * * *", "timezone": None},
        "steps": ["read", "write"]}})
    assert out["outcome"] == "plan"
    assert out["spec"] == {"source": {"kind": "postgres", "table": "shop.orders"},
                           "target": {"kind": "clickhouse", "table": "analytics.orders", "load_mode": "append"},
                           "schedule": {"cron": "0 2 * * *"}, "trigger": {"kind": "cron"}}


def test_normaliser_drops_kafka_only_fields_from_other_triggers_and_fixes_sub_shapes():
    out = normalise_plan(plan(trigger={"kind": "webhook", "topic": "x", "filter": "y"}))
    assert out["spec"]["trigger"] == {"kind": "webhook"}
    out = normalise_plan(plan(schedule="*/15 * * * *", source={"kind": "csv", "path": "a.csv"}))
    assert out["spec"]["schedule"] == {"cron": "*/15 * * * *"} and out["spec"]["trigger"] == {"kind": "cron"}
    assert out["spec"]["source"] == {"kind": "file", "path": "a.csv", "format": "csv"}
    kafka = normalise_plan(plan(trigger={"kind": "kafka", "topic": "t"}))
    assert kafka["spec"]["trigger"] == {"kind": "kafka", "topic": "t"}


def test_normaliser_never_invents_what_was_not_written():
    out = normalise_plan({"outcome": "plan", "spec": {"target": {"kind": "clickhouse"}}})
    assert out["spec"] == {"target": {"kind": "clickhouse"}}  # no source, no table appear
    # A cron next to an explicit other trigger is a contradiction to report, not to settle.
    assert normalise_plan(plan(schedule={"cron": "0 2 * * *"}, trigger={"kind": "manual"}))["spec"]["trigger"] == {
        "kind": "manual"}


def test_review_lists_every_error_with_its_path():
    verdict = review_plan(plan(schedule={"cron": "0 2 * * *"}, trigger={"kind": "manual"},
                               aggregate={"period": "day", "time_column": "created_at",
                                          "measures": [{"fn": "sum", "alias": "total"}]}), CONTEXT)
    assert "spec.aggregate.measures[0]: sum needs a column" in verdict.errors
    assert not verdict.ok and "spec.aggregate.measures[0]" in verdict.fields()
    missing = review_plan({"outcome": "plan", "spec": {"target": {"kind": "clickhouse", "table": "a.b"}}}, CONTEXT)
    assert "spec.source: Field required" in missing.errors
    cron = review_plan(plan(schedule={"cron": "0 2 * * *"}, trigger={"kind": "manual"}), CONTEXT)
    assert cron.errors == ["spec: schedule.cron is set but the trigger is manual"]


def test_review_grounds_names_in_the_tenants_data():
    invented = review_plan(plan(source={"kind": "postgres", "connection": "pg_main", "table": "shop.orders"}), CONTEXT)
    assert invented.errors[0].startswith("spec.source.connection: 'pg_main' is not a connection of this tenant")
    wrong_kind = review_plan(plan(source={"kind": "postgres", "connection": "analytics-ch", "table": "shop.orders"}),
                             CONTEXT)
    assert wrong_kind.errors == ["spec.source.connection: 'analytics-ch' is a clickhouse connection but the source "
                                 "is postgres; use warehouse-pg"]
    table = review_plan(plan(source={"kind": "postgres", "table": "shop.order"}), CONTEXT)
    assert table.errors[0].startswith("spec.source.table: 'shop.order' is not a table of warehouse-pg")
    column = review_plan(plan(filters=[{"column": "paid", "op": "=", "value": True}],
                              aggregate={"period": "day", "time_column": "order_date",
                                         "measures": [{"fn": "sum", "column": "amount", "alias": "total"}]}), CONTEXT)
    assert [e.split(":")[0] for e in column.errors] == ["spec.filters[0].column", "spec.aggregate.time_column"]
    assert "its columns: amount, created_at, order_id, status" in column.errors[0]


def test_review_fills_the_tenants_default_connection_like_the_builtin():
    verdict = review_plan(plan(), CONTEXT)
    assert verdict.ok
    assert verdict.output["spec"]["source"]["connection"] == "warehouse-pg"
    assert verdict.output["spec"]["target"]["connection"] == "analytics-ch"


def test_questions_and_refusals_need_their_text():
    assert review_plan({"outcome": "clarify", "question": "Which table?", "missing": ["source.table"]}, {}).ok
    assert review_plan({"outcome": "clarify", "question": " "}, {}).errors == [
        "question: a clarification needs the question to ask"]
    assert review_plan({"outcome": "delete"}, {}).errors[0].startswith("outcome: must be one of")


def test_sql_review_rejects_writes_and_takes_dialects_from_the_spec():
    spec = {"source": {"kind": "postgres"}, "target": {"kind": "clickhouse"}}
    verdict = review_sql({"extract_sql": "DELETE FROM shop.orders", "target_ddl": "CREATE TABLE t (a Int32)",
                          "dialects": {"extract": "PostgreSQL", "target": "ClickHouse"}}, {"spec": spec})
    assert verdict.errors == ["extract_sql: must be one read-only SELECT statement"]
    assert verdict.output["dialects"] == {"extract": "postgres", "transform": None, "target": "clickhouse"}
    ok = review_sql({"extract_sql": "SELECT * FROM shop.orders", "transform_sql": "SELECT * FROM batch"},
                    {"spec": {**spec, "target": {"kind": "file"}}})
    assert ok.ok and ok.output["dialects"] == {"extract": "postgres", "transform": "duckdb", "target": None}


def test_a_rejection_message_carries_the_field_paths_for_the_question():
    errors = ["spec.trigger.kind: bad", "spec.source.table: 'x' is not a table of pg"]
    text = rejection_text(errors)
    assert rejected_fields(text) == ["spec.source.table", "spec.trigger.kind"]
    assert rejected_fields("something else") == [] and ANSWER_REJECTED == "answer_rejected"
