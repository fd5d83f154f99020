"""Dry run of transform SQL (DuckDB over `batch`) and Python (sandbox) on sample rows."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from services.agents.qa.dry_run import dry_run, run_transform_sql

DAILY_PAID = ("SELECT date_trunc('day', created_at) AS day, sum(amount) AS amount "
              "FROM batch WHERE status='paid' GROUP BY 1")

SAMPLE = [
    {"id": 1, "created_at": dt.datetime(2024, 3, 1, 9, 15), "amount": Decimal("10.50"), "status": "paid", "email": "A@X.COM"},
    {"id": 2, "created_at": dt.datetime(2024, 3, 1, 17, 40), "amount": Decimal("4.25"), "status": "paid", "email": "b@x.com"},
    {"id": 3, "created_at": dt.datetime(2024, 3, 1, 18, 0), "amount": Decimal("99.00"), "status": "refunded", "email": "c@x.com"},
    {"id": 4, "created_at": dt.datetime(2024, 3, 2, 8, 5), "amount": Decimal("7.00"), "status": "paid", "email": "D@x.com"},
    {"id": 5, "created_at": dt.datetime(2024, 3, 2, 23, 59), "amount": Decimal("0.75"), "status": "paid", "email": "e@x.com"},
]


def test_daily_paid_sums_are_correct():
    res = dry_run(SAMPLE, DAILY_PAID, None)
    assert res.ok, res.findings
    assert (res.rows_in, res.rows_out) == (5, 2)
    assert res.columns == ["day", "amount"]
    sums = {row["day"]: row["amount"] for row in res.sample}
    assert sums == {dt.datetime(2024, 3, 1): Decimal("14.75"), dt.datetime(2024, 3, 2): Decimal("7.75")}


def test_float_amounts_sum_too():
    rows = [dict(r, amount=float(r["amount"])) for r in SAMPLE]
    res = dry_run(rows, DAILY_PAID + " ORDER BY 1", None)
    assert res.ok
    assert [round(r["amount"], 2) for r in res.sample] == [14.75, 7.75]


def test_sql_then_python():
    code = "def transform(batch):\n    return [dict(r, amount=str(r['amount'])) for r in batch]\n"
    res = dry_run(SAMPLE, DAILY_PAID + " ORDER BY 1", code)
    assert res.ok, res.findings
    assert [r["amount"] for r in res.sample] == ["14.75", "7.75"]


def test_python_only_lowercases_emails():
    code = "def transform(batch):\n    return [dict(r, email=r['email'].lower()) for r in batch]\n"
    res = dry_run(SAMPLE, None, code)
    assert res.ok
    assert [r["email"] for r in res.sample] == ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com"]
    assert res.columns == ["id", "created_at", "amount", "status", "email"]


def test_limit_caps_rows_in():
    res = dry_run(SAMPLE, "SELECT * FROM batch", None, limit=3)
    assert (res.rows_in, res.rows_out) == (3, 3)


def test_unknown_column_reports_duckdb_binder_error():
    res = dry_run(SAMPLE, "SELECT amount_usd FROM batch", None)
    assert not res.ok and res.rows_out == 0
    [f] = res.findings
    assert f.rule == "dry-run-sql"
    assert f.message.startswith("transform SQL failed on the sample: BinderException")
    assert '"amount_usd" not found' in f.message


def test_static_rules_stop_before_execution():
    res = dry_run(SAMPLE, "SELECT * FROM read_csv('/etc/passwd')", None)
    assert not res.ok
    assert [f.rule for f in res.findings] == ["side-effect-function"]


def test_duckdb_external_access_is_off_even_without_static_checks():
    cols, rows, findings = run_transform_sql("SELECT * FROM read_csv('/etc/passwd')", SAMPLE)
    assert rows == [] and "file system operations are disabled" in findings[0].message


def test_runaway_recursive_cte_is_interrupted():
    sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r, batch"
    _, rows, findings = run_transform_sql(sql, SAMPLE, timeout_s=0.5)
    assert rows == [] and findings[0].message.startswith("transform SQL")


def test_python_failure_is_precise():
    res = dry_run(SAMPLE, None, "def transform(batch):\n    return [{'x': r['missing']} for r in batch]\n")
    assert not res.ok
    [f] = res.findings
    assert f.message == "transform(batch) failed on the sample: KeyError: 'missing' (line 2)"


def test_python_static_rules_stop_before_execution():
    res = dry_run(SAMPLE, None, "import os\ndef transform(batch):\n    return batch\n")
    assert not res.ok and res.findings[0].rule == "import"


def test_mixed_types_in_sample_are_reported():
    res = dry_run([{"a": 1}, {"a": "x"}], "SELECT * FROM batch", None)
    assert not res.ok and res.findings[0].rule == "dry-run-input"


def test_empty_sample_is_a_warning_not_a_failure():
    res = dry_run([], DAILY_PAID, None)
    assert res.ok and res.rows_in == 0
    assert [f.severity for f in res.findings] == ["warning"]


def test_result_to_dict_is_json_ready():
    res = dry_run(SAMPLE, DAILY_PAID + " ORDER BY 1", None)
    data = json.loads(json.dumps(res.to_dict()))
    assert data["sample"][0] == {"day": "2024-03-01T00:00:00", "amount": "14.75"}
