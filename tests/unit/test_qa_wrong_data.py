"""QA fails a draft whose data would differ from its spec: rows its filters drop, days its target cannot hold,
a rename that lost its new name; the compiler picks a target type that keeps every measured day.

Unit level (DuckDB in memory, no stack); the ClickHouse side of dates runs for real in
tests/integration/test_clickhouse_date_range.py.
"""
from __future__ import annotations

import datetime as dt
import json

from services.agents.qa import spec_checks as sc
from services.agents.qa.dry_run import dry_run
from services.agents.qa_validator import static_checks
from services.agents.schema_analyst import ddl_columns
from services.agents.sql_expert import compiled_sql
from services.connectors.typemap import clickhouse_holds, clickhouse_range_fits
from services.spec_compiler import generate_sql

FILE = {"kind": "file", "connection": "f", "path": "visits.csv"}
PG = {"kind": "postgres", "connection": "pg", "table": "hr.people"}
CH = {"kind": "clickhouse", "connection": "ch", "table": "mart.people"}
PEOPLE = [["person_id", "integer"], ["born", "date"], ["joined_at", "timestamp"], ["state", "text"]]
VISITS = [{"visit_id": i, "state": s, "fee": f, "seen_at": t} for i, (s, f, t) in enumerate([
    ("done", 10.5, "2026-03-31 18:00:00"), ("missed", 0, "2026-04-01 09:00:00"), ("done", 99, "2026-03-01 00:00:00"),
    (None, 5, "2026-02-28 23:59:00")], 1)]


def _result_errors(spec, rows, transform_sql=None, target_columns=None):
    result = dry_run(rows, transform_sql, None, spec=spec, target_columns=target_columns)
    return [f.message for f in result.findings if f.is_error]


def _file_spec(*filters, **extra):
    return {"source": FILE, "target": CH, "filters": list(filters), **extra}


def _compiled_transform(spec):
    columns = [("visit_id", "int64"), ("state", "string"), ("fee", "double"), ("seen_at", "timestamp[us]")]
    return generate_sql(spec, columns)["transform_sql"]


# ---------------------------------------------------------------- filters


def test_a_transform_filtering_on_the_right_column_but_keeping_other_values_fails():
    spec = _file_spec({"column": "state", "op": "=", "value": "done"})
    assert _result_errors(spec, VISITS, _compiled_transform(spec)) == []
    wrong = _result_errors(spec, VISITS, "SELECT * FROM batch WHERE state <> 'missed' OR state IS NULL")
    assert len(wrong) == 1 and "state" in wrong[0] and "'done'" in wrong[0]


def test_an_extract_sample_with_rows_the_filters_drop_fails_even_without_a_transform():
    # A database source's sample is what its extract returns: a lost WHERE shows in those rows.
    spec = {"source": PG, "target": CH, "filters": [{"column": "state", "op": "in", "value": ["done", "late"]}]}
    assert _result_errors(spec, [r for r in VISITS if r["state"] == "done"]) == []
    assert any("state='missed'" in m for m in _result_errors(spec, VISITS))


def test_comparison_ops_and_nulls_mean_what_sql_means():
    cases = [({"column": "fee", "op": ">", "value": 5}, [1, 3]),
             ({"column": "fee", "op": "<=", "value": "10.5"}, [1, 2, 4]),
             ({"column": "state", "op": "!=", "value": "missed"}, [1, 3]),  # NULL is not "not missed"
             ({"column": "state", "op": "is_null"}, [4]),
             ({"column": "state", "op": "not_in", "value": ["done"]}, [2]),
             ({"column": "state", "op": "contains", "value": "on"}, [1, 3])]
    for f, kept in cases:
        spec = _file_spec(f)
        rows = [r for r in VISITS if r["visit_id"] in kept]
        assert _result_errors(spec, rows) == [], f
        assert _result_errors(spec, VISITS), f


def test_between_two_dates_keeps_the_whole_last_day_and_iso_text_compares_as_a_time():
    spec = _file_spec({"column": "seen_at", "op": "between", "value": ["2026-03-01", "2026-03-31"]})
    march = [r for r in VISITS if r["visit_id"] in (1, 3)]
    assert _result_errors(spec, march) == []  # text times, as a CSV sample carries them
    typed = [{**r, "seen_at": dt.datetime.fromisoformat(r["seen_at"])} for r in march]
    assert _result_errors(spec, typed) == []
    assert any("2026-04-01" in m for m in _result_errors(spec, VISITS))


def test_filters_whose_value_the_output_no_longer_shows_are_not_judged():
    lowered = _file_spec({"column": "state", "op": "=", "value": "DONE"}, cleaning=[{"column": "state", "op": "lower"}])
    assert _result_errors(lowered, [{"visit_id": 1, "state": "done"}]) == []
    dropped = _file_spec({"column": "state", "op": "=", "value": "done"}, select=["visit_id"])
    assert _result_errors(dropped, [{"visit_id": 2}]) == []
    renamed = _file_spec({"column": "state", "op": "=", "value": "done"}, rename={"state": "outcome"})
    assert any("outcome='missed'" in m for m in _result_errors(renamed, [{"visit_id": 2, "outcome": "missed"}]))


# ---------------------------------------------------------------- days a ClickHouse 18.16 target cannot hold


def test_clickhouse_holds_1970_to_2105_only():
    assert clickhouse_holds(dt.date(1970, 1, 1)) and clickhouse_holds("2105-12-31") and clickhouse_holds(None)
    assert not clickhouse_holds(dt.date(1969, 12, 31)) and not clickhouse_holds("2106-01-01 00:00:00")
    assert not clickhouse_holds(dt.datetime(1969, 12, 31, 23, tzinfo=dt.timezone.utc))
    assert clickhouse_range_fits("1980-01-01", "2030-01-01") and not clickhouse_range_fits("1931-05-17", "1999-01-01")


def test_the_compiler_keeps_date_types_unless_the_measured_range_leaves_clickhouses():
    spec = {"source": PG, "target": CH, "rename": {"born": "birth_date"}}

    def types(ranges):
        return dict(ddl_columns(generate_sql(spec, [tuple(c) for c in PEOPLE], value_ranges=ranges)["target_ddl"],
                                "clickhouse"))

    assert "DATE" in types(None)["birth_date"].upper() and "DateTime" in types(None)["joined_at"]
    kept = types({"born": ["1980-02-01", "2001-01-01"], "joined_at": ["2020-01-01 00:00:00", "2026-01-01 00:00:00"]})
    assert "DATE" in kept["birth_date"].upper() and "DateTime" in kept["joined_at"]
    text = types({"born": ["1931-05-17", "2001-01-01"], "joined_at": ["1969-07-20 20:17:00", "2026-01-01 00:00:00"]})
    assert "String" in text["birth_date"] and "String" in text["joined_at"]
    # A PostgreSQL target holds every day: ranges change nothing there.
    pg_spec = {**spec, "target": {"kind": "postgres", "connection": "pg", "table": "public.people"}}
    assert "DATE" in generate_sql(pg_spec, [tuple(c) for c in PEOPLE],
                                  value_ranges={"born": ["1931-05-17", "2001-01-01"]})["target_ddl"].upper()


def test_qa_fails_a_date_column_the_source_range_or_the_sample_would_clamp():
    spec = {"source": PG, "target": CH, "rename": {"born": "birth_date"}}
    ddl = [["person_id", "Int32"], ["birth_date", "Nullable(DATE)"], ["joined_at", "DateTime"]]
    found = sc.date_range_findings(spec, ddl, {"born": ["1931-05-17", "2001-01-01"]})
    assert len(found) == 1 and "'birth_date'" in found[0].message and "1931-05-17" in found[0].message
    assert sc.date_range_findings(spec, [["birth_date", "Nullable(String)"]], {"born": ["1931-05-17", None]}) == []
    rows = [{"person_id": 1, "birth_date": dt.date(1966, 4, 2), "joined_at": dt.datetime(2020, 1, 1)}]
    assert any("1966-04-02" in m for m in _result_errors(spec, rows, target_columns=ddl))
    assert _result_errors(spec, rows, target_columns=[["birth_date", "String"], ["joined_at", "DateTime"]]) == []


# ---------------------------------------------------------------- renames


def test_a_rename_onto_the_columns_own_name_fails_qa():
    spec = {"source": PG, "target": CH, "select": ["person_id", "state"],
            "rename": {"person_id": "person_id", "state": "status"}}
    out = compiled_sql(spec, PEOPLE)
    cur = {k: out.get(k) for k in ("extract_sql", "transform_sql", "target_ddl")}
    cur["target_columns_json"] = json.dumps(ddl_columns(cur["target_ddl"], "clickhouse"))
    found = [str(f) for name, fs in static_checks(spec, cur, PEOPLE) for f in fs if f.is_error]
    assert any("'person_id' onto its own name" in m for m in found)
    fine = {**spec, "rename": {"person_id": "id", "state": "status"}}
    assert not any("own name" in str(f) for f in sc.column_findings(fine, PEOPLE))


def test_a_merge_whose_cursor_leaves_clickhouses_days_has_no_version_column():
    spec = {"source": PG, "target": {**CH, "load_mode": "merge", "keys": ["person_id"]},
            "incremental": {"cursor_column": "joined_at"}}
    columns = [tuple(c) for c in PEOPLE]
    assert "ReplacingMergeTree(joined_at)" in generate_sql(spec, columns)["target_ddl"]
    early = generate_sql(spec, columns, value_ranges={"joined_at": ["1969-07-20 20:17:00", "2026-01-01 00:00:00"]})
    assert "ENGINE = ReplacingMergeTree ORDER BY" in early["target_ddl"] and "joined_at Nullable(String)" in early["target_ddl"]
