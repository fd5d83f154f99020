"""SQL safety rules of the qa-validator: each rule passes a good and fails a bad example per dialect."""
from __future__ import annotations

import pytest

from services.agents.qa import Finding, has_errors
from services.agents.qa.sql_rules import check_source_sql, check_target_sql, check_transform_sql

DIALECTS = ["postgres", "clickhouse", "duckdb", "sqlite"]


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def only_rule(findings: list[Finding], rule: str) -> Finding:
    errs = errors(findings)
    assert errs, "expected an error finding"
    assert {f.rule for f in errs} == {rule}, errs
    return errs[0]


# ---------------------------------------------------------------- source SQL


@pytest.mark.parametrize("dialect", DIALECTS)
def test_source_plain_select_passes(dialect):
    sql = "SELECT id, email, amount FROM shop.orders WHERE amount > 10 ORDER BY id LIMIT 100"
    assert check_source_sql(sql, dialect) == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_source_with_select_and_comments_passes(dialect):
    sql = "-- recent orders\nWITH r AS (SELECT id FROM shop.orders) SELECT * FROM r;  -- done"
    assert check_source_sql(sql, dialect) == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_source_two_statements_rejected(dialect):
    findings = check_source_sql("SELECT 1;\nSELECT 2;", dialect)
    f = only_rule(findings, "single-statement")
    assert f.message == "statement 2 of 2: only one statement is allowed in source SQL"
    assert f.statement == "SELECT 2;"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_source_trailing_semicolon_is_one_statement(dialect):
    assert check_source_sql("SELECT 1;", dialect) == []


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("sql, expected", [
    ("UPDATE shop.orders SET amount = 0", "UPDATE on shop.orders: source SQL must be read-only"),
    ("DELETE FROM shop.orders", "DELETE on shop.orders: source SQL must be read-only"),
    ("INSERT INTO shop.orders (id) VALUES (1)", "INSERT on shop.orders: source SQL must be read-only"),
    ("DROP TABLE shop.orders", "DROP TABLE on shop.orders: source SQL must be read-only"),
    ("CREATE TABLE shop.x (id INT)", "CREATE TABLE on shop.x: source SQL must be read-only"),
])
def test_source_writes_rejected(dialect, sql, expected):
    f = only_rule(check_source_sql(sql, dialect), "read-only")
    assert f.message.startswith(expected), f.message


@pytest.mark.parametrize("sql, expected", [
    ("MERGE INTO shop.orders t USING shop.new s ON t.id = s.id WHEN MATCHED THEN DELETE", "MERGE on shop.orders"),
    ("COPY shop.orders TO '/tmp/x.csv'", "COPY on shop.orders"),
    ("GRANT SELECT ON shop.orders TO bob", "GRANT on shop.orders"),
    ("CALL refresh_all()", "CALL"),
    ("SET search_path = shop", "SET"),
    ("TRUNCATE shop.orders", "TRUNCATE on shop.orders"),
    ("ALTER TABLE shop.orders ADD COLUMN x INT", "ALTER TABLE on shop.orders"),
])
def test_source_postgres_non_select_rejected(sql, expected):
    f = only_rule(check_source_sql(sql, "postgres"), "read-only")
    assert f.message.startswith(expected + ": source SQL must be read-only"), f.message


def test_source_postgres_data_modifying_cte_rejected():
    sql = "WITH x AS (DELETE FROM shop.orders WHERE id < 10 RETURNING *) SELECT * FROM x"
    f = only_rule(check_source_sql(sql, "postgres"), "read-only")
    assert "DELETE on shop.orders inside CTE x" in f.message


def test_source_postgres_read_only_cte_passes():
    assert check_source_sql("WITH x AS (SELECT * FROM shop.orders) SELECT * FROM x", "postgres") == []


def test_source_postgres_select_into_rejected():
    f = only_rule(check_source_sql("SELECT * INTO shop.copy FROM shop.orders", "postgres"), "read-only")
    assert "SELECT ... INTO shop.copy creates a table" in f.message


@pytest.mark.parametrize("clause", ["FOR UPDATE", "FOR SHARE"])
def test_source_postgres_row_locks_rejected(clause):
    f = only_rule(check_source_sql(f"SELECT * FROM shop.orders {clause}", "postgres"), "no-locking")
    assert f"SELECT ... {clause} locks rows" in f.message


@pytest.mark.parametrize("dialect, sql, name", [
    ("postgres", "SELECT pg_sleep(10)", "pg_sleep"),
    ("postgres", "SELECT pg_catalog.pg_sleep(10), id FROM shop.orders", "pg_sleep"),
    ("postgres", "SELECT * FROM dblink('host=x', 'SELECT 1') AS t(a INT)", "dblink"),
    ("postgres", "SELECT lo_import('/etc/passwd')", "lo_import"),
    ("postgres", "SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
    ("postgres", "SELECT set_config('search_path', 'x', false)", "set_config"),
    ("postgres", "SELECT pg_advisory_lock(1)", "pg_advisory_lock"),
    ("clickhouse", "SELECT sleep(3)", "sleep"),
    ("clickhouse", "SELECT * FROM url('http://evil/x.csv', CSV)", "url"),
    ("clickhouse", "SELECT * FROM remote('other:9000', db.t)", "remote"),
    ("clickhouse", "SELECT * FROM file('/etc/passwd', 'LineAsString')", "file"),
    ("duckdb", "SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("duckdb", "SELECT * FROM read_json_auto('https://x/y.json')", "read_json_auto"),
    ("duckdb", "SELECT getenv('HOME')", "getenv"),
    ("sqlite", "SELECT load_extension('/tmp/evil.so')", "load_extension"),
    ("sqlite", "SELECT readfile('/etc/passwd')", "readfile"),
])
def test_source_side_effect_functions_rejected(dialect, sql, name):
    f = only_rule(check_source_sql(sql, dialect), "side-effect-function")
    assert f.message.startswith(f"function {name}() ") and f.message.endswith("not allowed in source SQL")


@pytest.mark.parametrize("dialect, sql", [
    ("postgres", "SELECT date_trunc('day', created_at), sum(amount) FROM shop.orders GROUP BY 1"),
    ("clickhouse", "SELECT toStartOfDay(created_at), sum(amount) FROM shop.orders GROUP BY 1"),
    ("duckdb", "SELECT date_trunc('day', created_at), sum(amount) FROM shop.orders GROUP BY 1"),
    ("sqlite", "SELECT date(created_at), sum(amount) FROM orders GROUP BY 1"),
])
def test_source_ordinary_functions_pass(dialect, sql):
    assert check_source_sql(sql, dialect) == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_source_parse_error_has_position(dialect):
    f = only_rule(check_source_sql("SELECT id\nFROM (SELECT 1", dialect), "parse")
    assert f.message.startswith("parse error at line 2, col ")
    assert "Expecting )" in f.message


def test_source_parse_error_in_second_statement_is_located_in_whole_sql():
    findings = check_source_sql("SELECT 1;\n  SELECT * FROM (SELECT 1", "postgres")
    assert [f.rule for f in findings] == ["parse", "single-statement"]
    assert findings[0].message.startswith("statement 2 of 2: parse error at line 2, col 25")


def test_source_parse_error_column_counts_from_sql_start():
    f = only_rule(check_source_sql("SELEC 1 FROM t", "postgres"), "parse")
    assert f.message.startswith("parse error at line 1, col 7 near '1'")


def test_source_empty_and_unknown_dialect():
    assert only_rule(check_source_sql("  -- nothing\n", "postgres"), "empty")
    assert only_rule(check_source_sql("SELECT 1", "oracle"), "dialect")


# ---------------------------------------------------------------- target SQL

CH_DDL = ("CREATE TABLE IF NOT EXISTS shop.orders (order_id UInt64, amount Decimal(12, 2), updated_at DateTime) "
          "ENGINE = ReplacingMergeTree(updated_at) ORDER BY order_id")


def test_target_clickhouse_replacing_merge_tree_accepted():
    sql = f"CREATE DATABASE IF NOT EXISTS shop;\n{CH_DDL};"
    assert check_target_sql(sql, "clickhouse", "shop.orders") == []


def test_target_clickhouse_drop_rejected():
    f = only_rule(check_target_sql("DROP TABLE shop.orders", "clickhouse", "shop.orders"), "target-only")
    assert f.message.startswith("DROP TABLE on shop.orders: target SQL may only CREATE TABLE, INSERT into or ALTER")


@pytest.mark.parametrize("dialect, sql", [
    ("clickhouse", "INSERT INTO shop.orders (order_id, amount) VALUES (1, 2.5)"),
    ("clickhouse", "ALTER TABLE shop.orders ADD COLUMN IF NOT EXISTS note String"),
    ("postgres", "CREATE SCHEMA IF NOT EXISTS shop; CREATE TABLE IF NOT EXISTS shop.orders (id BIGINT PRIMARY KEY)"),
    ("postgres", "INSERT INTO shop.orders (id, amount) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount"),
    ("postgres", "CREATE UNIQUE INDEX IF NOT EXISTS orders_id ON shop.orders (id)"),
    ("postgres", "ALTER TABLE shop.orders ADD COLUMN note TEXT"),
    ("duckdb", "CREATE SCHEMA IF NOT EXISTS shop; CREATE TABLE IF NOT EXISTS shop.orders (id BIGINT, amount DECIMAL(12,2))"),
    ("duckdb", "INSERT INTO shop.orders VALUES (1, 2.5)"),
])
def test_target_statements_on_target_accepted(dialect, sql):
    assert check_target_sql(sql, dialect, "shop.orders") == []


def test_target_sqlite_unqualified_accepted_and_qualified_mismatch_rejected():
    assert check_target_sql("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)", "sqlite", "orders") == []
    f = only_rule(check_target_sql("CREATE TABLE IF NOT EXISTS customers (id INTEGER)", "sqlite", "orders"),
                  "target-only")
    assert "CREATE TABLE on customers: target SQL may only create the declared target orders" in f.message


@pytest.mark.parametrize("dialect, sql, expected", [
    ("clickhouse", "CREATE DATABASE IF NOT EXISTS other", "CREATE DATABASE other: target SQL may only create the database/schema"),
    ("clickhouse", "INSERT INTO shop.orders SELECT * FROM shop.customers", "INSERT on shop.orders references shop.customers"),
    ("clickhouse", "CREATE TABLE shop.orders AS shop.customers", "CREATE TABLE on shop.orders references shop.customers"),
    ("clickhouse", "ALTER TABLE shop.customers DELETE WHERE 1", "ALTER TABLE on shop.customers: target SQL may only write to"),
    ("postgres", "CREATE SCHEMA IF NOT EXISTS other", "CREATE SCHEMA other"),
    ("postgres", "TRUNCATE shop.orders", "TRUNCATE on shop.orders: target SQL may only CREATE TABLE"),
    ("postgres", "DELETE FROM shop.orders", "DELETE on shop.orders: target SQL may only CREATE TABLE"),
    ("postgres", "UPDATE shop.customers SET x = 1", "UPDATE on shop.customers: target SQL may only CREATE TABLE"),
    ("postgres", "ALTER TABLE shop.orders RENAME TO orders_old", "ALTER TABLE on shop.orders references orders_old"),
    ("postgres", "CREATE VIEW shop.v AS SELECT * FROM shop.orders", "CREATE VIEW on shop.v"),
    ("postgres", "GRANT ALL ON shop.orders TO bob", "GRANT on shop.orders"),
    ("duckdb", "INSERT INTO shop.orders SELECT * FROM read_parquet('/data/x.parquet')", "function read_parquet()"),
    ("duckdb", "INSERT INTO shop.other VALUES (1)", "INSERT on shop.other: target SQL may only write to"),
])
def test_target_touching_other_objects_rejected(dialect, sql, expected):
    findings = check_target_sql(sql, dialect, "shop.orders")
    assert has_errors(findings)
    assert any(f.message.startswith(expected) for f in errors(findings)), findings


def test_target_data_modifying_cte_rejected():
    sql = "WITH d AS (DELETE FROM shop.orders RETURNING *) INSERT INTO shop.orders SELECT * FROM d"
    f = only_rule(check_target_sql(sql, "postgres", "shop.orders"), "read-only")
    assert "DELETE on shop.orders inside CTE d" in f.message


def test_target_create_or_replace_is_refused():
    findings = check_target_sql("CREATE OR REPLACE TABLE shop.orders (id INT)", "duckdb", "shop.orders")
    assert has_errors(findings)
    assert [f.rule for f in findings] == ["target-replace"]


def test_target_multi_statement_messages_name_the_statement():
    sql = f"{CH_DDL};\nDROP TABLE shop.orders;"
    f = only_rule(check_target_sql(sql, "clickhouse", "shop.orders"), "target-only")
    assert f.message.startswith("statement 2 of 2: DROP TABLE on shop.orders")


# ---------------------------------------------------------------- transform SQL

GOOD_TRANSFORM = ("SELECT date_trunc('day', created_at) AS day, sum(amount) AS amount "
                  "FROM batch WHERE status = 'paid' GROUP BY 1")


@pytest.mark.parametrize("sql", [
    GOOD_TRANSFORM,
    "WITH paid AS (SELECT * FROM batch WHERE status = 'paid') SELECT lower(email) AS email FROM paid",
    "SELECT b.id, u.tag FROM batch AS b, unnest(b.tags) AS u(tag)",
    "SELECT * FROM batch UNION ALL SELECT * FROM batch",
])
def test_transform_over_batch_passes(sql):
    assert check_transform_sql(sql) == []


@pytest.mark.parametrize("sql, rule, expected", [
    ("SELECT * FROM batch JOIN shop.customers c ON c.id = batch.customer_id", "batch-only",
     "reads shop.customers: transform SQL may only read the relation batch"),
    ("SELECT * FROM main.batch", "batch-only", "reads main.batch"),
    ("SELECT * FROM 'data.parquet'", "batch-only", "reads data.parquet"),
    ("SELECT * FROM read_csv('/etc/passwd')", "side-effect-function", "function read_csv()"),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "side-effect-function", "function read_parquet()"),
    ("SELECT * FROM query('DROP TABLE x')", "side-effect-function", "function query()"),
    ("ATTACH 'other.db' AS o", "read-only", "ATTACH"),
    ("INSTALL httpfs", "read-only", "INSTALL"),
    ("LOAD httpfs", "read-only", "LOAD"),
    ("COPY batch TO '/tmp/out.csv'", "read-only", "COPY on batch"),
    ("PRAGMA enable_profiling", "read-only", "PRAGMA"),
    ("SELECT * FROM batch; SELECT 1", "single-statement", "statement 2 of 2: only one statement is allowed in transform SQL"),
])
def test_transform_rejections(sql, rule, expected):
    f = only_rule(check_transform_sql(sql), rule)
    assert f.message.startswith(expected), f.message


def test_finding_renders_as_event_string():
    f = Finding("read-only", "error", "UPDATE on shop.orders: source SQL must be read-only")
    assert str(f) == "[error] read-only: UPDATE on shop.orders: source SQL must be read-only"
