"""The executor's transform step and batch helpers: DuckDB SQL over `batch`, the sandboxed Python function."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from services.executor.batches import ReadStats, cursor_text, cursor_value, rebatch
from services.executor.readers import decimal_array
from services.executor.transform import TransformError, Transformer, apply_transform


def _batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([
        {"id": 1, "email": "A@X.COM", "amount": Decimal("1.50"), "ts": dt.datetime(2026, 1, 1, 10)},
        {"id": 2, "email": "b@y.com", "amount": Decimal("2.25"), "ts": dt.datetime(2026, 1, 2, 11)},
        {"id": 3, "email": None, "amount": None, "ts": dt.datetime(2026, 1, 2, 12)},
    ])


def test_no_transform_returns_the_batch():
    b = _batch()
    assert apply_transform(b) is b


def test_sql_runs_over_the_batch_relation_and_keeps_types():
    out = apply_transform(_batch(), "SELECT id, LOWER(email) AS email, amount FROM batch WHERE id < 3")
    assert out.column("email").to_pylist() == ["a@x.com", "b@y.com"]
    assert pa.types.is_decimal(out.schema.field("amount").type)
    assert out.column("amount").to_pylist() == [Decimal("1.50"), Decimal("2.25")]


def test_sql_aggregate_per_day():
    out = apply_transform(_batch(), "SELECT CAST(ts AS DATE) AS day, sum(amount) AS total FROM batch "
                                    "GROUP BY 1 ORDER BY 1")
    assert out.to_pylist() == [{"day": dt.date(2026, 1, 1), "total": Decimal("1.50")},
                               {"day": dt.date(2026, 1, 2), "total": Decimal("2.25")}]


def test_sql_cannot_read_files():
    with pytest.raises(TransformError):
        apply_transform(_batch(), "SELECT * FROM read_csv('/etc/passwd')")


def test_sql_cannot_change_settings():
    with pytest.raises(TransformError):
        apply_transform(_batch(), "SET enable_external_access = true")


def test_sql_error_is_a_transform_error():
    with pytest.raises(TransformError, match="nope"):
        apply_transform(_batch(), "SELECT nope FROM batch")


def test_sql_timeout_interrupts():
    t = Transformer("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
                    sql_timeout_s=0.5)
    with t, pytest.raises(TransformError, match="timed out"):
        t(_batch())


def test_transformer_reuses_its_session_across_batches():
    with Transformer("SELECT id * 10 AS x FROM batch") as t:
        assert t(_batch()).column("x").to_pylist() == [10, 20, 30]
        assert t(_batch().slice(0, 1)).column("x").to_pylist() == [10]


def test_python_transform_runs_in_the_sandbox():
    code = "def transform(batch):\n    return [dict(r, n=r['id'] * 2) for r in batch if r['id'] != 2]\n"
    out = apply_transform(_batch(), python_code=code)
    assert out.column("n").to_pylist() == [2, 6]


def test_sql_then_python():
    code = "def transform(batch):\n    return [{'k': r['id'] + 1} for r in batch]\n"
    out = apply_transform(_batch(), "SELECT id FROM batch WHERE id > 1", code)
    assert out.column("k").to_pylist() == [3, 4]


def test_python_failure_is_a_transform_error():
    with pytest.raises(TransformError):
        apply_transform(_batch(), python_code="def transform(batch):\n    return 1 / 0\n")


def test_read_stats_track_rows_and_the_high_water_mark():
    stats = ReadStats(cursor_column="ts")
    for b in rebatch([_batch()], 2):
        assert b.num_rows <= 2
        stats.track(b)
    assert (stats.rows, stats.batches) == (3, 2) and stats.bytes > 0
    assert cursor_text(stats.high_water_mark) == "2026-01-02 12:00:00"


def test_cursor_values_bind_numbers_as_numbers():
    assert cursor_value("42") == 42 and cursor_value("1.5") == 1.5 and cursor_value("2026-01-01") == "2026-01-01"


def test_unconstrained_numeric_keeps_every_digit():
    arr = decimal_array([Decimal("1.5"), Decimal("10.125"), None])
    assert arr.type == pa.decimal128(38, 3) and arr.to_pylist()[1] == Decimal("10.125")
    assert decimal_array([Decimal("1.50")], 12, 2).type == pa.decimal128(12, 2)
