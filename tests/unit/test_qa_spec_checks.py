"""QA checks a draft against its spec (services/agents/qa/spec_checks.py): one test per verification hole
seen (issue 8), on the SQL the compiler really produces, then broken the way a model broke it."""
import json

import pytest

from services.agents.qa import spec_checks as sc
from services.agents.qa.dry_run import dry_run
from services.agents.qa_validator import static_checks
from services.agents.reflector import is_compiled, repeats_previous_round
from services.agents.schema_analyst import ddl_columns
from services.agents.sql_expert import compiled_sql, sql_proposal
from services.connectors import files
from services.connectors.registry import Connection

ORDERS = [["order_id", "bigint"], ["customer_id", "bigint"], ["status", "text"], ["amount", "numeric(12,2)"],
          ["country", "text"], ["created_at", "timestamp"], ["updated_at", "timestamp"]]
PG = {"kind": "postgres", "connection": "pg", "table": "shop.orders"}


def ch(table, **extra):
    return {"kind": "clickhouse", "connection": "ch", "table": table, **extra}


DAILY = {"source": PG, "target": ch("analytics.daily"), "filters": [{"column": "status", "op": "=", "value": "paid"}],
         "aggregate": {"period": "day", "time_column": "created_at",
                       "measures": [{"fn": "sum", "column": "amount", "alias": "revenue"}]}}
MERGE = {"source": PG, "target": ch("analytics.orders_m", load_mode="merge", keys=["order_id"])}


def draft(spec, columns=ORDERS, **override):
    """The artifacts the compiler makes for ``spec`` (as the SQL expert records them), then ``override``."""
    out = compiled_sql(spec, columns)
    cur = {k: out.get(k) for k in ("extract_sql", "extract_sql_initial", "transform_sql", "target_ddl")}
    cur["target_setup_sql"] = list(out.get("target_setup_sql") or [])
    cur["sql_notes"] = list(out.get("notes") or []) + ([out["error"]] if out.get("error") else [])
    cur.update(override)
    cur["target_columns_json"] = json.dumps(ddl_columns(cur.get("target_ddl"), sc.spec_dialects(spec)[1]))
    return cur


def errors(spec, cur, columns=ORDERS):
    return {name: [str(f) for f in found if f.is_error] for name, found in static_checks(spec, cur, columns)
            if any(f.is_error for f in found)}


@pytest.mark.parametrize("spec", [DAILY, MERGE, {"source": PG, "target": ch("analytics.copy")},
                                  {"source": PG, "target": {"kind": "file", "connection": "f", "path": "m.parquet"},
                                   "aggregate": {"period": "month", "time_column": "created_at",
                                                 "dimensions": ["country"],
                                                 "measures": [{"fn": "avg", "column": "amount", "alias": "avg_amount"}]}},
                                  {"source": PG, "target": ch("analytics.top"), "select": ["order_id", "amount"],
                                   "order_by": [{"column": "amount", "descending": True}], "limit": 10,
                                   "rename": {"amount": "total"}}])
def test_the_compiled_draft_of_a_spec_passes_every_check(spec):
    assert errors(spec, draft(spec)) == {}


def test_an_aggregate_over_a_column_the_source_lacks_fails_with_the_reason():
    spec = {**DAILY, "aggregate": {**DAILY["aggregate"], "period": "month", "time_column": "event_time"}}
    cur = draft(spec)  # the compiler refuses: no SQL at all
    assert cur["extract_sql"] is None and "event_time" in cur["sql_notes"][-1]
    found = errors(spec, cur)
    assert "event_time" in " ".join(found["spec_columns"]) and "not among the source columns" in " ".join(
        found["spec_columns"])
    assert "no extract SQL" in " ".join(found["artifacts"]) and "event_time" in " ".join(found["artifacts"])


def test_a_draft_without_sql_fails_even_though_nothing_present_is_wrong():
    cur = draft(DAILY, extract_sql=None, target_ddl=None, target_setup_sql=[])
    found = errors(DAILY, cur)
    assert any("filters, aggregate must run in the source" in m for m in found["artifacts"])
    assert any("needs a CREATE TABLE" in m for m in found["artifacts"])


def test_a_clickhouse_ddl_in_postgres_types_fails_although_sqlglot_accepts_it():
    ddl = draft(MERGE)["target_ddl"].replace("Nullable(DateTime)", "TIMESTAMP WITHOUT TIME ZONE", 1)
    assert "TIMESTAMP WITHOUT TIME ZONE" in ddl
    found = errors(MERGE, draft(MERGE, target_ddl=ddl))
    assert any("'TIMESTAMP WITHOUT TIME ZONE' is not a ClickHouse type" in m for m in found["spec_shape"])


def test_the_target_dialect_comes_from_the_spec_in_any_spelling_never_from_the_answer():
    assert [sc.normalise_dialect(d) for d in ("ClickHouse", " PostgreSQL", "pg", "SQLite", "Oracle", None)] == \
        ["clickhouse", "postgres", "postgres", "sqlite", "", ""]
    ddl = draft(MERGE)["target_ddl"]
    assert ddl_columns(ddl, "ClickHouse")[0] == ["order_id", "Int64"]  # raised "Unknown dialect" before
    proposal = sql_proposal(MERGE, {"extract_sql": "SELECT 1", "dialects": {"extract": "ClickHouse",
                                                                            "target": ["postgres"]}}, 1, None)
    assert (proposal["source_dialect"], proposal["target_dialect"]) == ("postgres", "clickhouse")


def test_an_aggregate_sql_without_group_by_fails():
    cur = draft(DAILY, extract_sql="SELECT created_at AS day, amount AS revenue FROM shop.orders WHERE status = 'paid'")
    found = errors(DAILY, cur)
    assert any("has no GROUP BY" in m for m in found["spec_shape"])
    assert any("'revenue' must be sum(amount)" in m for m in found["spec_shape"])


def test_sql_that_drops_a_filter_or_groups_by_the_wrong_column_fails():
    grouped_wrong = draft(DAILY)["extract_sql"].replace("GROUP BY CAST(created_at AS DATE)", "GROUP BY status")
    found = errors(DAILY, draft(DAILY, extract_sql=grouped_wrong.replace("WHERE status = 'paid'\n", "")))
    assert any("does not GROUP BY ['created_at']" in m for m in found["spec_shape"])
    assert any("does not filter on ['status']" in m for m in found["spec_shape"])


def test_a_file_source_transform_that_drops_the_filter_fails():
    spec = {"source": {"kind": "file", "connection": "f", "path": "c.csv"},
            "target": {"kind": "postgres", "connection": "pg", "table": "public.c"},
            "filters": [{"column": "city", "op": "=", "value": "Oslo"}]}
    columns = [["id", "int"], ["city", "text"]]
    assert errors(spec, draft(spec, columns), columns) == {}
    found = errors(spec, draft(spec, columns, transform_sql="SELECT * FROM batch"), columns)
    assert any("transform_sql does not filter on ['city']" in m for m in found["spec_shape"])


def test_mergetree_for_a_merge_load_fails_and_so_does_a_replacing_engine_ordered_by_other_columns():
    ddl = draft(MERGE)["target_ddl"]
    assert "ReplacingMergeTree" in ddl
    found = errors(MERGE, draft(MERGE, target_ddl=ddl.replace("ReplacingMergeTree", "MergeTree")))
    assert any("needs ENGINE = ReplacingMergeTree" in m for m in found["spec_shape"])
    found = errors(MERGE, draft(MERGE, target_ddl=ddl.replace("ORDER BY (order_id)", "ORDER BY (updated_at)")))
    assert any("must be the merge keys ['order_id']" in m for m in found["spec_shape"])
    append = {**MERGE, "target": ch("analytics.orders_a")}
    found = errors(append, draft(append, target_ddl=ddl.replace("orders_m", "orders_a")))
    assert any("would collapse rows" in m for m in found["spec_shape"])


def test_a_merge_into_postgres_needs_its_keys_as_primary_key():
    spec = {**MERGE, "target": {"kind": "postgres", "connection": "pg", "table": "public.om", "load_mode": "merge",
                                "keys": ["order_id"]}}
    ddl = draft(spec)["target_ddl"]
    assert errors(spec, draft(spec)) == {}
    found = errors(spec, draft(spec, target_ddl=ddl.replace(",\n    PRIMARY KEY (order_id)", "")))
    assert any("needs PRIMARY KEY (order_id)" in m for m in found["spec_shape"])


def test_a_file_target_with_ddl_fails():
    spec = {"source": PG, "target": {"kind": "file", "connection": "f", "path": "out/orders.parquet"}}
    assert errors(spec, draft(spec)) == {}
    found = errors(spec, draft(spec, target_ddl="CREATE TABLE orders (order_id BIGINT)"))
    assert any("must not carry target DDL" in m for m in found["artifacts"])


def test_ddl_columns_that_do_not_match_the_output_fail():
    ddl = draft(DAILY)["target_ddl"].replace("revenue", "total")
    found = errors(DAILY, draft(DAILY, target_ddl=ddl))
    assert any("no column(s) ['revenue']" in m for m in found["spec_shape"])


def test_the_clickhouse_type_grammar_agrees_with_current_clickhouse(tmp_path):
    pytest.importorskip("chdb")
    from chdb import session as chs

    types = ["Int64", "Nullable(Decimal(12, 2))", "LowCardinality(Nullable(String))", "DateTime64(3, 'UTC')",
             "Array(Nullable(Date))", "Map(String, UInt64)", "Tuple(a String, b Int32)", "Enum8('a' = 1, 'b' = 2)",
             "FixedString(3)", "TIMESTAMP WITHOUT TIME ZONE", "timestamp with time zone", "Nullable(String, Int8)",
             "Strin", "Decimal(12,2)", "DateTime('Europe/Moscow')", "UUID", "String x"]
    s = chs.Session(str(tmp_path / "chdb"))
    try:
        s.query("CREATE DATABASE IF NOT EXISTS probe")
        for i, t in enumerate(types):
            try:
                s.query(f"CREATE TABLE probe.t{i} (c {t}) ENGINE = Memory")
                accepted = True
            except Exception:
                accepted = False
            assert (sc.clickhouse_type_problem(t) is None) == accepted, (t, accepted)
    finally:
        s.cleanup() if hasattr(s, "cleanup") else s.close()


def test_the_dry_run_checks_the_result_shape_against_the_spec():
    raw = [{"order_id": i, "status": "paid", "amount": 10, "created_at": None} for i in range(3)]
    result = dry_run(raw, None, None, spec=DAILY, source_columns=ORDERS)  # the raw rows of a draft without SQL
    assert not result.ok and "the spec's output is ['day', 'revenue']" in str(result.findings)
    import datetime as dt

    day = dt.date(2024, 1, 1)
    twice = [{"day": day, "revenue": 5}, {"day": day, "revenue": 7}]
    result = dry_run(twice, None, None, spec=DAILY, source_columns=ORDERS)
    assert not result.ok and "2 rows for 1 value(s)" in str(result.findings)
    as_text = [{"day": day, "revenue": "12.50"}]
    result = dry_run(as_text, None, None, spec=DAILY, source_columns=ORDERS)
    assert not result.ok and "'revenue' must be a number" in str(result.findings)
    assert dry_run([{"day": day, "revenue": 5}], None, None, spec=DAILY, source_columns=ORDERS).ok


def test_a_repair_that_reproduces_its_sql_or_findings_is_recognised_and_compiled_sql_is_known():
    cur = draft(DAILY)
    again = {**cur, "previous_sql": [cur.get(k) for k in ("extract_sql", "extract_sql_initial", "transform_sql",
                                                           "target_ddl", "target_setup_sql")]}
    assert repeats_previous_round(again, ["x"])
    changed = {**again, "extract_sql": "SELECT 2", "previous_findings": ["a"]}
    assert not repeats_previous_round(changed, ["b"]) and repeats_previous_round(changed, ["a"])
    columns = {**cur, "source_columns_json": json.dumps(ORDERS)}
    assert is_compiled(DAILY, columns) and not is_compiled(DAILY, {**columns, "extract_sql": "SELECT 1"})


def test_csv_na_markers_read_as_null_so_numeric_columns_stay_numeric(tmp_path):
    (tmp_path / "m.csv").write_text("id,city,score,measured\n1,Oslo,1.5,2024-01-01\n2,NA,NA,NA\n3,Rome,,2024-01-03\n"
                                    "4,N/A,2.25,null\n", encoding="utf-8")
    conn = Connection("t", "files", "file", {"folder": str(tmp_path)}, {})
    types = {c.name: (c.type, c.nullable) for c in files.table_schema(conn, "m.csv")}
    assert types == {"id": ("int", False), "city": ("text", True), "score": ("float", True),
                     "measured": ("date", True)}
    rows = files.sample_rows(conn, "m.csv", 10)
    assert [r["score"] for r in rows] == [1.5, None, None, 2.25] and rows[1]["city"] is None
    spec = {"source": {"kind": "file", "connection": "f", "path": "m.csv"}, "target": ch("analytics.m"),
            "aggregate": {"dimensions": ["city"], "measures": [{"fn": "avg", "column": "score", "alias": "avg_score"}]}}
    columns = [[c.name, c.type] for c in files.table_schema(conn, "m.csv")]
    cur = draft(spec, columns)
    assert errors(spec, cur, columns) == {} and "Float64" in cur["target_ddl"]
    result = dry_run(rows, cur["transform_sql"], None, spec=spec, source_columns=columns)
    assert result.ok, result.findings
    assert {r["city"]: r["avg_score"] for r in result.sample} == {"Oslo": 1.5, "Rome": None, None: 2.25}


def test_spec_words_resolve_like_the_compiler_resolves_them():
    # "countries" is the compiler's "country", "amounts" its "amount", "Status" its "status": the SQL compiled
    # from them passes, a wrong GROUP BY does not.
    spec = {"source": PG, "target": ch("analytics.by_country"), "filters": [{"column": "Status", "op": "=",
                                                                             "value": "paid"}],
            "aggregate": {"dimensions": ["countries"], "measures": [{"fn": "sum", "column": "amounts", "alias": "total"}]}}
    cur = draft(spec)
    assert "GROUP BY country" in cur["extract_sql"] and errors(spec, cur) == {}
    found = errors(spec, draft(spec, extract_sql=cur["extract_sql"].replace("GROUP BY country", "GROUP BY status")))
    assert any("does not GROUP BY ['country']" in m for m in found["spec_shape"])


def test_a_json_sources_iso_times_are_times_but_numbers_as_text_are_not():
    spec = {"source": {"kind": "kafka", "connection": "k", "topic": "clicks", "message_format": "json"},
            "target": ch("analytics.clicks")}
    columns = [["ts", "timestamp"], ["n", "int"]]
    assert dry_run([{"ts": "2026-11-01T00:00:00.396000", "n": 1}], None, None, spec=spec, source_columns=columns).ok
    result = dry_run([{"ts": "yesterday", "n": "1"}], None, None, spec=spec, source_columns=columns)
    assert "'ts' must be a date or timestamp" in str(result.findings) and "'n' must be a number" in str(result.findings)
