"""PipelineSpec: validation rules, JSON Schema export and the Mermaid artifact."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from services.domain.spec import PipelineSpec, render_mermaid, spec_json_schema

PG_ORDERS = {"kind": "postgres", "connection": "shop_pg", "table": "shop.orders"}
CH_ORDERS = {"kind": "clickhouse", "connection": "analytics_ch", "table": "analytics.orders"}


def make(**overrides) -> PipelineSpec:
    data = {"source": PG_ORDERS, "target": CH_ORDERS, **overrides}
    return PipelineSpec.model_validate(data)


def test_minimal_spec_has_defaults():
    spec = make()
    assert spec.spec_version == "1"
    assert spec.target.load_mode == "append"
    assert spec.trigger.kind == "manual"
    assert spec.streaming.enabled is False
    assert spec.schedule is None


def test_round_trip_through_json():
    spec = make(schedule={"cron": "0 2 * * *"}, trigger={"kind": "cron"})
    again = PipelineSpec.model_validate_json(spec.model_dump_json())
    assert again == spec


def test_json_schema_export():
    schema = spec_json_schema()
    assert schema == PipelineSpec.model_json_schema()
    assert {"source", "target", "transform", "schedule", "trigger", "streaming", "quality_checks", "pii",
            "steps", "incremental"} <= set(schema["properties"])
    json.dumps(schema)  # serialisable as is


@pytest.mark.parametrize("cron", ["0 2 * * *", "*/15 * * * *", "0 6 * * 1", "30 7 * * 1-5"])
def test_valid_cron(cron):
    assert make(schedule={"cron": cron}, trigger={"kind": "cron"}).schedule.cron == cron


@pytest.mark.parametrize("cron", ["0 25 * * *", "every day", "* * *", "61 * * * *"])
def test_invalid_cron(cron):
    with pytest.raises(ValidationError, match="cron"):
        make(schedule={"cron": cron}, trigger={"kind": "cron"})


def test_unknown_timezone():
    with pytest.raises(ValidationError, match="timezone"):
        make(schedule={"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, trigger={"kind": "cron"})


def test_cron_trigger_needs_schedule_and_schedule_needs_cron_trigger():
    with pytest.raises(ValidationError, match="cron trigger needs"):
        make(trigger={"kind": "cron"})
    with pytest.raises(ValidationError, match="schedule.cron is set"):
        make(schedule={"cron": "0 2 * * *"})


def test_merge_requires_keys():
    with pytest.raises(ValidationError, match="merge requires keys"):
        make(target={**CH_ORDERS, "load_mode": "merge"})
    assert make(target={**CH_ORDERS, "load_mode": "merge", "keys": ["order_id"]}).target.keys == ["order_id"]


def test_merge_needs_database_target():
    with pytest.raises(ValidationError, match="database target"):
        make(target={"kind": "file", "path": "out.parquet", "load_mode": "merge", "keys": ["id"]})


def test_streaming_requires_kafka_source():
    with pytest.raises(ValidationError, match="streaming requires a kafka source"):
        make(streaming={"enabled": True})
    spec = make(source={"kind": "kafka", "topic": "shop.clicks"}, streaming={"enabled": True,
                "max_batch_rows": 1000, "max_batch_seconds": 10}, trigger={"kind": "kafka", "topic": "shop.clicks"})
    assert spec.streaming.max_batch_seconds == 10


@pytest.mark.parametrize("conn", ["postgresql://u:secret@host/db", "user:pass", "a b", "x" * 65])
def test_connection_is_a_name_not_a_secret(conn):
    with pytest.raises(ValidationError, match="connection"):
        make(source={**PG_ORDERS, "connection": conn})


def test_url_without_credentials():
    with pytest.raises(ValidationError, match="credentials"):
        make(source={"kind": "http", "url": "https://user:pw@api.example.com/orders"})
    assert make(source={"kind": "http", "url": "https://api.example.com/orders"}).source.url


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../b.csv"])
def test_file_path_stays_under_the_connection_root(path):
    with pytest.raises(ValidationError, match="path"):
        make(source={"kind": "file", "path": path, "format": "csv"})


def test_file_format_is_inferred_from_the_extension():
    assert make(source={"kind": "file", "path": "customers.csv"}).source.format == "csv"
    assert make(source={"kind": "file", "path": "products.jsonl"}).source.format == "jsonl"
    with pytest.raises(ValidationError, match="format"):
        make(source={"kind": "file", "path": "customers.dat"})


def test_webhook_file_source():
    spec = make(source={"kind": "file", "path_param": "file", "folder": "landing", "format": "csv"},
                trigger={"kind": "webhook"})
    assert spec.source.path_param == "file" and spec.source.folder == "landing"
    with pytest.raises(ValidationError, match="run parameter"):
        make(source={"kind": "file", "path_param": "file", "format": "csv"},
             schedule={"cron": "0 2 * * *"}, trigger={"kind": "cron"})


def test_locators_match_kinds():
    with pytest.raises(ValidationError, match="table or a query"):
        make(source={"kind": "postgres"})
    with pytest.raises(ValidationError, match="topic"):
        make(source={"kind": "kafka"})
    with pytest.raises(ValidationError, match="schema.table"):
        make(source={"kind": "postgres", "table": "shop.orders; drop"})
    with pytest.raises(ValidationError, match="read-only SELECT"):
        make(source={"kind": "postgres", "query": "DELETE FROM shop.orders"})
    assert make(source={"kind": "postgres", "query": "SELECT 1 AS x"}).source.query


def test_target_must_differ_from_source():
    with pytest.raises(ValidationError, match="differ"):
        make(target={**PG_ORDERS})


def test_incremental_needs_database_source_and_no_aggregate():
    with pytest.raises(ValidationError, match="incremental"):
        make(source={"kind": "file", "path": "a.csv"}, incremental={"cursor_column": "updated_at"})
    agg = {"period": "day", "time_column": "created_at", "measures": [{"fn": "sum", "column": "amount",
                                                                       "alias": "sum_amount"}]}
    with pytest.raises(ValidationError, match="incremental"):
        make(incremental={"cursor_column": "updated_at"}, aggregate=agg)
    assert make(incremental={"cursor_column": "updated_at"}).incremental.initial_value is None


def test_transform_python_must_define_transform():
    assert make(transform={"python": "def transform(batch):\n    return batch\n"}).transform.python
    with pytest.raises(ValidationError, match="transform"):
        make(transform={"python": "def other(batch):\n    return batch\n"})
    with pytest.raises(ValidationError, match="parse"):
        make(transform={"python": "def transform(batch) return"})


def test_checks_and_pii():
    spec = make(quality_checks=[{"kind": "not_null", "column": "order_id"}, {"kind": "no_email"},
                                {"kind": "row_count_min", "value": 1}],
                pii=[{"column": "*email*", "action": "mask"}])
    assert spec.pii[0].matches("user_email") and not spec.pii[0].matches("page")
    with pytest.raises(ValidationError, match="needs a column"):
        make(quality_checks=[{"kind": "unique"}])
    with pytest.raises(ValidationError, match="needs a value"):
        make(quality_checks=[{"kind": "row_count_min"}])
    with pytest.raises(ValidationError):
        make(pii=[{"column": "email", "action": "publish"}])


def test_filters_and_cleaning_validate():
    spec = make(filters=[{"column": "status", "op": "=", "value": "paid"}, {"column": "amount", "op": ">",
                                                                            "value": 0}],
                cleaning=[{"op": "fill_empty", "column": "city", "value": "Unknown"}, {"op": "dedupe", "column": "*"}])
    assert len(spec.filters) == 2 and spec.cleaning[1].column == "*"
    with pytest.raises(ValidationError):
        make(filters=[{"column": "status", "op": "=", "value": None}])
    with pytest.raises(ValidationError):
        make(cleaning=[{"op": "fill_empty", "column": "city"}])
    with pytest.raises(ValidationError):
        make(cleaning=[{"op": "lowercase", "column": "*"}])


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError):
        PipelineSpec.model_validate({"source": PG_ORDERS, "target": CH_ORDERS, "password": "x"})
    with pytest.raises(ValidationError):
        make(source={**PG_ORDERS, "dsn": "postgresql://x"})


def test_render_mermaid():
    spec = make(filters=[{"column": "status", "op": "=", "value": "paid"}],
                aggregate={"period": "day", "time_column": "created_at",
                           "measures": [{"fn": "sum", "column": "amount", "alias": "sum_amount"}]},
                target={**CH_ORDERS, "table": "analytics.daily_revenue", "load_mode": "replace"},
                schedule={"cron": "0 2 * * *"}, trigger={"kind": "cron"},
                quality_checks=[{"kind": "row_count_min", "value": 1}])
    text = render_mermaid(spec)
    assert text.startswith("flowchart LR\n")
    assert "shop.orders" in text and "analytics.daily_revenue" in text and "cron 0 2 * * *" in text
    assert "sum(amount)" in text and "-->" in text
    assert render_mermaid(spec.model_dump()) == text  # dicts are accepted too
