"""The public acceptance cases, drafted through the running system offline (builtin provider):
HTTP -> Kafka -> agents -> router -> aggregate -> read model. Expected values are computed here from the
demo data, never typed in."""
import csv
import json
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml

from services.demo.load import ensure_demo_data

pytestmark = pytest.mark.integration
CASES = {c["id"].split("-")[0]: c for c in
         yaml.safe_load((Path(__file__).parents[1] / "fixtures" / "public_cases.yaml").read_text())["cases"]}
TERMINAL = {"draft_ready", "draft_failed", "needs_clarification", "refused"}


@pytest.fixture(scope="module")
def shop(stack_settings):
    return ensure_demo_data(stack_settings)


@pytest.fixture(scope="module")
def tenant_connections(system, shop):
    s = system.settings
    conns = [
        {"name": "warehouse-pg", "kind": "postgres", "params": {"host": s.postgres_host, "port": s.postgres_port,
         "database": s.postgres_db, "user": s.postgres_user}, "secrets": {"password": s.postgres_password}},
        {"name": "analytics-ch", "kind": "clickhouse", "params": {"host": s.clickhouse_host,
         "port": s.clickhouse_port, "user": s.clickhouse_user}, "secrets": {"password": s.clickhouse_password}},
        {"name": "shop-files", "kind": "file", "params": {"folder": str(shop)}, "secrets": {}},
        {"name": "events", "kind": "kafka", "params": {"bootstrap": s.kafka_bootstrap}, "secrets": {}},
    ]
    with system.client() as c:
        for conn in conns:
            resp = c.post("/api/v1/connections", json=conn)
            assert resp.status_code in (201, 409), resp.text
    return {c["kind"]: c["name"] for c in conns}


def draft(system, text, timeout=60):
    with system.client() as c:
        pid = c.post("/api/v1/pipelines", json={"description": text}).json()["pipeline_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = c.get(f"/api/v1/pipelines/{pid}")
            if r.status_code == 200 and r.json()["status"] in TERMINAL:
                state = r.json()
                state["events"] = [e["type"] for e in c.get(f"/api/v1/pipelines/{pid}/events").json()["events"]]
                return state
            time.sleep(0.2)
    raise AssertionError(f"no terminal state for {text!r} within {timeout}s: {r.json() if r.status_code == 200 else r}")


def ready(state):
    assert state["status"] == "draft_ready", json.dumps(state, indent=1)[:3000]
    assert "DraftCompleted" in state["events"]
    version = state["versions"][-1]
    assert version["passed_qa"] and version["quality_score"] > 0
    return version["artifacts"], json.loads(version["artifacts"]["spec_json"])


def source_rows(dsn, sql):
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        cur.execute(sql)
        return cur.fetchall()


def orders_csv(shop):
    with open(shop / "orders.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_p01_copy_daily(system, tenant_connections, shop):
    artifacts, spec = ready(draft(system, CASES["P01"]["request"]))
    assert spec["schedule"]["cron"] == "0 2 * * *" and spec["trigger"]["kind"] == "cron"
    assert spec["target"]["load_mode"] == "append"
    rows = source_rows(system.settings.postgres_dsn, artifacts["extract_sql"])
    assert len(rows) == len(orders_csv(shop))
    assert "order_id" in artifacts["target_ddl"] and "Decimal(12, 2)" in artifacts["target_ddl"].replace(",2", ", 2")


def test_p02_filter_aggregate_matches_the_source_aggregate(system, tenant_connections, shop):
    artifacts, spec = ready(draft(system, CASES["P02"]["request"]))
    expected = defaultdict(Decimal)
    for o in orders_csv(shop):
        if o["status"] == "paid" and Decimal(o["amount"]) > 0:
            expected[o["created_at"][:10]] += Decimal(o["amount"])
    got = {str(day): Decimal(total) for day, total in source_rows(system.settings.postgres_dsn,
                                                                   artifacts["extract_sql"])}
    assert got == dict(expected)


def test_p03_clean_csv_transform_on_the_file(system, tenant_connections, shop):
    artifacts, spec = ready(draft(system, CASES["P03"]["request"]))
    assert spec["source"]["kind"] == "file" and spec["target"]["table"] == "public.customers"
    con = duckdb.connect()
    con.execute(f"CREATE VIEW batch AS SELECT * FROM read_csv_auto('{shop / 'customers.csv'}', all_varchar=true)")
    out = con.execute(artifacts["transform_sql"]).fetchall()
    cols = [d[0] for d in con.description]
    rows = [dict(zip(cols, r)) for r in out]
    with open(shop / "customers.csv", newline="") as f:
        distinct = {r["email"].lower() for r in csv.DictReader(f)}
    assert len(rows) == len(distinct)
    assert all(r["email"] == r["email"].lower() for r in rows)
    assert all(r["city"] for r in rows) and any(r["city"] == "Unknown" for r in rows)


def test_p04_incremental_reads_by_cursor(system, tenant_connections):
    artifacts, spec = ready(draft(system, CASES["P04"]["request"]))
    assert spec["schedule"]["cron"] == "*/15 * * * *"
    assert spec["incremental"]["cursor_column"] == "updated_at"
    assert "updated_at >" in artifacts["extract_sql"] and artifacts["extract_sql_initial"]


def test_p05_stream_with_masking(system, tenant_connections):
    artifacts, spec = ready(draft(system, CASES["P05"]["request"]))
    assert spec["streaming"] == {"enabled": True, "max_batch_rows": 1000, "max_batch_seconds": 10.0}
    assert spec["trigger"]["kind"] == "kafka" and spec["pii"][0]["action"] == "mask"


def test_p06_russian(system, tenant_connections, shop):
    artifacts, spec = ready(draft(system, CASES["P06"]["request"]))
    assert spec["schedule"]["cron"] == "0 2 * * *"
    assert spec["target"]["table"] == "analytics.orders_ru"
    assert len(source_rows(system.settings.postgres_dsn, artifacts["extract_sql"])) == len(orders_csv(shop))


def test_p07_jsonl(system, tenant_connections):
    artifacts, spec = ready(draft(system, CASES["P07"]["request"]))
    assert spec["source"]["format"] == "jsonl" and spec["target"]["table"] == "analytics.products"


def test_p08_export_parquet_monthly_revenue_per_country(system, tenant_connections, shop):
    artifacts, spec = ready(draft(system, CASES["P08"]["request"]))
    assert spec["target"]["kind"] == "file" and spec["target"]["format"] == "parquet"
    expected = defaultdict(Decimal)
    for o in orders_csv(shop):
        if o["status"] == "paid":
            expected[(o["created_at"][:7], o["country"])] += Decimal(o["amount"])
    got = {}
    for row in source_rows(system.settings.postgres_dsn, artifacts["extract_sql"]):
        month, country, total = row[0], row[1], row[2]
        got[(str(month)[:7], country)] = Decimal(total)
    assert got == dict(expected)


def test_p09_ambiguous_asks_a_question(system):
    state = draft(system, CASES["P09"]["request"])
    assert state["status"] == "needs_clarification" and "ClarificationRequested" in state["events"]
    assert state["working"]["question"].endswith("?") or "?" in state["working"]["question"]
    assert not state["versions"]


def test_p10_destructive_is_refused(system):
    state = draft(system, CASES["P10"]["request"])
    assert state["status"] == "refused" and "RequestRefused" in state["events"]
    assert state["working"]["reason"] and "SqlProposed" not in state["events"]


def test_p11_webhook(system, tenant_connections):
    artifacts, spec = ready(draft(system, CASES["P11"]["request"]))
    assert spec["trigger"]["kind"] == "webhook" and spec["source"]["path_param"] == "file"


def test_p12_merge_on_key(system, tenant_connections):
    artifacts, spec = ready(draft(system, CASES["P12"]["request"]))
    assert spec["target"]["load_mode"] == "merge" and spec["target"]["keys"] == ["order_id"]
    assert "ReplacingMergeTree" in artifacts["target_ddl"]
