"""Days ClickHouse 18.16 cannot hold (before 1970, after 2105) are kept or refused, never loaded as 1970-01-01.

Against the real stack: the source's measured min/max of its date columns (PostgreSQL), the compiled
ClickHouse DDL that declares String for a column whose values leave Date's range, the writer that loads
such a day as ISO text there and refuses it (a failed run, nothing inserted) into a Date or DateTime column,
and the QA check that fails a DDL declaring Date for such a column.
"""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from services.agents.qa.spec_checks import date_range_findings
from services.agents.sources import SourceAccess
from services.agents.schema_analyst import ddl_columns
from services.executor.writers import WriterError, open_writer
from services.spec_compiler import generate_sql
from tests.integration.stack_fixtures import Registry

pytestmark = pytest.mark.integration
TENANT = "t-ch-dates"
BORN = [dt.date(1931, 5, 17), dt.date(1966, 4, 2), dt.date(1999, 12, 31)]


def _people(db, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.people (id integer PRIMARY KEY, born date, seen_at timestamp)")
    with db.cursor() as cur:
        cur.executemany(f"INSERT INTO {schema}.people VALUES (%s, %s, %s)",
                        [(i, d, dt.datetime(2025, 1, i + 1, 8)) for i, d in enumerate(BORN, 1)])


def _spec(schema: str, chdb_name: str) -> dict:
    return {"source": {"kind": "postgres", "connection": "pg", "table": f"{schema}.people"},
            "target": {"kind": "clickhouse", "connection": "ch", "table": f"{chdb_name}.people",
                       "load_mode": "append"}}


def _batch(days, column_type=pa.date32()) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([{"id": i, "born": d} for i, d in enumerate(days, 1)],
                                      schema=pa.schema([("id", pa.int64()), ("born", column_type)]))


def _load(ch, table: str, batch, run_id: str = "r1") -> int:
    with open_writer(ch, {"kind": "clickhouse", "table": table, "load_mode": "append"}, run_id=run_id) as w:
        w.write(batch, f"{run_id}:0")
        w.finish()
        return w.rows_written


def test_the_source_range_of_dates_before_1970_makes_the_clickhouse_column_text_and_keeps_every_day(pg, ch, pgdb,
                                                                                                      chdb):
    db, schema = pgdb
    client, chname = chdb
    _people(db, schema)
    spec = _spec(schema, chname)
    sources = SourceAccess(Registry(pg, ch))
    ranges = sources.value_ranges(TENANT, spec)
    assert ranges == {"born": ["1931-05-17", "1999-12-31"], "seen_at": ["2025-01-02 08:00:00", "2025-01-04 08:00:00"]}
    out = generate_sql(spec, sources.columns(TENANT, spec), value_ranges=ranges)
    types = dict(ddl_columns(out["target_ddl"], "clickhouse"))
    assert "String" in types["born"] and "DateTime" in types["seen_at"]  # seen_at fits: it keeps its type
    assert date_range_findings(spec, list(types.items()), ranges) == []
    for stmt in out["target_setup_sql"] + [out["target_ddl"]]:
        client.execute(stmt)
    assert _load(ch, f"{chname}.people", _batch(BORN)) == 3
    assert client.execute(f"SELECT born FROM {chname}.people ORDER BY id") == [(d.isoformat(),) for d in BORN]


def test_qa_fails_a_date_column_whose_source_values_start_before_1970(pg, ch, pgdb, chdb):
    db, schema = pgdb
    _, chname = chdb
    _people(db, schema)
    spec = _spec(schema, chname)
    ranges = SourceAccess(Registry(pg, ch)).value_ranges(TENANT, spec)
    ddl = f"CREATE TABLE {chname}.people (id Int32, born Nullable(Date), seen_at DateTime) ENGINE = MergeTree ORDER BY id"
    findings = date_range_findings(spec, ddl_columns(ddl, "clickhouse"), ranges)
    assert [f.severity for f in findings] == ["error"] and "'born'" in findings[0].message
    assert "1931-05-17" in findings[0].message


@pytest.mark.parametrize("ch_type,arrow_type,value", [
    ("Date", pa.date32(), dt.date(1966, 4, 2)),
    ("Nullable(Date)", pa.date32(), dt.date(2150, 1, 1)),
    ("DateTime", pa.timestamp("us"), dt.datetime(1969, 12, 31, 23, 0)),
])
def test_the_writer_refuses_a_day_clickhouse_would_store_as_another_and_inserts_nothing(ch, chdb, ch_type,
                                                                                        arrow_type, value):
    client, chname = chdb
    client.execute(f"CREATE TABLE {chname}.d (id Int64, born {ch_type}) ENGINE = MergeTree ORDER BY id")
    fits = dt.date(2000, 1, 1) if arrow_type == pa.date32() else dt.datetime(2000, 1, 1)
    with pytest.raises(WriterError, match="outside what ClickHouse"):
        _load(ch, f"{chname}.d", _batch([fits, value], arrow_type))
    assert client.execute(f"SELECT count() FROM {chname}.d") == [(0,)]


def test_days_inside_the_range_still_load_as_dates(ch, chdb):
    client, chname = chdb
    client.execute(f"CREATE TABLE {chname}.d (id Int64, born Date) ENGINE = MergeTree ORDER BY id")
    days = [dt.date(1970, 1, 1), dt.date(2105, 12, 31)]
    assert _load(ch, f"{chname}.d", _batch(days)) == 2
    assert client.execute(f"SELECT born FROM {chname}.d ORDER BY id") == [(d,) for d in days]


def test_a_batch_column_the_existing_table_lacks_fails_the_load_instead_of_being_dropped(ch, chdb):
    client, chname = chdb
    client.execute(f"CREATE TABLE {chname}.d (id Int64) ENGINE = MergeTree ORDER BY id")
    with pytest.raises(WriterError, match=r"no column\(s\) \['born'\]"):
        _load(ch, f"{chname}.d", _batch([dt.date(2000, 1, 1)]))
    assert client.execute(f"SELECT count() FROM {chname}.d") == [(0,)]
