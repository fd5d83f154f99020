"""The builtin (offline) provider: public cases, grammar rules, SQL generation and determinism."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import sqlglot
import yaml

from services.domain.spec import PipelineSpec
from services.spec_compiler import generate_sql
from services.understanding import compile_request

CASES = {c["id"][:3]: c for c in yaml.safe_load(
    (Path(__file__).parents[1] / "fixtures" / "public_cases.yaml").read_text())["cases"]}

ORDERS_PG = [("order_id", "bigint"), ("customer_id", "integer"), ("status", "text"),
             ("amount", "numeric(12,2)"), ("country", "text"), ("created_at", "timestamp without time zone"),
             ("updated_at", "timestamp without time zone")]
COLUMNS = {
    "P01": ORDERS_PG, "P02": ORDERS_PG, "P04": ORDERS_PG, "P06": ORDERS_PG, "P08": ORDERS_PG, "P12": ORDERS_PG,
    "P03": [("customer_id", "int64"), ("name", "string"), ("email", "string"), ("phone", "string"),
            ("city", "string"), ("country", "string")],
    "P05": [("event_id", "int64"), ("ts", "string"), ("page", "string"), ("user_email", "string")],
    "P07": [("sku", "string"), ("title", "string"), ("price", "double"), ("tags", "list<item: string>")],
    "P11": [("sensor", "string"), ("ts", "timestamp[s]"), ("value", "double")],
}

# What each public case must compile to (None: not checked for that case).
EXPECTED = {
    "P01": dict(cron="0 2 * * *", trigger="cron", mode="append", source=("postgres", "shop.orders"),
                target=("clickhouse", "analytics.orders")),
    "P02": dict(cron=None, trigger="manual", mode="replace", source=("postgres", "shop.orders"),
                target=("clickhouse", "analytics.daily_revenue")),
    "P03": dict(cron=None, trigger="manual", mode="merge", source=("file", "customers.csv"),
                target=("postgres", "public.customers")),
    "P04": dict(cron="*/15 * * * *", trigger="cron", mode="append", source=("postgres", "shop.orders"),
                target=("clickhouse", "analytics.orders_raw")),
    "P05": dict(cron=None, trigger="kafka", mode="append", source=("kafka", "shop.clicks"),
                target=("clickhouse", "analytics.clicks")),
    "P06": dict(cron="0 2 * * *", trigger="cron", mode="append", source=("postgres", "shop.orders"),
                target=("clickhouse", "analytics.orders_ru")),
    "P07": dict(cron=None, trigger="manual", mode="append", source=("file", "products.jsonl"),
                target=("clickhouse", "analytics.products")),
    "P08": dict(cron=None, trigger="manual", mode="replace", source=("postgres", "shop.orders"),
                target=("file", "revenue_by_country.parquet")),
    "P11": dict(cron=None, trigger="webhook", mode="append", source=("file", None),
                target=("clickhouse", "analytics.landing")),
    "P12": dict(cron=None, trigger="manual", mode="merge", source=("postgres", "shop.orders"),
                target=("clickhouse", "analytics.orders_latest")),
}


def plan(text: str, **kw) -> dict:
    result = compile_request(text, **kw)
    assert result["outcome"] == "plan", result
    PipelineSpec.model_validate(result["spec"])  # every plan is a valid spec
    return result["spec"]


def _where(ep: dict):
    return ep["kind"], ep.get("table") or ep.get("path") or ep.get("topic")


# --- public cases ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", sorted(EXPECTED))
def test_public_case_plans(case_id):
    result = compile_request(CASES[case_id]["request"])
    assert result["outcome"] == "plan", result
    assert 0 < result["confidence"] <= 1 and result["understood"]
    spec = PipelineSpec.model_validate(result["spec"]).model_dump(mode="json")
    want = EXPECTED[case_id]
    assert (spec["schedule"] or {}).get("cron") == want["cron"]
    assert spec["trigger"]["kind"] == want["trigger"]
    assert spec["target"]["load_mode"] == want["mode"]
    assert _where(spec["source"]) == want["source"]
    assert _where(spec["target"]) == want["target"]
    assert spec["steps"]
    if "schedule" in CASES[case_id]["expect"]:
        assert spec["schedule"]["cron"] == CASES[case_id]["expect"]["schedule"]


def test_p02_filters_and_daily_sum():
    spec = plan(CASES["P02"]["request"])
    assert spec["filters"] == [{"column": "status", "op": "=", "value": "paid"},
                               {"column": "amount", "op": ">", "value": 0}]
    agg = spec["aggregate"]
    assert agg["period"] == "day" and agg["time_column"] == "created_at" and agg["dimensions"] == []
    assert [(m["fn"], m["column"]) for m in agg["measures"]] == [("sum", "amount")]


def test_p03_cleaning():
    spec = plan(CASES["P03"]["request"])
    ops = {(c["op"], c["column"], c.get("value")) for c in spec["cleaning"]}
    assert ops == {("lowercase", "email", None), ("dedupe", "email", None), ("fill_empty", "city", "Unknown")}
    assert spec["target"]["keys"] == ["email"]


def test_p04_incremental():
    spec = plan(CASES["P04"]["request"])
    assert spec["incremental"] == {"cursor_column": "updated_at", "initial_value": None}


def test_p05_streaming_and_masking():
    spec = plan(CASES["P05"]["request"])
    assert spec["streaming"] == {"enabled": True, "max_batch_rows": 1000, "max_batch_seconds": 10.0}
    assert spec["trigger"] == {"kind": "kafka", "topic": "shop.clicks", "filter": None}
    assert spec["pii"] == [{"column": "*email*", "action": "mask"}]
    assert {"kind": "no_email", "column": None, "value": None, "values": None} in spec["quality_checks"]


def test_p08_monthly_revenue_per_country():
    spec = plan(CASES["P08"]["request"])
    assert spec["filters"] == [{"column": "status", "op": "=", "value": "paid"}]
    agg = spec["aggregate"]
    assert agg["period"] == "month" and agg["dimensions"] == ["country"]
    assert [(m["fn"], m["column"]) for m in agg["measures"]] == [("sum", "amount")]
    assert spec["target"]["format"] == "parquet"


def test_p09_ambiguous_asks():
    result = compile_request(CASES["P09"]["request"])
    assert result["outcome"] == "clarify"
    assert result["question"].strip().endswith("?") or "?" in result["question"]
    assert set(result["missing"]) == {"source", "target"}
    assert "spec" not in result


def test_p10_destructive_is_refused():
    result = compile_request(CASES["P10"]["request"])
    assert result["outcome"] == "refuse" and "Delete" in result["reason"]
    assert set(result) == {"outcome", "reason"}


def test_p11_webhook_file():
    spec = plan(CASES["P11"]["request"])
    assert spec["trigger"]["kind"] == "webhook"
    src = spec["source"]
    assert (src["kind"], src["format"], src["path_param"], src["folder"], src["path"]) == \
        ("file", "csv", "file", "landing", None)


def test_p12_merge_on_order_id():
    spec = plan(CASES["P12"]["request"])
    assert spec["target"]["keys"] == ["order_id"]


# --- grammar ---------------------------------------------------------------------------------------

BASE = "Load shop.orders from PostgreSQL into ClickHouse analytics.orders "


@pytest.mark.parametrize("phrase, cron", [
    ("every day at 2 AM", "0 2 * * *"), ("daily at 2 AM", "0 2 * * *"), ("daily at 14:30", "30 14 * * *"),
    ("at 6 PM every day", "0 18 * * *"), ("every 15 minutes", "*/15 * * * *"), ("every minute", "* * * * *"),
    ("every 2 hours", "0 */2 * * *"), ("hourly", "0 * * * *"), ("every hour", "0 * * * *"),
    ("each Monday at 6", "0 6 * * 1"), ("every Friday at 5 pm", "0 17 * * 5"),
    ("every weekday at 7:30 am", "30 7 * * 1-5"), ("daily at midnight", "0 0 * * *"),
    ("on the 1st of every month at 3 AM", "0 3 1 * *"),
    ('on cron "0 */6 * * *"', "0 */6 * * *"), ("with schedule `30 1 * * 1-5`", "30 1 * * 1-5"),
    ("cron 5 4 * * 0", "5 4 * * 0"),
])
def test_english_schedules(phrase, cron):
    spec = plan(BASE + phrase)
    assert spec["schedule"]["cron"] == cron and spec["trigger"]["kind"] == "cron"


@pytest.mark.parametrize("phrase, cron", [
    ("ежедневно в 2 часа ночи", "0 2 * * *"), ("каждый день в 14:00", "0 14 * * *"),
    ("ежедневно в 9 вечера", "0 21 * * *"), ("каждый час", "0 * * * *"), ("ежечасно", "0 * * * *"),
    ("каждые 15 минут", "*/15 * * * *"), ("каждые 3 часа", "0 */3 * * *"),
    ("каждый понедельник в 6 утра", "0 6 * * 1"), ("по пятницам в 3 часа дня", "0 15 * * 5"),
])
def test_russian_schedules(phrase, cron):
    spec = plan(f"Загружать заказы из PostgreSQL (shop.orders) в ClickHouse analytics.orders_ru {phrase}")
    assert spec["schedule"]["cron"] == cron


def test_bare_daily_means_midnight_and_says_so():
    result = compile_request(BASE + "daily")
    assert result["spec"]["schedule"]["cron"] == "0 0 * * *"
    assert any("midnight" in n for n in result["spec"]["notes"]) and result["confidence"] < 1


def test_timezone():
    spec = plan(BASE + "daily at 2 AM Moscow time")
    assert spec["schedule"] == {"cron": "0 2 * * *", "timezone": "Europe/Moscow"}
    assert plan(BASE + "every day at 7 am in Europe/Berlin")["schedule"]["timezone"] == "Europe/Berlin"


@pytest.mark.parametrize("text, missing", [
    ("Move some data", {"source", "target"}),
    ("Load orders from PostgreSQL into ClickHouse analytics.orders", {"source.table"}),
    ("Load shop.orders into ClickHouse analytics.orders", {"source.kind"}),
    (BASE + "pivoting by frobnication", {"unrecognized"}),
    (BASE + "every 10 seconds", {"unrecognized"}),
    (BASE + "daily at 25:00", {"schedule"}),
    (BASE + 'on cron "99 * * * *"', {"schedule"}),
    ("Load only active customers from PostgreSQL shop.customers into ClickHouse analytics.c", {"unrecognized"}),
    ("Sync shop.orders from PostgreSQL into ClickHouse analytics.orders_latest", {"target.keys"}),
    ("Stream shop.orders from PostgreSQL into ClickHouse analytics.orders", {"source"}),
    ("Load data.json into ClickHouse analytics.x", {"source.format"}),
    ("Export shop.orders from PostgreSQL to a Parquet file", {"target.path"}),
    ("Load shop.orders from PostgreSQL into ClickHouse analytics.o and the Kafka topic x", {"target"}),
    ("Every 15 minutes, incrementally load shop.orders from PostgreSQL into ClickHouse analytics.o",
     {"incremental.cursor_column"}),
    (BASE + "daily at 2 AM, hourly", {"schedule"}),
    ("", {"source", "target"}),
])
def test_clarify_instead_of_guessing(text, missing):
    result = compile_request(text)
    assert result["outcome"] == "clarify", result
    assert {m.split(":", 1)[0] for m in result["missing"]} == missing  # unrecognized:<word>, one per word
    assert result["question"] and set(result) == {"outcome", "question", "missing"}


def test_russian_clarification_is_in_russian():
    result = compile_request("Перенеси какие-нибудь данные")
    assert result["outcome"] == "clarify"
    assert "Откуда" in result["question"] or "Не понял" in result["question"]


@pytest.mark.parametrize("text", [
    "drop table shop.orders",
    "Update the source table shop.orders setting status to paid",
    "Modify shop.orders in PostgreSQL",
    "Load shop.orders from PostgreSQL into ClickHouse analytics.orders and truncate it first",
    "Remove all customers from PostgreSQL shop.customers",
    "Удалить все заказы из PostgreSQL shop.orders",
    "Очистить таблицу analytics.orders",
    "Обнови статусы в PostgreSQL shop.orders",
])
def test_destructive_requests_are_refused(text):
    result = compile_request(text)
    assert result["outcome"] == "refuse" and result["reason"]


@pytest.mark.parametrize("text", [
    "Copy customers.csv into PostgreSQL public.c, removing duplicates by email",
    "Load shop.orders from PostgreSQL into ClickHouse analytics.x where note = 'drop table'",
    "Load shop.orders from PostgreSQL into ClickHouse analytics.x where deleted_at is null",
    "Load customers.csv into ClickHouse analytics.c, dropping the phone column",
    "Копировать customers.csv в PostgreSQL public.c, удаляя дубликаты по email",
])
def test_cleaning_words_are_not_destructive(text):
    assert compile_request(text)["outcome"] == "plan"


def test_filters():
    spec = plan(BASE + "where status = 'paid' and amount >= 10 and country in ('DE', 'FR')")
    assert spec["filters"] == [{"column": "status", "op": "=", "value": "paid"},
                               {"column": "amount", "op": ">=", "value": 10},
                               {"column": "country", "op": "in", "value": ["DE", "FR"]}]
    assert plan(BASE + "with amount above 100")["filters"] == [{"column": "amount", "op": ">", "value": 100}]
    assert plan(BASE + "with a non-negative amount")["filters"] == [{"column": "amount", "op": ">=", "value": 0}]


def test_aggregate_variants():
    agg = plan(BASE.replace("analytics.orders", "analytics.c") + "counting orders per day and country")["aggregate"]
    assert (agg["period"], agg["dimensions"], agg["measures"][0]["fn"]) == ("day", ["country"], "count")
    agg = plan(BASE.replace("analytics.orders", "analytics.a") + "averaging amount per week of updated_at")["aggregate"]
    assert (agg["period"], agg["time_column"], agg["measures"][0]["fn"]) == ("week", "updated_at", "avg")
    agg = plan("Загрузи только оплаченные заказы из PostgreSQL shop.orders в ClickHouse analytics.r, "
               "выручку по месяцам и странам")["aggregate"]
    assert (agg["period"], agg["dimensions"]) == ("month", ["country"])


def test_names_are_not_split_by_rules():
    # "daily" inside a table name is not a schedule, "weekly" inside a file name is not one either.
    spec = plan("Load shop.orders from PostgreSQL into ClickHouse analytics.daily daily at 2 AM")
    assert spec["target"]["table"] == "analytics.daily" and spec["schedule"]["cron"] == "0 2 * * *"
    spec = plan("Export weekly revenue from paid orders in PostgreSQL shop.orders to a CSV file weekly.csv")
    assert spec["target"]["path"] == "weekly.csv" and spec["aggregate"]["period"] == "week"
    assert spec["schedule"] is None


def test_pii_rules():
    spec = plan("Load customers.csv into ClickHouse analytics.c, hashing phone numbers and dropping the name column")
    assert spec["pii"] == [{"column": "*phone*", "action": "hash"}, {"column": "name", "action": "drop"}]


def test_kafka_message_trigger():
    spec = plan("On each message of topic shop.triggers, load shop.orders from PostgreSQL into ClickHouse "
                "analytics.orders")
    assert spec["trigger"] == {"kind": "kafka", "topic": "shop.triggers", "filter": None}
    assert spec["source"]["table"] == "shop.orders" and not spec["streaming"]["enabled"]


def test_default_connections_and_unnamed_target_table():
    result = compile_request("Load shop.orders from PostgreSQL into ClickHouse",
                             default_connections={"postgres": "shop_pg", "clickhouse": "analytics_ch"})
    spec = result["spec"]
    assert spec["source"]["connection"] == "shop_pg" and spec["target"]["connection"] == "analytics_ch"
    assert spec["target"]["table"] == "shop.orders"
    assert any("target table not named" in n for n in spec["notes"]) and result["confidence"] < 1


# --- SQL generation --------------------------------------------------------------------------------

def _statements(out: dict):
    d = out["dialects"]
    for key, dialect in (("extract_sql", d["extract"]), ("extract_sql_initial", d["extract"]),
                         ("transform_sql", d["transform"]), ("target_ddl", d["target"])):
        if out[key]:
            yield key, out[key], dialect
    for sql in out["target_setup_sql"]:
        yield "setup", sql, d["target"]


def _parse(sql: str, dialect: str):
    probe = sql.replace("%(cursor)s", "{cursor:String}" if dialect == "clickhouse" else "%(cursor)s")
    return sqlglot.parse(probe.replace("%%", "%"), read=dialect)


@pytest.mark.parametrize("with_columns", [False, True])
@pytest.mark.parametrize("case_id", sorted(EXPECTED))
def test_generated_sql_parses_in_its_dialect(case_id, with_columns):
    spec = plan(CASES[case_id]["request"])
    out = generate_sql(spec, COLUMNS[case_id] if with_columns else None)
    assert set(out) >= {"extract_sql", "transform_sql", "target_ddl", "dialects"}
    for key, sql, dialect in _statements(out):
        parsed = _parse(sql, dialect)
        assert len(parsed) == 1, (key, sql)
        if key.startswith("extract") or key == "transform_sql":
            assert isinstance(parsed[0], sqlglot.exp.Select), (key, sql)
    if spec["source"]["kind"] in ("postgres", "clickhouse", "sqlite"):
        assert out["extract_sql"] and out["dialects"]["extract"] == spec["source"]["kind"]
    else:
        assert out["extract_sql"] is None


def test_clickhouse_ddl_is_18_16_compatible():
    for case_id in ("P01", "P02", "P04", "P05", "P06", "P07", "P11", "P12"):
        ddl = generate_sql(plan(CASES[case_id]["request"]), COLUMNS[case_id])["target_ddl"]
        assert ddl.startswith("CREATE TABLE IF NOT EXISTS analytics.")
        assert "Map(" not in ddl and "DateTime64" not in ddl and "Bool" not in ddl
        assert "MergeTree" in ddl


def test_merge_ddl_and_types():
    out = generate_sql(plan(CASES["P12"]["request"]), ORDERS_PG)
    ddl = out["target_ddl"]
    assert "ENGINE = ReplacingMergeTree ORDER BY (order_id)" in ddl
    assert "order_id Int64," in ddl and "amount Nullable(Decimal(12, 2))" in ddl
    assert "created_at Nullable(DateTime)" in ddl
    assert out["target_setup_sql"] == ["CREATE DATABASE IF NOT EXISTS analytics"]
    incremental = plan("Every hour, incrementally load shop.orders (by updated_at) from PostgreSQL into ClickHouse "
                       "analytics.o, upserting on order_id")
    assert "ReplacingMergeTree(updated_at)" in generate_sql(incremental, ORDERS_PG)["target_ddl"]


def test_postgres_target_ddl_for_p03():
    ddl = generate_sql(plan(CASES["P03"]["request"]), COLUMNS["P03"])["target_ddl"]
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS public.customers (")
    assert "customer_id BIGINT" in ddl and "email TEXT" in ddl and "PRIMARY KEY (email)" in ddl


def test_p07_keeps_tags_as_array():
    ddl = generate_sql(plan(CASES["P07"]["request"]), COLUMNS["P07"])["target_ddl"]
    assert "tags Array(String)" in ddl and "price Nullable(Float64)" in ddl


def test_incremental_extract_has_cursor_placeholder():
    out = generate_sql(plan(CASES["P04"]["request"]), ORDERS_PG)
    assert "WHERE updated_at > %(cursor)s" in out["extract_sql"]
    assert out["extract_sql"].rstrip().endswith("ORDER BY updated_at")
    assert "%(cursor)s" not in out["extract_sql_initial"]
    assert out["extract_params"] == {"cursor": "high-water mark of updated_at"}


def test_percent_is_doubled_only_in_parameterised_sql():
    spec = plan("Every hour, incrementally load shop.orders (by updated_at) from PostgreSQL into ClickHouse "
                "analytics.o where note = '100%'")
    out = generate_sql(spec, None)
    assert "'100%%'" in out["extract_sql"] and "'100%'" in out["extract_sql_initial"]


def test_filters_are_pushed_down_to_database_sources():
    out = generate_sql(plan(CASES["P02"]["request"]), ORDERS_PG)
    assert "WHERE status = 'paid'" in out["extract_sql"] and "amount > 0" in out["extract_sql"]
    assert "GROUP BY CAST(created_at AS DATE)" in out["extract_sql"]
    assert out["transform_sql"] is None


def test_clickhouse_source_uses_clickhouse_functions():
    spec = plan("Export daily revenue per country from paid orders in ClickHouse analytics.orders to a Parquet "
                "file r.parquet")
    out = generate_sql(spec, [("amount", "Decimal(12, 2)"), ("country", "String"), ("created_at", "DateTime"),
                              ("status", "LowCardinality(String)")])
    assert "toDate(created_at) AS day" in out["extract_sql"] and out["dialects"]["extract"] == "clickhouse"


def test_unknown_column_is_an_error():
    spec = plan(BASE + "where colour = 'red'")
    with pytest.raises(ValueError, match="colour"):
        generate_sql(spec, ORDERS_PG)


def test_column_words_resolve_against_the_source():
    spec = plan("Load customers.csv into PostgreSQL public.c, trimming names and uppercasing countries")
    sql = generate_sql(spec, COLUMNS["P03"])["transform_sql"]
    assert "TRIM(name)" in sql and "UPPER(country)" in sql


# --- running the generated SQL on DuckDB -------------------------------------------------------------

def _orders(n: int = 400) -> list[tuple]:
    rnd = random.Random(7)
    start = datetime(2026, 1, 1)
    rows = []
    for i in range(1, n + 1):
        created = start + timedelta(minutes=rnd.randint(0, 60 * 24 * 90))
        amount = Decimal(f"{rnd.uniform(-5, 500):.2f}")
        rows.append((i, rnd.randint(1, 50), rnd.choice(["paid", "paid", "pending", "refunded"]), amount,
                     rnd.choice(["RU", "DE", "US"]), created, created + timedelta(minutes=5)))
    return rows


def _duckdb_with_orders(rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA shop")
    con.execute("CREATE TABLE shop.orders (order_id BIGINT, customer_id INTEGER, status VARCHAR, "
                "amount DECIMAL(12, 2), country VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP)")
    con.executemany("INSERT INTO shop.orders VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return con


def _run(con: duckdb.DuckDBPyConnection, out: dict) -> list[tuple]:
    """Run extract (PostgreSQL SQL transpiled to DuckDB) then the transform over `batch`."""
    extract = sqlglot.transpile(out["extract_sql"], read="postgres", write="duckdb")[0]
    con.execute(f"CREATE OR REPLACE TEMP TABLE batch AS {extract}")
    return con.execute(out["transform_sql"] or "SELECT * FROM batch").fetchall()


def test_p02_sql_on_duckdb_matches_python_aggregate():
    rows = _orders()
    out = generate_sql(plan(CASES["P02"]["request"]), ORDERS_PG)
    got = {day: total for day, total in _run(_duckdb_with_orders(rows), out)}
    want: dict = defaultdict(Decimal)
    for _, _, status, amount, _, created, _ in rows:
        if status == "paid" and amount > 0:
            want[created.date()] += amount
    assert got == dict(want) and len(got) > 30


def test_p08_sql_on_duckdb_matches_python_aggregate():
    rows = _orders()
    out = generate_sql(plan(CASES["P08"]["request"]), ORDERS_PG)
    got = {(month, country): total for month, country, total in _run(_duckdb_with_orders(rows), out)}
    want: dict = defaultdict(Decimal)
    for _, _, status, amount, country, created, _ in rows:
        if status == "paid":
            want[(created.date().replace(day=1), country)] += amount
    assert got == dict(want) and len(got) == 9


def test_p03_transform_on_duckdb():
    emails = ["a@x.io", "A@X.IO", "b@x.io", "c@x.io", "B@x.io"]
    cities = ["Berlin", "", None, "  ", "Lyon"]
    con = duckdb.connect()
    con.execute("CREATE TABLE src (customer_id BIGINT, name VARCHAR, email VARCHAR, phone VARCHAR, city VARCHAR, "
                "country VARCHAR)")
    con.executemany("INSERT INTO src VALUES (?, ?, ?, ?, ?, ?)",
                    [(i, f"n{i}", e, "+7000", c, "DE") for i, (e, c) in enumerate(zip(emails, cities))])
    con.execute("CREATE TABLE batch AS SELECT * FROM src")
    for columns in (None, COLUMNS["P03"]):
        sql = generate_sql(plan(CASES["P03"]["request"]), columns)["transform_sql"]
        result = con.execute(f"SELECT email, city FROM ({sql})").fetchall()
        assert sorted(e for e, _ in result) == ["a@x.io", "b@x.io", "c@x.io"]
        assert all(c and c.strip() for _, c in result)
        assert dict(result)["c@x.io"] == "Unknown"  # the only row for c@x.io had a blank city


def test_p05_masking_on_duckdb_with_and_without_columns():
    con = duckdb.connect()
    con.execute("CREATE TABLE src AS SELECT range AS event_id, '2026-11-01' AS ts, '/p/' || range AS page, "
                "'user' || range || '@example.com' AS user_email FROM range(50)")
    con.execute("CREATE TABLE batch AS SELECT * FROM src")
    for columns in (None, COLUMNS["P05"]):
        sql = generate_sql(plan(CASES["P05"]["request"]), columns)["transform_sql"]
        rows = con.execute(sql).fetchall()
        assert len(rows) == 50
        assert not any("@" in str(v) for row in rows for v in row)
        names = [d[0] for d in con.execute(sql).description]
        assert sorted(names) == ["event_id", "page", "ts", "user_email"]


# --- determinism -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", sorted(CASES))
def test_same_input_same_bytes(case_id):
    text = CASES[case_id]["request"]
    first = json.dumps(compile_request(text), sort_keys=True, ensure_ascii=False)
    again = json.dumps(compile_request(text), sort_keys=True, ensure_ascii=False)
    assert first == again
    result = json.loads(first)
    if result["outcome"] == "plan":
        sql = [json.dumps(generate_sql(result["spec"], COLUMNS.get(case_id[:3])), sort_keys=True) for _ in range(2)]
        assert sql[0] == sql[1]


# --- the documentation's examples and robustness ----------------------------------------------------

def _doc_examples() -> list[tuple[str, str]]:
    import re

    doc = (Path(__file__).parents[2] / "docs" / "builtin-provider.md").read_text()
    return [(m.group(1), m.group(2) or "") for m in re.finditer(r'^- "(.+?)"(?: → (.*))?$', doc, re.M)]


@pytest.mark.parametrize("text, claim", _doc_examples())
def test_documented_examples_do_what_the_doc_says(text, claim):
    import re

    result = compile_request(text)
    if claim.startswith("refuse"):
        assert result["outcome"] == "refuse"
    elif "`missing: [" in claim:
        missing = re.search(r"`missing: \[([^\]]*)\]`", claim).group(1)
        assert result["outcome"] == "clarify" and result["missing"] == [m.strip() for m in missing.split(",")]
    else:
        assert result["outcome"] == "plan", result


def test_long_input_is_bounded():
    import time

    started = time.monotonic()
    assert compile_request("a" * 20000)["missing"] == ["request"]
    assert compile_request("a" * 1999)["outcome"] == "clarify"
    assert compile_request(" ".join(["per day and country"] * 90))["outcome"] == "clarify"
    assert time.monotonic() - started < 2
